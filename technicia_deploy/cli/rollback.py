"""``technicia-deploy rollback ENV``: put an environment back on its previous release, and verify it serves."""

from __future__ import annotations

import argparse
import getpass
import sys


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "rollback", help="put an environment back on its previous release (runs the rollback-environment flow here)",
        description="Run the rollback-environment flow in this process: under the environment's lock, the previous "
        "release's compose file, .env and images are brought back and the functional tests verify it serves.",
    )
    parser.add_argument("environment", choices=("test", "staging", "production"))
    parser.add_argument("--operator", default=None, help="who asks (default: your user name)")
    parser.add_argument("--reason", default="", help="why (kept in the run history)")
    parser.add_argument("--project", default="technicia", help="project name used in block names (default: %(default)s)")
    parser.set_defaults(func=_rollback, needs_prefect=True)


def _rollback(args: argparse.Namespace) -> int:
    from prefect import tags

    from flows.rollback_environment import rollback_environment
    from technicia_deploy.steps import env_tag

    # Tagged from its creation: the alert automation sees the run's tags only if its first state event had them.
    with tags(env_tag(args.environment)):
        state = rollback_environment(environment=args.environment, operator=args.operator or getpass.getuser(),
                                     reason=args.reason, project=args.project, return_state=True)
    if not state.is_completed():
        print(f"error: {state.message}", file=sys.stderr)
        return 1
    print(f"{args.environment}: {state.result()['summary']}")
    return 0
