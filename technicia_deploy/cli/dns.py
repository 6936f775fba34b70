"""``technicia-deploy dns prepare ENV``: create the environment's DNS record ahead of its deployment.

The seed: DNS is set up at least 24 h before the production deployment, so that it has propagated;
the promotion's DNS gate checks the record's age. This runs the deploy flow's own DNS step (OVH API,
then the authoritative servers), in a ``prepare-dns`` flow run of its own; it touches no server.
"""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("dns", help="prepare an environment's DNS record ahead of its first deployment")
    actions = parser.add_subparsers(dest="dns_command", metavar="ACTION", required=True)
    prepare = actions.add_parser("prepare", help="create or correct the A record, wait until it is served",
                                 description="Point the environment's domain at its VPS through the OVH API and "
                                 "wait for every authoritative server to answer it; records when, for the DNS gate.")
    prepare.add_argument("environment", choices=("test", "staging", "production"))
    prepare.add_argument("--project", default="technicia", help="project name used in block names (default: %(default)s)")
    prepare.set_defaults(func=_prepare, needs_prefect=True)


def _prepare(args: argparse.Namespace) -> int:
    from prefect import tags

    from flows.prepare_dns import prepare_dns
    from technicia_deploy.steps import env_tag

    # Tagged from its creation: the alert automation sees the run's tags only if its first state event had them.
    with tags(env_tag(args.environment)):
        state = prepare_dns(environment=args.environment, project=args.project, return_state=True)
    if not state.is_completed():
        print(f"error: {state.message}", file=sys.stderr)
        return 1
    print(f"{args.environment}: {state.result()}")
    return 0
