"""The sandbox's worker: flow runs it starts beat at the frequency the zombie detection is made for."""

from __future__ import annotations

import hashlib

from technicia_deploy.sandbox import orchestration
from technicia_deploy.sandbox.state import SandboxState


def test_the_worker_runs_flows_with_heartbeats_every_30_s(tmp_path, monkeypatch):
    from tasks import monitoring

    state = SandboxState(tmp_path)
    url = "http://127.0.0.1:1/api"
    # Deployments already registered from this deployments.yaml: up() only starts the worker.
    state.data["orchestration"] = {"deployments": hashlib.sha256(orchestration.DEPLOY_FILE.read_bytes()).hexdigest(),
                                   "url": url}
    started = {}
    monkeypatch.setattr(orchestration.processes, "start",
                        lambda state, name, argv, env, cwd: started.update(name=name, argv=argv, env=env) or 4242)
    orchestration.up(state, url, log=lambda line: None)
    assert started["name"] == orchestration.WORKER_DAEMON
    assert started["env"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == str(monitoring.HEARTBEAT_S) == "30"
    assert monitoring.ZOMBIE_AFTER_S > 2 * monitoring.HEARTBEAT_S
