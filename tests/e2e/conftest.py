"""The e2e session's sandbox: one local OVH world for every e2e test, brought up once and removed at the end."""

from __future__ import annotations

import shutil
import subprocess

import pytest


def _docker_ready() -> str | None:
    if shutil.which("docker") is None:
        return "no `docker` command (apt-get install docker.io, or make bootstrap)"
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        return "the Docker engine does not answer (start dockerd, or make bootstrap)"
    return None


@pytest.fixture(scope="session")
def sandbox(prefect_server, tmp_path_factory):
    """A SandboxState whose world is up: 3 VPSes, OVH API + DNS, pebble, cloud emulators, the sample app,
    environments.yaml written and applied to the session's Prefect server. Torn down after the session."""
    problem = _docker_ready()
    if problem:
        pytest.fail(f"e2e tests need a Docker engine: {problem}")
    from technicia_deploy.sandbox import world
    from technicia_deploy.sandbox.state import SandboxState

    state = SandboxState.load(tmp_path_factory.mktemp("sandbox"))
    try:
        world.up(state)
        yield state
    finally:
        world.down(state)
