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

IPv6 (OVH VPSes have an address of each family): ufw filters IPv6 only with
``IPV6=yes`` in /etc/default/ufw; with ``IPV6=no`` it sets every ip6tables
policy to DROP, so the public ports would not answer the domain's AAAA record.
A rule added while IPv6 was off exists for IPv4 only (``ufw show added`` does
not tell), so the facts read the IPv6 rules themselves (/etc/ufw/user6.rules)
and a missing one is added again (ufw skips the IPv4 copy it has). Docker
20.10 (Debian 12) publishes ports on ``[::]`` through docker-proxy, which
ufw's IPv6 INPUT rules filter; a Docker that DNATs IPv6 (ip6tables on, the
default from Docker 27) sends it through the IPv6 DOCKER-USER chain, which the
same managed block, in /etc/ufw/after6.rules, fills for ip6tables.
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
AFTER6_RULES = "/etc/ufw/after6.rules"
USER6_RULES = "/etc/ufw/user6.rules"
DEFAULTS_FILE = "/etc/default/ufw"
BLOCK_BEGIN = "# BEGIN technicia-deploy"
BLOCK_END = "# END technicia-deploy"
SECTIONS = ("ufw", "status", "defaults", "added", "after_rules", "route", "after6_rules", "v6_rules")
# The command that turns ufw's IPv6 filtering on, whether /etc/default/ufw has an IPV6= line or not.
IPV6_ON = (f"if grep -q '^IPV6=' {DEFAULTS_FILE}; then sed -i 's/^IPV6=.*/IPV6=yes/' {DEFAULTS_FILE}; "
           f"else echo IPV6=yes >> {DEFAULTS_FILE}; fi")

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
    ipv6: str | None = None  # IPV6= of /etc/default/ufw ('yes' / 'no'), None if unset or ufw absent
    after6_rules: str | None = None  # exact content of /etc/ufw/after6.rules, None if absent
    v6_ports: frozenset[tuple[int, str]] = frozenset()  # (port, protocol) that ufw allows over IPv6 (user6.rules)


