"""Post-deployment tests and monitoring against the sandbox (the catalogue's last two phases).

In order, on the sandbox's test environment: a good deployment passes the three test groups and publishes
their artifacts, and its alert test reaches the sandbox receiver from the flow and from the server; then a
stopped API container fails the functional test naming it and the server's monitor alerts within one timer
period; then Qdrant's port opened past the firewall fails the security test with a high finding naming 6333.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.helpers import latest_table, vps_exec

from technicia_deploy.sandbox import receiver

pytestmark = pytest.mark.e2e

GOOD = "v1.0.0"
CHECK_STEPS = ("checks.functional", "checks.performance", "checks.security")
MONITORING_STEPS = ("monitoring.script", "monitoring.alerts", "monitoring.alert_test")
FAST_PERIOD_S = 15


@pytest.fixture(scope="module")
def deployed(sandbox):
    from flows.deploy_environment import deploy_environment

    # This module tests the load test and the test alert: asked for, since test may already run GOOD.
    state = deploy_environment(environment="test", version=GOOD, operator="e2e-post-deploy", load_test=True,
                               alert_test=True, return_state=True)
    assert state.is_completed(), state.message
    return state.result()


def step_data(deployed: dict, step_id: str) -> dict:
    """A step's StepResult as a dict (the flow returns each step's final state)."""
    value = deployed["steps"][step_id]
    return value.result() if hasattr(value, "result") else value


@pytest.fixture
def tasks_outside_a_flow():
    """Tasks called directly share the 'local' connection pool: close it after the test."""
    from tasks import runtime

    yield
    runtime.release()


def test_good_deployment_passes_all_three_test_groups_with_artifacts(sandbox, deployed, record_property):
    results = deployed["steps"]
    for step in CHECK_STEPS + MONITORING_STEPS:
        assert step in results, f"{step} did not run"
    functional = {row["name"]: row for row in latest_table("functional-test")}
    assert set(functional) >= {"frontend", "api", "n8n", "qdrant", "api-request"}
    assert all(row["ok"] for row in functional.values()), functional
    assert functional["n8n"]["where"] == "server" and functional["api"]["where"] == "public"
    performance = {row["metric"]: row for row in latest_table("performance-test")}
    assert performance["requests_per_s"]["verdict"] == "ok" and performance["p95_ms"]["verdict"] == "ok"
    # In the JUnit report (--junitxml): docs/benchmarks.md cites what the sandbox serves.
    record_property("sandbox_load_test", {m: row["value"] for m, row in performance.items()})
    security = latest_table("security-test")
    ports = {row["port"]: row for row in security if row["port"] != ""}
    assert ports[443]["observed"] == "open" and ports[6333]["observed"] != "open" and ports[5678]["observed"] != "open"
    assert not [row for row in security if row["severity"] == "high"]


def test_alert_test_reached_the_receiver_from_the_flow_and_from_the_server(sandbox, deployed):
    test_id = step_data(deployed, "monitoring.alert_test")["details"]["test_id"]
    record = Path(sandbox.data["receiver"]["record"])
    hits = [e for e in receiver.read(record) if test_id in receiver.text_of(e)]
    # apprise (flow) and curl (server monitor), each to the webhook and to the mailbox.
    assert len([e for e in hits if e["kind"] == "webhook"]) == 2, hits
    assert len([e for e in hits if e["kind"] == "email"]) == 2, hits
    assert all(e["path"].startswith("/hooks/test/") for e in hits if e["kind"] == "webhook")


def test_stopped_api_fails_the_functional_test_and_the_monitor_alerts(sandbox, deployed, tasks_outside_a_flow):
    from tasks import checks, monitoring

    container = sandbox.data["vps"]["test"]["container"]
    record = Path(sandbox.data["receiver"]["record"])
    monitoring.script(environment="test", period_s=FAST_PERIOD_S)  # a short period, so the test waits less
    api = vps_exec(container, "docker ps -q --filter label=com.docker.compose.service=api").strip()
    assert api
    already = len(receiver.read(record))
    vps_exec(container, f"docker stop {api}")
    try:
        with pytest.raises(Exception, match=r"api \(") as failure:
            checks.functional(environment="test")
        assert "frontend" not in str(failure.value).split("failed:")[-1]
        alert = receiver.wait_for(
            record, lambda e: e["kind"] == "webhook" and "container api: exited" in receiver.text_of(e)
            and e["path"].startswith("/hooks/test/") and receiver.read(record).index(e) >= already,
            timeout=FAST_PERIOD_S * 2 + 30)
        assert alert["body"]["type"] == "failure"
    finally:
        vps_exec(container, f"docker start {api}")
    receiver.wait_for(record, lambda e: e["kind"] == "webhook" and e["body"].get("type") == "success"
                      and "container api: exited" in receiver.text_of(e), timeout=FAST_PERIOD_S * 2 + 30)


def test_qdrant_port_past_the_firewall_is_a_high_security_finding(sandbox, deployed, tasks_outside_a_flow):
    from tasks import checks

    container = sandbox.data["vps"]["test"]["container"]
    # Remove the DOCKER-USER protection: Qdrant's "6333:6333" publication is then reachable from outside.
    vps_exec(container, "iptables -F DOCKER-USER && iptables -A DOCKER-USER -j RETURN")
    try:
        with pytest.raises(Exception, match="6333") as failure:
            checks.security(environment="test")
        assert "high security finding" in str(failure.value)
        row = next(r for r in latest_table("security-test") if r["port"] == 6333)
        assert (row["expected"], row["observed"], row["severity"]) == ("internal", "open", "high")
    finally:
        vps_exec(container, "ufw reload")
    checks.security(environment="test")  # protection back: passes again
