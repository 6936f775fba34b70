"""The ``maintenance-restore-drill`` flow: the latest backup of production restored into test, and proved.

A backup nobody restored is a hope. The drill takes the source environment's latest complete backup from the store,
checks every file's checksum again, recovers each Qdrant collection into the target through Qdrant's snapshot API
and requires the point count the backup recorded; n8n's archive must read back. It runs in the target's own run,
under the target's lock; production is never a target.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from technicia_deploy import environment_lock
from technicia_deploy.maintenance import Outcome

FLOW_NAME = "maintenance-restore-drill"
KIND = "restore-drill"
TITLE = "Restore drill"


def drill_of(env: Any, source: str, store: str = "") -> Outcome:
    from tasks.backups import restore_drill

    done = restore_drill(source, env.name, env.project, store)
    counts = ", ".join(f"{c} {n['found']} point(s)" for c, n in sorted(done["restored"].items())) or "no collection"
    return Outcome(env.name, f"{source}'s backup {done['backup']} restored into {env.name}: Qdrant {counts} as backed up; "
                             f"n8n archive readable ({done['n8n_members']} entries)", changed=True, details=done,
                   rows=[{"collection": c, "points in backup": n["expected"], "points restored": n["found"]}
                         for c, n in sorted(done["restored"].items())])


@flow(name=FLOW_NAME, flow_run_name="restore-drill-{environment}", log_prints=False)
def maintenance_restore_drill(environment: str = "test", source: str = "production", project: str = "technicia",
                              store: str = "", lock_wait_s: float = environment_lock.DEFAULT_WAIT_S):
    """Restore the latest backup of the source environment (production) into the target (test) and prove it: each
    Qdrant collection answers with the point count of the backup, n8n's archive reads back.

    Args:
        environment: the target, whose data is REPLACED by the backup's: test or staging, never production.
        source: the environment whose latest backup is restored (default production).
        project: project name used in the Prefect block names (default technicia).
        store: the backup store's directory on the orchestrator host; empty: $TECHNICIA_BACKUP_DIR, else /var/backups/technicia-store.
        lock_wait_s: how long to wait for a deployment of the target to finish before giving up.
    """
    from flows import _maintenance

    if environment in ("production", "all") or environment == source:
        raise ValueError(f"a restore drill restores into test or staging, not {environment!r} (source {source!r})")
    return _maintenance.run(maintenance_restore_drill, KIND, TITLE, environment, project,
                            lambda env: drill_of(env, source, store), touches_server=True, lock_wait_s=lock_wait_s)
