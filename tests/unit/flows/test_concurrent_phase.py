"""The deploy flow's concurrent phase: the three post-deployment tests start together and every failure is named."""

from __future__ import annotations

import threading

import pytest


def test_checks_phase_is_concurrent_and_its_plan_entries_submit():
    from flows import deploy_environment as flow_module
    from technicia_deploy import steps

    assert flow_module.CONCURRENT_PHASES == {"checks"}
    plan = flow_module._plan("test", "v1.0.0", "0" * 40, "technicia", False)
    assert {s.id for s in steps.phase("checks").steps} <= set(plan)
    assert {s.id for s in steps.phase("monitoring").steps} <= set(plan)


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
