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
