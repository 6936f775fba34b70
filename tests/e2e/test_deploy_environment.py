"""deploy-environment against the sandbox: a real VPS container, real sshd/ufw/Docker/nginx/certbot, pebble, OVH + DNS.

The tests in this module run in order on the sandbox's test environment: first deployment from a fresh VPS,
the same deployment again (nothing changes), the next release (only the service steps change). The failure
cases use the staging environment and check that the server is left exactly as it was.
"""

from __future__ import annotations

import logging
import socket
import ssl
import subprocess

import httpx
import pytest

from tests.e2e.helpers import block_changed, step_states, vps_exec
import yaml

pytestmark = pytest.mark.e2e

GOOD, NEXT = "v1.0.0", "v1.1.0"
SERVICE_STEPS = {"services.clone", "services.api_keys", "services.deploy"}


# -- helpers ------------------------------------------------------------------------------------
def run_deploy(environment: str, version: str, **kwargs):
    from flows.deploy_environment import deploy_environment

    return deploy_environment(environment=environment, version=version, operator="e2e", return_state=True, **kwargs)


def server_snapshot(container: str) -> dict[str, str]:
    """What a deployment may change on the server, condensed (for 'changes nothing' checks)."""
    return {
        "containers": vps_exec(container, "docker ps -q --no-trunc 2>/dev/null | sort || true"),
        "env": vps_exec(container, "stat -c '%Y %a %U' /opt/technicia/current/.env 2>/dev/null || echo none"),
        "ufw": vps_exec(container, "ufw status verbose 2>/dev/null; cat /etc/ufw/user.rules /etc/ufw/after.rules 2>/dev/null | sha256sum"),
        "cert": vps_exec(container, "sha256sum /etc/letsencrypt/live/*/cert.pem 2>/dev/null || echo none"),
        "users": vps_exec(container, "getent passwd deploy || echo none; ls /etc/sudoers.d /etc/ssh/sshd_config.d"),
        "releases": vps_exec(container, "ls -l /opt/technicia 2>/dev/null; ls /opt/technicia/releases 2>/dev/null || true"),
    }


def environment(sandbox, name: str) -> dict:
    return yaml.safe_load(sandbox.path("environments.yaml").read_text())["environments"][name]


def open_from_outside(ip: str, port: int) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=2):
            return True
    except OSError:
        return False


# -- the happy path, in order -----------------------------------------------------------------
class _Errors(logging.Handler):
    """Every record at ERROR or above, from any logger (paramiko's included), while it is installed."""

    def __init__(self):
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def first_deployment_logged(sandbox):
    """The first deployment's final state, and every record logged at ERROR in this process while it ran."""
    errors = _Errors()
    logging.getLogger().addHandler(errors)
    try:
        state = run_deploy("test", GOOD)
    finally:
        logging.getLogger().removeHandler(errors)
    assert state.is_completed(), state.message
    return state, errors.records


@pytest.fixture(scope="module")
def first_deployment(first_deployment_logged):
    return first_deployment_logged[0]


def test_first_deployment_serves_https_behind_the_firewall(sandbox, first_deployment):
    env = environment(sandbox, "test")
    vps = sandbox.data["vps"]["test"]
    ip, domain = vps["ip"], env["domain"]
    steps = step_states(first_deployment)
    assert all(kind == "COMPLETED" for kind, _ in steps.values()), steps
    assert steps["services.deploy"][1].startswith("changed: v1.0.0 deployed")

    # HTTPS answers with a certificate chaining to the sandbox ACME root, for the domain.
    context = ssl.create_default_context(cafile=sandbox.data["acme"]["issuer_roots"])
    with socket.create_connection((ip, 443), timeout=5) as raw, context.wrap_socket(raw, server_hostname=domain) as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    transport = httpx.HTTPTransport(verify=context)
    with httpx.Client(transport=transport, timeout=10) as client:
        page = client.get(f"https://{ip}/", headers={"Host": domain}, extensions={"sni_hostname": domain})
        assert page.status_code == 200
        health = client.get(f"https://{ip}/api/health", headers={"Host": domain}, extensions={"sni_hostname": domain})
        assert health.json()["version"].lstrip("v") == GOOD.lstrip("v")
    redirect = httpx.get(f"http://{ip}/", headers={"Host": domain}, follow_redirects=False, timeout=10)
    assert redirect.status_code in (301, 308) and redirect.headers["location"].startswith(f"https://{domain}")

    # The firewall, probed from outside: public ports open, internal ones closed while healthy inside.
    for port in (22, 80, 443):
        assert open_from_outside(ip, port), port
    for port in (5678, 6333):
        assert not open_from_outside(ip, port), f"port {port} reachable from outside"
    inside = vps_exec(vps["container"], "curl -fsS http://127.0.0.1:5678/healthz && curl -fsS http://127.0.0.1:6333/readyz")
    assert inside


