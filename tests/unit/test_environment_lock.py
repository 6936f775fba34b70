"""The environment lock on a real Prefect server: one holder per environment, the next one waits or is refused
naming the holder, other environments are not blocked."""

from __future__ import annotations

import threading

from technicia_deploy import environment_lock


def _holding_flow(started: threading.Event, release: threading.Event, outcome: dict):
    from prefect import flow
    from prefect.runtime import flow_run

    from technicia_deploy.tracking.publish import add_tags

    # Named and tagged like the deploy flow: the lock names holders among the runs of the locking flows.
    @flow(name="deploy-environment", flow_run_name="hold-{environment}-{label}")
    def hold(environment: str, label: str, wait_s: float) -> str:
        add_tags([f"env:{environment}"])
        with environment_lock.hold(environment, "unitlock", str(flow_run.id), wait_s=wait_s):
            started.set()
            release.wait(timeout=60)
        return label

    return hold


def run_in_thread(fn, **kwargs):
    result = {}

    def target():
        result["state"] = fn(return_state=True, **kwargs)

    thread = threading.Thread(target=target)
    thread.start()
    return thread, result


def test_second_run_of_an_environment_is_refused_naming_the_holder(prefect_server):
    started, release = threading.Event(), threading.Event()
    hold = _holding_flow(started, release, {})
    first, first_result = run_in_thread(hold, environment="lockcheck", label="first", wait_s=60)
    assert started.wait(timeout=60)
    try:
        other_started, other_release = threading.Event(), threading.Event()
        other_release.set()
        # Another environment is not blocked by the first one's lock.
        other = _holding_flow(other_started, other_release, {})
        assert other(environment="lockcheck-other", label="other", wait_s=30, return_state=True).is_completed()
        # The same environment: refused after its bound, naming the run that holds it.
        second = hold(environment="lockcheck", label="second", wait_s=2, return_state=True)
        assert second.is_failed()
        assert "lockcheck is held by run 'hold-lockcheck-first' (deploy-environment" in second.message
        assert "refused after waiting 2 s" in second.message
    finally:
        release.set()
        first.join(timeout=60)
    assert first_result["state"].is_completed()


def test_a_timeout_inside_the_locked_work_is_not_a_lock_timeout(prefect_server):
    from prefect import flow
    from prefect.runtime import flow_run

    @flow(name="lock-inner-timeout")
    def inner() -> None:
        with environment_lock.hold("lockcheck-inner", "unitlock", str(flow_run.id), wait_s=5):
            raise TimeoutError("the DNS record did not propagate")

    state = inner(return_state=True)
    assert state.is_failed() and "did not propagate" in state.message and "held by" not in state.message
