"""maintenance-backup and maintenance-restore-drill on the sandbox: staging's Qdrant (the stand-in, speaking the
snapshot API) and n8n data backed up into a store on this host, restored into test by the drill and proved by the
point count; a copy cut short fails the run loudly and alerts staging's destinations.

(The drill's source is staging here, not production: production is deployed only by an approved promotion, which
test_promotion.py exercises; the flow's default source is production.)

Cost: staging and test deployed unless a release runs there, then three backups and one drill (~5-10 s each).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.e2e.helpers import vps_exec

pytestmark = pytest.mark.e2e

GOOD = "v1.0.0"
POINTS = 7
QDRANT = "http://127.0.0.1:6333"


def ensure_deployed(sandbox, environment: str) -> str:
    container = sandbox.data["vps"][environment]["container"]
    if not vps_exec(container, "readlink /opt/technicia/current || true").strip():
        from flows.deploy_environment import deploy_environment

        state = deploy_environment(environment=environment, version=GOOD, operator="e2e", return_state=True,
                                   load_test=False, alert_test=False)
        assert state.is_completed(), state.message
    return container


def qdrant(container: str, method: str, path: str, body: dict | None = None) -> dict:
    data = f"-H 'Content-Type: application/json' -d '{json.dumps(body)}'" if body is not None else ""
    return json.loads(vps_exec(container, f"curl -fsS -X {method} {data} {QDRANT}{path}"))


def child(parent_state):
    from prefect import get_client
    from prefect.client.schemas import filters as F

    with get_client(sync_client=True) as client:
        parent = parent_state.state_details.flow_run_id
        task_ids = [t.id for t in client.read_task_runs(flow_run_filter=F.FlowRunFilter(id=F.FlowRunFilterId(any_=[parent])))]
        runs = client.read_flow_runs(flow_run_filter=F.FlowRunFilter(
            parent_task_run_id=F.FlowRunFilterParentTaskRunId(any_=task_ids)))
    assert len(runs) == 1, runs
    return runs[0]


@pytest.fixture(scope="module")
def world(sandbox, tmp_path_factory):
    staging, test = ensure_deployed(sandbox, "staging"), ensure_deployed(sandbox, "test")
    points = [{"id": i, "vector": [0.1, 0.2, 0.3], "payload": {"doc": f"manual-{i}"}} for i in range(1, POINTS + 1)]
    qdrant(staging, "PUT", "/collections/technicia_docs/points?wait=true", {"points": points})
    assert qdrant(staging, "POST", "/collections/technicia_docs/points/count", {"exact": True})["result"]["count"] == POINTS
    return {"staging": staging, "test": test, "store": tmp_path_factory.mktemp("backup-store")}


def test_a_backup_is_taken_copied_off_and_checked(world):
    from flows.maintenance_backup import maintenance_backup

    state = maintenance_backup(environment="staging", store=str(world["store"]), lock_wait_s=120, return_state=True)
    assert state.is_completed(), state.message
    run = child(state)
    assert run.name == "backup-staging" and "env:staging" in run.tags
    assert f"technicia_docs {POINTS} point(s)" in run.state.message and "checksums verified" in run.state.message

    from technicia_deploy import backup_store

    latest = backup_store.latest(world["store"], "staging")
    manifest = backup_store.read_manifest(latest)
    assert manifest["qdrant_points"] == {"technicia_docs": POINTS}
    assert {f["name"] for f in manifest["files"]} == {"n8n-data.tar.gz", "qdrant-technicia_docs.snapshot"}
    backup_store.verify(latest, backup_store.entries_of(manifest))
    # Nothing left behind on the server: neither the staging copy nor Qdrant's snapshot.
    assert vps_exec(world["staging"], "ls /var/backups/technicia").strip() == ""
    assert qdrant(world["staging"], "GET", "/collections/technicia_docs/snapshots")["result"] == []


def test_the_drill_restores_the_latest_backup_into_test_and_proves_it(world):
    from flows.maintenance_restore_drill import maintenance_restore_drill

    qdrant(world["test"], "PUT", "/collections/technicia_docs/points", {"points": [{"id": 999, "vector": [1, 0, 0]}]})
    state = maintenance_restore_drill(environment="test", source="staging", store=str(world["store"]), lock_wait_s=120,
                                      return_state=True)
    assert state.is_completed(), state.message
    message = child(state).state.message
    assert message.startswith("changed: staging's backup ") and f"technicia_docs {POINTS} point(s) as backed up" in message
    assert qdrant(world["test"], "POST", "/collections/technicia_docs/points/count", {"exact": True})["result"]["count"] == POINTS


def test_a_truncated_copy_fails_loudly_and_alerts(world, sandbox, monkeypatch):
    import tasks.backups as backups
    from flows.maintenance_backup import maintenance_backup
    from technicia_deploy.sandbox import receiver

    real = backups._download

    def cut_short(conn, remote, local):
        real(conn, remote, local)
        if local.name.startswith("qdrant-"):
            data = local.read_bytes()
            local.write_bytes(data[: len(data) // 2])  # the connection dropped half-way

    monkeypatch.setattr(backups, "_download", cut_short)
    record = Path(sandbox.data["receiver"]["record"])
    already = len(receiver.read(record))
    from technicia_deploy import backup_store

    before = [p.name for p in backup_store.backups(world["store"], "staging")]

    state = maintenance_backup(environment="staging", store=str(world["store"]), lock_wait_s=120, return_state=True)
    assert state.is_failed()
    message = child(state).state.message
    assert "qdrant-technicia_docs.snapshot:" in message and "(truncated copy)" in message, message
    assert [p.name for p in backup_store.backups(world["store"], "staging")] == before  # not counted as a backup

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        texts = [receiver.text_of(e) for e in receiver.read(record)[already:]]
        if any("backup-staging" in text for text in texts):
            break
        time.sleep(1)
    else:
        pytest.fail(f"no alert for backup-staging: {[t[:160] for t in texts]}")