def test_a_good_first_deployment_logs_no_error_and_no_traceback(sandbox, first_deployment_logged):
    """Neither in this process (paramiko's own logger included) nor in the run's logs on the Prefect server."""
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    first_deployment, error_records = first_deployment_logged
    assert [f"{r.name}: {r.getMessage()}" for r in error_records] == []
    APILogHandler().flush()  # what the run logged is on the server
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[first_deployment.state_details.flow_run_id])))
    assert logs, "the run's logs reached the server"
    assert [log.message[:200] for log in logs if log.level >= logging.ERROR or "Traceback" in log.message] == []


def test_second_run_changes_nothing(sandbox, first_deployment):
    container = sandbox.data["vps"]["test"]["container"]
    before = server_snapshot(container)
    state = run_deploy("test", GOOD)
    assert state.is_completed(), state.message
    steps = step_states(state)
    assert {s: m.split(":")[0] for s, (_, m) in steps.items()} == {s: "unchanged" for s in steps}, steps
    assert server_snapshot(container) == before
    # Every fact the steps read came in one command, side by side on the server, over one connection; the other
    # command is the functional test's probes from the server (a test runs fresh).
    ssh = state.result()["ssh"]
    assert (ssh["connections"], ssh["commands"]) == (1, 2), ssh
    assert ssh["facts_fetched_ahead"] >= 10 and ssh["reads_without_round_trip"] >= ssh["facts_fetched_ahead"], ssh


def test_next_release_changes_only_the_service_steps(sandbox, first_deployment):
    container = sandbox.data["vps"]["test"]["container"]
    before = server_snapshot(container)
    state = run_deploy("test", NEXT)
    assert state.is_completed(), state.message
    changed = {s for s, (_, m) in step_states(state).items() if m.startswith("changed")}
    assert changed == SERVICE_STEPS
    after = server_snapshot(container)
    assert after["ufw"] == before["ufw"] and after["cert"] == before["cert"] and after["users"] == before["users"]
    assert after["containers"] != before["containers"]
    assert "previous -> /opt/technicia/releases/v1.0.0-" in after["releases"]


# -- failures leave the server as it was --------------------------------------------------------
@pytest.fixture(scope="module")
def staging_prepared(sandbox):
    state = run_deploy("staging", GOOD)
    assert state.is_completed(), state.message
    return sandbox.data["vps"]["staging"]["container"]


def test_unknown_version_fails_before_any_step(sandbox, staging_prepared):
    before = server_snapshot(staging_prepared)
    state = run_deploy("staging", "v9.9.9")
    assert state.is_failed()
    assert "version 'v9.9.9' does not exist" in state.message
    assert step_states(state) == {}
    assert server_snapshot(staging_prepared) == before


def test_wrong_host_key_refuses_to_connect(sandbox, staging_prepared):
    from blocks import SshAccess

    before = server_snapshot(staging_prepared)
    other = sandbox.data["vps"]["test"]["host_key"]
    with block_changed(SshAccess, "technicia-staging-ssh", host_key=other):
        state = run_deploy("staging", GOOD)
    assert state.is_failed()
    messages = " ".join(m for _, m in step_states(state).values())
    assert "refusing to connect" in messages and "host key" in messages
    assert server_snapshot(staging_prepared) == before


def test_missing_secret_fails_before_any_step(sandbox, staging_prepared):
    from blocks import CloudApiKeys

    before = server_snapshot(staging_prepared)
    with block_changed(CloudApiKeys, "technicia-staging-api-keys", anthropic_api_key=""):
        state = run_deploy("staging", GOOD)
    assert state.is_failed()
    assert "secret 'anthropic_api_key' of block 'technicia-staging-api-keys' is empty" in state.message
    assert step_states(state) == {}
    assert server_snapshot(staging_prepared) == before


def test_unreachable_server_is_named(sandbox, staging_prepared):
    from blocks import SshAccess
    from technicia_deploy.sandbox.processes import free_port

    port = free_port()  # nothing listens there
    with block_changed(SshAccess, "technicia-staging-ssh", host="127.0.0.1", port=port):
        state = run_deploy("staging", GOOD)
    assert state.is_failed()
    messages = " ".join(m for _, m in step_states(state).values())
    assert f"cannot reach 127.0.0.1:{port} over SSH" in messages


