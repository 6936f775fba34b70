"""``technicia-deploy ovh access-rules [ENV]``: the minimum OVH access rules, for ``POST /auth/credential``."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("ovh", help="the OVH API rights the pipeline needs")
    actions = parser.add_subparsers(dest="ovh_command", metavar="ACTION", required=True)
    rules = actions.add_parser(
        "access-rules",
        help="print the accessRules for POST /auth/credential: exactly the routes the pipeline calls",
        description="Print the JSON accessRules of POST /auth/credential that grant exactly the OVH API routes the "
        "pipeline calls (technicia_deploy.ovh.ROUTES), a '*' for each path parameter. With ENV, the VPS and the DNS "
        "zone are narrowed to that environment's (read from --config), so its consumer key reaches nothing else.",
    )
    rules.add_argument("environment", nargs="?", choices=("test", "staging", "production"),
                       help="narrow the rules to this environment's VPS and DNS zone")
    rules.add_argument("--config", default="environments.yaml", metavar="FILE",
                       help="where ENV's service name and zone are read (default: %(default)s); secrets are not resolved")
    rules.set_defaults(func=_access_rules)


def _access_rules(args: argparse.Namespace) -> int:
    from technicia_deploy.ovh import access_rules

    values = None
    if args.environment:
        from technicia_deploy import config

        env = config.load(args.config).environment(args.environment)
        values = {"serviceName": env.server.ovh_service_name, "zoneName": env.dns.zone}
    print(json.dumps(access_rules(values), indent=2))
    return 0
