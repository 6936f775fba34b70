"""The sandbox's own Prefect server made usable from its UI: deployments registered, a worker running.

Only for a Prefect server the sandbox manages itself (an external server is the
operator's to set up: docs/operations.md). Registration runs Prefect's own CLI
on the project's deployments.yaml, exactly as an operator would.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

from technicia_deploy.sandbox import processes
from technicia_deploy.sandbox.state import SandboxState

WORK_POOL = "technicia"
HEARTBEAT_S = 30  # tasks.monitoring.HEARTBEAT_S (not imported: the sandbox does not load the pipeline's tasks)
WORKER_DAEMON = "prefect-worker"
PROJECT_DIR = Path(__file__).resolve().parents[2]
DEPLOY_FILE = PROJECT_DIR / "deployments.yaml"


def _prefect(url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PREFECT_API_URL": url, "TECHNICIA_DEPLOY_DIR": str(PROJECT_DIR), "DO_NOT_TRACK": "1"}
    return subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", *args], cwd=PROJECT_DIR, env=env,
                          capture_output=True, text=True, timeout=600)


def up(state: SandboxState, url: str, log: Callable[[str], None]) -> None:
    """Register deployments.yaml (when it changed) and keep one process worker running on the pool."""
    if not DEPLOY_FILE.exists():
        log(f"no {DEPLOY_FILE.name} next to the package (not a source checkout): deployments not registered")
        return
    digest = hashlib.sha256(DEPLOY_FILE.read_bytes()).hexdigest()
    recorded = state.data.get("orchestration") or {}
    if recorded.get("deployments") != digest or recorded.get("url") != url:
        pool = _prefect(url, "work-pool", "create", WORK_POOL, "--type", "process", "--overwrite")
        if pool.returncode != 0:
            raise RuntimeError(f"work pool {WORK_POOL!r} not created: {pool.stderr.strip()[-500:]}")
        done = _prefect(url, "deploy", "--all", "--prefect-file", str(DEPLOY_FILE))
        if done.returncode != 0:
            raise RuntimeError(f"deployments.yaml not registered: {(done.stdout + done.stderr).strip()[-800:]}")
        state.data["orchestration"] = {"deployments": digest, "url": url}
        state.save()
        log(f"deployments registered from {DEPLOY_FILE.name} on pool {WORK_POOL}")
    env = {"PREFECT_API_URL": url, "TECHNICIA_DEPLOY_DIR": str(PROJECT_DIR), "DO_NOT_TRACK": "1",
           "PREFECT_HOME": str(state.path("prefect")),
           # Poll every 2 s (default 10): a resumed approval or a UI run starts without a long pause.
           "PREFECT_WORKER_QUERY_SECONDS": "2",
           # Flow runs beat every 30 s (Prefect's default: 180 s): the project's zombie detection
           # (tasks/monitoring.py) marks a run Crashed when its beats stop for 90 s. deployments.yaml sets
           # the same for every run it starts; this covers the worker's own process as well.
           "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S)}
    pid = processes.start(state, WORKER_DAEMON, [sys.executable, "-m", "prefect", "worker", "start", "--pool", WORK_POOL],
                          env=env, cwd=PROJECT_DIR)
    log(f"worker on pool {WORK_POOL}: pid {pid} (log {state.logs / (WORKER_DAEMON + '.log')})")


def down(state: SandboxState) -> bool:
    state.data.pop("orchestration", None)
    return processes.stop(state, WORKER_DAEMON)


def status(state: SandboxState) -> list[str]:
    if not state.data.get("orchestration"):
        return []
    alive = "running" if processes.pid_of(state, WORKER_DAEMON) else "STOPPED"
    return [f"worker: pool {WORK_POOL} ({alive}); deployments from {DEPLOY_FILE.name} registered"]
