"""The e2e session's sandbox: one local OVH world for every e2e test, brought up once and removed at the end.

It runs exactly as `make demo` does: with a Prefect server of its own (UI and server services on, so a
suspended promotion, its approval timeout and a crashed lock holder's lease behave as in production),
deployments.yaml registered and a process worker on the pool. Tests in this process talk to that server.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.prefect_workers import rebind_prefect_workers


def _docker_ready() -> str | None:
    if shutil.which("docker") is None:
        return "no `docker` command (apt-get install docker.io, or make bootstrap)"
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        return "the Docker engine does not answer (start dockerd, or make bootstrap)"
    return None


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory):
    """A SandboxState whose world is up: 3 VPSes, OVH API + DNS, pebble, cloud emulators, the sample app,
    its Prefect server and worker, environments.yaml written and applied. Torn down after the session."""
    problem = _docker_ready()
    if problem:
        pytest.fail(f"e2e tests need a Docker engine: {problem}")
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from technicia_deploy.sandbox import world
    from technicia_deploy.sandbox.state import SandboxState

    state = SandboxState.load(tmp_path_factory.mktemp("sandbox"))
    outer = os.environ.pop("PREFECT_API_URL", None)  # the sandbox must start its own server, not use a harness's
    try:
        world.up(state)
        url = state.data["prefect"]["url"]
        os.environ["PREFECT_API_URL"] = url  # subprocesses (the CLI) reach the same server
        with temporary_settings(updates={PREFECT_API_URL: url}):
            rebind_prefect_workers()
            yield state
            rebind_prefect_workers()
    finally:
        world.down(state)
        os.environ.pop("PREFECT_API_URL", None)
        if outer:
            os.environ["PREFECT_API_URL"] = outer
