"""The orchestrator of docs/orchestrator.md, as `sandbox up --orchestrator postgres` runs it: PostgreSQL (Debian's
package) started by the project's code, the Prefect server on it with its API behind an auth string, two process
workers on the `technicia` pool.

Its own sandbox state directory, and only the orchestrator's pieces (no VPS): the flow runs are the VPS-free probe
flow (technicia_deploy/sandbox/probe_flow.py), which writes one ledger line per execution.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.prefect_workers import rebind_prefect_workers

pytestmark = pytest.mark.e2e

PROJECT_DIR = Path(__file__).resolve().parents[2]
BATCH = 12  # queued runs of the probe; workers take at most WORKER_LIMIT (4) each, so both are busy


def _searchable_by_others(directory: Path) -> None:
    """PostgreSQL runs as Debian's `postgres` user when the tests run as root: pytest's temporary directories
    (``/tmp/pytest-of-root`` and below) are 0700; let others search (not list) them, up to the first directory
    that others could already search (``/tmp``)."""
    for path in [directory, *directory.parents]:
        mode = path.stat().st_mode
        if path != directory and mode & 0o001:
            break
        path.chmod(mode | 0o011)


@pytest.fixture(scope="module")
def orchestrator(tmp_path_factory):
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    from technicia_deploy.sandbox import orchestration, world
    from technicia_deploy.sandbox.probe_flow import deploy_probe
    from technicia_deploy.sandbox.state import SandboxState

    directory = tmp_path_factory.mktemp("orchestrator")
    _searchable_by_others(directory)
    state = SandboxState.load(directory)
    outer = os.environ.pop("PREFECT_API_URL", None)  # the session sandbox's server, if one runs: not ours
    try:
        url = world.orchestrator_up(state, orchestrator="postgres")
        auth = orchestration.auth_string_file(state).read_text().strip()
        with temporary_settings(updates={PREFECT_API_URL: url, PREFECT_API_AUTH_STRING: auth}):
            rebind_prefect_workers()
            deploy_probe()
            yield state, url, auth
            rebind_prefect_workers()
    finally:
        world.orchestrator_down(state)
        if outer:
            os.environ["PREFECT_API_URL"] = outer


def _basic(auth: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}


def test_postgres_is_the_projects_own_unprivileged_cluster_and_up_again_changes_nothing(orchestrator):
    from technicia_deploy.sandbox import postgres, world

    state, url, _ = orchestrator
    info = state.data["postgres"]
    assert Path(info["data_dir"]).is_relative_to(state.dir)
    assert info["host"] == "127.0.0.1"
    assert os.stat(info["password_file"]).st_mode & 0o777 == 0o600
    data = Path(info["data_dir"])
    postmaster = (data / "postmaster.pid").read_text().split()[0]
    if os.geteuid() == 0:  # PostgreSQL refuses root: the cluster is Debian's postgres user's
        assert info["os_user"] == "postgres" and data.stat().st_uid != 0
    assert postgres.up(state)["port"] == info["port"]
    assert world.prefect_up(state, lambda line: None) == url
    assert (data / "postmaster.pid").read_text().split()[0] == postmaster  # not restarted
    text = "\n".join(world.status(state))
    assert "orchestrator: postgres" in text and f"{info['host']}:{info['port']} (running)" in text
    assert "workers: 2 on pool technicia" in text and "STOPPED" not in text


def test_the_api_refuses_requests_without_the_auth_string(orchestrator):
    _, url, auth = orchestrator
    with httpx.Client(timeout=10) as http:
        assert http.get(f"{url}/health").status_code == 200  # probes stay open (Prefect's choice), no data
        for headers in ({}, _basic("wrong-" + auth), {"Authorization": f"Bearer {auth}"}):
            for method, path in (("POST", "/flow_runs/filter"), ("POST", "/block_documents/filter"),
                                 ("GET", "/work_pools/technicia"), ("POST", "/deployments/filter")):
                answer = http.request(method, f"{url}{path}", json={} if method == "POST" else None, headers=headers)
                assert answer.status_code == 401, (method, path, answer.status_code)
        assert http.post(f"{url}/flow_runs/filter", json={}, headers=_basic(auth)).status_code == 200
        assert http.get(f"{url}/work_pools/technicia", headers=_basic(auth)).status_code == 200


def test_block_secrets_are_not_readable_without_the_auth_string(orchestrator):
    from prefect.blocks.system import Secret

    _, url, auth = orchestrator
    value = "s3cret-" + uuid.uuid4().hex
    block_id = Secret(value=value).save(f"orchestrator-test-{uuid.uuid4().hex[:8]}")
    with httpx.Client(timeout=10) as http:
        for headers in ({}, _basic("wrong")):
            one = http.get(f"{url}/block_documents/{block_id}", params={"include_secrets": "true"}, headers=headers)
            many = http.post(f"{url}/block_documents/filter", json={"include_secrets": True}, headers=headers)
            assert (one.status_code, many.status_code) == (401, 401)
            assert value not in one.text + many.text
        # With it, the secret is there in plain text: the auth string is what protects it.
        one = http.get(f"{url}/block_documents/{block_id}", params={"include_secrets": "true"}, headers=_basic(auth))
        assert one.status_code == 200 and value in one.text


def _wait_final(client, ids, timeout: float) -> list:
    deadline = time.monotonic() + timeout
    while True:
        runs = [client.read_flow_run(i) for i in ids]
        if all(r.state is not None and r.state.is_final() for r in runs):
            return runs
        assert time.monotonic() < deadline, Counter(r.state.name for r in runs)
        time.sleep(1)


def _logs(client, run_ids) -> dict:
    """Each run's log lines as the server has them: {run id: {(log id, message)}}."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    return {i: {(str(log.id), log.message) for log in client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[i])))}
            for i in run_ids}


