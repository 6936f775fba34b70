"""ufw rules, defaults, enable order, and the DOCKER-USER block that closes the Docker/ufw trap."""

from __future__ import annotations

import base64
import shutil
import subprocess

import pytest

from technicia_deploy.commands import firewall as fw
from technicia_deploy.commands.shell import render_sections
from technicia_deploy.config import Firewall, PortRule

FIREWALL = Firewall(
    public=[
        PortRule(port=22, service="SSH", comment="Accès administrateur"),
        PortRule(port=80, service="HTTP", comment="Redirection vers HTTPS"),
        PortRule(port=443, service="HTTPS", comment="Frontend + API"),
    ],
    internal=[
        PortRule(port=6333, service="Qdrant API"),
        PortRule(port=5678, service="n8n"),
    ],
)

# A stand-in for the packaged /etc/ufw/after.rules (same shape: its own *filter table section).
PACKAGED_AFTER_RULES = """\
# after rules: evaluated after the ufw command line rules
*filter
:ufw-after-input - [0:0]
:ufw-after-output - [0:0]
:ufw-after-forward - [0:0]
-A ufw-after-input -p udp --dport 137 -j DROP
COMMIT
"""

# And for /etc/ufw/after6.rules (ip6tables-restore syntax, ufw6-* chains).
PACKAGED_AFTER6_RULES = """\
# rules.input-after
*filter
:ufw6-after-input - [0:0]
:ufw6-after-output - [0:0]
:ufw6-after-forward - [0:0]
-A ufw6-after-input -p udp --dport 546 -j ufw6-skip-to-policy-input
COMMIT
"""

BLOCK = """\
# BEGIN technicia-deploy (managed: edits are overwritten)
# Docker DNATs published ports past ufw's INPUT rules: drop new connections
# arriving on the public interface (ens3) for ports meant to stay internal.
*filter
:DOCKER-USER - [0:0]
-A DOCKER-USER -i ens3 -p tcp -m conntrack --ctstate NEW --ctorigdstport 5678 -j DROP
-A DOCKER-USER -i ens3 -p tcp -m conntrack --ctstate NEW --ctorigdstport 6333 -j DROP
COMMIT
# END technicia-deploy
"""

BLOCK6 = """\
# BEGIN technicia-deploy (managed: edits are overwritten)
# IPv6: a Docker that DNATs IPv6 (ip6tables on) bypasses ufw's INPUT rules the same way:
# drop new IPv6 connections arriving on ens3 for ports meant to stay internal.
*filter
:DOCKER-USER - [0:0]
-A DOCKER-USER -i ens3 -p tcp -m conntrack --ctstate NEW --ctorigdstport 5678 -j DROP
-A DOCKER-USER -i ens3 -p tcp -m conntrack --ctstate NEW --ctorigdstport 6333 -j DROP
COMMIT
# END technicia-deploy
"""
# /etc/ufw/user6.rules' tuples once the three public rules exist for IPv6 too.
V6_TUPLES = (
    "### tuple ### allow tcp 22 ::/0 any ::/0 in comment=5353482d2041636365732061646d696e6973747261746575720a\n"
    "### tuple ### allow tcp 80 ::/0 any ::/0 in comment=48545450\n"
    "### tuple ### allow tcp 443 ::/0 any ::/0 in\n",
    0,
)
IPV6_ON = ("if grep -q '^IPV6=' /etc/default/ufw; then sed -i 's/^IPV6=.*/IPV6=yes/' /etc/default/ufw; "
           "else echo IPV6=yes >> /etc/default/ufw; fi")

ROUTE = ("default via 51.38.0.1 dev ens3 proto dhcp src 51.38.1.2 metric 100\n", 0)
ACTIVE_STATUS = (
    "Status: active\nLogging: on (low)\nDefault: deny (incoming), allow (outgoing), deny (routed)\nNew profiles: skip\n", 0
)


def b64(text: str) -> tuple[str, int]:
    return base64.b64encode(text.encode()).decode() + "\n", 0


