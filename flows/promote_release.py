"""The ``promote-release`` flow: one commit through test, then staging, then (approved) production.

A composition of environment deployments, not a copy of them: each environment is a
``deploy-environment`` subflow run (its own run in the history, linked to the promotion, tagged
``promotion:<id>``), which takes that environment's lock and rolls it back on failure like any other
deployment. The version is resolved to one SHA here and every environment receives exactly it.

A promotion that fails, times out or crashes (an environment failed, a gate failed, the approval was
rejected or never given) alerts production's destinations: the automation ``<project>-promotion-failed``,
which each promotion ensures when it starts (tasks/monitoring.py ``ensure_promotion_alerts``).

Before production: the gates (tasks/gates.py), then the human approval. The approval suspends the
run (``suspend_flow_run``): no process waits for it, and a pending approval survives a restart of the
worker or of the Prefect server. Once answered, Prefect runs the flow again from the top; an
environment that already runs the SHA, deployed and tested in this promotion, is not deployed again,
and the answer given is read back instead of asking twice.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from technicia_deploy import promotion

FLOW_NAME = "promote-release"
BEFORE_PRODUCTION = ("test", "staging")


class PromotionStopped(RuntimeError):
    """The promotion ended before production: an environment failed, a gate failed, or no approval."""


def _deploy(environment: str, version: str, sha: str, operator: str, project: str) -> str:
    """Deploy ``environment`` as a subflow unless this promotion already did; returns its flow run id."""
    from prefect import get_client, tags
    from prefect.runtime import flow_run

    from flows.deploy_environment import deploy_environment
    from technicia_deploy.steps import env_tag

    logger = get_run_logger()
    with get_client(sync_client=True) as client:
        done = promotion.completed_in_promotion(client, str(flow_run.id), environment, sha)
    if done is not None:
        logger.info("%s already runs %s (%s), deployed and tested in this promotion by %r: not deployed again",
                    environment, version, sha[:12], done.name)
        return str(done.id)
    _pin_subflow_key(deploy_environment, environment)
    # Tagged from its creation: the alert automation sees the run's tags only if its first state event had them.
    with tags(env_tag(environment)):
        state = deploy_environment(environment=environment, version=version, sha=sha, operator=operator,
                                   project=project, return_state=True)
    if not state.is_completed():
        later = promotion.STAGES[promotion.STAGES.index(environment) + 1:]
        why = (state.message or state.name).removeprefix("Flow run encountered an exception: ")
        raise PromotionStopped(f"{environment} failed: {why}; " + (f"{', '.join(later)} untouched" if later else
                                                                   "see its run for where it stands"))
    return str(state.state_details.flow_run_id)


def _pin_subflow_key(subflow, environment: str) -> None:
    """Give each stage's subflow call the same identity in every execution of the promotion.

    Prefect identifies a subflow call by a per-flow-run counter of calls to the same flow. After the
    resume, test and staging are skipped, so production's call would take test's number and Prefect would
    hand back test's finished run instead of deploying production. The stage's index is its number.
    """
    from prefect.context import FlowRunContext
    from prefect.tasks import Task

    counters = FlowRunContext.get().task_run_dynamic_keys
    key = Task(name=subflow.name, fn=subflow.fn, version=subflow.version).task_key
    index = promotion.STAGES.index(environment)
    if index == 0:
        counters.pop(key, None)  # the next call takes 0
    else:
        counters[key] = index - 1  # the next call takes index


def _ensure_alerts(production, project: str) -> None:
    """Production's destinations hear of this promotion's failure (never fails the promotion: it says why)."""
    from tasks.monitoring import ensure_promotion_alerts, promotion_automation_name

    logger = get_run_logger()
    try:
        outcome, skipped = ensure_promotion_alerts(project, production.alerts().urls())
    except Exception as exc:  # noqa: BLE001 - alerting must not stop a promotion; the type only (URLs are secrets)
        logger.warning("automation %s not ensured (%s): a failure of this promotion may alert no one",
                       promotion_automation_name(project), type(exc).__name__)
        return
    if skipped:
        logger.warning("production alert destination(s) %s not usable by apprise: not notified of promotion failures",
                       ", ".join(skipped))
    logger.info("promotion failures alert production's destinations: automation %s %s",
                promotion_automation_name(project), outcome)


def _production_now(project: str) -> str:
    from prefect import get_client

    from technicia_deploy.tracking.history import read_history

    with get_client(sync_client=True) as client:
        history = read_history(client, max_runs=200)
    done = [r for r in history.deploy_runs if r.environment == "production" and r.state_type == "COMPLETED"]
    if not done:
        return "nothing yet (first production deployment)"
    last = max(done, key=lambda r: r.end or r.start)
    return f"{last.release} ({last.sha}), deployed {last.end:%Y-%m-%d %H:%M} UTC by {last.operator}"


def _ask_approval(version: str, sha: str, gate_result: dict[str, Any], project: str, timeout_hours: float):
    from prefect.flow_runs import suspend_flow_run
    from prefect.runtime import flow_run

    from technicia_deploy.approval import APPROVAL_KEY, ProductionApproval
    from technicia_deploy.gates import Gate, evidence_markdown

    details = gate_result["details"]
    description = evidence_markdown(version, sha, _production_now(project), details["staging_checks"],
                                    [Gate(**g) for g in details["gates"]], promotion_url=flow_run.ui_url)
    get_run_logger().info("waiting for the production approval (Resume in the Prefect UI, or "
                          "`technicia-deploy approve %s --approver NAME ...`); timeout %g h", flow_run.id, timeout_hours)
    return suspend_flow_run(wait_for_input=ProductionApproval.with_initial_data(description=description),
                            timeout=int(timeout_hours * 3600), key=APPROVAL_KEY)


@flow(name=FLOW_NAME, flow_run_name="promote-{version}", log_prints=False, persist_result=True)
def promote_release(version: str, operator: str = "prefect-ui", project: str = "technicia",
                    approval_timeout_hours: float | None = None) -> dict[str, Any]:
    """Promote one release of TechnicIA: test, then staging, then production after the gates and a human approval.

    Args:
        version: git tag or branch of the application to promote (e.g. v1.0.0); resolved once to a commit SHA
            that every environment then receives.
        operator: who starts the promotion (shown as Responsable of test and staging in the tracking document).
        project: project name used in the Prefect block names (default technicia).
        approval_timeout_hours: how long to wait for the production approval before ending with production
            untouched; empty: production's configured promotion.approval_timeout_hours.
    """
    from technicia_deploy import versions
    from technicia_deploy.approval import refusal
    from technicia_deploy.tracking import publish
    from tasks import runtime
    from tasks.gates import production_gates
    from tasks.step import result_of

    logger = get_run_logger()
    publish.add_tags([f"flow:{FLOW_NAME}", f"release:{version}"])
    try:
        production = runtime.environment("production", project)
        _ensure_alerts(production, project)
        sha = versions.resolve(production.application.repository, version)
        publish.record_commit(sha)
        logger.info("promoting %s (%s) for %s", version, sha, operator)
        deployed = {env: _deploy(env, version, sha, operator, project) for env in BEFORE_PRODUCTION}
        gate_result = result_of(production_gates(sha=sha, staging_run_id=deployed["staging"], project=project))
        timeout = approval_timeout_hours or production.settings.promotion.approval_timeout_hours
        answer = _ask_approval(version, sha, gate_result, project, timeout)
        why = refusal(answer)
        if why:
            raise PromotionStopped(f"{why}; production untouched")
        logger.info("production approved by %s (documentation finalised: %s, quotas verified: %s)%s",
                    answer.approver, answer.documentation_finalised, answer.quotas_verified,
                    f"; comment: {answer.comment}" if answer.comment else "")
        publish.add_tags([f"approver:{answer.approver}"])
        deployed["production"] = _deploy("production", version, sha, operator, project)
        return {"version": version, "sha": sha, "runs": deployed, "approver": answer.approver}
    finally:
        runtime.release()
