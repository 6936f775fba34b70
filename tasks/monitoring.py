"""Configuration monitoring: the server's monitoring script, the alert destinations, and a real test alert.

- ``monitoring.script``: the script, its configuration and its systemd timer on
  the server (technicia_deploy.commands.monitoring), converged idempotently.
- ``monitoring.alerts``: the destinations (AlertDestinations block, apprise URLs)
  validated, written to the server's root-only destinations file for the script,
  and a Prefect automation that notifies them when any run of this environment
  (tagged ``env:<env>``: deploy, rollback, DNS; from a deployment, the CLI or a
  promotion) fails, times out or crashes (one notification block per destination);
  plus the project's zombie detection: an automation that marks Crashed a run
  started by a deployment whose heartbeats stopped (its process is gone).
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
from technicia_deploy import environment_lock
from technicia_deploy.commands import monitoring as mon
from technicia_deploy.commands.batch import Read

from tasks import runtime
from tasks.step import CHANGED, UNCHANGED, StepResult, outcome, tracked_step

DEFAULT_PERIOD_S = 60
DEPLOY_FLOW = "deploy-environment"
# The flows of this project: the zombie detection watches their runs only (the maintenance flows: the lock's list).
PROJECT_FLOWS = ("promote-release", "deploy-environment", "rollback-environment", "prepare-dns", "smoke-api-keys",
                 *environment_lock.MAINTENANCE_FLOWS)
# Flow runs beat this often (PREFECT_FLOWS_HEARTBEAT_FREQUENCY): set for every run of deployments.yaml's
# deployments (job_variables) and for the sandbox's worker; Prefect's own default is 180 s.
HEARTBEAT_S = 30
# No heartbeat (nor a final or parking state) for this long: the process is gone. Five beats, not three: with
# three, a live promotion was marked Crashed in a loaded test run on the SQLite server (cause not established),
# and a false "Crashed" of a live promotion costs more than finding a dead process a minute later.
ZOMBIE_AFTER_S = 5 * HEARTBEAT_S
# A run's state events that end, or legitimately pause, its heartbeats.
HEARTBEAT_ENDS = ("Completed", "Failed", "TimedOut", "Cancelled", "Crashed", "Paused", "Suspended", "AwaitingRetry")


class AlertsFailed(RuntimeError):
    """An alert destination is invalid or did not accept a test alert (named, never its URL)."""


def _facts_read(env: runtime.EnvironmentContext) -> Read:
    return Read(mon.fact_command(env.project), sudo=True)


def reads(env: runtime.EnvironmentContext) -> list[Read]:
    """The fact commands this phase's steps read (the flow fetches them ahead, in one round trip)."""
    return [_facts_read(env)]


def _facts(env: runtime.EnvironmentContext, conn) -> mon.MonitorFacts:
    return mon.parse_facts(runtime.read(conn, _facts_read(env)).stdout)


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


def zombie_automation_name(project: str) -> str:
    return f"{project}-crash-zombie-runs"


def _managed(name: str, description: str, trigger, actions):
    """The automation, its description ending with the digest of its trigger and actions (what is compared)."""
    from prefect.events.schemas.automations import AutomationCore

    trigger_spec = trigger.model_dump(mode="json", exclude={"id"})
    for key in ("expect", "after", "for_each"):  # sets: dumped in hash order, which differs between processes
        trigger_spec[key] = sorted(trigger_spec.get(key) or [])
    spec = {"trigger": trigger_spec,
            "actions": [a.model_dump(mode="json") for a in actions]}
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    return AutomationCore(name=name, description=f"{description} Managed by technicia-deploy [spec {digest}]",
                          enabled=True, trigger=trigger, actions=actions)


def alert_trigger(environment: str):
    """Any flow run tagged ``env:<environment>`` that ends Failed, TimedOut or Crashed.

    A flow-run state event carries the run's tags as related resources ``prefect.tag.<tag>`` (role ``tag``),
    with its flow's and deployment's tags, whoever started the run (Prefect 3.8.8,
    ``prefect.server.models.events``); every run of an environment carries ``env:<env>``. The server takes
    those tags from a cache filled at the run's first state event (5 minutes,
    PREFECT_API_EVENTS_RELATED_RESOURCE_CACHE_TTL), so the tag must be on the run when it is created: the
    deployments carry it, and the CLI and the promotion create their runs under ``tags(env:<env>)``; the tag
    the flows add themselves (``tracking.publish.tag_flow_run``) comes too late for these events.
    """
    from prefect.events.schemas.automations import EventTrigger, Posture

    return EventTrigger(
        expect={"prefect.flow-run.Failed", "prefect.flow-run.TimedOut", "prefect.flow-run.Crashed"},
        match={"prefect.resource.id": "prefect.flow-run.*"},
        match_related={"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.env:{environment}"},
        posture=Posture.Reactive, threshold=1, within=0,
    )