def facts(**overrides) -> fw.FirewallFacts:
    values = {
        "ufw": ("0.36.1-4ubuntu0.1\n", 0),
        "status": ("Status: inactive\n", 0),
        # Debian's and Ubuntu's ufw packages ship IPV6=yes.
        "defaults": ('IPV6=yes\nDEFAULT_INPUT_POLICY="DROP"\nDEFAULT_OUTPUT_POLICY="ACCEPT"\n', 0),
        "added": ("Added user rules (see 'ufw status' for running firewall):\n(None)\n", 0),
        "after_rules": b64(PACKAGED_AFTER_RULES),
        "route": ROUTE,
        "after6_rules": b64(PACKAGED_AFTER6_RULES),
        "v6_rules": ("", 1),  # grep found no tuple
    }
    values.update(overrides)
    return fw.parse_facts(render_sections(values))


def configured(**overrides) -> fw.FirewallFacts:
    added = (
        "Added user rules (see 'ufw status' for running firewall):\n"
        "ufw allow 22/tcp comment 'SSH - Acces administrateur'\n"
        "ufw allow 80/tcp comment 'HTTP - Redirection vers HTTPS'\n"
        "ufw allow 443/tcp comment 'HTTPS - Frontend + API'\n",
        0,
    )
    values = {"status": ACTIVE_STATUS, "added": added, "after_rules": b64(PACKAGED_AFTER_RULES + BLOCK),
              "after6_rules": b64(PACKAGED_AFTER6_RULES + BLOCK6), "v6_rules": V6_TUPLES}
    values.update(overrides)
    return facts(**values)


def test_ubuntu_with_inactive_ufw(payload, bash_syntax):
    commands = fw.operations(facts(), FIREWALL)
    assert commands[:3] == [
        "ufw allow 22/tcp comment 'SSH - Acces administrateur'",
        "ufw allow 80/tcp comment 'HTTP - Redirection vers HTTPS'",
        "ufw allow 443/tcp comment 'HTTPS - Frontend + API'",
    ]
    after = commands[3]
    assert payload(after) == PACKAGED_AFTER_RULES + BLOCK
    assert "f=/etc/ufw/after.rules" in after and "chmod 640" in after and "sha256sum -c" in after
    assert "ufw reload" not in after  # inactive: enabling loads it
    after6 = commands[4]
    assert payload(after6) == PACKAGED_AFTER6_RULES + BLOCK6
    assert "f=/etc/ufw/after6.rules" in after6 and "ufw reload" not in after6
    assert commands[5:] == ["ufw --force enable"]  # last: SSH is allowed before the firewall closes
    for command in commands:
        bash_syntax(command)


def test_post_state_is_unchanged():
    assert fw.operations(configured(), FIREWALL) == []


def test_debian_without_ufw_installs_it_and_appends_the_block_on_the_server(bash_syntax):
    commands = fw.operations(facts(ufw=("", 1), status=("", 127), defaults=("", 2), added=("", 127), after_rules=("", 1),
                                   after6_rules=("", 1), v6_rules=("", 2)), FIREWALL)
    assert commands[0].endswith("install --no-install-recommends ufw")
    assert commands[1] == IPV6_ON  # whatever the package ships: before the rules, so they get their IPv6 copy
    assert commands[2:4] == ["ufw default deny incoming", "ufw default allow outgoing"]
    append, append6 = commands[7:9]
    # The packaged after.rules did not exist when the facts were read: keep it, append to it.
    assert 'cat "$f"' in append and base64.b64encode(BLOCK.encode()).decode() in append
    assert "f=/etc/ufw/after6.rules" in append6 and base64.b64encode(BLOCK6.encode()).decode() in append6
    assert "mktemp /etc/ufw/.after6.rules.XXXXXX" in append6
    assert commands[9] == "ufw --force enable"
    bash_syntax(append)
    bash_syntax(append6)
    bash_syntax(IPV6_ON)


def test_append_keeps_the_packaged_rules(tmp_path):
    target = tmp_path / "after.rules"
    target.write_text(PACKAGED_AFTER_RULES.rstrip("\n"))  # even without a final newline
    command = fw.append_block_command(BLOCK).replace("/etc/ufw/", f"{tmp_path}/")
    assert subprocess.run(["bash", "-c", command], capture_output=True).returncode == 0
    assert target.read_text() == PACKAGED_AFTER_RULES + BLOCK
    assert fw.replace_managed_block(target.read_text(), BLOCK) == target.read_text()


