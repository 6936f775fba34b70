"""The sandbox's PostgreSQL and the postgres orchestrator's clients, without starting anything."""

from __future__ import annotations

import os
import pwd
import tempfile
from pathlib import Path

import pytest

from technicia_deploy.sandbox import orchestration, postgres
from technicia_deploy.sandbox.state import SandboxState


def test_a_directory_the_cluster_user_cannot_reach_is_refused_naming_it():
    with tempfile.TemporaryDirectory(prefix="technicia-test-pg-") as top:  # /tmp: searchable by all, unlike tmp_path
        os.chmod(top, 0o755)
        private = Path(top) / "private"
        (private / "sandbox" / "postgres").mkdir(parents=True)
        private.chmod(0o700)
        nobody = pwd.getpwnam("nobody")
        with pytest.raises(postgres.PostgresUnavailable) as refused:
            postgres._check_reachable(private / "sandbox" / "postgres", nobody)
        assert f"{private} is mode 700" in str(refused.value) and "--dir" in str(refused.value)
        private.chmod(0o711)
        postgres._check_reachable(private / "sandbox" / "postgres", nobody)


def test_the_connection_url_is_asyncpg_on_loopback_with_the_generated_password(tmp_path):
    state = SandboxState(tmp_path)
    postgres.home(state).mkdir()
    postgres.password_file(state).write_text("p4ss\n")
    state.data["postgres"] = {"host": "127.0.0.1", "port": 5999}
    assert postgres.connection_url(state) == "postgresql+asyncpg://prefect:p4ss@127.0.0.1:5999/prefect"


def test_the_auth_string_is_generated_once_mode_0600(tmp_path):
    state = SandboxState(tmp_path)
    path = orchestration.ensure_auth_string(state)
    first = path.read_text()
    assert os.stat(path).st_mode & 0o777 == 0o600 and len(first.strip()) >= 32
    assert orchestration.ensure_auth_string(state).read_text() == first
    assert orchestration.client_env(state) == {}  # the sqlite server has no auth string
    state.data["prefect"] = {"url": "http://127.0.0.1:1/api", "managed": True, "orchestrator": "postgres",
                             "auth_string_file": str(path)}
    assert orchestration.client_env(state) == {"PREFECT_API_AUTH_STRING": first.strip()}
    assert orchestration.worker_daemons(state) == ["prefect-worker", "prefect-worker-2"]


def test_the_cli_takes_the_sandboxs_auth_string_for_its_server_only(tmp_path, monkeypatch):
    from technicia_deploy.cli import server

    state = SandboxState(tmp_path)
    path = orchestration.ensure_auth_string(state)
    url = "http://127.0.0.1:1/api"
    state.data["prefect"] = {"url": url, "managed": True, "orchestrator": "postgres", "auth_string_file": str(path)}
    state.save()
    monkeypatch.setenv("TECHNICIA_SANDBOX_DIR", str(tmp_path))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("PREFECT_API_AUTH_STRING", raising=False)
    assert server.use() == url and os.environ["PREFECT_API_AUTH_STRING"] == path.read_text().strip()
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "the-operators-own")  # an explicit one wins
    server.use()
    assert os.environ["PREFECT_API_AUTH_STRING"] == "the-operators-own"
    monkeypatch.delenv("PREFECT_API_AUTH_STRING")
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:2/api")  # another server: nothing of the sandbox's
    server.use()
    assert "PREFECT_API_AUTH_STRING" not in os.environ


def test_the_sqlite_worker_is_started_as_before(tmp_path, monkeypatch):
    state = SandboxState(tmp_path)
    started = []
    monkeypatch.setattr(orchestration.processes, "start",
                        lambda state, name, argv, env, cwd: started.append((name, argv, env)) or 1)
    orchestration.workers_up(state, "http://127.0.0.1:1/api", log=lambda line: None)
    ((name, argv, env),) = started
    assert name == "prefect-worker" and argv[-4:] == ["worker", "start", "--pool", "technicia"]
    assert set(env) == {"PREFECT_API_URL", "TECHNICIA_DEPLOY_DIR", "DO_NOT_TRACK", "PREFECT_HOME",
                        "PREFECT_WORKER_QUERY_SECONDS", "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"}
