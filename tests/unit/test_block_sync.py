"""`technicia-deploy blocks apply`: creates the blocks, re-applying changes nothing,
a bad file changes nothing, secrets stay out of the output and the API's ordinary reads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.unit.config_data import canary_values


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "technicia-deploy"), *args],
        capture_output=True, text=True, env=os.environ.copy(), timeout=120,
    )


def block_documents(api_url: str) -> list[dict]:
    response = httpx.post(f"{api_url}/block_documents/filter", json={"include_secrets": False}, timeout=30)
    response.raise_for_status()
    return [d for d in response.json() if d["name"].startswith("blocktest-")]


@pytest.fixture
def example_data(example_data):
    # Blocks of our own: the session's Prefect server is shared with tests that use 'technicia-*'.
    return {**example_data, "name": "blocktest"}


def test_apply_then_reapply_then_invalid(prefect_server, example_data, write_config, secret_home):
    path = write_config(example_data)

    first = run_cli("blocks", "apply", str(path))
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    # One OVH block, then four per environment.
    assert sum(line.startswith("created") for line in lines) == 13
    assert "blocktest-production-ssh" in first.stdout

    second = run_cli("blocks", "apply", str(path))
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines()[-1] == "13 blocks, 0 changed"
    before = {d["name"]: d["updated"] for d in block_documents(prefect_server)}

    # A changed secret updates exactly the block that holds it.
    os.environ["ANTHROPIC_API_KEY_STAGING"] = "canary-anthropic-staging-rotated-ee05"
    try:
        third = run_cli("blocks", "apply", str(path))
    finally:
        os.environ.pop("ANTHROPIC_API_KEY_STAGING")
    changed = [line for line in third.stdout.splitlines() if line.startswith("changed")]
    assert changed == ["changed   technicia-cloud-api-keys/blocktest-staging-api-keys"]

    # Invalid files: each names the problem, and no block is touched.
    bad_cases = []
    unknown = {**example_data, "environments": {**example_data["environments"]}}
    unknown["environments"]["test"] = {**example_data["environments"]["test"], "colour": "blue"}
    bad_cases.append((unknown, "environments.test.colour: unknown key"))
    missing = {**example_data, "environments": {k: v for k, v in example_data["environments"].items() if k != "production"}}
    bad_cases.append((missing, "environments: missing environment(s): production"))
    overlap = {**example_data, "environments": {**example_data["environments"]}}
    fw = {**example_data["environments"]["staging"]["firewall"]}
    fw["public"] = fw["public"] + [{"port": 6333, "service": "Qdrant API"}]
    overlap["environments"]["staging"] = {**example_data["environments"]["staging"], "firewall": fw}
    bad_cases.append((overlap, "environments.staging.firewall: port 6333/tcp is both public and internal"))
    for data, expected in bad_cases:
        bad = write_config(data, "bad.yaml")
        result = run_cli("blocks", "apply", str(bad))
        assert result.returncode == 2
        assert f"{bad}: {expected}" in result.stderr

    # Unresolvable secret variable (env var unset: ANTHROPIC_API_KEY_STAGING was popped above).
    result = run_cli("blocks", "apply", str(path))
    assert result.returncode == 2
    assert "environments.staging.api_keys.anthropic.api_key: environment variable ANTHROPIC_API_KEY_STAGING is not set" in result.stderr

    after = {d["name"]: d["updated"] for d in block_documents(prefect_server)}
    assert set(after) == set(before)
    changed_names = {n for n in after if after[n] != before[n]}
    assert changed_names == {"blocktest-staging-api-keys"}  # only the rotation above

    # Secrets: never in any CLI output, nor in the API's ordinary reads.
    everything = first.stdout + first.stderr + second.stdout + third.stdout + result.stderr
    documents = httpx.post(f"{prefect_server}/block_documents/filter", json={}, timeout=30).text
    for value in canary_values() + ["canary-anthropic-staging-rotated-ee05"]:
        assert value.strip() not in everything
        assert value.strip() not in documents


def test_blocks_load_back_as_the_config(prefect_server, example_data, write_config, secret_home):
    from blocks import TechniciaEnvironment
    from technicia_deploy.block_sync import apply

    apply(write_config(example_data))
    env = TechniciaEnvironment.load("blocktest-production")
    assert env.environment().server.model == "VPS-SSD-4"
    assert env.app().deploy_command == "./deploy.sh"
    assert env.ssh().private_key.get_secret_value().startswith("canary-ssh-private-key-production")
    assert env.api_keys().anthropic_api_key.get_secret_value() == "canary-anthropic-production-bb02"
    assert env.alerts().urls() == {"ops-mail": "mailto://canary-alert-5e1a@exemple.fr"}


def test_block_register_module(prefect_server):
    result = subprocess.run(
        [sys.executable, "-m", "prefect", "block", "register", "-m", "blocks"],
        capture_output=True, text=True, env=os.environ.copy(), timeout=120,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    types = httpx.post(f"{prefect_server}/block_types/filter", json={}, timeout=30).json()
    names = {t["name"] for t in types}
    assert {"TechnicIA Environment", "TechnicIA SSH Access", "TechnicIA OVH Credentials",
            "TechnicIA Cloud API Keys", "TechnicIA Alert Destinations"} <= names


@pytest.mark.parametrize("command", [
    [], ["blocks"], ["blocks", "apply"], ["blocks", "check"],
])
def test_help_for_every_command(command):
    result = run_cli(*command, "--help")
    assert result.returncode == 0
    assert "usage: technicia-deploy" in result.stdout
