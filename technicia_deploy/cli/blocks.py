"""``technicia-deploy blocks``: store environments.yaml in Prefect blocks."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("blocks", help="manage the Prefect blocks that hold the configuration and secrets")
    group = parser.add_subparsers(dest="blocks_command", metavar="ACTION", required=True)
    apply = group.add_parser(
        "apply",
        help="validate environments.yaml, resolve its secrets and create/update the blocks that differ",
        description="Validate the file, resolve every secret reference, then create or update only the blocks "
        "whose content differs. An invalid file changes nothing.",
    )
    apply.add_argument("file", nargs="?", default="environments.yaml", help="configuration file (default: %(default)s)")
    apply.set_defaults(func=_apply)
    check = group.add_parser("check", help="validate environments.yaml and its secret references without saving anything")
    check.add_argument("file", nargs="?", default="environments.yaml", help="configuration file (default: %(default)s)")
    check.set_defaults(func=_check)


def _apply(args: argparse.Namespace) -> int:
    from technicia_deploy.cli import server

    _check(args)  # a bad file is refused, naming its problems, before any server is looked for
    server.use()
    from technicia_deploy.block_sync import apply

    changes = apply(args.file)
    for change in changes:
        print(f"{change.action:9} {change.block_type}/{change.name}")
    changed = sum(c.action != "unchanged" for c in changes)
    print(f"{len(changes)} blocks, {changed} changed")
    return 0


def _check(args: argparse.Namespace) -> int:
    from technicia_deploy import config

    project = config.load(args.file)
    config.resolve_secrets(project, args.file)
    print(f"{args.file}: valid ({', '.join(project.environments)})")
    return 0
