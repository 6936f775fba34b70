"""The monitoring script, its configuration and timer: rendering, idempotence, destinations, and the
script itself run by bash here against real local services (a webhook/SMTP receiver, an HTTPS server)."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

from technicia_deploy.commands import monitoring as mon
from technicia_deploy.commands.files import FileFact
from technicia_deploy.commands.shell import render_sections
from technicia_deploy.sandbox import receiver
from tests.unit.checks.conftest import DOMAIN, PAGE, Pki, Route, serve, server_tls

SETTINGS = mon.MonitorSettings(environment="test", domain=DOMAIN, public_address="10.213.1.10",
                               compose_project="technicia", services=("api", "frontend", "n8n", "qdrant"))


# --- destinations -----------------------------------------------------------------------------------

@pytest.mark.parametrize("url,kind,target,mail", [
    ("json://10.0.0.1:8080/hooks/test/TOKEN", "json", "http://10.0.0.1:8080/hooks/test/TOKEN", ("", "")),
    ("jsons://user:p%40ss@hooks.exemple.fr/x?a=1", "json", "https://user:p%40ss@hooks.exemple.fr/x?a=1", ("", "")),
    ("slack://TA1/TB2/TC3", "slack", "https://hooks.slack.com/services/TA1/TB2/TC3", ("", "")),
    ("https://hooks.slack.com/services/A/B/C", "slack", "https://hooks.slack.com/services/A/B/C", ("", "")),
    ("mailto://10.0.0.1:2525?from=mon@exemple.fr&to=ops@exemple.fr", "smtp", "smtp://10.0.0.1:2525",
     ("mon@exemple.fr", "ops@exemple.fr")),
    ("mailtos://bot:secret@mail.exemple.fr?to=ops@exemple.fr", "smtp", "smtps://bot:secret@mail.exemple.fr:465",
     ("ops@exemple.fr", "ops@exemple.fr")),
])
def test_apprise_urls_become_curl_destinations(url, kind, target, mail):
    dest = mon.convert("ops", url)
    assert (dest.kind, dest.url, dest.mail_from, dest.mail_to) == (kind, target, *mail)
    assert target not in repr(dest)  # the URL is a secret


def test_unsupported_schemes_are_left_to_the_flow():
    dests, unsupported = mon.server_destinations({"hook": "json://h/x", "tg": "tgram://bottoken/chat"})
    assert [d.name for d in dests] == ["hook"] and unsupported == ["tg"]
    with pytest.raises(mon.MonitoringError, match="destination name"):
        mon.server_destinations({"bad name": "json://h/x"})


# --- files, facts and operations -----------------------------------------------------------------------

def _facts_matching(settings: mon.MonitorSettings, *, enabled=True, active=True, services=("api",)) -> str:
    values = {}
    for index, wanted in enumerate(mon.wanted_files(settings)):
        if wanted.path == mon.CA_FILE and not settings.ca_pem:
            values[f"file.{index}"] = ("absent", 0)
        else:
            values[f"file.{index}"] = (f"{wanted.mode:o} root root\n{wanted.sha256}", 0)
    values.update({"destinations": ("absent", 0), "services": ("\n".join(services), 0),
                   "enabled": ("enabled" if enabled else "disabled", 0 if enabled else 1),
                   "active": ("active" if active else "inactive", 0 if active else 3)})
    return render_sections(values)


def test_installed_and_running_means_no_operations():
    facts = mon.parse_facts(_facts_matching(SETTINGS))
    assert facts.services == ("api",) and facts.timer_enabled and facts.timer_active
    assert mon.operations(facts, SETTINGS) == []


def test_fresh_server_gets_files_units_and_an_enabled_timer(bash_syntax, payload):
    absent = render_sections({**{f"file.{i}": ("absent", 0) for i in range(len(mon.FILES))},
                              "destinations": ("absent", 0), "services": ("api", 0),
                              "enabled": ("", 1), "active": ("inactive", 3)})
    cmds = mon.operations(mon.parse_facts(absent), SETTINGS)
    for cmd in cmds:
        bash_syntax(cmd)
    written = [payload(c) for c in cmds if "base64 -d" in c]
    assert mon.MONITOR_SCRIPT in written and mon.render_timer(60) in written
    assert cmds[-2:] == ["systemctl daemon-reload", "systemctl enable --now technicia-monitor.timer"]
    assert not any(mon.CA_FILE in c for c in cmds)  # no private issuer: no CA file


def test_changed_period_rewrites_the_timer_and_restarts_it(payload):
    facts = mon.parse_facts(_facts_matching(SETTINGS))
    faster = mon.MonitorSettings(**{**SETTINGS.__dict__, "period_s": 15})
    cmds = mon.operations(facts, faster)
    assert any("OnUnitActiveSec=15" in payload(c) for c in cmds if "base64 -d" in c)
    assert "systemctl restart technicia-monitor.timer" in cmds


def test_destinations_are_written_from_stdin_root_only():
    content = mon.destinations_content(mon.server_destinations({"hook": "json://10.0.0.1/hooks/SECRET-TOKEN"})[0])
    cmds = mon.destinations_operations(mon.MonitorFacts({}, FileFact.absent(mon.DESTINATIONS), (), True, True), content)
    assert len(cmds) == 1 and "cat > " in cmds[0] and "chmod 600" in cmds[0]
    assert "SECRET-TOKEN" not in cmds[0]


def test_settings_refuse_what_would_break_the_script():
    with pytest.raises(mon.MonitoringError):
        mon.MonitorSettings(**{**SETTINGS.__dict__, "services": ("api; rm -rf /",)})
    with pytest.raises(mon.MonitoringError):
        mon.MonitorSettings(**{**SETTINGS.__dict__, "period_s": 1})
    assert mon.parse_test_output("hook ok\nmail failed: HTTP 500\nnoise") == {"hook": "ok", "mail": "failed: HTTP 500"}


# --- the script, run here ------------------------------------------------------------------------------

@pytest.fixture
def world(tmp_path):
    """A receiver, an HTTPS 'public URL', a fake docker CLI (the only stand-in: no Docker engine in unit tests)."""
    record = tmp_path / "received.jsonl"
    stop_receiver, http_port, smtp_port = receiver.serve("127.0.0.1", 0, 0, record)
    pki = Pki(tmp_path)
    cert, key = pki.leaf(days=60)
    https = serve({"*": Route(200, PAGE)}, server_tls(cert, key))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    states = tmp_path / "containers"
    states.write_text("")
    docker = bin_dir / "docker"
    # `docker ps -a --filter ...service=NAME --format ...`: prints the state line recorded for NAME.
    docker.write_text(f"""#!/bin/bash
