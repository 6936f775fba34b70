"""``technicia-deploy smoke [ENV|all] [--message]``: run the smoke-api-keys flow and print its table."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "smoke",
        help="check that each environment's cloud API keys work (one cheap real call per service)",
        description="Run the smoke-api-keys flow: Document AI, Vision, VoyageAI and Anthropic, concurrently, with the "
        "keys stored in the Prefect blocks. Exit status 1 if any key fails.",
    )
    parser.add_argument("environment", nargs="?", default="all", choices=("test", "staging", "production", "all"),
                        help="test, staging, production or all (default: %(default)s)")
    parser.add_argument("--message", action="store_true", help="also send Anthropic a 1-token message (costs a fraction of a cent)")
    parser.add_argument("--project", default="technicia", help="project name, the prefix of the block names (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds allowed per service, retries included (default: %(default)s)")
    parser.set_defaults(func=_smoke, needs_prefect=True)


def format_table(results: list[dict]) -> str:
    from technicia_deploy.cloud import SERVICE_LABELS, quota_summary

    header = ("ENVIRONMENT", "SERVICE", "STATUS", "MS", "TRIES", "KEY", "QUOTA")
    rows = [header] + [
        (r["environment"], SERVICE_LABELS.get(r["service"], r["service"]), r["status"], f"{r['latency_ms']:.0f}",
         str(r["attempts"]), r["fingerprint"], quota_summary(r["quota"]) or "-")
        for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    for r in results:
        if r["status"] != "ok":
            lines.append(f"{r['environment']}/{r['service']}: {r['detail']}\n  fix: {r['fix']}")
    return "\n".join(lines)


def _smoke(args: argparse.Namespace) -> int:
    from prefect import tags

    from flows.smoke_api_keys import smoke_api_keys
    from technicia_deploy.cloud import ApiKeysRejected
    from technicia_deploy.steps import env_tag

    run_tags = [env_tag(args.environment)] if args.environment != "all" else []
    try:
        with tags(*run_tags):
            results = smoke_api_keys(environment=args.environment, message=args.message, project=args.project, timeout=args.timeout)
        status = 0
    except ApiKeysRejected as exc:
        results, status = exc.results, 1
    print(format_table(results))
    return status
