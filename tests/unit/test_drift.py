"""Drift: each difference between a server's facts and the declaration, by name and owning step."""

from __future__ import annotations

from technicia_deploy import drift
from technicia_deploy.commands.firewall import (FirewallFacts, UfwRule, render_docker_user_block, replace_managed_block,
                                                rule_comment)
from technicia_deploy.config import Firewall, PortRule

WANTED = Firewall(public=[PortRule(port=22, service="SSH"), PortRule(port=80, service="HTTP"),
                          PortRule(port=443, service="HTTPS")],
                  internal=[PortRule(port=6333, service="Qdrant API")])


def applied(extra_rules=(), after=None, incoming="DROP") -> FirewallFacts:
    rules = tuple(UfwRule(("allow", f"{r.port}/tcp"), rule_comment(r)) for r in WANTED.public) + tuple(extra_rules)
    block = render_docker_user_block("eth0", list(WANTED.internal))
    return FirewallFacts(True, True, incoming, "ACCEPT", rules,
                         after if after is not None else replace_managed_block("*filter\nCOMMIT\n", block), "eth0")


def test_a_firewall_as_applied_has_no_drift():
    assert drift.firewall_differences(applied(), WANTED) == []


def test_each_firewall_difference_by_name():
    facts = applied(extra_rules=[UfwRule(("allow", "8081/tcp"), "by hand")], after="*filter\nCOMMIT\n", incoming="ACCEPT")
    found = [d.describe() for d in drift.firewall_differences(facts, WANTED)]
    assert found == [
        "firewall default incoming: ACCEPT, declared DROP (deny) (owner server.firewall)",
        "firewall 8081/tcp: rule `ufw allow 8081/tcp` allows it, declared nowhere (owner server.firewall)",
        "docker-user /etc/ufw/after.rules: DOCKER-USER rules differ from the declared internal ports (owner server.firewall)",
    ]
    missing = FirewallFacts(True, True, "DROP", "ACCEPT", applied().rules[:2], applied().after_rules, "eth0")
    assert [d.subject for d in drift.firewall_differences(missing, WANTED)] == ["443/tcp"]


def test_env_file_names_and_mode_never_values():
    wanted = ("ANTHROPIC_API_KEY", "VOYAGE_API_KEY")
    assert drift.env_file_differences("/opt/technicia/current/.env", list(wanted), "600", wanted) == []
    found = drift.env_file_differences("/opt/technicia/current/.env", ["ANTHROPIC_API_KEY", "DEBUG"], "644", wanted)
    assert [d.found for d in found] == ["variables missing: VOYAGE_API_KEY", "variables not written by the pipeline: DEBUG",
                                        "mode 644, declared 600"]
    assert drift.env_file_differences("/x/.env", None, None, wanted)[0].found == "missing"


def test_pending_and_summary():
    assert drift.pending("nginx", "site", "https.certificate", [], "differs") == []
    one = drift.pending("nginx", "site", "https.certificate", ["a", "b"], "site differs")
    assert one[0].describe() == "nginx site: site differs (2 change(s) pending) (owner https.certificate)"
    assert drift.summary([]) == "no drift: the server is as declared and last applied"
    assert drift.summary(one * 10, named=2).endswith("; and 8 more")
