"""A step under which the SSH connection was lost and re-opened says so in its summary (tasks.step, tasks.runtime).

HostConnection re-runs a command its connection cut on a new connection, inside the same attempt of the step: the
step then completes at its first attempt, and without this note the run history would not show the loss at all.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest


class FakeConnection:
    """What runtime.connect hands out, as far as the note is concerned: HostConnection's ``reconnects`` count."""

    def __init__(self):
        self.reconnects = 0


@pytest.fixture
def connection(monkeypatch):
    from tasks import runtime

    conn = FakeConnection()
    monkeypatch.setattr(runtime, "pool", lambda: SimpleNamespace(get=lambda *args: conn))
    return conn


ENV = SimpleNamespace(address=lambda: "10.0.0.9", deploy_user="deploy",
                      ssh=SimpleNamespace(port=22, host_key="ssh-ed25519 AAAA",
                                          private_key=SimpleNamespace(get_secret_value=lambda: "key")))


def _step(reconnect_under_it: int):
    from tasks import runtime
    from tasks.step import StepResult, tracked_step

    @tracked_step("services.clone", retries=0)
    def step() -> StepResult:
        conn = runtime.connect(ENV)
        conn.reconnects += reconnect_under_it  # what HostConnection does when it re-opens a lost connection
        return StepResult("services.clone", "changed", "v1.1.0 (0123456789ab) checked out")

    return step


def _run(step):
    from prefect import flow

    from tasks import runtime

    states = []

    @flow(name="unit-step-reconnections")
    def one_step():
        try:
            states.append(step(return_state=True))
        finally:
            runtime.release()

    one_step(return_state=True)
    return states[0]


def test_a_connection_reopened_under_a_step_is_in_its_summary(prefect_server, connection):
    state = _run(_step(reconnect_under_it=1))
    assert state.is_completed(), state.message
    assert state.message == ("changed: v1.1.0 (0123456789ab) checked out "
                             "(SSH connection lost and re-opened 1 time(s) during this step)")
    assert state.result()["details"]["ssh_reconnections"] == 1


def test_a_step_whose_connection_held_says_nothing_of_it(prefect_server, connection):
    connection.reconnects = 3  # re-opened before the step (earlier steps): not this step's
    state = _run(_step(reconnect_under_it=0))
    assert state.message == "changed: v1.1.0 (0123456789ab) checked out"
    assert "ssh_reconnections" not in state.result()["details"]


def test_reconnections_count_the_connections_this_flow_run_was_handed_out(connection):
    from tasks import runtime

    assert runtime.reconnections() == 0
    runtime.connect(ENV).reconnects = 2
    runtime.connect(ENV)  # the same connection again: counted once
    assert runtime.reconnections() == 2
    runtime.release()
    assert runtime.reconnections() == 0