def test_stale_and_foreign_rules_are_removed_after_the_wanted_ones_are_added():
    added = (
        "Added user rules (see 'ufw status' for running firewall):\n"
        "ufw limit 22/tcp\n"
        "ufw allow 80/tcp comment 'HTTP - Redirection vers HTTPS'\n"
        "ufw allow 443/tcp comment 'old comment'\n"
        "ufw allow 8080/tcp comment 'HTTP - old admin'\n"
        "ufw allow 6333\n"
        "ufw allow from 203.0.113.7 to any port 5432 proto tcp\n"
        "ufw deny 25/tcp\n"
        "ufw allow out 53/udp\n",
        0,
    )
    assert fw.operations(configured(added=added), FIREWALL) == [
        "ufw allow 22/tcp comment 'SSH - Acces administrateur'",  # ufw replaces 'limit' by 'allow' in place
        "ufw allow 443/tcp comment 'HTTPS - Frontend + API'",  # comment updated in place
        "ufw delete allow 8080/tcp",
        "ufw delete allow 6333",
        "ufw delete allow from 203.0.113.7 to any port 5432 proto tcp",
    ]


def test_changed_internal_ports_rewrite_the_block_and_reload(payload):
    wanted = Firewall(public=FIREWALL.public, internal=[PortRule(port=6333, service="Qdrant API")])
    command, command6 = fw.operations(configured(), wanted)
    for written in (command, command6):
        assert "--ctorigdstport 5678" not in payload(written) and "--ctorigdstport 6333" in payload(written)
        assert written.endswith("\nufw reload")
    assert "f=/etc/ufw/after6.rules" in command6 or "/etc/ufw/after6.rules" in command6


def test_no_internal_ports_removes_the_block(payload):
    wanted = Firewall(public=FIREWALL.public)
    command, command6 = fw.operations(configured(), wanted)
    assert payload(command) == PACKAGED_AFTER_RULES
    assert payload(command6) == PACKAGED_AFTER6_RULES


def test_default_policies_are_restored():
    commands = fw.operations(configured(defaults=('IPV6=yes\nDEFAULT_INPUT_POLICY="ACCEPT"\nDEFAULT_OUTPUT_POLICY="DROP"\n', 0)), FIREWALL)
    assert commands == ["ufw default deny incoming", "ufw default allow outgoing"]


def test_the_ssh_port_must_stay_public():
    wanted = Firewall(public=[PortRule(port=443, service="HTTPS")])
    with pytest.raises(fw.FirewallError, match="22/tcp"):
        fw.operations(configured(), wanted)
    with pytest.raises(fw.FirewallError, match="2222/tcp"):
        fw.operations(configured(), FIREWALL, ssh_port=2222)


def test_explicit_interface_overrides_the_default_route(payload):
    commands = fw.operations(configured(), FIREWALL, public_interface="eth1")
    assert len(commands) == 2  # after.rules and after6.rules
    for command in commands:
        assert "-i eth1 " in payload(command) and "-i ens3 " not in payload(command)


def test_no_default_route_is_an_error_when_internal_ports_need_one():
    with pytest.raises(fw.FirewallError, match="public interface"):
        fw.operations(configured(route=("", 0)), FIREWALL)


def test_replace_managed_block_is_idempotent_and_keeps_the_rest():
    other = BLOCK.replace("ens3", "eth0")
    content = "head\n" + other + "tail\n"
    replaced = fw.replace_managed_block(content, BLOCK)
    assert replaced == "head\n" + BLOCK + "tail\n"
    assert fw.replace_managed_block(replaced, BLOCK) == replaced
    assert fw.replace_managed_block(replaced, "") == "head\ntail\n"
    with pytest.raises(fw.FirewallError, match="damaged"):
        fw.replace_managed_block("head\n" + BLOCK.split("COMMIT")[0], BLOCK)


def test_interface_names_are_checked():
    with pytest.raises(fw.FirewallError):
        fw.render_docker_user_block("eth0 -j ACCEPT", FIREWALL.internal)
    assert fw.parse_default_route("default via 10.0.0.1 dev eth0; rm\n") is None


def test_comment_is_ascii_and_quote_free():
    rule = PortRule(port=80, service="HTTP", comment="l'accès « public »")
    assert fw.rule_comment(rule) == "HTTP - l acces public"


def _iptables_test(content: str, tool: str = "iptables-restore") -> subprocess.CompletedProcess:
    # A fresh network namespace: iptables-restore --test parses and checks the rules
    # against the kernel there, touching nothing of the host's firewall.
    return subprocess.run(["unshare", "--net", tool, "--test", "-n"], input=content, capture_output=True, text=True)


