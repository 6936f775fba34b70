"""The ``maintenance-backup`` flow: each environment's Qdrant collections (snapshot API) and n8n data copied off the
server into the backup store, each file checked against the server's size and sha256, older backups pruned.

Per environment (flows/_maintenance.py: its own run, tagged, under the environment's lock: a deployment restarts
the containers a snapshot reads). An empty or truncated file fails the run, so the environment's alert fires; the
copy that failed is left as ``<stamp>.partial`` for a look and never counts as a backup. The store is a directory
on the orchestrator host: ``store``, else $TECHNICIA_BACKUP_DIR, else /var/backups/technicia-store; one
sub-directory per environment (technicia_deploy/backup_store.py).
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from technicia_deploy import environment_lock
from technicia_deploy.maintenance import Outcome

FLOW_NAME = "maintenance-backup"
KIND = "backup"
TITLE = "Backup"
DEFAULT_KEEP = 14


def backup_of(env: Any, store: str = "", keep: int = DEFAULT_KEEP) -> Outcome:
    from tasks.backups import take_backup

    done = take_backup(env.name, env.project, store, keep)
    points = ", ".join(f"{c} {n} point(s)" for c, n in sorted(done["points"].items())) or "no collection"
    pruned = f"; {len(done['removed'])} older backup(s) removed" if done["removed"] else ""
    return Outcome(env.name, f"backup {done['backup']}: Qdrant ({points}) and n8n data, {len(done['files'])} file(s), "
                             f"{done['bytes']} bytes, checksums verified{pruned}", changed=True, details=done,
                   rows=[{"file": f} for f in done["files"]])


@flow(name=FLOW_NAME, flow_run_name="backup-{environment}", log_prints=False)
def maintenance_backup(environment: str = "all", project: str = "technicia", store: str = "", keep: int = DEFAULT_KEEP,
                       lock_wait_s: float = environment_lock.DEFAULT_WAIT_S):
    """Back up each environment's Qdrant collections (snapshot API) and n8n data into the backup store, with a
    checksum per file and a retention; an empty or truncated file fails the run.

    Args:
        environment: test, staging, production, or all (one run per environment, in that order).
        project: project name used in the Prefect block names (default technicia).
        store: the backup store's directory on the orchestrator host; empty: $TECHNICIA_BACKUP_DIR, else /var/backups/technicia-store.
        keep: how many backups of each environment the store keeps (older ones are removed).
        lock_wait_s: how long to wait for a deployment of the environment to finish before giving up.
    """
    from flows import _maintenance

    return _maintenance.run(maintenance_backup, KIND, TITLE, environment, project,
                            lambda env: backup_of(env, store, keep), touches_server=True, lock_wait_s=lock_wait_s)
