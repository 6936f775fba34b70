"""maintenance-certificates against the sandbox's test environment: a real nginx, certbot and pebble.

In order: a run on a fresh deployment changes nothing and proves the renewal would work (dry run against
pebble); a certificate forced under the threshold (pebble issues 5-year certificates, so the threshold is raised
for the run) is renewed and the new one is the one served, checked from outside; a challenge path nginx no longer
serves (its ACME location answers 403) is reported by the dry run while the certificate is still valid: the run
fails, names the challenge's answer, and the environment's alert destinations hear of it.

Cost: v1.0.0 deployed to test unless a release already runs there, then four maintenance runs (~10 s each).
"""

from __future__ import annotations

import hashlib
import socket
import ssl
from pathlib import Path

import pytest
import yaml

from tests.e2e.helpers import vps_exec

pytestmark = pytest.mark.e2e

GOOD = "v1.0.0"
SITE = "/etc/nginx/sites-available/technicia.conf"


def environment(sandbox, name: str) -> dict:
    return yaml.safe_load(sandbox.path("environments.yaml").read_text())["environments"][name]


@pytest.fixture(scope="module")
def deployed(sandbox):
    """(VPS container, address, domain) of test, running a release with its certificate."""
    container = sandbox.data["vps"]["test"]["container"]
    if not vps_exec(container, "readlink /opt/technicia/current || true").strip() or \
            "none" in vps_exec(container, "ls /etc/letsencrypt/live/*/cert.pem 2>/dev/null || echo none"):
        from flows.deploy_environment import deploy_environment

        state = deploy_environment(environment="test", version=GOOD, operator="e2e", return_state=True,
                                   load_test=False, alert_test=False)
        assert state.is_completed(), state.message
    return container, sandbox.data["vps"]["test"]["ip"], environment(sandbox, "test")["domain"]


def served_fingerprint(sandbox, address: str, domain: str) -> str:
    """The served certificate's sha256, verified against the sandbox's ACME roots (from outside the VPS)."""
    context = ssl.create_default_context(cafile=sandbox.data["acme"]["issuer_roots"])
    with socket.create_connection((address, 443), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=domain) as tls:
        return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()


def run_maintenance(**parameters):
    from flows.maintenance_certificates import maintenance_certificates

    return maintenance_certificates(environment="test", lock_wait_s=120, return_state=True, **parameters)


def child_run(parent_state):
    """The per-environment run the maintenance created (tagged env:test), with its final state."""
    from prefect import get_client
    from prefect.client.schemas import filters as F

    with get_client(sync_client=True) as client:
        parent = parent_state.state_details.flow_run_id
        task_ids = [t.id for t in client.read_task_runs(flow_run_filter=F.FlowRunFilter(id=F.FlowRunFilterId(any_=[parent])))]
        children = client.read_flow_runs(flow_run_filter=F.FlowRunFilter(
            parent_task_run_id=F.FlowRunFilterParentTaskRunId(any_=task_ids)))
    assert len(children) == 1, children
    return children[0]


def test_a_valid_certificate_is_kept_and_its_renewal_rehearsed(sandbox, deployed):
    container, address, domain = deployed
    before = served_fingerprint(sandbox, address, domain)
    state = run_maintenance()
    assert state.is_completed(), state.message
    child = child_run(state)
    assert child.name == "certificates-test"
    assert {"maintenance", "env:test", "flow:maintenance-certificates"} <= set(child.tags)
    message = child.state.message
    assert message.startswith(f"unchanged: {domain} serves a certificate with "), message
    assert "chain verified" in message and f"names {domain}" in message
    assert "renewal dry run ok against https://" in message and "certbot.timer active" in message
    assert served_fingerprint(sandbox, address, domain) == before


def test_a_certificate_under_the_threshold_is_renewed_and_the_new_one_is_served(sandbox, deployed):
    container, address, domain = deployed
    before = served_fingerprint(sandbox, address, domain)
    # Pebble's certificates last 5 years: "close to expiry" is a threshold above that.
    state = run_maintenance(renew_below_days=100_000, dry_run=False)
    assert state.is_completed(), state.message
    message = child_run(state).state.message
    assert message.startswith("changed: renewed (") and "(< 100000)" in message, message
    assert f"{domain} now serves the new certificate" in message
    after = served_fingerprint(sandbox, address, domain)
    assert after != before
    live = vps_exec(container, f"openssl x509 -in /etc/letsencrypt/live/{domain}/cert.pem -outform DER | sha256sum")
    assert live.split()[0] == after  # the new one from outside is the server's new live certificate

    # Run again with the environment's own threshold: nothing to renew.
    again = run_maintenance(dry_run=False)
    assert again.is_completed(), again.message
    assert child_run(again).state.message.startswith("unchanged: ")
    assert served_fingerprint(sandbox, address, domain) == after


@pytest.fixture
def challenge_path_blocked(deployed):
    """nginx answers 403 on /.well-known/acme-challenge/ (a hand edit that breaks renewals); restored afterwards."""
    container, _, _ = deployed
    original = vps_exec(container, f"cat {SITE}")
    assert "try_files $uri =404;" in original
    vps_exec(container, f"cp {SITE} /root/h13-site.bak && "
                        f"sed -i 's|try_files \\$uri =404;|return 403;|' {SITE} && nginx -t && systemctl reload nginx")
    try:
        yield
    finally:
        vps_exec(container, f"cp /root/h13-site.bak {SITE} && nginx -t && systemctl reload nginx")


def test_a_blocked_challenge_path_is_reported_by_the_dry_run_before_expiry(sandbox, deployed, challenge_path_blocked):
    from technicia_deploy.sandbox import receiver

    container, address, domain = deployed
    record = Path(sandbox.data["receiver"]["record"])
    already = len(receiver.read(record))
    before = served_fingerprint(sandbox, address, domain)

    state = run_maintenance()
    assert state.is_failed()
    child = child_run(state)
    assert child.state.type.value == "FAILED"
    message = child.state.message
    assert f"renewal of {domain} would fail" in message, message
    assert "`certbot renew --dry-run` against https://" in message
    assert "403" in message and "acme-challenge" in message, message
    # Still valid and untouched: found before expiry, nothing replaced.
    assert served_fingerprint(sandbox, address, domain) == before

    # The environment's alert (automation on env:test failures) reaches its destinations.
    import time

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        texts = [receiver.text_of(e) for e in receiver.read(record)[already:]]
        if any("certificates-test" in text for text in texts):
            break
        time.sleep(1)
    else:
        pytest.fail(f"no alert for certificates-test: {[t[:160] for t in texts]}")
