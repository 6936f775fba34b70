"""The pre-production gates as one tracked task: gather each gate's facts, judge them (technicia_deploy.gates).

Nothing here changes anything: OVH is read, the authoritative DNS servers are asked, production's
keys make their smoke calls, the run history is read. A blocking gate fails the task, naming it, so
the promotion ends before production is touched; the verdicts are also a table artifact
(``promotion-gates``) and the approval form's evidence.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from technicia_deploy import cloud, dns_check, gates
from technicia_deploy.gates import Gate

from tasks import runtime
from tasks.step import UNCHANGED, StepResult, tracked_step

GATES_ARTIFACT = "promotion-gates"
CHECK_STEPS = ("checks.functional", "checks.performance", "checks.security")


class GateFailed(RuntimeError):
    """A gate before production failed: the message names each failed gate and why."""


def staging_evidence(client: Any, staging_run_id: str | None) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """({name, version, sha} of staging's run, {check step: summary}) from the run history."""
    from prefect.client.schemas import filters as F

    from technicia_deploy.tracking.messages import parse_step_message

    if staging_run_id is None:
        return None, {}
    run = client.read_flow_run(staging_run_id)
    tags = list(run.tags)
    info = {"name": run.name, "version": (run.parameters or {}).get("version"),
            "sha": next((t[4:] for t in tags if t.startswith("sha:")), None)}
    checks = {}
    for task_run in client.read_task_runs(flow_run_filter=F.FlowRunFilter(id=F.FlowRunFilterId(any_=[run.id])), limit=200):
        if task_run.name in CHECK_STEPS and task_run.state and task_run.state.is_completed():
            checks[task_run.name] = parse_step_message(task_run.state.message or "")[1]
    return info, checks


def _dns_gate(env: runtime.EnvironmentContext, project: str, now: datetime) -> Gate:
    from tasks.https import _subdomain, recorded_since

    settings = env.settings
    address = env.address()
    records = env.ovh().records(settings.dns.zone, _subdomain(settings.domain, settings.dns.zone), "A")
    servers = dns_check.authoritative_servers(settings.dns.zone, settings.dns.nameservers)
    answers = {str(server): dns_check.answers(server, settings.domain, "A") for server in servers}
    since, how = recorded_since(env.name, project, settings.domain, address)
    rules = settings.promotion
    return gates.production_dns(settings.domain, address, [r["target"] for r in records], answers, since, how, now,
                                rules.dns_min_age_hours, rules.dns_age_policy)


def _keys_gate(env: runtime.EnvironmentContext) -> Gate:
    from tasks.api_keys import smoke_environment

    results = smoke_environment(env.name, env.api_keys(), project=env.project)
    return gates.production_api_keys(results, env.settings.promotion.min_quota_headroom_percent, cloud.SERVICE_LABELS)


@tracked_step("promotion.gates")
def production_gates(sha: str, staging_run_id: str | None, project: str = "technicia") -> StepResult:
    """Every gate before production, each evaluated and named with its evidence; fails if one blocks."""
    from prefect import get_client
    from prefect.artifacts import create_table_artifact

    env = runtime.environment("production", project)
    with get_client(sync_client=True) as client:
        staging_run, staging_checks = staging_evidence(client, staging_run_id)
    verdicts = [gates.staging_release(staging_run, sha, staging_checks),
                _dns_gate(env, project, datetime.now(timezone.utc)),
                _keys_gate(env)]
    create_table_artifact(key=GATES_ARTIFACT, table=[g.as_dict() for g in verdicts],
                          description=f"Gates before production, commit `{sha[:12]}`")
    failed = [g for g in verdicts if g.blocks]
    if failed:
        raise GateFailed("gate(s) failed, production untouched: " + "; ".join(f"{g.name}: {g.evidence}" for g in failed))
    warned = [g.name for g in verdicts if g.verdict == gates.WARNING]
    return StepResult("promotion.gates", UNCHANGED,
                      f"{len(verdicts)} gates passed" + (f" ({len(warned)} warning: {', '.join(warned)})" if warned else ""),
                      {"gates": [g.as_dict() for g in verdicts], "staging_checks": staging_checks})
