"""maintenance-housekeeping on the sandbox's test environment, and the maintenance deployments on the sandbox's own
Prefect server (registered from deployments.yaml by the sandbox, its scheduler and worker running).

Test runs v1.1.0 with v1.0.0 as its previous release; an old release directory and an unused image are planted.
Housekeeping removes those two and nothing a rollback needs: a rollback to v1.0.0 then works with the images left
on the server. The second housekeeping run is started from its deployment and run by the sandbox's worker; it
removes nothing. The scheduler has planned the next runs of the maintenance deployments, and the tracking document's
maintenance table shows them and what the past runs did, in the team's time zone.

Cost: up to two deployments of test (v1.0.0 then v1.1.0), one rollback, v1.1.0 deployed again after it, and two
housekeeping runs (~5 s each).
"""

from __future__ import annotations

import time

import pytest

from tests.e2e.helpers import vps_exec

pytestmark = pytest.mark.e2e

GOOD, NEXT = "v1.0.0", "v1.1.0"
APP = "/opt/technicia"
OLD_RELEASE = f"{APP}/releases/v0.0.1-000000000000"
UNUSED = "h13-e2e/unused:old"


def deploy(version: str):
    from flows.deploy_environment import deploy_environment

    state = deploy_environment(environment="test", version=version, operator="e2e", return_state=True,
                               load_test=False, alert_test=False)
    assert state.is_completed(), state.message


def link(container: str, name: str) -> str:
    return vps_exec(container, f"basename \"$(readlink {APP}/{name})\" 2>/dev/null || echo none").strip()


def image_refs(container: str) -> set[str]:
    return set(vps_exec(container, "docker image ls --format '{{.Repository}}:{{.Tag}}'").split())


@pytest.fixture(scope="module")
def two_releases(sandbox):
    """Test's container running NEXT with GOOD as previous, an old release directory and an unused image planted."""
    container = sandbox.data["vps"]["test"]["container"]
    if not (link(container, "current").startswith(NEXT) and link(container, "previous").startswith(GOOD)):
        if not link(container, "current").startswith(GOOD):
            deploy(GOOD)
        deploy(NEXT)
    assert link(container, "current").startswith(NEXT) and link(container, "previous").startswith(GOOD)
    some_image = sorted(r for r in image_refs(container) if "/technicia/api:" in r)[0]
    vps_exec(container, f"mkdir -p {OLD_RELEASE} && chown -R deploy: {OLD_RELEASE} && touch -d '2020-01-01' {OLD_RELEASE} "
                        f"&& docker tag {some_image} {UNUSED}")
    yield container
    if not link(container, "current").startswith(NEXT):  # leave test as the other modules expect it
        deploy(NEXT)


def child_message(parent_id) -> tuple[str, str, list[str]]:
    from prefect import get_client
    from prefect.client.schemas import filters as F

    with get_client(sync_client=True) as client:
        task_ids = [t.id for t in client.read_task_runs(flow_run_filter=F.FlowRunFilter(id=F.FlowRunFilterId(any_=[parent_id])))]
        children = client.read_flow_runs(flow_run_filter=F.FlowRunFilter(
            parent_task_run_id=F.FlowRunFilterParentTaskRunId(any_=task_ids)))
    assert len(children) == 1, children
    child = children[0]
    return child.name, child.state.message or "", list(child.tags)


def test_housekeeping_removes_the_unused_and_keeps_what_a_rollback_needs(sandbox, two_releases):
    from flows.maintenance_housekeeping import maintenance_housekeeping

    container = two_releases
    before = image_refs(container)
    state = maintenance_housekeeping(environment="test", lock_wait_s=120, return_state=True)
    assert state.is_completed(), state.message
    name, message, tags = child_message(state.state_details.flow_run_id)
    assert name == "housekeeping-test" and {"maintenance", "env:test", "flow:maintenance-housekeeping"} <= set(tags)
    assert message.startswith("changed: removed "), message
    assert UNUSED in message and "v0.0.1 (000000000000)" in message
    assert f"kept current {NEXT} (" in message and f"previous {GOOD} (" in message

    after = image_refs(container)
    assert UNUSED not in after
    assert vps_exec(container, f"test -e {OLD_RELEASE} && echo present || echo gone").strip() == "gone"
    for name in ("current", "previous"):  # every image their compose files name is still there
        wanted = set(vps_exec(container, f"sed -n 's/^ *image: *//p' {APP}/{name}/docker-compose.yml").split())
        assert wanted and wanted <= before and wanted <= after, (name, wanted - after)
    assert link(container, "current").startswith(NEXT) and link(container, "previous").startswith(GOOD)

    # What a rollback needs is there: going back to v1.0.0 works with what the housekeeping left.
    from flows.rollback_environment import rollback_environment

    rolled = rollback_environment(environment="test", operator="e2e", reason="housekeeping kept the rollback",
                                  return_state=True)
    assert rolled.is_completed(), rolled.message
    assert link(container, "current").startswith(GOOD)
    deploy(NEXT)  # back to NEXT with GOOD as previous, for the next test and the other modules


def test_deployments_are_scheduled_and_the_worker_runs_one(sandbox, two_releases):
    from prefect import get_client
    from prefect.client.schemas import filters as F
    from prefect.deployments import run_deployment

    with get_client(sync_client=True) as client:
        ids = {name: client.read_deployment_by_name(name).id
               for name in ("maintenance-certificates/certificates", "maintenance-housekeeping/housekeeping")}
        for name, deployment_id in ids.items():
            deployment = client.read_deployment(deployment_id)
            assert [(s.schedule.cron, s.schedule.timezone) for s in deployment.schedules] in (
                [("30 3 * * *", "Europe/Paris")], [("0 4 * * 0", "Europe/Paris")]), name
        # The sandbox server's scheduler plans their next runs (its loop runs every minute or so).
        deadline = time.monotonic() + 150
        while True:
            planned = client.read_flow_runs(
                deployment_filter=F.DeploymentFilter(id=F.DeploymentFilterId(any_=list(ids.values()))),
                flow_run_filter=F.FlowRunFilter(state=F.FlowRunFilterState(type=F.FlowRunFilterStateType(any_=["SCHEDULED"]))),
                limit=50)
            if {r.deployment_id for r in planned} >= set(ids.values()) or time.monotonic() > deadline:
                break
            time.sleep(3)
    assert {r.deployment_id for r in planned} >= set(ids.values()), "the scheduler created no run for some of them"
    assert all("maintenance" in r.tags for r in planned)

    # A run from the deployment, picked up and run by the sandbox's worker: nothing left to remove.
    run = run_deployment("maintenance-housekeeping/housekeeping", parameters={"environment": "test"}, timeout=600,
                         tags=["e2e"])
    assert run.state.is_completed(), run.state.message
    _, message, _ = child_message(run.id)
    assert message.startswith("unchanged: nothing to remove"), message

    # The tracking document: upcoming maintenance says what it will do, past runs what they did, in Paris time.
    from technicia_deploy.tracking.history import read_history
    from technicia_deploy.tracking.render import render

    with get_client(sync_client=True) as client:
        document = render(read_history(client), "fr")
    table = document.split("## Maintenance et Mises à Jour Planifiées", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("|--")][1:]
    assert any("Nettoyage Docker | Test | unchanged: nothing to remove" in r for r in rows), rows
    assert any("| Planifié |" in r and "Supprimer les images" in r for r in rows), rows
    assert all(r.split("|")[1].strip().endswith(("CET", "CEST")) for r in rows), rows