# -- the tracking document, from this module's real runs ----------------------------------------
def section(document: str, title: str) -> str:
    start = document.index(f"## {title}")
    end = document.find("\n## ", start + 3)
    return document[start: end if end != -1 else None]


def report(*args: str) -> str:
    import os
    import sys
    from pathlib import Path

    done = subprocess.run([str(Path(sys.executable).parent / "technicia-deploy"), "report", *args],
                          capture_output=True, text=True, timeout=120, env=os.environ.copy())
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_tracking_document_shows_the_real_runs(sandbox, first_deployment, staging_prepared):
    # The failures above opened problems on staging; a successful re-run resolves them.
    state = run_deploy("staging", GOOD)
    assert state.is_completed(), state.message
    sha = sandbox.data["app"]["commits"][NEXT][:12]
    fr = report()

    envs = section(fr, "Environnements")
    assert f"| Test | Déployé | https://test-technicia.exemple.test | VPS-TEST-XYZ | {NEXT} ({sha}) |" in envs
    assert "| Production | Non déployé |" in envs

    servers = section(fr, "Configuration du Serveur OVH")
    ip = sandbox.data["vps"]["test"]["ip"]
    assert f"| IP | - | {ip} |" in servers  # what the OVH API says, from the server.os step

    process = section(fr, "Processus de Déploiement - Environnement de Test")
    for label in ("Installation OS", "Configuration Firewall", "Installation Docker", "Clonage du repository",
                  "Configuration des clés API", "Exécution du script de déploiement", "Configuration DNS",
                  "Installation Certbot", "Obtention certificats SSL"):
        row = next(line for line in process.splitlines() if line.startswith(f"| - {label} |"))
        assert "| Complété |" in row and "| e2e |" in row, row
    assert f"{NEXT} deployed" in process

    keys = section(fr, "Configuration des Clés API")
    for service in ("Google Cloud (Document AI)", "Google Cloud (Vision AI)", "VoyageAI", "Anthropic (Claude)"):
        assert f"| {service} | Test | Valide |" in keys

    problems = section(fr, "Problèmes Rencontrés")
    staging_rows = [line for line in problems.splitlines() if "| Staging |" in line]
    assert any("Installation OS" in row and "refusing to connect" in row for row in staging_rows), problems
    assert staging_rows and all("| Résolu |" in row for row in staging_rows), staging_rows

    en = report("--lang", "en")
    assert f"| Test | Deployed | https://test-technicia.exemple.test | VPS-TEST-XYZ | {NEXT} ({sha}) |" in en
    assert [line.count("|") for line in fr.splitlines()] == [line.count("|") for line in en.splitlines()]
    for french in ("Complété", "Déployé", "Non commencé", "Résolu", "Valide"):
        assert french not in en


def test_no_secret_of_the_deployments_reaches_the_prefect_database(sandbox, first_deployment, staging_prepared):
    """Every secret the deployments above handled (SSH key, OVH keys, cloud keys), searched in the server's DB files."""
    from pathlib import Path

    from prefect.logging.handlers import APILogWorker

    config = yaml.safe_load(sandbox.path("environments.yaml").read_text())
    files = [sandbox.data["keys"]["deploy_private_key"]]
    files += [config["ovh"][name]["file"] for name in ("application_key", "application_secret", "consumer_key")]
    for env in config["environments"].values():
        keys = env["api_keys"]
        files += [keys["voyageai"]["api_key"]["file"], keys["anthropic"]["api_key"]["file"],
                  keys["google"]["service_account_json"]["file"]]
    secrets = []
    for file in files:
        text = Path(file).read_text()
        if "PRIVATE KEY" in text or text.lstrip().startswith("{"):
            # Multi-line secrets: any line of the key material would be a leak.
            import json

            pem = json.loads(text)["private_key"] if text.lstrip().startswith("{") else text
            secrets += [line for line in pem.splitlines() if len(line) >= 40 and "PRIVATE KEY" not in line]
        else:
            secrets.append(text.strip())
    assert len(secrets) > 10

    APILogWorker.drain_all(timeout=10)
    database = Path(sandbox.data["prefect"]["home"]) / "prefect.db"  # the sandbox server's own database
    scanned = [p for p in database.parent.iterdir() if p.name.startswith(database.name)]  # .db, -wal, -shm
    contents = b"".join(p.read_bytes() for p in scanned)
    assert b"services.api_keys" in contents  # the scan sees what the runs wrote
    leaks = [f"{s[:10]}..." for s in secrets if s.encode() in contents]
    assert not leaks, leaks
