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
COMMAND_MODULES = ("blocks", "sandbox", "dns", "deploy", "promote", "approve", "rollback", "smoke", "report", "doctor",
                   "ovh")


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


def flush_prefect_workers(timeout: float = 10.0) -> None:
    """Send what Prefect's background workers still hold (task-state events, logs) to the server."""
    if "prefect" not in sys.modules:
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (EventsWorker, APILogWorker):
        try:
            worker.drain_all(timeout=timeout)
        except Exception:  # noqa: BLE001 - a worker that never started or a server gone: nothing to send
            pass


def run() -> None:
    """The console script: :func:`main`, then a prompt exit.

    Once the command is done and Prefect's workers have sent what they hold, nothing is left to do:
    skipping the interpreter's teardown (thousands of modules, Prefect's exit hooks) saves seconds per
    command. Output is flushed first; the exit status is main's.
    """
    import os

    code = 1
    try:
        code = main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        flush_prefect_workers()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed pipe
                pass
    os._exit(code)


if __name__ == "__main__":
    run()
