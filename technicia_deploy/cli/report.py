"""``technicia-deploy report`` and ``technicia-deploy problem note``: the tracking document from Prefect's run history."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser(
        "report",
        help="render the deployment tracking document from the Prefect run history",
        description="Render the whole tracking document (the seed's sections) from the Prefect API. "
        "Environment settings come from --config if given, else from the TechnicIA Environment blocks.",
    )
    report.add_argument("--lang", choices=("fr", "en"), default="fr", help="document language (default: %(default)s)")
    report.add_argument("--output", "-o", metavar="FILE", help="write the markdown here instead of standard output")
    report.add_argument("--config", metavar="FILE", help="environments.yaml to take URLs, servers and ports from")
    report.add_argument("--max-runs", type=int, default=1000, help="deployment runs read, newest first (default: %(default)s)")
    report.add_argument("--allow-empty", action="store_true",
                        help="render the document even when the server has no deployment run yet")
    report.set_defaults(func=_report, needs_prefect=True)

    problem = sub.add_parser("problem", help="annotate the problems listed in the tracking document")
    actions = problem.add_subparsers(dest="problem_command", metavar="ACTION", required=True)
    note = actions.add_parser(
        "note",
        help="add a solution note to a problem (shown in its Solution column)",
        description="Store a note for problem ID (as shown in the report, e.g. P-1a2b3c4d) in a Prefect Variable. "
        "Notes are plain text visible to anyone with access to the Prefect server: never paste a secret.",
    )
    note.add_argument("id", help="problem ID from the report, e.g. P-1a2b3c4d")
    note.add_argument("text", help="the note")
    note.add_argument("--by", default=None, help="author (default: the current user)")
    note.set_defaults(func=_note, needs_prefect=True)


def _environments(config: str | None):
    from technicia_deploy import config as cfg
    from technicia_deploy.tracking.history import environments_from_project

    if config is None:
        return None
    return environments_from_project(cfg.load(config))


def _unreachable(exc: Exception) -> int:
    from prefect.settings import PREFECT_API_URL

    where = PREFECT_API_URL.value()
    print(f"error: the Prefect API at {where} did not answer ({type(exc).__name__}: {exc}); "
          "start it or set PREFECT_API_URL", file=sys.stderr)
    return 1


def _report(args: argparse.Namespace) -> int:
    import httpx
    from prefect import get_client

    from technicia_deploy.tracking.history import read_history
    from technicia_deploy.tracking.render import render

    environments = _environments(args.config)
    try:
        with get_client(sync_client=True) as client:
            history = read_history(client, environments=environments, max_runs=args.max_runs)
    except httpx.TransportError as exc:
        return _unreachable(exc)
    if not history.deploy_runs and not args.allow_empty:
        print(f"error: the Prefect server at {args.prefect_url} has no deployment run: is it the server the "
              "deployments ran against? (--allow-empty renders the not-yet-started document anyway)", file=sys.stderr)
        return 1
    document = render(history, args.lang)
    if args.output:
        Path(args.output).write_text(document, encoding="utf-8")
        print(f"{args.output}: tracking document written ({args.lang})", file=sys.stderr)
    else:
        sys.stdout.write(document)
    return 0


def _note(args: argparse.Namespace) -> int:
    import httpx

    from technicia_deploy.tracking.notes import add_note

    try:
        problem = add_note(args.id, args.text, by=args.by or os.environ.get("USER") or getpass.getuser())
    except (ValueError, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except httpx.TransportError as exc:
        return _unreachable(exc)
    print(f"{problem}: note added")
    return 0
