"""``technicia-deploy deploy ENV --version REF``: run the deploy-environment flow now, from this machine."""

from __future__ import annotations

import argparse
import getpass
import os
import sys


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "deploy", help="deploy a version to an environment (runs the deploy-environment flow here)",
        description="Run the deploy-environment flow in this process against the Prefect server "
        "($PREFECT_API_URL, else the local sandbox's server). The run and its steps appear in the Prefect UI.",
    )
    parser.add_argument("environment", choices=("test", "staging", "production"))
    parser.add_argument("--version", required=True, help="git tag or branch of the application to deploy")
    parser.add_argument("--operator", default=None, help="who runs it (default: your user name)")
    parser.add_argument("--rebuild-server", action="store_true",
                        help="reinstall the VPS through OVH first (DESTROYS the server's data)")
    parser.add_argument("--project", default="technicia", help="project name used in block names (default: %(default)s)")
    parser.set_defaults(func=_deploy)


def prefect_api_url() -> str | None:
    """$PREFECT_API_URL, else the URL of the local sandbox's Prefect server, if one is up."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    from technicia_deploy.sandbox.state import SandboxState

    state = SandboxState.load()
    return (state.data.get("prefect") or {}).get("url")


def _deploy(args: argparse.Namespace) -> int:
    url = prefect_api_url()
    if not url:
        print("error: no Prefect server: set PREFECT_API_URL, or run `technicia-deploy sandbox up`", file=sys.stderr)
        return 2
    os.environ["PREFECT_API_URL"] = url
    os.environ.setdefault("DO_NOT_TRACK", "1")
    from prefect.states import State

    from flows.deploy_environment import deploy_environment

    state: State = deploy_environment(environment=args.environment, version=args.version,
                                      operator=args.operator or getpass.getuser(), rebuild_server=args.rebuild_server,
                                      project=args.project, return_state=True)
    ui = url.removesuffix("/api")
    print(f"\n{args.environment}: {state.name}. Run history: {ui}/runs  (report: technicia-deploy report)")
    if not state.is_completed():
        print(f"error: {state.message}", file=sys.stderr)
        return 1
    return 0
