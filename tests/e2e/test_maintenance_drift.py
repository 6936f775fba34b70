"""maintenance-drift on the sandbox's test environment: a server as deployed has no drift; a firewall rule added and
a port published by hand are both reported, by name, and the run fails (alerting test's destinations).

Cost: test deployed unless a release runs there, then two drift runs (read only, a port scan each: ~10-20 s).
"""

from __future__ import annotations

import pytest

from tests.e2e.helpers import vps_exec

pytestmark = pytest.mark.e2e

GOOD = "v1.0.0"
RULE_PORT, PUBLISHED_PORT = 8081, 9099


@pytest.fixture(scope="module")
def deployed(sandbox):
    container = sandbox.data["vps"]["test"]["container"]
    if not vps_exec(container, "readlink /opt/technicia/current || true").strip():
        from flows.deploy_environment import deploy_environment

        state = deploy_environment(environment="test", version=GOOD, operator="e2e", return_state=True,
                                   load_test=False, alert_test=False)
        assert state.is_completed(), state.message
    return container


def run_drift():
    from flows.maintenance_drift import maintenance_drift

    return maintenance_drift(environment="test", lock_wait_s=120, return_state=True)


def child_message(state) -> str:
    from prefect import get_client
    from prefect.client.schemas import filters as F

    with get_client(sync_client=True) as client:
        parent = state.state_details.flow_run_id
        task_ids = [t.id for t in client.read_task_runs(flow_run_filter=F.FlowRunFilter(id=F.FlowRunFilterId(any_=[parent])))]
        runs = client.read_flow_runs(flow_run_filter=F.FlowRunFilter(
            parent_task_run_id=F.FlowRunFilterParentTaskRunId(any_=task_ids)))
    assert len(runs) == 1 and runs[0].name == "drift-test" and "env:test" in runs[0].tags
    return runs[0].state.message or ""


def test_a_server_as_deployed_has_no_drift(deployed):
    state = run_drift()
    assert state.is_completed(), state.message
    assert child_message(state).startswith("unchanged: no drift: the server is as declared and last applied (checked: ")


@pytest.fixture
def changed_by_hand(deployed):
    """A ufw rule and a container publishing a port, both by hand; removed afterwards."""
    image = vps_exec(deployed, "docker ps --format '{{.Image}}' | grep /technicia/frontend: | head -n 1").strip()
    assert image
    vps_exec(deployed, f"ufw allow {RULE_PORT}/tcp && docker run -d --name h13-drift -p {PUBLISHED_PORT}:8080 {image}")
    try:
        yield
    finally:
        vps_exec(deployed, f"ufw delete allow {RULE_PORT}/tcp; docker rm -f h13-drift", check=False)


def test_a_hand_made_firewall_rule_and_published_port_are_reported(deployed, changed_by_hand):
    state = run_drift()
    assert state.is_failed()
    message = child_message(state)
    assert f"firewall {RULE_PORT}/tcp: rule `ufw allow {RULE_PORT}/tcp` allows it, declared nowhere (owner server.firewall)" \
        in message, message
    assert f"ports {PUBLISHED_PORT}/tcp (container h13-drift)" in message, message
