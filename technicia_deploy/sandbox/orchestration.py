"""The sandbox's own Prefect server made usable from its UI: deployments registered, workers running.

Only for a Prefect server the sandbox manages itself (an external server is the
operator's to set up: docs/operations.md). Registration runs Prefect's own CLI
on the project's deployments.yaml, exactly as an operator would.

Two orchestrators (``sandbox up --orchestrator``): ``sqlite`` (the default: Prefect's embedded database, one
worker, no API auth, as `make demo` has always run) and ``postgres`` (the setup of docs/orchestrator.md: the
server on the sandbox's PostgreSQL, its API protected by an auth string, two workers). The settings each
process gets come from the ``*_env`` functions below; deploy/systemd and deploy/orchestrator name the same
ones (tests/unit/sandbox/test_orchestrator_files.py checks it).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Callable

from technicia_deploy.sandbox import processes
from technicia_deploy.sandbox.state import SandboxState

WORK_POOL = "technicia"
HEARTBEAT_S = 30  # tasks.monitoring.HEARTBEAT_S (not imported: the sandbox does not load the pipeline's tasks)
WORKER_DAEMON = "prefect-worker"
# The postgres orchestrator's workers: as many as ORCHESTRATOR_WORKERS, each taking at most WORKER_LIMIT flow runs
# at once (a worker host's capacity; more runs wait in the pool for a free worker).
ORCHESTRATOR_WORKERS = 2
WORKER_LIMIT = 4
AUTH_STRING_FILE = ("keys", "prefect-api-auth-string")
PROJECT_DIR = Path(__file__).resolve().parents[2]
DEPLOY_FILE = PROJECT_DIR / "deployments.yaml"


def orchestrator_of(state: SandboxState) -> str:
    """``postgres`` or ``sqlite``: what the sandbox's own Prefect server runs on (sqlite when it has none)."""
    return (state.data.get("prefect") or {}).get("orchestrator", "sqlite")


def auth_string_file(state: SandboxState) -> Path:
    return state.path(*AUTH_STRING_FILE)


