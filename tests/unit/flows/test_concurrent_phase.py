"""The deploy flow's concurrent phase: the three post-deployment tests start together and every failure is named."""

from __future__ import annotations

import threading

import pytest


def test_checks_phase_is_concurrent_and_its_plan_entries_submit():
    from flows import deploy_environment as flow_module
    from technicia_deploy import steps

    assert flow_module.CONCURRENT_PHASES == {"checks"}
    plan = flow_module._plan("test", "v1.0.0", "0" * 40, "technicia", False, None, None, {})
    assert {s.id for s in steps.phase("checks").steps} <= set(plan)
    assert {s.id for s in steps.phase("monitoring").steps} <= set(plan)


@pytest.mark.parametrize("earlier, asked, expected", [
    ("unchanged", None, False),  # a run that changed nothing
    ("changed", None, True),
    ("unchanged", True, True),   # --load-test / --alert-test
    ("changed", False, False),  # --no-load-test / --no-alert-test
])
def test_load_test_and_test_alert_run_when_the_run_changed_something_unless_told(monkeypatch, earlier, asked, expected):
    from prefect.states import Completed

    from flows import deploy_environment as flow_module
    from tasks import checks, monitoring

    # What a step's call hands the flow: its final state, the result as data (tasks/step.py).
    earlier = {"services.clone": Completed(message="unchanged: x", data={"outcome": "unchanged"}),
               "services.deploy": Completed(message=f"{earlier}: x", data={"outcome": earlier})}

    seen = {}
    monkeypatch.setattr(checks.performance, "submit", lambda **kw: seen.setdefault("load_test", kw["load_test"]))
    monkeypatch.setattr(monitoring, "alert_test", lambda **kw: seen.setdefault("send", kw["send"]))
    results: dict = {}
    plan = flow_module._plan("test", "v1.0.0", "0" * 40, "technicia", False, asked, asked, results)
    results.update(earlier)  # the plan reads the results as they are when the step starts
    plan["checks.performance"]()
    plan["monitoring.alert_test"]()
    assert seen == {"load_test": expected, "send": expected}


def test_run_together_overlaps_the_steps_and_names_each_failure(prefect_server):
    from prefect import flow, task

    from flows.deploy_environment import _run_together

    all_started = threading.Barrier(3, timeout=10)  # passes only if the three run at the same time

    @task
    def check(name: str, fail: bool = False) -> str:
        all_started.wait()
        if fail:
            raise RuntimeError(f"{name} found a problem")
        return name

    @flow
    def phase(fail: tuple[str, ...]):
        return _run_together({name: (lambda n=name: check.submit(n, n in fail)) for name in ("functional", "performance", "security")})

    results = phase(())
    assert set(results) == {"functional", "performance", "security"}
    assert results == {name: name for name in ("functional", "performance", "security")}  # each step's own result

    all_started.reset()
    with pytest.raises(RuntimeError) as failure:
        phase(("functional", "security"))
    message = str(failure.value)
    assert "functional: " in message and "security: " in message and "performance" not in message
    assert "functional found a problem" in message


def test_monitoring_is_grouped_with_the_checks_and_the_other_phases_run_alone():
    from flows import deploy_environment as flow_module

    plan = flow_module._plan("test", "v1.0.0", "0" * 40, "technicia", False, None, None, {})
    groups = [[phase_id for phase_id, _ in group] for group in flow_module.phase_groups(plan)]
    assert groups == [["server"], ["services"], ["https"], ["checks", "monitoring"]]
    steps_of = {phase_id: ran for group in flow_module.phase_groups(plan) for phase_id, ran in group}
    assert steps_of["monitoring"] == ["monitoring.script", "monitoring.alerts", "monitoring.alert_test"]  # in order


def test_monitoring_runs_alongside_the_checks_and_a_failed_check_rolls_back_once_both_ended(prefect_server, monkeypatch):
    from prefect import flow, task

    from flows import deploy_environment as flow_module

    both_started = threading.Barrier(2, timeout=10)  # passes only if a check and a monitoring step overlap
    order: list[str] = []

    @task
    def check(fail: bool) -> str:
        both_started.wait()
        if fail:
            raise RuntimeError("functional check found a problem")
        return "checked"

    @task
    def monitor(name: str) -> str:
        if name == "monitoring.script":
            both_started.wait()
        order.append(name)
        return name

    rolled_back: list[str] = []

    def fake_roll_back(environment, project, version, sha, failed, error):
        rolled_back.append(failed)
        assert order == ["monitoring.script", "monitoring.alerts"], "the rollback waits for the monitoring phase"
        return flow_module.ReleaseRolledBack(f"{failed} failed; rolled back")

    monkeypatch.setattr(flow_module, "_roll_back", fake_roll_back)
    monkeypatch.setattr(flow_module, "_publish_phase", lambda *args, **kwargs: None)

    @flow
    def run(fail: bool):
        plan = {"checks.functional": lambda: check.submit(fail),
                "monitoring.script": lambda: monitor("monitoring.script"),
                "monitoring.alerts": lambda: monitor("monitoring.alerts")}
        return flow_module._run_phases(plan, {}, "test", "technicia", "v1.0.0", "0" * 40)

    results = run(False)
    assert set(results) == {"checks.functional", "monitoring.script", "monitoring.alerts"}
    assert rolled_back == []

    both_started.reset()
    order.clear()
    with pytest.raises(flow_module.ReleaseRolledBack, match="checks failed; rolled back"):
        run(True)
    assert rolled_back == ["checks"]
