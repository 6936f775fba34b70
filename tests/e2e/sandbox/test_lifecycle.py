"""`sandbox up` twice is harmless, and `sandbox down` leaves nothing of the sandbox behind (and nothing else removed)."""

from __future__ import annotations

import subprocess

import pytest

from technicia_deploy.sandbox import acme, processes, vps, world
from technicia_deploy.sandbox.docker_engine import docker, names_with_prefix
from technicia_deploy.sandbox.state import SandboxState

pytestmark = pytest.mark.e2e


def container_ids(state: SandboxState) -> dict[str, str]:
    return {env: docker("inspect", "-f", "{{.Id}}", vps.container_name(state, env)).strip() for env in vps.ENVIRONMENTS}


def test_up_is_idempotent_and_down_removes_everything(tmp_path):
    """A small sandbox of its own (network, VPSes, pebble: seconds with the cached image)."""
    from technicia_deploy.cli import main

    bystander = f"technicia-bystander-{tmp_path.name}"[:60]
    docker("volume", "create", bystander)
    state = SandboxState.load(tmp_path / "sbx")
    try:
        vps.up(state)
        acme.up(state)
        first, host_keys = container_ids(state), {e: v["host_key"] for e, v in state.data["vps"].items()}
        vps.up(state)
        acme.up(state)
        assert container_ids(state) == first  # nothing recreated
        assert {e: v["host_key"] for e, v in state.data["vps"].items()} == host_keys
        assert names_with_prefix("container", state.prefix) and names_with_prefix("volume", state.prefix)

        assert main(["sandbox", "down", "--dir", str(state.dir)]) == 0
        for kind in ("container", "network", "volume"):
            assert names_with_prefix(kind, state.prefix) == [], kind
        assert processes.pid_of(state, acme.DAEMON) is None
        # Nothing that is not the sandbox's was touched.
        assert subprocess.run(["docker", "volume", "inspect", bystander], capture_output=True).returncode == 0
        # The host keys stay: the next `up` gives the VPSes the same identity.
        assert vps.host_key_path(state, "test").is_file()
    finally:
        world.down(state)
        docker("volume", "rm", bystander, check=False)


def test_up_again_on_the_session_sandbox_changes_nothing(sandbox):
    """The whole world: a second `up` recreates no VPS, rewrites the same environments.yaml, saves no block."""
    ids = container_ids(sandbox)
    written = world.environments_file(sandbox).read_text()
    world.up(sandbox)
    assert container_ids(sandbox) == ids
    assert world.environments_file(sandbox).read_text() == written
    from technicia_deploy.block_sync import apply

    assert {change.action for change in apply(world.environments_file(sandbox))} == {"unchanged"}
