"""Configuration monitoring: the server's monitoring script, the alert destinations, and a real test alert.

- ``monitoring.script``: the script, its configuration and its systemd timer on
  the server (technicia_deploy.commands.monitoring), converged idempotently.
- ``monitoring.alerts``: the destinations (AlertDestinations block, apprise URLs)
  validated, written to the server's root-only destinations file for the script,
  and a Prefect automation that notifies them when a deploy run of this
  environment fails or crashes (one notification block per destination).
- ``monitoring.alert_test``: a test alert with a unique id sent to every
  destination from the flow (apprise) and from the server (the script's own
  delivery path); a destination that fails is named and fails the step.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid

from technicia_deploy import alerts as alert_sending
from technicia_deploy.commands import monitoring as mon

from tasks import runtime
from tasks.step import CHANGED, UNCHANGED, StepResult, outcome, tracked_step

DEFAULT_PERIOD_S = 60
DEPLOY_FLOW = "deploy-environment"


class AlertsFailed(RuntimeError):
    """An alert destination is invalid or did not accept a test alert (named, never its URL)."""


def _facts(env: runtime.EnvironmentContext, conn) -> mon.MonitorFacts:
    return mon.parse_facts(conn.run(mon.fact_command(env.project), sudo=True).stdout)


# --- monitoring.script -----------------------------------------------------------------------------

def settings_for(env: runtime.EnvironmentContext, services: tuple[str, ...], period_s: int) -> mon.MonitorSettings:
    tls = env.settings.tls
    return mon.MonitorSettings(
        environment=env.name, domain=env.settings.domain, public_address=env.address(),
        compose_project=env.project, services=services,
        cert_min_days=max(1, tls.min_days_left // 2), period_s=period_s,
        ca_pem=getattr(tls, "issuer_ca", None),
    )


@tracked_step("monitoring.script")
def script(environment: str, project: str = "technicia", period_s: int = DEFAULT_PERIOD_S) -> StepResult:
    """The monitoring script + systemd timer, watching the services that run now."""
    env = runtime.environment(environment, project)
    conn = runtime.connect(env)
    facts = _facts(env, conn)
    if not facts.services:
        raise RuntimeError(f"{environment}: no container of compose project {env.project!r} on the server; "
                           "the monitoring watches the deployed services: deploy them first")
    wanted = settings_for(env, facts.services, period_s)
    commands = mon.operations(facts, wanted)
    for command in commands:
        conn.run(command, sudo=True)
    summary = (f"{mon.UNIT}.timer every {period_s}s watching {', '.join(facts.services)}, disk, memory, "
               f"certificate and {wanted.public_url}" + (f"; {len(commands)} change(s)" if commands else ""))
    return StepResult("monitoring.script", outcome(bool(commands)), summary,
                      {"services": list(facts.services), "period_s": period_s, "commands": len(commands)})


# --- monitoring.alerts -------------------------------------------------------------------------------

def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


def notification_block_name(project: str, environment: str, destination: str) -> str:
    return f"{project}-{environment}-alert-{_slug(destination)}"


def automation_name(project: str, environment: str) -> str:
    return f"{project}-{environment}-deploy-failed"


def ensure_notification_block(name: str, url: str) -> tuple[str, bool]:
    """A Prefect notification block holding the apprise URL: (block document id, changed).

    Prefect's ``SlackWebhook`` block hands any apprise URL to apprise unchanged
    (only hooks.slack-gov.com URLs get special handling), so it carries every
    destination kind as a built-in block type the server's automation service can load.
    """
    from prefect.blocks.notifications import SlackWebhook
    from pydantic import SecretStr

    try:
        existing = SlackWebhook.load(name)
        if existing.url.get_secret_value() == url:
            return str(existing._block_document_id), False
    except ValueError:
        pass
    block_id = SlackWebhook(url=SecretStr(url), notify_type="failure").save(name, overwrite=True)
    return str(block_id), True


def wanted_automation(project: str, environment: str, block_ids: dict[str, str]):
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    trigger = EventTrigger(
        expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
        match={"prefect.resource.id": "prefect.flow-run.*"},
        match_related=[
            {"prefect.resource.role": "flow", "prefect.resource.name": DEPLOY_FLOW},
            {"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.env:{environment}"},
        ],
        posture=Posture.Reactive, threshold=1, within=0,
    )
    body = ("Deployment run {{ flow_run.name }} of " + environment + " ended {{ flow_run.state.name }}: "
            "{{ flow_run.state.message }}\nTags: {{ flow_run.tags | join(', ') }}")
    actions = [SendNotification(block_document_id=block_id, subject=f"[{project} {environment}] deployment {{{{ flow_run.state.name }}}}",
                                body=body) for _, block_id in sorted(block_ids.items())]
    trigger_spec = trigger.model_dump(mode="json", exclude={"id"})
    for key in ("expect", "after"):  # sets: dumped in hash order, which differs between processes
        trigger_spec[key] = sorted(trigger_spec.get(key) or [])
    spec = {"trigger": trigger_spec,
            "actions": [a.model_dump(mode="json") for a in actions]}
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    return AutomationCore(
        name=automation_name(project, environment),
        description=f"Notify {', '.join(sorted(block_ids))} when a {DEPLOY_FLOW} run of {environment} fails or crashes. "
                    f"Managed by technicia-deploy [spec {digest}]",
        enabled=True, trigger=trigger, actions=actions,
    )


def ensure_automation(project: str, environment: str, block_ids: dict[str, str]) -> str:
    """Create or update the automation; 'created' | 'updated' | 'unchanged' (compared by its spec digest)."""
    from prefect.client.orchestration import get_client

    wanted = wanted_automation(project, environment, block_ids)
    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(wanted.name)
        if not existing:
            client.create_automation(wanted)
            return "created"
        current = existing[0]
        for extra in existing[1:]:  # a duplicate from a concurrent first run
            client.delete_automation(extra.id)
        if current.description == wanted.description and current.enabled:
            return "unchanged"
        client.update_automation(current.id, wanted)
        return "updated"


@tracked_step("monitoring.alerts")
def alerts(environment: str, project: str = "technicia") -> StepResult:
    """Destinations validated and given to the server's script; Prefect notifies them of failed/crashed deploy runs."""
    env = runtime.environment(environment, project)
    urls = env.block.alerts().urls()
    invalid = {name: problem for name, url in urls.items() if (problem := alert_sending.check_url(url))}
    if invalid:
        raise AlertsFailed(f"{environment}: invalid alert destination(s): " +
                           "; ".join(f"{name}: {problem}" for name, problem in invalid.items()))
    server_dests, flow_only = mon.server_destinations(urls)
    content = mon.destinations_content(server_dests)
    conn = runtime.connect(env)
    commands = mon.destinations_operations(_facts(env, conn), content)
    for command in commands:
        conn.run(command, sudo=True, stdin=content if "cat > " in command else None)
    blocks_changed, block_ids = False, {}
    for name, url in urls.items():
        block_ids[name], changed = ensure_notification_block(notification_block_name(project, environment, name), url)
        blocks_changed |= changed
    automation = ensure_automation(project, environment, block_ids) if block_ids else "none (no destinations)"
    changed = bool(commands) or blocks_changed or automation in ("created", "updated")
    summary = (f"{len(urls)} destination(s) ({', '.join(urls) or 'none declared'}); server script delivers to "
               f"{', '.join(d.name for d in server_dests) or 'none'}"
               + (f" (not {', '.join(flow_only)}: scheme unsupported by curl delivery)" if flow_only else "")
               + f"; automation {automation_name(project, environment)}: {automation}")
    return StepResult("monitoring.alerts", CHANGED if changed else UNCHANGED, summary,
                      {"destinations": list(urls), "server_destinations": [d.name for d in server_dests],
                       "flow_only": flow_only, "automation": automation})


