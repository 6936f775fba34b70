"""Promotion rules: who may deploy which environment, what a promotion already did, its approval.

The rules (checked by the deploy flow before any server is touched):

- a run of a per-environment deployment deploys that deployment's environment only (Prefect lets a
  custom run override any parameter, so the flow checks it itself);
- production is deployed only as a subflow of a running ``promote-release`` run of the same commit
  whose production approval was given (approved, both confirmations): not from the CLI, not by a
  custom run, not by a retry of an old run (its promotion is no longer running).

Everything here reads the run history through the Prefect API; :func:`deploy_refusal` is pure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from technicia_deploy.steps import env_tag

# No Prefect import at module level: the CLI reads HOW_TO_PROMOTE before it has chosen its Prefect server.

PROMOTE_FLOW = "promote-release"
DEPLOY_FLOW = "deploy-environment"
PROMOTED_ENVIRONMENT = "production"  # the one environment only a promotion may deploy
STAGES = ("test", "staging", "production")
HOW_TO_PROMOTE = ("production is deployed only by an approved promotion: run the promote-release deployment "
                  "(Prefect UI) or `technicia-deploy promote VERSION`, then approve it")


def promotion_tag(promotion_run_id: str) -> str:
    return f"promotion:{promotion_run_id}"


def sha_tag(sha: str) -> str:
    return f"sha:{sha[:12]}"


@dataclass(frozen=True)
class Caller:
    """What the deploy flow knows about how it was started."""

    deployment_environment: str | None  # the `environment` default of the deployment it runs from, if any
    deployment_name: str | None
    parent_flow: str | None  # the parent flow run's flow name, if it is a subflow
    parent_running: bool
    parent_sha: str | None  # the parent's sha: tag (12 hex)
    approval: Any  # the parent's production approval answer (approval.ProductionApproval), if any


def deploy_refusal(environment: str, sha: str, caller: Caller) -> str | None:
    """Why this run may not deploy ``environment`` at ``sha``, or None when it may."""
    if caller.deployment_environment and caller.deployment_environment != environment:
        return (f"the {caller.deployment_name!r} deployment deploys {caller.deployment_environment} only, not "
                f"{environment}: use {environment}'s own deployment"
                + (f" ({HOW_TO_PROMOTE})" if environment == PROMOTED_ENVIRONMENT else ""))
    if environment != PROMOTED_ENVIRONMENT:
        return None
    if caller.parent_flow != PROMOTE_FLOW:
        return f"refused: {HOW_TO_PROMOTE}"
    if not caller.parent_running:
        return f"refused: the promotion this run belongs to is no longer running (a retry of an old run?); {HOW_TO_PROMOTE}"
    if caller.parent_sha != sha[:12]:
        return f"refused: the promotion was for commit {caller.parent_sha}, not {sha[:12]}"
    if caller.approval is None:
        return f"refused: the promotion has no production approval; {HOW_TO_PROMOTE}"
    from technicia_deploy.approval import refusal

    return refusal(caller.approval)


def approval_keyset() -> dict[str, str]:
    from prefect.input.run_input import keyset_from_base_key

    from technicia_deploy.approval import APPROVAL_KEY

    # A suspended run's input keys are "<state name>-<pause key>-...": the promotion suspends itself.
    return keyset_from_base_key(f"suspended-{APPROVAL_KEY}")


def read_approval(client: Any, flow_run_id: str):
    """The answer given to a promotion's approval form (approval.ProductionApproval), or None when none was given."""
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

    from technicia_deploy.approval import ProductionApproval

    try:
        raw = client.read_flow_run_input(flow_run_id, approval_keyset()["response"])
    except ObjectNotFound:
        return None
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code == 404:
            return None
        raise
    return ProductionApproval(**(json.loads(raw) if isinstance(raw, str) else raw))


def current_caller(client: Any) -> Caller:
    """How the current flow run was started (from Prefect's runtime context and the parent run)."""
    from prefect.runtime import deployment, flow_run

    # The deployment's own defaults (prefect.runtime's deployment.parameters are this run's, overrides included).
    dep = client.read_deployment(deployment.id) if deployment.id else None
    dep_env = (dep.parameters or {}).get("environment") if dep else None
    parent_id = flow_run.parent_flow_run_id
    parent_flow = parent_sha = approval = None
    parent_running = False
    if parent_id:
        parent = client.read_flow_run(parent_id)
        parent_flow = client.read_flow(parent.flow_id).name
        parent_running = bool(parent.state and parent.state.is_running())
        parent_sha = next((t[4:] for t in parent.tags if t.startswith("sha:")), None)
        approval = read_approval(client, parent_id) if parent_flow == PROMOTE_FLOW else None
    return Caller(dep_env, dep.name if dep else None, parent_flow, parent_running, parent_sha, approval)


def completed_in_promotion(client: Any, promotion_run_id: str, environment: str, sha: str) -> Any | None:
    """The deploy run of ``environment`` at ``sha`` that completed in this promotion, if the environment
    still runs it (no deployment or rollback of that environment ended after it)."""
    from prefect.client.schemas import filters as F
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    from technicia_deploy.environment_lock import LOCKING_FLOWS

    runs = client.read_flow_runs(
        flow_filter=F.FlowFilter(name=F.FlowFilterName(any_=list(LOCKING_FLOWS))),
        flow_run_filter=F.FlowRunFilter(
            tags=F.FlowRunFilterTags(all_=[env_tag(environment)]),
            state=F.FlowRunFilterState(type=F.FlowRunFilterStateType(any_=[StateType.COMPLETED, StateType.FAILED,
                                                                           StateType.CRASHED]))),
        sort=FlowRunSort.END_TIME_DESC, limit=1,
    )
    if not runs:
        return None
    last = runs[0]
    tags = set(last.tags)
    if last.state.is_completed() and promotion_tag(promotion_run_id) in tags and sha_tag(sha) in tags:
        return last
    return None
