"""The Docker housekeeping's task: facts, then the removals the plan allows (technicia_deploy.commands.housekeeping)."""

from __future__ import annotations

from typing import Any

from prefect import task

from technicia_deploy.commands import housekeeping, release

from tasks import runtime
from tasks.step import is_transient


def _layout(env: runtime.EnvironmentContext) -> release.AppLayout:
    from tasks.services import layout

    return layout(env)


@task(name="housekeeping.docker", retries=2, retry_delay_seconds=3, retry_condition_fn=is_transient,
      persist_result=False)
def docker_housekeeping(environment: str, project: str = "technicia",
                        keep_releases: int = housekeeping.MIN_KEEP_RELEASES) -> dict[str, Any]:
    """Remove unused images and old release directories, keeping current, previous and their images.

    Idempotent: the facts are read first and only what the plan removes is removed; a retry after a lost
    connection reads them again."""
    env = runtime.environment(environment, project)
    conn = runtime.connect(env)
    app = _layout(env)
    fact_command = housekeeping.fact_command(app, env.application.compose_file)
    before = housekeeping.parse_facts(conn.read(fact_command, sudo=True).stdout, app)
    wanted = housekeeping.plan(before, keep_releases)
    commands = housekeeping.operations(before, wanted)
    for command in commands:
        conn.run(command, sudo=True, timeout=600)
    after = housekeeping.parse_facts(conn.read(fact_command, sudo=True).stdout, app) if commands else before
    return {
        "removed_releases": [release.describe_release(d) for d in wanted.remove_releases],
        "removed_images": list(wanted.remove_images),
        "kept_releases": [release.describe_release(d) for d in wanted.keep_releases],
        "kept_images": list(wanted.keep_images),
        "images_blocked": wanted.images_blocked,
        "current": release.describe_release(after.current), "previous": release.describe_release(after.previous),
        "freed_bytes": (after.disk_available - before.disk_available)
        if commands and after.disk_available is not None and before.disk_available is not None else 0,
        "changed": bool(commands),
    }