def ensure_auth_string(state: SandboxState) -> Path:
    """The API auth string, generated once (mode 0600). Never printed: processes get it in their environment."""
    path = auth_string_file(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
    os.chmod(path, 0o600)
    return path


def client_env(state: SandboxState) -> dict[str, str]:
    """What every client of the sandbox's server needs besides PREFECT_API_URL: the auth string, if it has one."""
    prefect = state.data.get("prefect") or {}
    if not prefect.get("auth_string_file"):
        return {}
    return {"PREFECT_API_AUTH_STRING": Path(prefect["auth_string_file"]).read_text().strip()}


SERVER_HOST = "127.0.0.1"  # `prefect server start --host`: remote workers and browsers come through a proxy or tunnel


def server_env(home: str, ui_api_url: str, database_url: str, auth_string: str) -> dict[str, str]:
    """The settings of a Prefect server that is the orchestrator of docs/orchestrator.md (its address is
    ``--host SERVER_HOST``). The database URL and the auth string are secrets: environment only, never a
    command line or a log."""
    return {"PREFECT_HOME": home,
            "PREFECT_UI_API_URL": ui_api_url,  # or the UI looks for the API on port 4200
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_API_DATABASE_CONNECTION_URL": database_url,
            "PREFECT_SERVER_API_AUTH_STRING": auth_string}


def worker_env(url: str, auth_string: str | None = None) -> dict[str, str]:
    """A worker's settings: where the server is and its auth string, where the project is, heartbeats."""
    env = {"PREFECT_API_URL": url, "TECHNICIA_DEPLOY_DIR": str(PROJECT_DIR), "DO_NOT_TRACK": "1",
           # Flow runs beat every 30 s (Prefect's default: 180 s): the project's zombie detection
           # (tasks/monitoring.py) marks a run Crashed when its beats stop for 150 s. deployments.yaml sets
           # the same for every run it starts; this covers the worker's own process as well.
           "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S)}
    if auth_string is not None:
        env["PREFECT_API_AUTH_STRING"] = auth_string
    return env


def _prefect(url: str, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PREFECT_API_URL": url, "TECHNICIA_DEPLOY_DIR": str(PROJECT_DIR), "DO_NOT_TRACK": "1",
           **(extra_env or {})}
    return subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", *args], cwd=PROJECT_DIR, env=env,
                          capture_output=True, text=True, timeout=600)


def up(state: SandboxState, url: str, log: Callable[[str], None]) -> None:
    """Register deployments.yaml (when it changed) and keep the process workers running on the pool."""
    if not DEPLOY_FILE.exists():
        log(f"no {DEPLOY_FILE.name} next to the package (not a source checkout): deployments not registered")
        return
    digest = hashlib.sha256(DEPLOY_FILE.read_bytes()).hexdigest()
    recorded = state.data.get("orchestration") or {}
    orchestrator = orchestrator_of(state)
    if (recorded.get("deployments") != digest or recorded.get("url") != url
            or recorded.get("orchestrator", "sqlite") != orchestrator):
        ensure_pool(state, url)
        done = _prefect(url, "deploy", "--all", "--prefect-file", str(DEPLOY_FILE), extra_env=client_env(state))
        if done.returncode != 0:
            raise RuntimeError(f"deployments.yaml not registered: {(done.stdout + done.stderr).strip()[-800:]}")
        state.data["orchestration"] = {"deployments": digest, "url": url,
                                       **({"orchestrator": orchestrator} if orchestrator != "sqlite" else {})}
        state.save()
        log(f"deployments registered from {DEPLOY_FILE.name} on pool {WORK_POOL}")
    workers_up(state, url, log)


def ensure_pool(state: SandboxState, url: str) -> None:
    pool = _prefect(url, "work-pool", "create", WORK_POOL, "--type", "process", "--overwrite", extra_env=client_env(state))
    if pool.returncode != 0:
        raise RuntimeError(f"work pool {WORK_POOL!r} not created: {pool.stderr.strip()[-500:]}")


def worker_daemons(state: SandboxState) -> list[str]:
    """The workers' daemon names: one on sqlite, ORCHESTRATOR_WORKERS on postgres."""
    if orchestrator_of(state) != "postgres":
        return [WORKER_DAEMON]
    return [WORKER_DAEMON] + [f"{WORKER_DAEMON}-{n}" for n in range(2, ORCHESTRATOR_WORKERS + 1)]


def workers_up(state: SandboxState, url: str, log: Callable[[str], None]) -> None:
    """Start the workers that are not running (the pool must exist)."""
    postgres = orchestrator_of(state) == "postgres"
    env = {**worker_env(url, client_env(state).get("PREFECT_API_AUTH_STRING")),
           "PREFECT_HOME": str(state.path("prefect")),
           # Poll every 2 s (default 10): a resumed approval or a UI run starts without a long pause.
           "PREFECT_WORKER_QUERY_SECONDS": "2"}
    for n, daemon in enumerate(worker_daemons(state), start=1):
        argv = [sys.executable, "-m", "prefect", "worker", "start", "--pool", WORK_POOL]
        if postgres:
            argv += ["--name", f"sandbox-worker-{n}", "--limit", str(WORKER_LIMIT)]
        pid = processes.start(state, daemon, argv, env=env, cwd=PROJECT_DIR)
        log(f"worker on pool {WORK_POOL}: pid {pid} (log {state.logs / (daemon + '.log')})")


def stop_workers(state: SandboxState) -> bool:
    stopped = False
    for daemon in [WORKER_DAEMON] + [f"{WORKER_DAEMON}-{n}" for n in range(2, ORCHESTRATOR_WORKERS + 1)]:
        stopped = processes.stop(state, daemon) or stopped
    return stopped


def down(state: SandboxState) -> bool:
    state.data.pop("orchestration", None)
    return stop_workers(state)


def status(state: SandboxState) -> list[str]:
    daemons = worker_daemons(state)
    if not state.data.get("orchestration"):
        if orchestrator_of(state) != "postgres" or not any(processes.pid_of(state, d) for d in daemons):
            return []
        # Only the orchestrator (world.orchestrator_up): workers, no deployments.yaml.
        alive = ", ".join(f"{d} {'running' if processes.pid_of(state, d) else 'STOPPED'}" for d in daemons)
        return [f"workers: {len(daemons)} on pool {WORK_POOL} ({alive}; at most {WORKER_LIMIT} runs each)"]
    if len(daemons) == 1:
        alive = "running" if processes.pid_of(state, WORKER_DAEMON) else "STOPPED"
        return [f"worker: pool {WORK_POOL} ({alive}); deployments from {DEPLOY_FILE.name} registered"]
    alive = ", ".join(f"{d} {'running' if processes.pid_of(state, d) else 'STOPPED'}" for d in daemons)
    return [f"workers: {len(daemons)} on pool {WORK_POOL} ({alive}; at most {WORKER_LIMIT} runs each); "
            f"deployments from {DEPLOY_FILE.name} registered"]