def wanted_automation(project: str, environment: str, block_ids: dict[str, str]):
    from prefect.events.actions import SendNotification

    body = ("Run {{ flow_run.name }} of " + environment + " ended {{ flow_run.state.name }}: "
            "{{ flow_run.state.message }}\nTags: {{ flow_run.tags | join(', ') }}")
    actions = [SendNotification(block_document_id=block_id, subject=f"[{project} {environment}] run {{{{ flow_run.state.name }}}}",
                                body=body) for _, block_id in sorted(block_ids.items())]
    return _managed(automation_name(project, environment),
                    f"Notify {', '.join(sorted(block_ids))} when a run of {environment} (tag env:{environment}: "
                    "deploy, rollback, DNS, however it was started) fails, times out or crashes.",
                    alert_trigger(environment), actions)


PROMOTE_FLOW = "promote-release"
PROMOTED_ENVIRONMENT = "production"


def promotion_automation_name(project: str) -> str:
    return f"{project}-promotion-failed"


def promotion_trigger():
    """Any run of the promote-release flow that ends Failed, TimedOut or Crashed, however it was started.

    Matched on the flow (every flow-run state event names its flow as a related resource, role ``flow``),
    not on a tag: a run started in-process or from a deployment, tagged or not, carries its flow.
    """
    from prefect.events.schemas.automations import EventTrigger, Posture

    return EventTrigger(
        expect={"prefect.flow-run.Failed", "prefect.flow-run.TimedOut", "prefect.flow-run.Crashed"},
        match={"prefect.resource.id": "prefect.flow-run.*"},
        match_related={"prefect.resource.role": "flow", "prefect.resource.name": PROMOTE_FLOW},
        posture=Posture.Reactive, threshold=1, within=0,
    )


def wanted_promotion_automation(project: str, block_ids: dict[str, str]):
    from prefect.events.actions import SendNotification

    body = ("Promotion {{ flow_run.name }} ended {{ flow_run.state.name }}: {{ flow_run.state.message }}\n"
            "Tags: {{ flow_run.tags | join(', ') }}")
    actions = [SendNotification(block_document_id=block_id,
                                subject=f"[{project} promotion] {{{{ flow_run.name }}}} {{{{ flow_run.state.name }}}}",
                                body=body) for _, block_id in sorted(block_ids.items())]
    return _managed(promotion_automation_name(project),
                    f"Notify {PROMOTED_ENVIRONMENT}'s {', '.join(sorted(block_ids))} when a {PROMOTE_FLOW} run (however it "
                    "was started) fails, times out or crashes: a failed environment, a failed gate, a rejected or "
                    "unanswered approval.", promotion_trigger(), actions)


def ensure_promotion_alerts(project: str, urls: dict[str, str]) -> tuple[str, list[str]]:
    """Production's destinations (name -> apprise URL) notified of every failed promotion.

    Returns (automation outcome: 'created' | 'updated' | 'unchanged' | 'none (no destinations)', the names
    of destinations skipped because apprise cannot use them). The notification blocks are production's own
    (the ones its ``monitoring.alerts`` step keeps), so both automations deliver to the same place.
    """
    skipped = sorted(name for name, url in urls.items() if alert_sending.check_url(url))
    block_ids = {name: ensure_notification_block(notification_block_name(project, PROMOTED_ENVIRONMENT, name), url)[0]
                 for name, url in urls.items() if name not in skipped}
    if not block_ids:
        return "none (no destinations)", skipped
    return _ensure(wanted_promotion_automation(project, block_ids)), skipped


def zombie_trigger():
    """Prefect's "detect zombie flows": after a heartbeat, expect another heartbeat, or a state that ends
    or pauses the heartbeats, within ZOMBIE_AFTER_S; per flow run. Only runs of this project's flows
    started by a deployment (their heartbeat names the deployment), whose heartbeat frequency
    deployments.yaml sets to HEARTBEAT_S: a run beating at Prefect's default (180 s) is never watched
    with a 150 s window. A run started in-process (the CLI) is found by the next holder of its
    environment's lock instead (technicia_deploy.environment_lock)."""
    from datetime import timedelta

    from prefect.events.schemas.automations import EventTrigger, Posture

    return EventTrigger(
        after={"prefect.flow-run.heartbeat"},
        expect={"prefect.flow-run.heartbeat", *(f"prefect.flow-run.{name}" for name in HEARTBEAT_ENDS)},
        match={"prefect.resource.id": "prefect.flow-run.*"},
        match_related=[{"prefect.resource.role": "flow", "prefect.resource.name": list(PROJECT_FLOWS)},
                       {"prefect.resource.role": "deployment"}],
        for_each={"prefect.resource.id"},
        posture=Posture.Proactive, threshold=1, within=timedelta(seconds=ZOMBIE_AFTER_S),
    )


