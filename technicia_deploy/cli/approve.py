"""``technicia-deploy approve RUN_ID --approver NAME``: answer a promotion's production approval from a terminal.

The same form as the Prefect UI's *Resume* dialog (technicia_deploy.approval.ProductionApproval): the two
confirmations are flags the approver must give; without both, the promotion refuses to deploy production.
"""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "approve", help="approve (or reject) the production deployment a promotion is waiting for",
        description="Answer the production approval of a suspended promote-release run, as the Prefect UI's "
        "Resume form does. Approving needs both confirmations (--documentation-finalised, --quotas-verified).",
    )
    parser.add_argument("run_id", help="the promote-release flow run id (printed by `technicia-deploy promote`)")
    parser.add_argument("--approver", required=True, help="your name, recorded as the approver")
    parser.add_argument("--reject", action="store_true", help="reject: end the promotion, production untouched")
    parser.add_argument("--documentation-finalised", action="store_true",
                        help="confirm: documentation utilisateur finalisée")
    parser.add_argument("--quotas-verified", action="store_true", help="confirm: quotas API vérifiés")
    parser.add_argument("--comment", default="", help="kept in the run history")
    parser.set_defaults(func=_approve, needs_prefect=True)


def answer(run_id: str, approver: str, *, reject: bool = False, documentation: bool = False, quotas: bool = False,
           comment: str = "") -> None:
    """Resume the suspended promotion with this answer (ValueError/RuntimeError saying why it cannot)."""
    from uuid import UUID

    from prefect import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.flow_runs import resume_flow_run

    from technicia_deploy.approval import APPROVAL_KEY, ProductionApproval

    try:
        UUID(run_id)
    except ValueError:
        raise ValueError(f"{run_id!r} is not a flow run id (the promotion's id, as `technicia-deploy promote` prints it)") from None
    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(run_id)
        except ObjectNotFound:
            raise ValueError(f"no flow run {run_id} on this Prefect server") from None
        if not (run.state and run.state.is_paused()):
            raise ValueError(f"run {run.name!r} ({run_id}) is {run.state.name if run.state else 'unknown'}, "
                             "not waiting for an approval")
        if run.state.state_details.pause_key != APPROVAL_KEY:
            raise ValueError(f"run {run.name!r} ({run_id}) is paused, but not for the production approval")
    values = ProductionApproval(approver=approver, decision="reject" if reject else "approve",
                                documentation_finalised=documentation, quotas_verified=quotas, comment=comment)
    resume_flow_run(run_id, run_input=values.model_dump())


def _approve(args: argparse.Namespace) -> int:
    try:
        answer(args.run_id, args.approver, reject=args.reject, documentation=args.documentation_finalised,
               quotas=args.quotas_verified, comment=args.comment)
    except (ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    verb = "rejected" if args.reject else "approved"
    print(f"{args.run_id}: production {verb} by {args.approver}; the promotion resumes")
    if not args.reject and not (args.documentation_finalised and args.quotas_verified):
        print("note: a confirmation is missing, so the promotion will refuse to deploy production", file=sys.stderr)
    return 0
