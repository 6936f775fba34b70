"""The maintenance conventions against a real Prefect server: per-environment runs created with their tags, named,
described, under the environment's lock, failures named in the parent run."""

from __future__ import annotations

import time

import pytest
from prefect import flow

from flows import _maintenance
from technicia_deploy import environment_lock
from technicia_deploy import maintenance as conventions

PROJECT = "mtconv"
SEEN: list[tuple[str, int]] = []


def _work(env) -> conventions.Outcome:
    if env == "staging" and FAIL_STAGING:
        raise RuntimeError("staging: certbot exited 1\nmore detail")
    # Inside the lock: its limit shows one active slot.
    from prefect import get_client

    with get_client(sync_client=True) as client:
        slots = client.read_global_concurrency_limit_by_name(environment_lock.lock_name(PROJECT, env)).active_slots
        # A deployment waiting for this environment names this run as the holder.
        holder = [h.name for h in environment_lock.holders(client, env, exclude=set())][:1]
    SEEN.append((env, slots))
    HOLDERS.append(holder)
    return conventions.Outcome(env, f"checked {env}", changed=env == "test", rows=[{"item": "a|b", "state": "ok"}])


FAIL_STAGING = False
HOLDERS: list[list[str]] = []


@flow(name="maintenance-dummy", flow_run_name="dummy-{environment}")
def dummy(environment: str = "all", project: str = PROJECT, lock_wait_s: float = 30):
    return _maintenance.run(dummy, "dummy", "Dummy maintenance", environment, project, _work,
                            touches_server=True, lock_wait_s=lock_wait_s)


@pytest.fixture
def no_blocks(monkeypatch):
    import flows.deploy_environment as deploy

    monkeypatch.setattr(deploy, "preflight", lambda environment, project: environment)
    monkeypatch.setattr(environment_lock, "MAINTENANCE_FLOWS", (*environment_lock.MAINTENANCE_FLOWS, "maintenance-dummy"))


def _children(parent_id):
    from prefect import get_client
    from prefect.client.schemas import filters as F

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=F.FlowFilter(name=F.FlowFilterName(any_=["maintenance-dummy"])))
        parent_tasks = {t.id for t in client.read_task_runs(flow_run_filter=F.FlowRunFilter(
            id=F.FlowRunFilterId(any_=[parent_id])))}
        children = sorted((r for r in runs if r.parent_task_run_id in parent_tasks), key=lambda r: r.start_time)
        events: list[dict] = []
        deadline = time.monotonic() + 20  # the server writes events in the background
        while time.monotonic() < deadline:
            events = [e for child in children for e in client.request("POST", "/events/filter", json={
                "filter": {"any_resource": {"id": [f"prefect.flow-run.{child.id}"]}}, "limit": 50}).json()["events"]]
            if {e["resource"]["prefect.resource.id"] for e in events} >= {f"prefect.flow-run.{c.id}" for c in children}:
                break
            time.sleep(0.5)
    return children, events


def test_all_runs_one_tagged_named_described_run_per_environment_under_its_lock(prefect_server, no_blocks):
    global FAIL_STAGING
    FAIL_STAGING = False
    SEEN.clear()
    HOLDERS.clear()
    state = dummy(environment="all", return_state=True)
    assert state.is_completed(), state.message
    assert HOLDERS == [["dummy-test"], ["dummy-staging"], ["dummy-production"]]
    assert state.message == ("test: changed: checked test; staging: unchanged: checked staging; "
                             "production: unchanged: checked production")
    assert SEEN == [("test", 1), ("staging", 1), ("production", 1)]

    children, events = _children(state.state_details.flow_run_id)
    assert [c.name for c in children] == ["dummy-test", "dummy-staging", "dummy-production"]
    for child, env in zip(children, ("test", "staging", "production")):
        assert {"maintenance", f"env:{env}", "flow:maintenance-dummy"} <= set(child.tags)
        assert child.state.message == f"{'changed' if env == 'test' else 'unchanged'}: checked {env}"
        # Tagged from its very first state event: what the environment's alert automation matches on.
        first = [e for e in events if e["resource"]["prefect.resource.id"] == f"prefect.flow-run.{child.id}"]
        first = min(first, key=lambda e: e["occurred"])
        related_tags = {r["prefect.resource.id"] for r in first["related"] if r.get("prefect.resource.role") == "tag"}
        assert f"prefect.tag.env:{env}" in related_tags, (first["event"], related_tags)


def test_a_failed_environment_fails_the_run_naming_it_and_the_others_still_run(prefect_server, no_blocks):
    global FAIL_STAGING
    FAIL_STAGING = True
    SEEN.clear()
    try:
        state = dummy(environment="all", return_state=True)
    finally:
        FAIL_STAGING = False
    assert state.is_failed()
    assert ("staging failed; test: changed: checked test; staging: Failed: RuntimeError: staging: certbot exited 1; "
            "production: unchanged: checked production") in state.message, state.message
    assert "more detail" not in state.message
    assert [env for env, _ in SEEN] == ["test", "production"]


def test_a_single_environment_run_started_in_process_still_runs_it_as_a_tagged_subflow(prefect_server, no_blocks):
    state = dummy(environment="production", return_state=True)
    assert state.is_completed(), state.message
    children, _ = _children(state.state_details.flow_run_id)
    assert [c.name for c in children] == ["dummy-production"]
    assert "env:production" in children[0].tags


def test_unknown_environment_is_refused():
    with pytest.raises(ValueError, match="unknown environment 'prod'"):
        conventions.environments_for("prod")