for arg in "$@"; do case "$arg" in label=com.docker.compose.service=*) svc=${{arg#*service=}};; esac; done
grep "^$svc " {states} | cut -d' ' -f2-
""")
    docker.chmod(0o755)
    settings = mon.MonitorSettings(environment="test", domain=DOMAIN, public_address="127.0.0.1",
                                   compose_project="technicia", services=("api", "frontend"), public_port=https.port,
                                   ca_pem=pki.root_pem)
    conf = mon.render_config(settings)
    paths = {mon.DESTINATIONS: tmp_path / "destinations", mon.STATE_DIR: tmp_path / "state", mon.CA_FILE: tmp_path / "ca.pem",
             f"/etc/letsencrypt/live/{DOMAIN}/fullchain.pem": cert}
    for real, local in paths.items():
        conf = conf.replace(real, str(local))
    (tmp_path / "ca.pem").write_text(pki.root_pem)
    conf_file = tmp_path / "monitor.conf"
    conf_file.write_text(conf)
    dests, _ = mon.server_destinations({
        "ops-webhook": f"json://127.0.0.1:{http_port}/hooks/test/TOKEN",
        "ops-mail": f"mailto://127.0.0.1:{smtp_port}?from=monitor@exemple.test&to=ops@exemple.test",
    })
    (tmp_path / "destinations").write_text(mon.destinations_content(dests))
    script = tmp_path / "monitor.sh"
    script.write_text(mon.MONITOR_SCRIPT)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)

    class World:
        def run(self, *args: str) -> subprocess.CompletedProcess:
            env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
            return subprocess.run(["bash", str(script), str(conf_file), *args], capture_output=True, text=True, env=env, timeout=60)

        def containers(self, **state: str) -> None:
            states.write_text("".join(f"{name} {value}\n" for name, value in state.items()))

        def received(self) -> list[dict]:
            return receiver.read(record)

        destinations = tmp_path / "destinations"

    yield World()
    https.stop()
    stop_receiver()


def test_script_alerts_once_on_a_stopped_container_then_reports_it_resolved(world):
    world.containers(api="running Up 5 minutes (healthy)", frontend="running Up 5 minutes")
    first = world.run()
    assert first.returncode == 0, first.stdout + first.stderr
    assert world.received() == []  # healthy: nothing sent

    world.containers(api="exited Exited (0) 3 seconds ago", frontend="running Up 5 minutes")
    assert world.run().returncode == 1
    alerts = world.received()
    assert {a["kind"] for a in alerts} == {"webhook", "email"}
    hook = next(a for a in alerts if a["kind"] == "webhook")
    assert hook["path"] == "/hooks/test/TOKEN" and hook["body"]["type"] == "failure"
    assert "container api: exited" in hook["body"]["message"]
    mail = next(a for a in alerts if a["kind"] == "email")
    assert "ALERT" in mail["subject"] and "container api: exited" in mail["body"]

    world.run()  # same problem: no second alert
    assert len(world.received()) == 2

    world.containers(api="running Up 1 second (healthy)", frontend="running Up 5 minutes")
    assert world.run().returncode == 0
    resolved = [a for a in world.received()[2:] if a["kind"] == "webhook"]
    assert len(resolved) == 1 and resolved[0]["body"]["type"] == "success"
    assert "container api: exited" in resolved[0]["body"]["message"]


def test_script_notices_unhealthy_missing_and_thresholds(world, tmp_path):
    world.containers(api="running Up 2 minutes (unhealthy)")
    result = world.run()
    assert "container api: unhealthy" in result.stdout and "container frontend: missing" in result.stdout
    conf = tmp_path / "monitor.conf"
    conf.write_text(conf.read_text().replace("DISK_MAX_PCT=90", "DISK_MAX_PCT=0")
                    .replace("MEM_MIN_AVAILABLE_PCT=10", "MEM_MIN_AVAILABLE_PCT=101")
                    .replace("CERT_MIN_DAYS=15", "CERT_MIN_DAYS=365"))
    result = world.run()
    for expected in ("disk /:", "memory:", "certificate test-technicia.exemple.test: expires in"):
        assert expected in result.stdout


def test_script_reports_an_unreachable_public_url(world, tmp_path):
    world.containers(api="running Up", frontend="running Up")
    conf = tmp_path / "monitor.conf"
    conf.write_text(conf.read_text().replace("PUBLIC_ADDRESS=127.0.0.1", "PUBLIC_ADDRESS=127.0.0.2"))
    assert "public URL https://test-technicia.exemple.test:" in world.run().stdout


def test_test_mode_names_each_destination_and_the_one_that_fails(world):
    ok = world.run("--test", "t-123")
    assert ok.returncode == 0 and mon.parse_test_output(ok.stdout) == {"ops-webhook": "ok", "ops-mail": "ok"}
    assert any("t-123" in receiver.text_of(a) for a in world.received())
    lines = world.destinations.read_text().splitlines()
    lines.append("dead-hook\tjson\thttp://127.0.0.1:1/hooks/x\t\t")
    world.destinations.write_text("\n".join(lines) + "\n")
    failed = world.run("--test", "t-456")
    results = mon.parse_test_output(failed.stdout)
    assert failed.returncode == 1 and results["ops-webhook"] == "ok" and results["dead-hook"].startswith("failed")