def test_after_rules_with_the_block_are_accepted_by_iptables_restore():
    if not (shutil.which("unshare") and shutil.which("iptables-restore")):
        pytest.skip("needs unshare and iptables-restore")
    if _iptables_test("*filter\nCOMMIT\n").returncode != 0:
        pytest.skip("cannot create a network namespace here (needs root)")
    commands = fw.operations(configured(after_rules=b64(PACKAGED_AFTER_RULES),
                                        after6_rules=b64(PACKAGED_AFTER6_RULES)), FIREWALL)
    assert len(commands) == 2
    for command, tool in zip(commands, ("iptables-restore", "ip6tables-restore")):
        content = base64.b64decode(command.split("printf %s ")[1].split(" |")[0].strip("'")).decode()
        # ufw's packaged files jump to its own chains: declare them, as ufw's before*.rules do.
        chains = "".join(f":{c} - [0:0]\n" for c in ("ufw-skip-to-policy-input", "ufw6-skip-to-policy-input"))
        content = content.replace("*filter\n", "*filter\n" + chains, 1)
        result = _iptables_test(content, tool)
        assert result.returncode == 0, (tool, result.stderr)
        broken = _iptables_test(content.replace("--ctorigdstport", "--ctorigdstprot"), tool)
        assert broken.returncode != 0  # the check really parses the rules


def test_fact_script_is_valid_and_runs_read_only_here(bash_syntax):
    bash_syntax(fw.fact_command())
    result = subprocess.run(["bash", "-c", fw.fact_command()], capture_output=True, text=True)
    assert isinstance(fw.parse_facts(result.stdout), fw.FirewallFacts)


# --- IPv6 ---------------------------------------------------------------------------------------------


def test_ipv6_off_on_an_active_ufw_is_turned_on_reloaded_and_the_rules_get_their_ipv6_copy(bash_syntax):
    # IPV6=no: ufw wrote no IPv6 rule (user6.rules has no tuple), though 'ufw show added' lists the three.
    off = configured(defaults=('IPV6=no\nDEFAULT_INPUT_POLICY="DROP"\nDEFAULT_OUTPUT_POLICY="ACCEPT"\n', 0),
                     v6_rules=("", 1))
    assert fw.operations(off, FIREWALL) == [
        IPV6_ON,
        "ufw reload",  # before the rules: the IPv6 chains exist, so each rule below applies to IPv6 at once
        "ufw allow 22/tcp comment 'SSH - Acces administrateur'",  # ufw: "Skipping adding existing rule", "Rule added (v6)"
        "ufw allow 80/tcp comment 'HTTP - Redirection vers HTTPS'",
        "ufw allow 443/tcp comment 'HTTPS - Frontend + API'",
    ]
    # Facts afterwards (IPV6=yes, the tuples there): nothing more to do.
    assert fw.operations(configured(), FIREWALL) == []


def test_a_rule_missing_for_ipv6_only_is_added_again():
    only_two = ("### tuple ### allow tcp 22 ::/0 any ::/0 in\n### tuple ### allow tcp 443 ::/0 any ::/0 in\n", 0)
    assert fw.operations(configured(v6_rules=only_two), FIREWALL) == [
        "ufw allow 80/tcp comment 'HTTP - Redirection vers HTTPS'"]


def test_a_missing_ipv6_docker_user_block_is_written_and_reloaded(payload):
    [command] = fw.operations(configured(after6_rules=b64(PACKAGED_AFTER6_RULES)), FIREWALL)
    assert payload(command) == PACKAGED_AFTER6_RULES + BLOCK6
    assert command.endswith("\nufw reload")


def test_v6_tuples_are_read_as_ufw_writes_them():
    from technicia_deploy.commands.shell import Section

    lines = ("### tuple ### allow tcp 22 ::/0 any ::/0 in comment=535348\n"
             "### tuple ### limit tcp 2222 ::/0 any ::/0 in\n"
             "### tuple ### allow any 53 ::/0 any ::/0 in\n"
             "### tuple ### allow tcp 5432 ::/0 any 2001:db8::/32 in\n"  # from one source only: not 'public'
             "### tuple ### deny tcp 25 ::/0 any ::/0 in\n"
             "### tuple ### allow udp 53 ::/0 any ::/0 out\n")
    assert fw.parse_v6_tuples(Section(lines, 0)) == {(22, "tcp"), (2222, "tcp"), (53, "tcp"), (53, "udp")}
    assert configured().ipv6 == "yes" and configured().v6_ports == {(22, "tcp"), (80, "tcp"), (443, "tcp")}
