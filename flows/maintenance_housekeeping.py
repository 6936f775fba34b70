"""The ``maintenance-housekeeping`` flow: unused Docker images and old releases removed from each server, always
keeping what a rollback needs (the current and previous releases, their compose files, .env and images).

Per environment (flows/_maintenance.py: its own run, tagged, under the environment's lock, so never during a
deployment, which pulls images and switches releases): facts, then only the removals the plan allows
(technicia_deploy/commands/housekeeping.py). A second run removes nothing and says ``unchanged``.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from technicia_deploy import environment_lock
from technicia_deploy.commands.housekeeping import MIN_KEEP_RELEASES
from technicia_deploy.maintenance import Outcome

FLOW_NAME = "maintenance-housekeeping"
KIND = "housekeeping"
TITLE = "Docker housekeeping"


def _size(count: int) -> str:
    return f"{count / 1e6:.0f} MB" if count >= 1e6 else f"{count / 1e3:.0f} kB"


def housekeeping_of(env: Any, keep_releases: int = MIN_KEEP_RELEASES) -> Outcome:
    from tasks.housekeeping import docker_housekeeping

    done = docker_housekeeping(env.name, env.project, keep_releases=keep_releases)
    removed = []
    if done["removed_images"]:
        removed.append(f"{len(done['removed_images'])} image(s) ({', '.join(done['removed_images'])})")
    if done["removed_releases"]:
        removed.append(f"{len(done['removed_releases'])} release(s) ({', '.join(done['removed_releases'])})")
    what = ("removed " + " and ".join(removed) + (f", {_size(done['freed_bytes'])} freed" if done["freed_bytes"] >= 1000 else "")
            if removed else "nothing to remove")
    kept = (f"kept current {done['current']} and previous {done['previous']} with their "
            f"{len(done['kept_images'])} image(s)")
    blocked = f"; no image removed: {done['images_blocked']}" if done["images_blocked"] else ""
    rows = ([{"item": ref, "action": "removed"} for ref in done["removed_images"]]
            + [{"item": name, "action": "removed"} for name in done["removed_releases"]]
            + [{"item": ref, "action": "kept (rollback)"} for ref in done["kept_images"]]
            + [{"item": name, "action": "kept"} for name in done["kept_releases"]])
    return Outcome(env.name, f"{what}; {kept}{blocked}", changed=done["changed"], details=done, rows=rows)


@flow(name=FLOW_NAME, flow_run_name="housekeeping-{environment}", log_prints=False)
def maintenance_housekeeping(environment: str = "all", project: str = "technicia",
                             keep_releases: int = MIN_KEEP_RELEASES,
                             lock_wait_s: float = environment_lock.DEFAULT_WAIT_S):
    """Remove unused Docker images and old release directories from each server, keeping what a rollback needs
    (the current and previous releases and their images). Volumes (the data) are never touched.

    Args:
        environment: test, staging, production, or all (one run per environment, in that order).
        project: project name used in the Prefect block names (default technicia).
        keep_releases: how many of the newest release directories stay (at least 2: current and previous).
        lock_wait_s: how long to wait for a deployment of the environment to finish before giving up.
    """
    from flows import _maintenance

    return _maintenance.run(maintenance_housekeeping, KIND, TITLE, environment, project,
                            lambda env: housekeeping_of(env, keep_releases),
                            touches_server=True, lock_wait_s=lock_wait_s)
