"""``technicia-deploy``: the command line. One module per command group.

Each module defines ``register(subparsers)`` and sets ``func`` on its parsers.
Heavy imports (prefect, SDKs) happen inside the command functions, so that
``--help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Command groups, in the order --help lists them.
COMMAND_MODULES = ("blocks", "sandbox", "deploy", "smoke", "report")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="technicia-deploy",
        description="Deploy TechnicIA to OVH VPS servers through test, staging and production, orchestrated by Prefect.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"technicia_deploy.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from technicia_deploy.config import ConfigError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        # The message names the file, field and reason, never a secret value.
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
