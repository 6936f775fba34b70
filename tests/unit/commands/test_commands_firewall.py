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
        "defaults": ('DEFAULT_INPUT_POLICY="DROP"\nDEFAULT_OUTPUT_POLICY="ACCEPT"\n', 0),
        "added": ("Added user rules (see 'ufw status' for running firewall):\n(None)\n", 0),
        "after_rules": b64(PACKAGED_AFTER_RULES),
        "route": ROUTE,
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
    values = {"status": ACTIVE_STATUS, "added": added, "after_rules": b64(PACKAGED_AFTER_RULES + BLOCK)}
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
    assert commands[4:] == ["ufw --force enable"]  # last: SSH is allowed before the firewall closes
    for command in commands:
        bash_syntax(command)


def test_post_state_is_unchanged():
    assert fw.operations(configured(), FIREWALL) == []


def test_debian_without_ufw_installs_it_and_appends_the_block_on_the_server(bash_syntax):
    commands = fw.operations(facts(ufw=("", 1), status=("", 127), defaults=("", 2), added=("", 127), after_rules=("", 1)), FIREWALL)
    assert commands[0].endswith("install --no-install-recommends ufw")
    assert commands[1:3] == ["ufw default deny incoming", "ufw default allow outgoing"]
    append = commands[6]
    # The packaged after.rules did not exist when the facts were read: keep it, append to it.
    assert 'cat "$f"' in append and base64.b64encode(BLOCK.encode()).decode() in append
    assert commands[7] == "ufw --force enable"
    bash_syntax(append)


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
    [command] = fw.operations(configured(), wanted)
    assert "--ctorigdstport 5678" not in payload(command) and "--ctorigdstport 6333" in payload(command)
    assert command.endswith("\nufw reload")


def test_no_internal_ports_removes_the_block(payload):
    wanted = Firewall(public=FIREWALL.public)
    [command] = fw.operations(configured(), wanted)
    assert payload(command) == PACKAGED_AFTER_RULES


def test_default_policies_are_restored():
    commands = fw.operations(configured(defaults=('DEFAULT_INPUT_POLICY="ACCEPT"\nDEFAULT_OUTPUT_POLICY="DROP"\n', 0)), FIREWALL)
    assert commands == ["ufw default deny incoming", "ufw default allow outgoing"]


def test_the_ssh_port_must_stay_public():
    wanted = Firewall(public=[PortRule(port=443, service="HTTPS")])
    with pytest.raises(fw.FirewallError, match="22/tcp"):
        fw.operations(configured(), wanted)
    with pytest.raises(fw.FirewallError, match="2222/tcp"):
        fw.operations(configured(), FIREWALL, ssh_port=2222)


def test_explicit_interface_overrides_the_default_route(payload):
    [command] = fw.operations(configured(), FIREWALL, public_interface="eth1")
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


def _iptables_test(content: str) -> subprocess.CompletedProcess:
    # A fresh network namespace: iptables-restore --test parses and checks the rules
    # against the kernel there, touching nothing of the host's firewall.
    return subprocess.run(["unshare", "--net", "iptables-restore", "--test", "-n"], input=content, capture_output=True, text=True)


def test_after_rules_with_the_block_are_accepted_by_iptables_restore():
    if not (shutil.which("unshare") and shutil.which("iptables-restore")):
        pytest.skip("needs unshare and iptables-restore")
    if _iptables_test("*filter\nCOMMIT\n").returncode != 0:
        pytest.skip("cannot create a network namespace here (needs root)")
    [command] = fw.operations(configured(after_rules=b64(PACKAGED_AFTER_RULES)), FIREWALL)
    content = base64.b64decode(command.split("printf %s ")[1].split(" |")[0].strip("'")).decode()
    result = _iptables_test(content)
    assert result.returncode == 0, result.stderr
    broken = _iptables_test(content.replace("--ctorigdstport", "--ctorigdstprot"))
    assert broken.returncode != 0  # the check really parses the rules


def test_fact_script_is_valid_and_runs_read_only_here(bash_syntax):
    bash_syntax(fw.fact_command())
    result = subprocess.run(["bash", "-c", fw.fact_command()], capture_output=True, text=True)
    assert isinstance(fw.parse_facts(result.stdout), fw.FirewallFacts)
