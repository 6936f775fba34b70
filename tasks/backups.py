"""The backups' and restore drill's tasks: take a backup on the server, copy it off into the store, check it;
restore the latest one of another environment and prove it (technicia_deploy/commands/backup.py, backup_store.py).

Files move over SFTP on the flow run's SSH connection (tasks.runtime.connect). The connection layer has commands
only, so the transfer borrows its live Fabric connection (``_session``): a ``HostConnection.download/upload`` there
would be the right home (see the report of issue 13).
"""

from __future__ import annotations

import posixpath
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prefect import task

from technicia_deploy import backup_store
from technicia_deploy.commands import backup

from tasks import runtime

N8N_VOLUME = "n8n_data"  # the application's compose volume keys (docker-compose.yml)
QDRANT_SNAPSHOTS_VOLUME = "qdrant_snapshots"


def volume(env: runtime.EnvironmentContext, key: str) -> str:
    """A compose volume's Docker name: the compose project (fixed, ``technicia``) and the volume's key."""
    return f"{env.project}_{key}"


def _download(conn, remote: str, local: Path) -> None:
    conn._session().get(remote, str(local))


def _upload(conn, local: Path, remote: str) -> None:
    conn._session().put(str(local), remote)


@task(name="backups.take", retries=0, persist_result=False)
def take_backup(environment: str, project: str, store: str, keep: int) -> dict[str, Any]:
    """Qdrant snapshots and n8n's data taken on the server, copied off into the store, checked, retention applied."""
    env = runtime.environment(environment, project)
    conn = runtime.connect(env)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = conn.run(backup.backup_script(stamp, env.deploy_user, n8n_volume=volume(env, N8N_VOLUME)), sudo=True,
                   timeout=1800)
    server = backup.parse_manifest(out.stdout)
    root = backup_store.root(store or None)
    partial = backup_store.partial_dir(root, environment, stamp)
    partial.mkdir(parents=True, exist_ok=False)
    remote_dir = backup.staging_dir(stamp)
    try:
        for item in server.files:
            _download(conn, posixpath.join(remote_dir, item.name), partial / item.name)
    finally:
        conn.run(backup.remove_staging_command(stamp), sudo=True)
    entries = [backup_store.Entry(f.name, f.size, f.sha256) for f in server.files]
    backup_store.verify(partial, entries)  # raises BackupInvalid: the run fails loudly, the partial copy stays
    final = backup_store.complete(partial, backup_store.manifest_of(
        entries, environment=environment, created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        server=env.address(), qdrant_points=server.points))
    removed = backup_store.apply_retention(root, environment, keep)
    return {"backup": str(final), "files": [f"{e.name} ({e.size} bytes)" for e in entries],
            "points": server.points, "bytes": sum(e.size for e in entries), "removed": removed}


@task(name="backups.restore_drill", retries=0, persist_result=False)
def restore_drill(source: str, target: str, project: str, store: str) -> dict[str, Any]:
    """The latest complete backup of ``source`` checked again, its Qdrant collections recovered into ``target``
    through the snapshot API, each answering with the point count of the backup; n8n's archive checked readable."""
    import tarfile

    root = backup_store.root(store or None)
    latest = backup_store.latest(root, source)
    if latest is None:
        raise backup_store.BackupInvalid(f"no complete backup of {source} in {backup_store.environment_dir(root, source)}")
    manifest = backup_store.read_manifest(latest)
    entries = backup_store.entries_of(manifest)
    backup_store.verify(latest, entries)
    n8n = latest / backup.N8N_ARCHIVE
    with tarfile.open(n8n, "r:gz") as archive:  # a damaged archive raises here
        n8n_members = len(archive.getmembers())
    env = runtime.environment(target, project)
    conn = runtime.connect(env)
    restored: dict[str, dict[str, int]] = {}
    for collection, expected in sorted(manifest.get("qdrant_points", {}).items()):
        upload = f"/tmp/technicia-restore-{collection}.snapshot"
        _upload(conn, latest / backup.snapshot_file(collection), upload)
        out = conn.run(backup.restore_qdrant_script(upload, collection,
                                                    snapshots_volume=volume(env, QDRANT_SNAPSHOTS_VOLUME)),
                       sudo=True, timeout=1800)
        found = int(out.stdout.strip().splitlines()[-1])
        restored[collection] = {"expected": expected, "found": found}
    wrong = {c: n for c, n in restored.items() if n["expected"] != n["found"]}
    if wrong:
        raise backup_store.BackupInvalid(
            f"restore of {source}'s backup {latest.name} into {target}: " + "; ".join(
                f"collection {c} answers {n['found']} point(s), the backup had {n['expected']}" for c, n in wrong.items()))
    return {"backup": latest.name, "restored": restored, "n8n_members": n8n_members}
