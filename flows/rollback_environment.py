"""The ``rollback-environment`` flow: put one environment back on its previous release, on demand.

The same rollback step the deploy flow runs when a release fails (tasks/rollback.py), under the
same environment lock, verified by the same functional tests; the run ends saying which release
serves now. An environment with no previous release is left untouched and the run fails saying so.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from technicia_deploy import environment_lock

FLOW_NAME = "rollback-environment"


@flow(name=FLOW_NAME, flow_run_name="rollback-{environment}", log_prints=False)
def rollback_environment(environment: str, operator: str = "unknown", reason: str = "",
                         project: str = "technicia", lock_wait_s: float = environment_lock.DEFAULT_WAIT_S) -> dict[str, Any]:
    """Put an environment back on the release it ran before its current one, and verify that it serves.

    Args:
        environment: test, staging or production; must be this deployment's own environment.
        operator: who asks for the rollback (recorded in the run history and the tracking document).
        reason: why (kept in the run history).
        project: project name used in the Prefect block names (default technicia).
        lock_wait_s: how long to wait for a deployment of this environment to finish before refusing.
    """
    from prefect import get_client
    from prefect.runtime import flow_run

    from flows.deploy_environment import DeploymentRefused, preflight
    from technicia_deploy import promotion
    from technicia_deploy.tracking import publish
    from tasks import runtime
    from tasks.rollback import rollback
    from tasks.step import result_of, untagged

    logger = get_run_logger()
    publish.add_tags([f"flow:{FLOW_NAME}", f"env:{environment}"])
    try:
        preflight(environment, project)
        with get_client(sync_client=True) as client:
            caller = promotion.current_caller(client)
        if caller.deployment_environment and caller.deployment_environment != environment:
            raise DeploymentRefused(f"{environment}: the {caller.deployment_name!r} deployment rolls back "
                                    f"{caller.deployment_environment} only; use {environment}'s own")
        with environment_lock.hold(environment, project, str(flow_run.id), wait_s=lock_wait_s, logger=logger):
            logger.info("rolling %s back for %s%s", environment, operator, f": {reason}" if reason else "")
            with untagged():
                result = result_of(rollback(environment=environment, project=project))
        version, _, sha = result["details"]["release"].partition(" (")
        publish.add_tags([f"release:{version}"])
        publish.record_commit(sha.rstrip(")"))
        return {"environment": environment, "summary": result["summary"], "release": result["details"]["release"]}
    finally:
        runtime.release()
