"""Going back to the previous release: automatically when a release fails, or on demand.

Facts first, like every step: which release ``current`` and ``previous`` name and which release
each container was started from. Going back runs the target release's own deploy command in its
own directory (its compose file and .env are kept there, its images are still on the server), then
points ``current`` back at it; the functional tests then prove that it serves again. A target that
already serves is left alone, so a re-run after a dropped connection changes nothing more.
"""

from __future__ import annotations

from technicia_deploy.commands import release

from tasks import runtime
from tasks.checks import functional_outcomes
from tasks.services import HEALTH_DEADLINE_S, _wait_healthy, layout
from tasks.step import StepResult, outcome, tracked_step


class NothingToRollBackTo(RuntimeError):
    """The environment has no previous release (the first deployment, or a rollback already went back)."""


@tracked_step("services.rollback")
def rollback(environment: str, project: str = "technicia", failed_version: str | None = None,
             failed_sha: str | None = None, health_deadline_s: float = HEALTH_DEADLINE_S) -> StepResult:
    """Put the environment back on the release before ``failed_version`` (or before ``current`` when none is given).

    Automatic (a release failed): with nothing to go back to, the failed release's containers are stopped.
    On demand: with nothing to go back to, nothing is touched and the step fails saying so.
    """
    env = runtime.environment(environment, project)
    conn = runtime.connect(env)
    app = layout(env)
    failed_dir = app.release_dir(failed_version, failed_sha) if failed_version and failed_sha else None

    def facts() -> release.ServiceFacts:
        return release.parse_service_facts(conn.run(release.services_fact_command(app), sudo=True).stdout)

    before = facts()
    target = release.rollback_target(before, failed_dir)
    if target is None:
        if failed_dir is None:
            raise NothingToRollBackTo(f"{environment}: no previous release to go back to (current: "
                                      f"{release.describe_release(before.current)}); nothing was changed")
        running = before.running()
        if running:
            conn.run(release.stop_services_command(app), as_user=env.deploy_user)
        return StepResult("services.rollback", outcome(bool(running)),
                          f"no previous release to go back to: {len(running)} container(s) of "
                          f"{release.describe_release(failed_dir)} stopped",
                          {"target": None, "stopped": [c.service for c in running]})

    commands = release.rollback_operations(before, app, target, env.application.deploy_command)
    for command in commands:
        conn.run(command, as_user=env.deploy_user, timeout=900)
    if commands:
        after = _wait_healthy(facts, health_deadline_s)
        if not after.healthy():
            names = ", ".join(f"{c.service} ({c.state}/{c.health})" for c in after.unhealthy()) or "no container"
            raise RuntimeError(f"{environment}: rollback to {release.describe_release(target)} did not become "
                               f"healthy: {names}")
    _, checked = functional_outcomes(env)  # raises ChecksFailed naming the checks when the old release does not serve
    label = release.describe_release(target)
    return StepResult("services.rollback", outcome(bool(commands)),
                      f"rolled back to {label} (from {release.describe_release(failed_dir or before.current)}); "
                      f"functional tests: {checked}",
                      {"target": target, "release": label, "from": failed_dir or before.current})
