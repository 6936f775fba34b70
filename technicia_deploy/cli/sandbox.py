"""``technicia-deploy sandbox up|down|status``: the local OVH world for trying and testing the pipeline."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DIR_HELP = ("sandbox state directory (keys, logs, generated environments.yaml); "
            "default: $TECHNICIA_SANDBOX_DIR or ./.sandbox")


def _state(args: argparse.Namespace):
    from technicia_deploy.sandbox.state import SandboxState

    return SandboxState.load(Path(args.dir) if args.dir else None)


def _log(line: str) -> None:
    print(f"sandbox: {line}", file=sys.stderr, flush=True)


def _up(args: argparse.Namespace) -> int:
    from technicia_deploy.sandbox import world
    from technicia_deploy.sandbox.docker_engine import DockerUnavailable
    from technicia_deploy.sandbox.image import ImageError

    state = _state(args)
    started = time.monotonic()
    from technicia_deploy.sandbox.postgres import PostgresUnavailable

    try:
        if args.orchestrator:
            world.up(state, log=_log, orchestrator=args.orchestrator)
        else:
            world.up(state, log=_log)
    except (DockerUnavailable, ImageError, world.SandboxIncomplete, TimeoutError, PostgresUnavailable) as exc:
        # Expected failures: the message says what is missing and where to look; no traceback.
        print(f"error: {exc}", file=sys.stderr)
        print(f"(daemon logs: {state.logs}; `technicia-deploy sandbox up` again repairs, "
              "`technicia-deploy sandbox down` removes what was made)", file=sys.stderr)
        return 1
    _log(f"up in {time.monotonic() - started:.0f}s")
    print("\n".join(world.status(state)))
    return 0


def _down(args: argparse.Namespace) -> int:
    from technicia_deploy.sandbox import world

    world.down(_state(args), log=_log)
    return 0


def _status(args: argparse.Namespace) -> int:
    from technicia_deploy.sandbox import world

    print("\n".join(world.status(_state(args))))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "sandbox",
        help="a local OVH world: 3 VPS containers, OVH API + DNS, ACME, cloud API emulators",
        description="Bring up, inspect or remove the sandbox: three Debian VPS containers (test, staging, production) "
                    "reachable over SSH, an OVH API emulator with its DNS zone, a pebble ACME server, emulators of the "
                    "cloud APIs, the sample application, and a generated environments.yaml applied to Prefect blocks.",
    )
    actions = parser.add_subparsers(dest="sandbox_command", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", metavar="PATH", help=DIR_HELP)

    up = actions.add_parser(
        "up", parents=[common], help="create or repair the sandbox (idempotent)",
        description="Create whatever is missing (VPS image, network, containers, daemons), write "
                    "<dir>/environments.yaml and apply it to Prefect blocks (on $PREFECT_API_URL, or a Prefect server "
                    "the sandbox starts). Running it again only repairs. Needs a Docker engine and root for the first "
                    "image build.")
    up.add_argument("--orchestrator", choices=("sqlite", "postgres"), default=None,
                    help="the sandbox's own Prefect server: 'sqlite' (Prefect's embedded database, one worker, "
                         "no API auth) or 'postgres' (Debian's PostgreSQL started in the state directory, the API "
                         "protected by a generated auth string, two workers: the setup of docs/orchestrator.md); "
                         "default: what the sandbox runs now, sqlite for a new one")
    up.set_defaults(func=_up)

    down = actions.add_parser(
        "down", parents=[common], help="remove every container, network, volume and daemon of the sandbox",
        description="Stop the sandbox's daemons and remove its containers, network and volumes. Keys and the state "
                    "directory stay (the next `up` reuses the same host keys); the cached VPS image stays too.")
    down.set_defaults(func=_down)

    status = actions.add_parser(
        "status", parents=[common], help="show the VPSes, endpoints, Prefect URL and environments.yaml path",
        description="Print what the sandbox runs: VPS addresses and containers, emulator URLs, the Prefect API/UI URL.")
    status.set_defaults(func=_status)
