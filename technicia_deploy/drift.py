"""Drift: how a server differs from what the pipeline declares and applies, each difference by name. Pure.

A difference is what the owning deployment step would change if it ran now (its facts → operations, read only),
or what a check from outside sees that the configuration does not declare. Each names its area, its subject and
the step that owns it, so the report says which step to re-run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from technicia_deploy.commands.firewall import FirewallFacts, render_docker_user_block, replace_managed_block, rule_comment
from technicia_deploy.config import Firewall


@dataclass(frozen=True)
class Difference:
    area: str  # firewall | ports | docker-user | release | env-file | nginx | certificate | dns | monitoring
    subject: str  # what it is about: '8081/tcp', 'current', '.env', the domain ...
    found: str  # what the server has, in words
    owner: str  # the step that owns it (re-running it repairs the difference)

    def describe(self) -> str:
        return f"{self.area} {self.subject}: {self.found} (owner {self.owner})"


def firewall_differences(facts: FirewallFacts, wanted: Firewall, ssh_port: int = 22) -> list[Difference]:
    """ufw against firewall.public: missing, altered and undeclared incoming rules, defaults, and DOCKER-USER."""
    owner = "server.firewall"
    found: list[Difference] = []
    if not facts.ufw_installed or not facts.active:
        found.append(Difference("firewall", "ufw", "not installed" if not facts.ufw_installed else "inactive", owner))
    if facts.ufw_installed and facts.default_incoming != "DROP":
        found.append(Difference("firewall", "default incoming", f"{facts.default_incoming}, declared DROP (deny)", owner))
    present = {rule.port: rule for rule in facts.rules if rule.port is not None}
    public = {(r.port, r.protocol) for r in wanted.public}
    for rule in wanted.public:
        have = present.get((rule.port, rule.protocol))
        subject = f"{rule.port}/{rule.protocol}"
        if have is None:
            found.append(Difference("firewall", subject, "no allow rule, declared public", owner))
        elif have.action != "allow" or have.comment != rule_comment(rule):
            found.append(Difference("firewall", subject, f"rule `ufw {' '.join(have.spec)}` differs from the declared one",
                                    owner))
    for rule in facts.rules:
        if rule.incoming_allow and rule.port not in public:
            port = f"{rule.port[0]}/{rule.port[1] or 'any'}" if rule.port else " ".join(rule.spec)
            found.append(Difference("firewall", port, f"rule `ufw {' '.join(rule.spec)}` allows it, declared nowhere", owner))
    interface = facts.public_interface
    if interface and facts.after_rules is not None:
        block = render_docker_user_block(interface, list(wanted.internal))
        if replace_managed_block(facts.after_rules, block) != facts.after_rules:
            found.append(Difference("docker-user", "/etc/ufw/after.rules",
                                    "DOCKER-USER rules differ from the declared internal ports", owner))
    return found


def pending(area: str, subject: str, owner: str, commands: Iterable[str], what: str) -> list[Difference]:
    """One difference when the owning step would run ``commands`` (how many it would run, said)."""
    commands = list(commands)
    if not commands:
        return []
    return [Difference(area, subject, f"{what} ({len(commands)} change(s) pending)", owner)]


def env_file_differences(path: str, names: list[str] | None, mode: str | None, wanted: Iterable[str]) -> list[Difference]:
    """The release's .env: its variable names (never values) against the pipeline's, and its mode (0600)."""
    owner = "services.api_keys"
    if names is None:
        return [Difference("env-file", path, "missing", owner)]
    found = []
    wanted = list(wanted)
    extra, missing = sorted(set(names) - set(wanted)), sorted(set(wanted) - set(names))
    if missing:
        found.append(Difference("env-file", path, f"variables missing: {', '.join(missing)}", owner))
    if extra:
        found.append(Difference("env-file", path, f"variables not written by the pipeline: {', '.join(extra)}", owner))
    if mode is not None and mode not in ("600", "0600"):
        found.append(Difference("env-file", path, f"mode {mode}, declared 600", owner))
    return found


def summary(differences: list[Difference], named: int = 8) -> str:
    if not differences:
        return "no drift: the server is as declared and last applied"
    shown = "; ".join(d.describe() for d in differences[:named])
    more = f"; and {len(differences) - named} more" if len(differences) > named else ""
    return f"{len(differences)} difference(s): {shown}{more}"