def wanted_zombie_automation(project: str):
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState

    # Not forced: a run that reached a final state meanwhile keeps it (the server refuses the transition).
    actions = [ChangeFlowRunState(
        state=StateType.CRASHED, name="Crashed",
        message=f"process lost: no heartbeat for {ZOMBIE_AFTER_S} s (zombie detection, automation "
                f"{zombie_automation_name(project)})")]
    return _managed(zombie_automation_name(project),
                    f"Mark Crashed a run of {', '.join(PROJECT_FLOWS)} started by a deployment when its heartbeats "
                    f"(every {HEARTBEAT_S} s) stop for {ZOMBIE_AFTER_S} s: its process is gone.",
                    zombie_trigger(), actions)


def ensure_zombie_automation(project: str) -> str:
    """Create or update the zombie detection; 'created' | 'updated' | 'unchanged'."""
    return _ensure(wanted_zombie_automation(project))


def ensure_automation(project: str, environment: str, block_ids: dict[str, str]) -> str:
    """Create or update the automation; 'created' | 'updated' | 'unchanged' (compared by its spec digest)."""
    return _ensure(wanted_automation(project, environment, block_ids))


def _ensure(wanted) -> str:
    from prefect.client.orchestration import get_client

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
    urls = env.alerts().urls()
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
    zombies = ensure_zombie_automation(project)
    changed = bool(commands or blocks_changed or {automation, zombies} & {"created", "updated"})
    summary = (f"{len(urls)} destination(s) ({', '.join(urls) or 'none declared'}); server script delivers to "
               f"{', '.join(d.name for d in server_dests) or 'none'}"
               + (f" (not {', '.join(flow_only)}: scheme unsupported by curl delivery)" if flow_only else "")
               + f"; automation {automation_name(project, environment)}: {automation}"
               + f"; zombie detection {zombie_automation_name(project)}: {zombies}")
    return StepResult("monitoring.alerts", CHANGED if changed else UNCHANGED, summary,
                      {"destinations": list(urls), "server_destinations": [d.name for d in server_dests],
                       "flow_only": flow_only, "automation": automation, "zombie_detection": zombies})


# --- monitoring.alert_test ---------------------------------------------------------------------------

# How long a passing test alert stands for runs that change nothing (then one is sent again).
ALERT_TEST_MAX_AGE_S = 24 * 3600
ALERT_MEMO = "alert_test"


def _destinations_digest(urls: dict[str, str]) -> str:
    from technicia_deploy.cloud import fingerprint
    from technicia_deploy.freshness import digest

    return digest({name: fingerprint(url) for name, url in urls.items()})


@tracked_step("monitoring.alert_test", retries=0)
def alert_test(environment: str, project: str = "technicia", test_id: str | None = None, send: bool = True) -> StepResult:
    """A real test alert through every destination, from the flow and from the server; failures named.

    ``send=False`` (the flow's choice on a run that changed nothing): a test alert that reached the same
    destinations within ALERT_TEST_MAX_AGE_S stands, so a redeploy does not page the team for nothing.
    """
    from tasks import memo

    env = runtime.environment(environment, project)
    urls = env.alerts().urls()
    if not urls:
        return StepResult("monitoring.alert_test", UNCHANGED, "no alert destinations declared: nothing to test", {})
    destinations = _destinations_digest(urls)
    passed = None if send else memo.still_passing(ALERT_MEMO, environment, project, destinations, ALERT_TEST_MAX_AGE_S)
    if passed is not None:
        return StepResult("monitoring.alert_test", UNCHANGED,
                          f"no test alert sent: nothing changed, and {passed.summary} {memo.age_minutes(passed):.0f} min "
                          "ago; `--alert-test` sends one", {"skipped": "nothing changed", "last": passed.summary})
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
        memo.forget(ALERT_MEMO, environment, project)
        raise AlertsFailed(f"{environment}: test alert {test_id} not delivered to: " + "; ".join(failed))
    summary = f"test alert {test_id} accepted by {', '.join(results)}"
    memo.remember(ALERT_MEMO, environment, project, destinations, summary)
    return StepResult("monitoring.alert_test", UNCHANGED, summary, {"test_id": test_id, "deliveries": rows})
