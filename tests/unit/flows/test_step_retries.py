"""Steps retry transient faults only, say how often in their final error, and services.deploy converges after a
connection lost in the middle of it (real Prefect task retries on the session's server; a simulated server)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from technicia_deploy.commands import release
from technicia_deploy.commands.shell import render_sections
from technicia_deploy.connection import CommandFailed, ConnectionLost

SHA = "0123456789abcdef0123456789abcdef01234567"
OLD = "/opt/technicia/releases/v1.0.0-aaaaaaaaaaaa"
NEW = f"/opt/technicia/releases/v2.0.0-{SHA[:12]}"


def _step(outcomes: list, retries: int = 2):
    """A step whose successive attempts raise or return ``outcomes``; its attempts are counted."""
    from tasks.step import StepResult, tracked_step

    calls = []

    @tracked_step("server.docker", retries=retries, retry_delay_seconds=0)
    def step() -> StepResult:
        calls.append(1)
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return StepResult("server.docker", "unchanged", outcome)

    return step, calls


def _run(step):
    from prefect import flow

    states = []

    @flow(name="unit-step-retries")
    def one_step():
        states.append(step(return_state=True))  # kept aside: a failed state returned would fail the flow

    one_step(return_state=True)
    return states[0]


def _lost():
    return ConnectionLost("deploy@10.0.0.9:22: connection lost 3 times while running `docker info` (last: EOFError); "
                          "re-ran it 2 time(s) on a new connection, then gave up")


def test_a_lost_connection_is_retried_and_the_step_then_succeeds(prefect_server):
    step, calls = _step([_lost(), _lost(), "docker 24 running"])
    state = _run(step)
    assert state.is_completed() and state.message == "unchanged: docker 24 running"
    assert len(calls) == 3


def test_the_final_error_says_what_was_lost_and_how_many_times_the_step_was_retried(prefect_server):
    step, calls = _step([_lost(), _lost(), _lost()])
    state = _run(step)
    assert state.is_failed() and len(calls) == 3
    assert "connection lost 3 times while running `docker info` (last: EOFError); re-ran it 2 time(s)" in state.message
    assert state.message.endswith("[server.docker gave up after 3 attempts: retried 2 time(s)]")


def test_a_command_failure_is_not_retried(prefect_server):
    step, calls = _step([CommandFailed("deploy@10.0.0.9:22", "apt-get install -y docker.io", 100, "E: broken"), "x"])
    state = _run(step)
    assert state.is_failed() and len(calls) == 1
    assert "exited 100: E: broken" in state.message and "retried" not in state.message


def test_services_deploy_retries_transient_faults_only():
    from tasks import services
    from tasks.step import is_transient

    assert services.deploy.retries == services.DEPLOY_RETRIES == 2
    assert services.deploy.retry_condition_fn is is_transient


# --- services.deploy re-run after a drop, against a simulated server -------------------------------------------

class SimulatedServer:
    """The server's side of services.deploy: the ``current``/``previous`` links and the containers; the deploy
    command starts the release's containers; ``drop`` says which command loses the connection (once)."""

    def __init__(self, drop: str | None = None, healthy: bool = True):
        self.current, self.previous = OLD, None
        self.running_from, self.healthy = OLD, True
        self.new_healthy = healthy
        self.drop = drop
        self.log: list[str] = []
        self.layout = release.AppLayout("/opt/technicia", "technicia", "deploy")

    def read(self, command, *, sudo=False):
        return self.run(command, sudo=sudo)

    def run(self, command, *, sudo=False, as_user=None, stdin=None, check=True, timeout=600, rerun_on_drop=True):
        if command == release.services_fact_command(self.layout):
            kind = "facts"
            health = "healthy" if self.healthy else "unhealthy"
            out = render_sections({
                "current": (self.current or "", 0 if self.current else 1),
                "previous": (self.previous or "", 0 if self.previous else 1),
                "containers": ("\n".join(f"id{i} {svc} running {health} {self.running_from}"
                                         for i, svc in enumerate(("api", "frontend"))), 0)})
        elif command == release.deploy_command(self.layout, NEW, "./deploy.sh"):
            kind = "deploy"
            assert rerun_on_drop is False, "the deploy command is never re-run blindly on a new connection"
            self.running_from, self.healthy = NEW, self.new_healthy
            out = "deployed"
        elif command == release.switch_current(self.layout, NEW, OLD):
            kind = "switch"
            self.current, self.previous = NEW, OLD
            out = ""
        elif command == release.prune_releases(self.layout):
            kind, out = "prune", ""
        else:
            raise AssertionError(f"unexpected command {command!r}")
        self.log.append(kind)
        if kind == self.drop:
            self.drop = None
            # What HostConnection raises: after the command ran on the server, its exit status never came.
            raise ConnectionLost(f"deploy@10.0.0.9:22: connection lost while running `{kind}` (EOFError)")
        return SimpleNamespace(stdout=out, stderr="", exit_code=0, ok=True)


@pytest.fixture
def server(monkeypatch):
    from tasks import runtime

    def make(**kwargs):
        sim = SimulatedServer(**kwargs)
        env = SimpleNamespace(application=SimpleNamespace(directory="/opt/technicia", deploy_command="./deploy.sh"),
                              project="technicia", deploy_user="deploy")
        monkeypatch.setattr(runtime, "environment", lambda name, project="technicia": env)
        monkeypatch.setattr(runtime, "connect", lambda env, user=None: sim)
        return sim
    return make


def _deploy():
    from prefect import flow

    from tasks import services

    states = []

    @flow(name="unit-services-deploy")
    def deploy_once():
        states.append(services.deploy.with_options(retry_delay_seconds=0)(environment="test", version="v2.0.0",
                                                                           sha=SHA, return_state=True))

    deploy_once(return_state=True)
    return states[0]


def test_a_drop_during_the_deploy_command_is_retried_from_the_facts_and_converges(prefect_server, server):
    sim = server(drop="deploy")
    state = _deploy()
    assert state.is_completed(), state.message
    assert sim.log == ["facts", "deploy",  # attempt 1: the deploy command ran, its exit status was lost
                       "facts", "deploy", "facts", "switch", "prune"]  # attempt 2: facts first, then converge
    assert (sim.current, sim.previous) == (NEW, OLD)
    assert state.message == "changed: v2.0.0 deployed on attempt 2, 2 services healthy (previous: v1.0.0-aaaaaaaaaaaa)"
    assert state.result()["details"]["previous"] == OLD


def test_a_drop_after_the_switch_finds_the_release_deployed_and_finishes(prefect_server, server):
    sim = server(drop="switch")
    state = _deploy()
    assert state.is_completed(), state.message
    assert sim.log == ["facts", "deploy", "facts", "switch",  # the switch happened, its answer was lost
                       "facts", "prune"]  # the retry sees it done: no second deploy, no second switch
    assert state.message == ("changed: v2.0.0 deployed, 2 services healthy (found so on attempt 2, after the connection "
                             "was lost) (previous: v1.0.0-aaaaaaaaaaaa)")
    assert state.result()["details"]["previous"] == OLD


def test_an_unhealthy_release_is_not_retried(prefect_server, server):
    sim = server(healthy=False)
    state = _deploy()
    assert state.is_failed() and "deployed but not healthy" in state.message
    assert sim.log.count("deploy") == 1 and "switch" not in sim.log
