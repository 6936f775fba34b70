"""``technicia-deploy promote VERSION``: start the promote-release deployment and follow it.

The promotion runs on a worker (it suspends itself while it waits for the approval, so it must run
from its deployment). This command starts it, prints where to follow it, waits at the approval and
says how to give it (the Prefect UI's Resume button, or ``technicia-deploy approve``), then follows it
to its end. ``--approve-as NAME`` answers the approval itself (the sandbox demo's operator).
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time

DEPLOYMENT = "promote-release/promote"
POLL_S = 1.0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "promote", help="promote a version through test, staging and (after approval) production",
        description="Start the promote-release deployment (a worker runs it) and follow it: test, staging, the "
        "gates, the production approval, production.",
    )
    parser.add_argument("version", help="git tag or branch of the application")
    parser.add_argument("--operator", default=None, help="who promotes (default: your user name)")
    parser.add_argument("--no-wait", action="store_true", help="start it and return")
    parser.add_argument("--approve-as", metavar="NAME", default=None,
                        help="answer the approval yourself as NAME, with both confirmations (demo/sandbox use)")
    parser.add_argument("--approval-timeout-hours", type=float, default=None,
                        help="how long the promotion waits for the approval (default: production's configuration)")
    parser.set_defaults(func=_promote, needs_prefect=True)


def _promote(args: argparse.Namespace) -> int:
    from prefect import get_client
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    from technicia_deploy.cli.server import ui_url

    ui = ui_url(args.prefect_url)
    parameters = {"version": args.version, "operator": args.operator or getpass.getuser()}
    if args.approval_timeout_hours:
        parameters["approval_timeout_hours"] = args.approval_timeout_hours
    try:
        run = run_deployment(DEPLOYMENT, parameters=parameters, timeout=0, as_subflow=False)
    except ObjectNotFound:
        print(f"error: no deployment {DEPLOYMENT!r} on {args.prefect_url}: register deployments.yaml "
              "(prefect --no-prompt deploy --all --prefect-file deployments.yaml) and start a worker", file=sys.stderr)
        return 2
    print(f"promotion of {args.version}: run {run.name} ({run.id})\n  follow it: {ui}/runs/flow-run/{run.id}")
    if args.no_wait:
        return 0
    announced = set()
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(run.id)
            state = run.state
            if state.name not in announced:
                announced.add(state.name)
                print(f"  {time.strftime('%H:%M:%S')} {state.name}" + (f": {state.message}" if state.message else ""))
            if state.is_paused() and "approval" not in announced:
                announced.add("approval")
                print(f"  waiting for the production approval: open {ui}/runs/flow-run/{run.id} and press Resume, or\n"
                      f"    technicia-deploy approve {run.id} --approver NAME --documentation-finalised "
                      "--quotas-verified [--comment TEXT]   (or --reject)")
                if args.approve_as:
                    from technicia_deploy.cli.approve import answer

                    answer(str(run.id), args.approve_as, documentation=True, quotas=True,
                           comment="answered by `technicia-deploy promote --approve-as` (sandbox demo)")
                    print(f"  approved by {args.approve_as} (documentation finalised, quotas verified)")
            if state.is_final():
                break
            time.sleep(POLL_S)
    print(f"promotion of {args.version}: {state.name}" + (f": {state.message}" if state.message else ""))
    return 0 if state.is_completed() else 1