def fact_command() -> str:
    return fact_script([
        ("ufw", dpkg_installed_section("ufw")),
        ("status", "ufw status verbose"),
        ("defaults", f"grep -E '^(DEFAULT_(INPUT|OUTPUT)_POLICY|IPV6)=' {DEFAULTS_FILE}"),
        ("added", "ufw show added"),
        ("after_rules", f"[ -f {AFTER_RULES} ] && base64 -w0 {AFTER_RULES} && echo"),
        ("route", "ip route show default"),
        ("after6_rules", f"[ -f {AFTER6_RULES} ] && base64 -w0 {AFTER6_RULES} && echo"),
        # ufw's own record of its IPv6 rules: '### tuple ### allow tcp 22 ::/0 any ::/0 in comment=...'.
        ("v6_rules", f"grep -h '^### tuple ###' {USER6_RULES}"),
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


def parse_v6_tuples(section: Section) -> frozenset[tuple[int, str]]:
    """The (port, protocol) pairs that user6.rules allows from anywhere to anywhere (what 'ufw allow P/proto' adds)."""
    found = set()
    for line in section.lines:
        tokens = line.split()[3:]  # after '### tuple ###'
        if len(tokens) < 6:
            continue
        action, protocol, dport, dst, sport, src = tokens[:6]
        direction = tokens[6] if len(tokens) > 6 and not tokens[6].startswith("comment=") else "in"
        if (action in ("allow", "limit") and dport.isdigit() and dst == "::/0" and sport == "any" and src == "::/0"
                and direction == "in"):
            for proto in (("tcp", "udp") if protocol == "any" else (protocol,)):
                found.add((int(dport), proto))
    return frozenset(found)


def _decode(section: Section, path: str) -> str | None:
    if not section.ok:
        return None
    try:
        return base64.b64decode("".join(section.lines), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise FirewallError(f"{path}: unreadable fact output ({exc})") from None


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
    after = _decode(s["after_rules"], AFTER_RULES)
    installed = s["ufw"].ok
    return FirewallFacts(
        ufw_installed=installed,
        active=installed and any(line.strip() == "Status: active" for line in s["status"].lines),
        default_incoming=defaults.get("DEFAULT_INPUT_POLICY"),
        default_outgoing=defaults.get("DEFAULT_OUTPUT_POLICY"),
        rules=parse_added(s["added"]) if installed else (),
        after_rules=after,
        public_interface=parse_default_route(s["route"].text),
        ipv6=defaults.get("IPV6") if installed else None,
        after6_rules=_decode(s["after6_rules"], AFTER6_RULES),
        v6_ports=parse_v6_tuples(s["v6_rules"]) if installed else frozenset(),
    )


def rule_comment(rule: PortRule) -> str:
    """The ufw comment for a rule: ASCII (accents folded), no quote (ufw refuses "'")."""
    text = f"{rule.service} - {rule.comment}" if rule.comment else rule.service
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return " ".join(re.sub(r"[^A-Za-z0-9 ._,:/()+-]", " ", ascii_text).split())


def render_docker_user_block(interface: str, internal: list[PortRule], family: int = 4) -> str:
    """The managed after.rules block (``family`` 6: after6.rules, the same rules for ip6tables); '' when there is
    no internal port to protect."""
    if not _IFACE.fullmatch(interface):
        raise FirewallError(f"public interface {interface!r} is not a valid interface name")
    if not internal:
        return ""
    why = (["# Docker DNATs published ports past ufw's INPUT rules: drop new connections",
            f"# arriving on the public interface ({interface}) for ports meant to stay internal."] if family == 4 else
           ["# IPv6: a Docker that DNATs IPv6 (ip6tables on) bypasses ufw's INPUT rules the same way:",
            f"# drop new IPv6 connections arriving on {interface} for ports meant to stay internal."])
    lines = [
        f"{BLOCK_BEGIN} (managed: edits are overwritten)",
        *why,
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


def replace_managed_block(content: str, block: str, path: str = AFTER_RULES) -> str:
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
        raise FirewallError(f"{path}: the '{BLOCK_BEGIN}' / '{BLOCK_END}' markers are damaged; fix the file by hand")
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
    ipv6_switched = facts.ipv6 != "yes"
    if ipv6_switched:
        # Before any rule is added, so that ufw adds its IPv6 copy too.
        cmds.append(IPV6_ON)
        if facts.active:
            # IPv6 was off: ufw has set every ip6tables policy to DROP and made no IPv6 chain; the reload makes
            # them, so the rules added below apply to IPv6 at once. (SSH is not cut: the connection is IPv4's.)
            cmds.append("ufw reload")
    if facts.default_incoming != "DROP":
        cmds.append("ufw default deny incoming")
    if facts.default_outgoing != "ACCEPT":
        cmds.append("ufw default allow outgoing")

    present = {rule.port: rule for rule in facts.rules if rule.port is not None}
    for rule in wanted.public:
        have = present.get((rule.port, rule.protocol))
        # Re-adding a rule whose comment or action (limit) differs updates it in place; one that IPv6 lacks (added
        # while IPv6 was off) gets its IPv6 copy (ufw skips the IPv4 one it has).
        if (have is None or have.action != "allow" or have.comment != rule_comment(rule)
                or (rule.port, rule.protocol) not in facts.v6_ports):
            cmds.append(wanted_rule_command(rule))
    for rule in facts.rules:
        if rule.incoming_allow and rule.port not in public:
            cmds.append("ufw delete " + " ".join(q(token) for token in rule.spec))

    for family, path, current in ((4, AFTER_RULES, facts.after_rules), (6, AFTER6_RULES, facts.after6_rules)):
        block = render_docker_user_block(interface, list(wanted.internal), family) if interface else ""
        if current is None:
            # ufw (and its after.rules) arrives with this very run: append to the packaged file there.
            if block:
                cmds.append(append_block_command(block, path))
        else:
            new = replace_managed_block(current, block, path)
            if new != current:
                cmds.append(write_file(
                    WantedFile(path, new, 0o640),
                    expect_sha256=hashlib.sha256(current.encode()).hexdigest(),
                    then="ufw reload" if facts.active else None,
                ))
    if not facts.active:
        cmds.append("ufw --force enable")
    return cmds


def append_block_command(block: str, path: str = AFTER_RULES) -> str:
    """Append ``block`` to the after.rules (or after6.rules) on the server (for when its content was not known)."""
    encoded = base64.b64encode(block.encode()).decode()
    return "\n".join([
        "set -e",
        f"f={path}",
        '[ -f "$f" ] || { echo "$f is missing: is ufw installed?" >&2; exit 1; }',
        f"if grep -q {q('^' + BLOCK_BEGIN)} \"$f\"; then "
        'echo "$f already has a managed block: re-run the step" >&2; exit 1; fi',
        f"t=$(mktemp {path.rsplit('/', 1)[0]}/.{path.rsplit('/', 1)[1]}.XXXXXX)",
        "trap 'rm -f -- \"$t\"' EXIT",
        f'{{ cat "$f"; if [ -n "$(tail -c1 "$f")" ]; then echo; fi; printf %s {q(encoded)} | base64 -d; }} > "$t"',
        'chown root:root "$t"',
        'chmod 640 "$t"',
        'mv -f "$t" "$f"',
    ])
