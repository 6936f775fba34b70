"""The files an operator runs on the orchestrator host (deploy/) set what the sandbox's postgres orchestrator sets.

`sandbox up --orchestrator postgres` is the test bed of deploy/systemd + deploy/orchestrator: a setting added to
one and not the other would make the tests prove a setup nobody runs.
"""

from __future__ import annotations

import re
from pathlib import Path

from technicia_deploy.sandbox import orchestration

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
SERVER_UNIT = DEPLOY / "systemd" / "technicia-prefect-server.service"
WORKER_UNIT = DEPLOY / "systemd" / "technicia-prefect-worker@.service"
SERVER_ENV = DEPLOY / "orchestrator" / "prefect-server.env.example"
WORKER_ENV = DEPLOY / "orchestrator" / "prefect-worker.env.example"
DOC = DEPLOY.parent / "docs" / "orchestrator.md"


def _unit(path: Path) -> tuple[dict[str, str], str, list[str]]:
    """(Environment= settings, ExecStart, EnvironmentFile paths) of a systemd unit."""
    env, exec_start, files = {}, "", []
    for line in path.read_text().splitlines():
        if line.startswith("Environment="):
            name, _, value = line.removeprefix("Environment=").partition("=")
            env[name] = value
        elif line.startswith("ExecStart="):
            exec_start = line.removeprefix("ExecStart=")
        elif line.startswith("EnvironmentFile="):
            files.append(line.removeprefix("EnvironmentFile="))
    return env, exec_start, files


def _env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))


def test_the_server_unit_sets_what_the_sandbox_server_gets():
    sandbox = orchestration.server_env("/home", "http://127.0.0.1:1/api", "postgresql+asyncpg://u:p@h:1/d", "auth")
    unit, exec_start, files = _unit(SERVER_UNIT)
    example = _env_file(SERVER_ENV)
    assert files == ["/etc/technicia-deploy/prefect-server.env"]
    assert set(unit) | set(example) == set(sandbox)
    for name in ("DO_NOT_TRACK", "PREFECT_SERVER_ANALYTICS_ENABLED"):
        assert unit[name] == sandbox[name]
    # The secrets come from the 0600 file, never the unit (readable by all) nor the command line.
    assert {"PREFECT_API_DATABASE_CONNECTION_URL", "PREFECT_SERVER_API_AUTH_STRING"} <= set(example) - set(unit)
    assert example["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    assert sandbox["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    assert re.search(rf" server start --host {re.escape(orchestration.SERVER_HOST)} ", exec_start)


def test_the_worker_unit_sets_what_the_sandbox_workers_get():
    sandbox = orchestration.worker_env("http://127.0.0.1:1/api", "auth")
    unit, exec_start, files = _unit(WORKER_UNIT)
    example = _env_file(WORKER_ENV)
    assert files == ["/etc/technicia-deploy/prefect-worker.env"]
    named = set(unit) | set(example)
    assert set(sandbox) <= named
    # Only the host's own paths and the limit's variable are the unit's alone.
    assert named - set(sandbox) == {"PREFECT_HOME", "WORKER_LIMIT"}
    assert unit["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == sandbox["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "30"
    assert unit["DO_NOT_TRACK"] == sandbox["DO_NOT_TRACK"]
    assert {"PREFECT_API_URL", "PREFECT_API_AUTH_STRING"} <= set(example) - set(unit)
    assert f"worker start --pool {orchestration.WORK_POOL} " in exec_start
    assert "--limit ${WORKER_LIMIT}" in exec_start and unit["WORKER_LIMIT"] == str(orchestration.WORKER_LIMIT)


def test_the_guide_names_every_setting_and_file():
    text = DOC.read_text()
    names = set(_unit(SERVER_UNIT)[0]) | set(_env_file(SERVER_ENV)) | set(_unit(WORKER_UNIT)[0]) | set(_env_file(WORKER_ENV))
    assert not [n for n in sorted(names) if n not in text]
    for path in (SERVER_UNIT, WORKER_UNIT, SERVER_ENV, WORKER_ENV):
        assert str(path.relative_to(DEPLOY.parent)) in text