# --- monitoring.alert_test ---------------------------------------------------------------------------

@tracked_step("monitoring.alert_test", retries=0)
def alert_test(environment: str, project: str = "technicia", test_id: str | None = None) -> StepResult:
    """A real test alert through every destination, from the flow and from the server; failures named."""
    env = runtime.environment(environment, project)
    urls = env.block.alerts().urls()
    if not urls:
        return StepResult("monitoring.alert_test", UNCHANGED, "no alert destinations declared: nothing to test", {})
    test_id = test_id or f"alert-test-{uuid.uuid4().hex[:12]}"
    title = f"[{project} {environment}] test alert {test_id}"
    body = f"Test alert {test_id} from the deployment pipeline for {env.settings.domain}. No action needed."
    results = {f"{d.name} (flow)": d for d in alert_sending.send(urls, title, body, "info")}
    server_dests, _ = mon.server_destinations(urls)
    server_results: dict[str, str] = {}
    if server_dests:
        output = runtime.connect(env).run(mon.test_command(test_id), sudo=True, check=False).stdout
        server_results = mon.parse_test_output(output)
        for dest in server_dests:
            verdict = server_results.get(dest.name, "failed: no result from the monitoring script")
            results[f"{dest.name} (server)"] = alert_sending.Delivery(dest.name, verdict == "ok", verdict)
    failed = [f"{label}: {d.detail}" for label, d in results.items() if not d.ok]
    rows = {label: ("ok" if d.ok else d.detail) for label, d in results.items()}
    if failed:
        raise AlertsFailed(f"{environment}: test alert {test_id} not delivered to: " + "; ".join(failed))
    return StepResult("monitoring.alert_test", UNCHANGED,
                      f"test alert {test_id} accepted by {', '.join(results)}", {"test_id": test_id, "deliveries": rows})
