"""``technicia-deploy doctor [ENV]``: check every declared credential and endpoint, print one row per check."""

from __future__ import annotations

import argparse
import json
import shutil
import sys

ENVIRONMENTS = ("test", "staging", "production")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "doctor",
        help="check every credential and endpoint an environment needs, before deploying",
        description="OVH credential and its access rules, the VPS against its spec, SSH with the pinned host key, the "
        "DNS zone, the ACME directory, the four cloud keys, the alert destinations (a test message is sent), the "
        "Prefect server and a live worker on each work pool of deployments.yaml. One row per check, with the fix "
        "for each failure. Exit status 1 if any check failed.",
    )
    parser.add_argument("environment", nargs="?", default="all", choices=(*ENVIRONMENTS, "all"),
                        help="test, staging, production or all (default: %(default)s)")
    parser.add_argument("--config", metavar="FILE", help="check environments.yaml (secrets resolved here) instead of "
                        "the Prefect blocks; nothing is saved")
    parser.add_argument("--project", default="technicia", help="project name, the prefix of the block names (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds allowed per check (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    parser.set_defaults(func=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    from technicia_deploy import doctor
    from technicia_deploy.cli import server

    environments = list(ENVIRONMENTS) if args.environment == "all" else [args.environment]
    api_url = server.api_url()
    if api_url:
        server.use()  # before prefect is imported: the blocks and the Prefect check use this server
    if args.config:
        targets = doctor.targets_from_file(args.config, environments)
        rows = doctor.run(targets, api_url, doctor.work_pools(), timeout_s=args.timeout)
    else:
        # The blocks live on the Prefect server: an unreachable one is one clear row, not a failure per block.
        reachable = doctor.check_prefect(api_url, [], args.timeout)
        if any(row.failed for row in reachable):
            rows = reachable + [doctor.Row("configuration", args.environment, doctor.SKIPPED,
                                           "not checked: the Prefect blocks cannot be read",
                                           "fix the Prefect server row, or run `doctor --config environments.yaml`")]
        else:
            targets, problems = doctor.targets_from_blocks(environments, args.project)
            rows = doctor.run(targets, api_url, doctor.work_pools(), timeout_s=args.timeout, load_problems=problems)
    # A terminal's own width; piped output is not wrapped into a narrow table (logs, CI).
    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
    print(json.dumps(doctor.rows_as_dicts(rows), indent=2) if args.json else doctor.render(rows, width))
    return 1 if any(row.failed for row in rows) else 0
