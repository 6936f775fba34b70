"""``technicia-deploy deploy ENV --version REF``: run the deploy-environment flow now, from this machine.

Test and staging only: production is deployed by an approved promotion (``technicia-deploy promote``).
The flow takes the environment's lock itself, so a run started here and one started from the UI never
overlap.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from technicia_deploy.promotion import HOW_TO_PROMOTE, PROMOTED_ENVIRONMENT


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "deploy", help="deploy a version to test or staging (runs the deploy-environment flow here)",
        description="Run the deploy-environment flow in this process against the Prefect server "
        "($PREFECT_API_URL, else the local sandbox's server). The run and its steps appear in the Prefect UI. "
        "Production is deployed only by an approved promotion: see `technicia-deploy promote`.",
    )
    parser.add_argument("environment", choices=("test", "staging", "production"))
    parser.add_argument("--version", required=True, help="git tag or branch of the application to deploy")
    parser.add_argument("--operator", default=None, help="who runs it (default: your user name)")
    parser.add_argument("--rebuild-server", action="store_true",
                        help="reinstall the VPS through OVH first (DESTROYS the server's data)")
    parser.add_argument("--project", default="technicia", help="project name used in block names (default: %(default)s)")
    parser.add_argument("--lock-wait", type=float, default=None, metavar="SECONDS",
                        help="how long to wait for another run of this environment before giving up")
    parser.add_argument("--load-test", action=argparse.BooleanOptionalAction, default=None,
                        help="run the load test (--load-test) or keep the last passing one (--no-load-test); "
                        "default: run it only when the deployment changed something")
    parser.add_argument("--alert-test", action=argparse.BooleanOptionalAction, default=None,
                        help="send a test alert through every destination (--alert-test) or not (--no-alert-test); "
                        "default: only when the deployment changed something")
    parser.set_defaults(func=_deploy, needs_prefect=True)


def _deploy(args: argparse.Namespace) -> int:
    if args.environment == PROMOTED_ENVIRONMENT:
        print(f"error: `deploy production` refused: {HOW_TO_PROMOTE}", file=sys.stderr)
        return 2
    from prefect import tags
    from prefect.states import State

    from flows.deploy_environment import deploy_environment
    from technicia_deploy.cli.server import ui_url
    from technicia_deploy.steps import env_tag

    options = {"lock_wait_s": args.lock_wait} if args.lock_wait is not None else {}
    for option in ("load_test", "alert_test"):
        if getattr(args, option) is not None:
            options[option] = getattr(args, option)
    from prefect.context import SyncClientContext
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from technicia_deploy.cli import warmup

    warmup.start()  # the steps' modules load while the flow run is created (network waits)
    # One API client for the version lookup and the flow run (the engine reuses the context's; each new client
    # costs a TLS trust-store load even for an http:// server).
    # No heartbeats for a run in this process: nothing watches them (the zombie detection matches runs of
    # deployments; a dead CLI run is found by the next holder of the environment's lock), and Prefect's
    # heartbeat thread sleeps in 1 s steps that the run's end waits out.
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}), SyncClientContext.get_or_create():
        sha = _resolve(args.project, args.environment, args.version)  # a bad version: one error line, no flow run
        # Tagged from its creation: the alert automation sees the run's tags only if its first state event had them.
        with tags(env_tag(args.environment)):
            state: State = deploy_environment(environment=args.environment, version=args.version, sha=sha,
                                              operator=args.operator or getpass.getuser(),
                                              rebuild_server=args.rebuild_server, project=args.project,
                                              return_state=True, **options)
    print(f"\n{args.environment}: {state.name}. Run history: {ui_url(args.prefect_url)}/runs  "
          "(report: technicia-deploy report)")
    if not state.is_completed():
        print(f"error: {state.message}", file=sys.stderr)
        return 1
    return 0


def _resolve(project: str, environment: str, version: str) -> str:
    """The commit ``version`` names in the environment's repository (UnknownVersion / LookupError otherwise)."""
    from prefect.exceptions import ObjectNotFound

    from blocks import TechniciaEnvironment, environment_block_name
    from technicia_deploy import versions

    name = environment_block_name(project, environment)
    try:
        block = TechniciaEnvironment.load(name)
    except (ValueError, ObjectNotFound):
        raise versions.UnknownVersion(f"environment {environment!r}: no Prefect block {name!r}; "
                                      "run `technicia-deploy blocks apply environments.yaml`") from None
    return versions.resolve(block.app().repository, version)
