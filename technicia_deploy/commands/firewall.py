"""ufw: default deny incoming, exactly the public ports open, and the Docker/ufw trap closed.

Facts (one round trip): ufw installed, ``ufw status verbose`` (active?),
the defaults from /etc/default/ufw (true whether ufw is active or not),
``ufw show added`` (the user rules, in the syntax ``ufw delete`` accepts),
/etc/ufw/after.rules (base64: exact bytes) and the interface of the default
route (``ip route show default``: reads the table, sends nothing).

The trap: Docker publishes ports with DNAT in PREROUTING and accepts them in
FORWARD, so ufw's INPUT rules never see them and a container port published
on 0.0.0.0 (n8n 5678, Qdrant 6333) is reachable from the internet with ufw
"active". Docker sends forwarded traffic through the DOCKER-USER chain first;
a managed block in after.rules (re)fills that chain on every ufw load with
rules dropping *new* connections that arrive *on the public interface* for
the internal ports. Matching the interface, not RFC1918 sources, keeps it
right where the "internet" is itself a private network (a sandbox, a provider
NAT). The port is the conntrack *original* destination port, because after
DNAT the packet carries the container's port.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import shlex
import unicodedata
from dataclasses import dataclass

from ..config import Firewall, PortRule
from .files import WantedFile, write_file
from .shell import Section, apt_install, dpkg_installed_section, fact_script, parse_sections, q

AFTER_RULES = "/etc/ufw/after.rules"
DEFAULTS_FILE = "/etc/default/ufw"
BLOCK_BEGIN = "# BEGIN technicia-deploy"
BLOCK_END = "# END technicia-deploy"
SECTIONS = ("ufw", "status", "defaults", "added", "after_rules", "route")

_IFACE = re.compile(r"[A-Za-z0-9_.-]{1,15}")


class FirewallError(RuntimeError):
    """The wanted firewall cannot be applied safely (names what and why)."""


@dataclass(frozen=True)
class UfwRule:
    """One line of ``ufw show added``."""

    spec: tuple[str, ...]  # tokens after 'ufw', comment excluded: what 'ufw delete' takes
    comment: str = ""

    @property
    def action(self) -> str:
        return self.spec[1] if self.spec[:1] == ("route",) else self.spec[0]

    @property
    def incoming_allow(self) -> bool:
        """An allow/limit rule for incoming traffic (what 'exactly the public ports' is about)."""
        if self.spec[0] == "route" or self.action not in ("allow", "limit"):
            return False
        return "out" not in self.spec[1:3]

    @property
    def port(self) -> tuple[int, str | None] | None:
        """(port, protocol or None for both) of a short-syntax rule such as 'allow 22/tcp'."""
        if len(self.spec) == 2 and self.spec[0] in ("allow", "limit"):
            match = re.fullmatch(r"(\d+)(?:/(tcp|udp))?", self.spec[1])
            if match:
                return int(match.group(1)), match.group(2)
        return None


@dataclass(frozen=True)
class FirewallFacts:
    ufw_installed: bool
    active: bool
    default_incoming: str | None  # DROP / REJECT / ACCEPT from /etc/default/ufw
    default_outgoing: str | None
    rules: tuple[UfwRule, ...]
    after_rules: str | None  # exact content of /etc/ufw/after.rules, None if absent
    public_interface: str | None


def fact_command() -> str:
    return fact_script([
        ("ufw", dpkg_installed_section("ufw")),
        ("status", "ufw status verbose"),
        ("defaults", f"grep -E '^DEFAULT_(INPUT|OUTPUT)_POLICY=' {DEFAULTS_FILE}"),
        ("added", "ufw show added"),
        ("after_rules", f"[ -f {AFTER_RULES} ] && base64 -w0 {AFTER_RULES} && echo"),
        ("route", "ip route show default"),
    ])


def parse_added(section: Section) -> tuple[UfwRule, ...]:
    rules = []
    for line in section.lines:
        if not line.startswith("ufw "):
            continue
        tokens = shlex.split(line)[1:]
        comment = ""
        if "comment" in tokens:
            at = tokens.index("comment")
            comment = " ".join(tokens[at + 1:])
            tokens = tokens[:at]
        if tokens:
            rules.append(UfwRule(tuple(tokens), comment))
    return tuple(rules)


def parse_default_route(text: str) -> str | None:
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["default"] and "dev" in words[:-1]:
            dev = words[words.index("dev") + 1]
            return dev if _IFACE.fullmatch(dev) else None
    return None


def parse_facts(output: str) -> FirewallFacts:
    s = parse_sections(output, SECTIONS)
    defaults = {}
    for line in s["defaults"].lines:
        key, _, value = line.partition("=")
        defaults[key.strip()] = value.strip().strip("\"'")
    after = None
    if s["after_rules"].ok:
        try:
            after = base64.b64decode("".join(s["after_rules"].lines), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise FirewallError(f"{AFTER_RULES}: unreadable fact output ({exc})") from None
    installed = s["ufw"].ok
    return FirewallFacts(
        ufw_installed=installed,
        active=installed and any(line.strip() == "Status: active" for line in s["status"].lines),
        default_incoming=defaults.get("DEFAULT_INPUT_POLICY"),
        default_outgoing=defaults.get("DEFAULT_OUTPUT_POLICY"),
        rules=parse_added(s["added"]) if installed else (),
        after_rules=after,
        public_interface=parse_default_route(s["route"].text),
    )


def rule_comment(rule: PortRule) -> str:
    """The ufw comment for a rule: ASCII (accents folded), no quote (ufw refuses "'")."""
    text = f"{rule.service} - {rule.comment}" if rule.comment else rule.service
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return " ".join(re.sub(r"[^A-Za-z0-9 ._,:/()+-]", " ", ascii_text).split())


def render_docker_user_block(interface: str, internal: list[PortRule]) -> str:
    """The managed after.rules block; '' when there is no internal port to protect."""
    if not _IFACE.fullmatch(interface):
        raise FirewallError(f"public interface {interface!r} is not a valid interface name")
    if not internal:
        return ""
    lines = [
        f"{BLOCK_BEGIN} (managed: edits are overwritten)",
        "# Docker DNATs published ports past ufw's INPUT rules: drop new connections",
        f"# arriving on the public interface ({interface}) for ports meant to stay internal.",
        "*filter",
        ":DOCKER-USER - [0:0]",
    ]
    for rule in sorted(internal, key=lambda r: (r.port, r.protocol)):
        lines.append(
            f"-A DOCKER-USER -i {interface} -p {rule.protocol} -m conntrack --ctstate NEW "
            f"--ctorigdstport {rule.port} -j DROP"
        )
    lines += ["COMMIT", BLOCK_END, ""]
    return "\n".join(lines)


def replace_managed_block(content: str, block: str) -> str:
    """``content`` with its managed block replaced by ``block`` (appended if absent, removed if '')."""
    lines = content.splitlines(keepends=True)
    begins = [i for i, line in enumerate(lines) if line.startswith(BLOCK_BEGIN)]
    ends = [i for i, line in enumerate(lines) if line.startswith(BLOCK_END)]
    if not begins and not ends:
        if not block:
            return content
        if content and not content.endswith("\n"):
            content += "\n"
        return content + block
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        raise FirewallError(f"{AFTER_RULES}: the '{BLOCK_BEGIN}' / '{BLOCK_END}' markers are damaged; fix the file by hand")
    return "".join(lines[: begins[0]]) + block + "".join(lines[ends[0] + 1:])


def wanted_rule_command(rule: PortRule) -> str:
    return f"ufw allow {rule.port}/{rule.protocol} comment {q(rule_comment(rule))}"


def operations(facts: FirewallFacts, wanted: Firewall, *, ssh_port: int = 22, public_interface: str | None = None) -> list[str]:
    """Commands still needed. Opens before it closes, and enables last, so SSH is never cut."""
    public = {(r.port, r.protocol) for r in wanted.public}
    if (ssh_port, "tcp") not in public:
        raise FirewallError(f"firewall.public lacks the SSH port {ssh_port}/tcp: enabling ufw would lock the deployment out")
    interface = public_interface or facts.public_interface
    if wanted.internal and not interface:
        raise FirewallError("no default route on the server: cannot tell the public interface (set it explicitly)")

    cmds: list[str] = []
    if not facts.ufw_installed:
        cmds.append(apt_install(["ufw"]))
    if facts.default_incoming != "DROP":
        cmds.append("ufw default deny incoming")
    if facts.default_outgoing != "ACCEPT":
        cmds.append("ufw default allow outgoing")

    present = {rule.port: rule for rule in facts.rules if rule.port is not None}
    for rule in wanted.public:
        have = present.get((rule.port, rule.protocol))
        # Re-adding a rule whose comment or action (limit) differs updates it in place.
        if have is None or have.action != "allow" or have.comment != rule_comment(rule):
            cmds.append(wanted_rule_command(rule))
    for rule in facts.rules:
        if rule.incoming_allow and rule.port not in public:
            cmds.append("ufw delete " + " ".join(q(token) for token in rule.spec))

    block = render_docker_user_block(interface, list(wanted.internal)) if interface else ""
    if facts.after_rules is None:
        # ufw (and its after.rules) arrives with this very run: append to the packaged file there.
        if block:
            cmds.append(append_block_command(block))
    else:
        new = replace_managed_block(facts.after_rules, block)
        if new != facts.after_rules:
            cmds.append(write_file(
                WantedFile(AFTER_RULES, new, 0o640),
                expect_sha256=hashlib.sha256(facts.after_rules.encode()).hexdigest(),
                then="ufw reload" if facts.active else None,
            ))
    if not facts.active:
        cmds.append("ufw --force enable")
    return cmds


def append_block_command(block: str) -> str:
    """Append ``block`` to the after.rules on the server (for when its content was not known)."""
    encoded = base64.b64encode(block.encode()).decode()
    return "\n".join([
        "set -e",
        f"f={AFTER_RULES}",
        '[ -f "$f" ] || { echo "$f is missing: is ufw installed?" >&2; exit 1; }',
        f"if grep -q {q('^' + BLOCK_BEGIN)} \"$f\"; then "
        'echo "$f already has a managed block: re-run the step" >&2; exit 1; fi',
        "t=$(mktemp /etc/ufw/.after.rules.XXXXXX)",
        "trap 'rm -f -- \"$t\"' EXIT",
        f'{{ cat "$f"; if [ -n "$(tail -c1 "$f")" ]; then echo; fi; printf %s {q(encoded)} | base64 -d; }} > "$t"',
        'chown root:root "$t"',
        'chmod 640 "$t"',
        'mv -f "$t" "$f"',
    ])
