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
COMMAND_MODULES = ("blocks", "sandbox", "dns", "deploy", "promote", "approve", "rollback", "smoke", "report")


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
    # A user error (bad file, bad YAML, unknown environment or version, no server) is one `error: ...` line on
    # stderr and exit status 2; anything else is a bug and keeps its traceback.
    from technicia_deploy.config import ConfigError
    from technicia_deploy.versions import UnknownVersion

    from technicia_deploy.cli import server

    parser = build_parser()
    args = parser.parse_args(argv)  # a bad invocation: argparse's usage + error, exit status 2
    try:
        if getattr(args, "needs_prefect", False):
            # Every command that reads or writes the run history finds the server the same way.
            args.prefect_url = server.use()
        return int(args.func(args) or 0)
    except server.NoPrefectServer as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        # One line per problem, each naming the file, field and reason, never a secret value.
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 2
    except UnknownVersion as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.filename is None:  # not about a file the command was given: not a user error we can name
            raise
        print(f"error: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