def _history(client, ids) -> dict:
    return {i: [(str(s.id), s.type.value) for s in client.read_flow_run_states(i)] for i in ids}


def test_two_workers_run_each_queued_run_once_and_a_server_restart_loses_no_history(orchestrator, tmp_path):
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolUpdate
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    from technicia_deploy.sandbox import orchestration, processes, world

    state, url, _ = orchestrator
    ledger = tmp_path / "ledger"
    ledger.touch()
    worker_pids = {processes.pid_of(state, d) for d in orchestration.worker_daemons(state)}
    assert len(worker_pids) == 2 and None not in worker_pids
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("orchestrator-probe/probe")

        def queue(n: int, seconds: float = 2) -> list:
            return [client.create_flow_run_from_deployment(deployment.id, parameters={"ledger": str(ledger), "seconds": seconds}).id
                    for _ in range(n)]

        first = queue(BATCH // 2)
        _wait_final(client, first, timeout=240)
        before = _history(client, first)
        logs_before = _logs(client, first)

        # Mid-way: more runs queued, the workers running some, and the server stopped and started again, the way
        # docs/orchestrator.md says to restart it: pool paused first, so that no flow run's process starts while
        # the server is away (Prefect's client retries a refused connection only once it has connected: a run
        # whose process starts during the outage crashes at its first request; one already running rides it out).
        second = queue(BATCH // 4, seconds=6)
        deadline = time.monotonic() + 120
        while not any(client.read_flow_run(i).state.type.value == "RUNNING" for i in second):
            assert time.monotonic() < deadline, "no run of the second part started"
            time.sleep(0.5)
        client.update_work_pool("technicia", WorkPoolUpdate(is_paused=True))
        second += queue(BATCH // 4)  # these wait in the paused pool across the restart
        while any(client.read_flow_run(i).state.type.value == "PENDING" for i in second):
            assert time.monotonic() < deadline, "runs stay Pending on a paused pool"
            time.sleep(0.2)
        in_flight = [i for i in second if client.read_flow_run(i).state.type.value == "RUNNING"]
        queued = [i for i in second if client.read_flow_run(i).state.type.value == "SCHEDULED"]
        assert len(queued) >= BATCH // 4
        assert processes.stop(state, world.PREFECT_DAEMON)
        restarted = world.prefect_up(state, lambda line: None)
        assert restarted == url  # same address: workers and open pages find it again

    rebind_prefect_workers()
    with get_client(sync_client=True) as client:
        client.update_work_pool("technicia", WorkPoolUpdate(is_paused=False))
        runs = _wait_final(client, first + second, timeout=300)
        # Nothing of the first half was lost or rewritten by the restart.
        assert _history(client, first) == before
        # Every log line kept, unchanged (a run's last lines may still arrive after its final state: more is fine).
        logs_after = _logs(client, first)
        assert {i: logs_before[i] - logs_after[i] for i in first} == {i: set() for i in first}
        assert [r.state.name for r in runs] == ["Completed"] * BATCH, [(str(r.id), r.state.name, r.state.message) for r in runs]
        history = _history(client, first + second)
        for run in runs:
            types = [t for _, t in history[run.id]]
            assert types.count("RUNNING") == 1 and types[-1] == "COMPLETED", (str(run.id), types)
        infrastructure = {str(r.id): r.infrastructure_pid for r in runs}
    assert in_flight, "no run was in flight when the server stopped: the restart proved less than it should"
    print(f"server restarted with {len(in_flight)} run(s) running and {len(queued)} queued: all completed once")

    executions = [line.split() for line in ledger.read_text().splitlines()]
    counted = Counter(run_id for run_id, _, _ in executions)
    assert sorted(counted) == sorted(str(i) for i in first + second)
    assert set(counted.values()) == {1}, counted  # no run executed twice
    by_worker = Counter(int(worker) for _, worker, _ in executions)
    assert set(by_worker) == worker_pids, by_worker  # both workers took runs from the pool
    for run_id, _, pid in executions:  # the API's record of who ran it is the execution the ledger saw
        assert str(infrastructure[run_id]).split(":")[-1] == pid, (run_id, infrastructure[run_id], pid)


def _doctor(env: dict[str, str], cwd: Path) -> tuple[int, list[dict], str]:
    done = subprocess.run([sys.executable, "-m", "technicia_deploy.cli", "doctor", "--json", "--timeout", "5"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=180)
    assert done.stdout.strip().startswith("["), done.stdout + done.stderr
    return done.returncode, json.loads(done.stdout), done.stdout + done.stderr


def test_doctor_says_when_the_auth_string_is_missing_or_wrong(orchestrator, tmp_path):
    state, url, auth = orchestrator
    base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
    base["TECHNICIA_SANDBOX_DIR"] = str(tmp_path / "no-sandbox")  # nothing to read an auth string from
    for extra, says in (({}, "this client has none"), ({"PREFECT_API_AUTH_STRING": "wrong"}, "refused")):
        status, rows, out = _doctor({**base, "PREFECT_API_URL": url, **extra}, PROJECT_DIR)
        row = next(r for r in rows if r["check"] == "Prefect server")
        assert status == 1 and row["status"] == "FAILED", out
        assert "401 Unauthorized" in row["detail"] and says in row["detail"], row
        assert "PREFECT_API_AUTH_STRING" in row["fix"] and "PREFECT_SERVER_API_AUTH_STRING" in row["fix"], row
        assert auth not in out
    # Run in the sandbox's directory, the CLI finds the server and its auth string in the sandbox's state.
    status, rows, out = _doctor({**base, "TECHNICIA_SANDBOX_DIR": str(state.dir)}, PROJECT_DIR)
    found = {r["check"]: r for r in rows}
    assert found["Prefect server"]["status"] == "ok", found["Prefect server"]
    assert found["work pool technicia"]["status"] == "ok" and "2 live worker(s)" in found["work pool technicia"]["detail"]
    assert auth not in out


def test_no_secret_in_logs_or_command_lines(orchestrator):
    from technicia_deploy.sandbox import postgres

    state, _, auth = orchestrator
    secrets = [auth, postgres.password(state)]
    for log in state.logs.glob("*.log"):
        text = log.read_text(errors="replace")
        assert not [s for s in secrets if s in text], log
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            assert not [s for s in secrets if s in cmdline], proc.name
    assert auth not in json.dumps(state.data) and secrets[1] not in json.dumps(state.data)
