"""deployments.yaml registers for real against a Prefect server, with what the operators rely on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def prefect(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TECHNICIA_DEPLOY_DIR": str(REPO)}
    return subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


_registered: dict[str, dict] = {}


def registered_deployments(prefect_server: str) -> dict:
    """`prefect deploy --all` of deployments.yaml against the test server, once per server: {(flow, name): deployment}."""
    if prefect_server not in _registered:
        pool = prefect("work-pool", "create", "technicia", "--type", "process")
        assert pool.returncode == 0 or "already exists" in pool.stdout + pool.stderr, pool.stdout + pool.stderr
        done = prefect("deploy", "--all", "--prefect-file", "deployments.yaml")
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

        deployments = httpx.post(f"{prefect_server}/deployments/filter", json={}, timeout=30).json()
        flows = {f["id"]: f["name"] for f in httpx.post(f"{prefect_server}/flows/filter", json={}, timeout=30).json()}
        by_name = {(flows[d["flow_id"]], d["name"]): d for d in deployments}
        _registered[prefect_server] = by_name
    return _registered[prefect_server]


def test_deploy_file_registers_every_deployment(prefect_server):
    by_name = registered_deployments(prefect_server)

    for env in ("test", "staging"):
        d = by_name[("deploy-environment", env)]
        assert d["parameters"]["environment"] == env
        assert f"env:{env}" in d["tags"]
        assert d["work_pool_name"] == "technicia"
        assert d["pull_steps"] == [{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}]
        # The version is the operator's choice: required, not defaulted.
        assert "version" in d["parameter_openapi_schema"]["required"]
    # Production is deployed only by a promotion: no deployment deploys it directly.
    assert ("deploy-environment", "production") not in by_name
    promote = by_name[("promote-release", "promote")]
    assert promote["parameter_openapi_schema"]["required"] == ["version"]
    for env in ("test", "staging", "production"):
        assert by_name[("rollback-environment", f"rollback-{env}")]["parameters"]["environment"] == env

    # The run form explains every parameter (Prefect reads the flows' docstring Args:), and says which destroys data.
    for (flow, name), d in by_name.items():
        properties = d["parameter_openapi_schema"]["properties"]
        undescribed = [p for p, schema in properties.items() if not schema.get("description")]
        assert not undescribed, (flow, name, undescribed)
    rebuild = by_name[("deploy-environment", "test")]["parameter_openapi_schema"]["properties"]["rebuild_server"]
    assert "DESTRUCTIVE" in rebuild["description"]

    # Every run of every deployment beats at the frequency the zombie detection's window is made for.
    from tasks.monitoring import HEARTBEAT_S

    for key, d in by_name.items():
        if "technicia" in d["tags"]:  # this file's (other tests may have made deployments of their own)
            assert d["job_variables"]["env"] == {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S)}, key

    smoke = by_name[("smoke-api-keys", "daily")]
    assert smoke["parameters"] == {"environment": "all", "message": False}
    assert [(s["schedule"]["cron"], s["schedule"]["timezone"], s["active"]) for s in smoke["schedules"]] == [
        ("0 6 * * *", "Europe/Paris", True)]
    # The tracking document's Maintenance section finds these runs by tag.
    assert {"maintenance", "flow:smoke-api-keys"} <= set(smoke["tags"])

