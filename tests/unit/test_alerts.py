"""Alerts: apprise delivery to a real local webhook/SMTP receiver, failures named without secrets,
and the Prefect automation that notifies on failed deploy runs (against the session's Prefect server)."""

from __future__ import annotations

import uuid

import pytest

from technicia_deploy import alerts
from technicia_deploy.sandbox import receiver


@pytest.fixture
def inbox(tmp_path):
    record = tmp_path / "received.jsonl"
    stop, http_port, smtp_port = receiver.serve("127.0.0.1", 0, 0, record)
    yield record, http_port, smtp_port
    stop()


def test_each_destination_receives_the_alert(inbox):
    record, http_port, smtp_port = inbox
    deliveries = alerts.send({
        "ops-webhook": f"json://127.0.0.1:{http_port}/hooks/test/T0KEN",
        "ops-mail": f"mailto://127.0.0.1:{smtp_port}?from=monitor@exemple.test&to=ops@exemple.test",
    }, "[technicia test] ALERT", "api container exited", "failure")
    assert [(d.name, d.ok) for d in deliveries] == [("ops-webhook", True), ("ops-mail", True)]
    got = receiver.read(record)
    hook = next(e for e in got if e["kind"] == "webhook")
    mail = next(e for e in got if e["kind"] == "email")
    assert hook["path"] == "/hooks/test/T0KEN"
    assert (hook["body"]["title"], hook["body"]["message"], hook["body"]["type"]) == ("[technicia test] ALERT", "api container exited", "failure")
    assert (mail["to"], mail["subject"], mail["body"].strip()) == (["ops@exemple.test"], "[technicia test] ALERT", "api container exited")


def test_a_failing_destination_is_named_and_its_url_never_shown(inbox):
    from technicia_deploy.sandbox.processes import free_port

    _, http_port, _ = inbox
    secret = "s3cr3t-T0KEN-value"
    dead = f"json://127.0.0.1:{free_port()}/hooks/{secret}"
    deliveries = alerts.send({"good": f"json://127.0.0.1:{http_port}/x", "dead-hook": dead}, "t", "b")
    failed = [d for d in deliveries if not d.ok]
    assert [d.name for d in failed] == ["dead-hook"]
    assert secret not in failed[0].detail and dead not in failed[0].detail
    assert failed[0].detail.startswith("delivery failed")


def test_invalid_url_is_refused_before_sending():
    assert "apprise does not accept" in alerts.check_url("nosuchscheme://x")
    assert alerts.check_url("not a url") == "not a URL (expected scheme://...)"
    assert alerts.send_one("x", "nosuchscheme://abc", "t", "b").ok is False


def test_redact_removes_every_part_of_the_url():
    url = "mailtos://bot:pa55word@mail.exemple.fr:465?to=ops@exemple.fr"
    cleaned = alerts.redact(f"failed for {url} (login bot:pa55word at mail.exemple.fr)", url)
    assert "pa55word" not in cleaned and url not in cleaned and cleaned.startswith("failed for ***")


# --- Prefect: notification blocks + automation ------------------------------------------------------------

def test_automation_is_created_once_and_updated_when_destinations_change(prefect_server, inbox):
    from prefect.client.orchestration import get_client

    from tasks import monitoring

    _, http_port, _ = inbox
    env = f"unit{uuid.uuid4().hex[:6]}"
    url = f"json://127.0.0.1:{http_port}/hooks/{env}/TOKEN"
    block_id, changed = monitoring.ensure_notification_block(monitoring.notification_block_name("technicia", env, "ops-webhook"), url)
    assert changed
    assert monitoring.ensure_notification_block(monitoring.notification_block_name("technicia", env, "ops-webhook"), url) == (block_id, False)
    assert monitoring.ensure_automation("technicia", env, {"ops-webhook": block_id}) == "created"
    assert monitoring.ensure_automation("technicia", env, {"ops-webhook": block_id}) == "unchanged"
    other_id, _ = monitoring.ensure_notification_block(monitoring.notification_block_name("technicia", env, "ops-mail"),
                                                       "mailto://127.0.0.1:1?from=a@b.test&to=c@d.test")
    assert monitoring.ensure_automation("technicia", env, {"ops-webhook": block_id, "ops-mail": other_id}) == "updated"
    with get_client(sync_client=True) as client:
        [automation] = client.read_automations_by_name(monitoring.automation_name("technicia", env))
    assert automation.trigger.expect == {"prefect.flow-run.Failed", "prefect.flow-run.TimedOut", "prefect.flow-run.Crashed"}
    assert {str(a.block_document_id) for a in automation.actions} == {block_id, other_id}
    # Any run tagged with the environment, whatever its flow and however it was started.
    assert automation.trigger.match_related.root == {"prefect.resource.role": "tag",
                                                     "prefect.resource.id": f"prefect.tag.env:{env}"}


def test_failed_deploy_run_notifies_through_the_automation(prefect_server, inbox):
    """The automation fires on a real failed run of a flow named like the deploy flow, tagged with the environment."""
    from prefect import flow, tags

    from tasks import monitoring

    record, http_port, _ = inbox
    env = f"unit{uuid.uuid4().hex[:6]}"
    block_id, _ = monitoring.ensure_notification_block(monitoring.notification_block_name("technicia", env, "ops-webhook"),
                                                       f"json://127.0.0.1:{http_port}/hooks/{env}/TOKEN")
    monitoring.ensure_automation("technicia", env, {"ops-webhook": block_id})

    @flow(name=monitoring.DEPLOY_FLOW, flow_run_name=f"deploy-{env}-v9")
    def failing_deploy():
        raise RuntimeError("services.deploy failed: api unhealthy")

    with tags(f"env:{env}"):
        failing_deploy(return_state=True)
    entry = receiver.wait_for(record, lambda e: e.get("path") == f"/hooks/{env}/TOKEN", timeout=60)
    assert f"deploy-{env}-v9" in entry["body"]["message"] and "Failed" in entry["body"]["message"]


# --- which runs alert: every run of the environment, by its own env: tag -------------------------------------

def _server_trigger(trigger):
    from prefect.server.events.schemas.automations import EventTrigger as ServerTrigger

    return ServerTrigger.model_validate(trigger.model_dump(mode="json"))


def _event(name: str, related: list[dict], resource_id: str = "prefect.flow-run.0b3a"):
    from datetime import datetime, timezone

    from prefect.server.events.schemas.events import ReceivedEvent

    return ReceivedEvent(id=uuid.uuid4(), occurred=datetime.now(timezone.utc), event=name,
                         resource={"prefect.resource.id": resource_id}, related=related)


def _flow(name):
    return {"prefect.resource.id": "prefect.flow.1", "prefect.resource.role": "flow", "prefect.resource.name": name}


def _tag(tag):
    return {"prefect.resource.id": f"prefect.tag.{tag}", "prefect.resource.role": "tag"}


DEPLOYMENT = {"prefect.resource.id": "prefect.deployment.2", "prefect.resource.role": "deployment",
              "prefect.resource.name": "staging"}


def test_the_alert_trigger_matches_the_environment_tag_of_any_run():
    from datetime import timedelta

    from prefect.events.schemas.automations import Posture

    from tasks import monitoring

    trigger = monitoring.alert_trigger("staging")
    assert trigger.expect == {"prefect.flow-run.Failed", "prefect.flow-run.TimedOut", "prefect.flow-run.Crashed"}
    assert trigger.after == set() and trigger.for_each == set()
    assert trigger.match.root == {"prefect.resource.id": "prefect.flow-run.*"}
    assert trigger.match_related.root == {"prefect.resource.role": "tag", "prefect.resource.id": "prefect.tag.env:staging"}
    assert (trigger.posture, trigger.threshold, trigger.within) == (Posture.Reactive, 1, timedelta(0))

    server = _server_trigger(trigger)
    in_process = [_flow("deploy-environment"), _tag("env:staging"), _tag("release:v1")]  # the CLI: no deployment
    assert server.covers(_event("prefect.flow-run.Failed", in_process))
    assert server.covers(_event("prefect.flow-run.Crashed", [_flow("rollback-environment"), DEPLOYMENT,
                                                             _tag("env:staging"), _tag("technicia")]))
    assert server.covers(_event("prefect.flow-run.TimedOut", [_flow("prepare-dns"), _tag("env:staging")]))
    assert not server.covers(_event("prefect.flow-run.Completed", in_process))
    assert not server.covers(_event("prefect.flow-run.Failed", [_flow("deploy-environment"), _tag("env:staging2")]))
    assert not server.covers(_event("prefect.flow-run.Failed", [_flow("deploy-environment"), _tag("env:test")]))
    assert not server.covers(_event("prefect.flow-run.Failed", [_flow("promote-release"), DEPLOYMENT]))
    assert not server.covers(_event("prefect.task-run.Failed", in_process, resource_id="prefect.task-run.9"))


def _events_of(api_url: str, flow_run_id, name: str, timeout: float = 30.0):
    """The events the server recorded for ``flow_run_id`` named ``name`` (polled: events are written in batches)."""
    import time

    import httpx

    from prefect.server.events.schemas.events import ReceivedEvent

    deadline = time.monotonic() + timeout
    while True:
        answer = httpx.post(f"{api_url}/events/filter", timeout=30, json={
            "filter": {"resource": {"id": [f"prefect.flow-run.{flow_run_id}"]}, "event": {"name": [name]}},
            "limit": 10})
        answer.raise_for_status()
        found = [ReceivedEvent.model_validate(e) for e in answer.json()["events"]]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_a_failed_in_process_run_tagged_at_its_creation_raises_an_event_the_trigger_matches(prefect_server):
    """The way the CLI and the promotion start runs (under tags(env:X)); and why the tag a flow adds itself comes
    too late: the server takes a run's tags for its events from a cache filled at the run's first state event."""
    from prefect import flow, tags

    from technicia_deploy.tracking.publish import add_tags
    from tasks import monitoring

    env = f"unit{uuid.uuid4().hex[:6]}"

    @flow(name="rollback-environment", flow_run_name=f"rollback-{env}")
    def failing_rollback():
        add_tags([f"env:{env}"])  # what the flow does itself (a no-op here: the tag is there already)
        raise RuntimeError("no previous release")

    @flow(name="deploy-environment", flow_run_name=f"deploy-{env}-late")
    def failing_deploy_tagged_late():
        add_tags([f"env:{env}"])
        raise RuntimeError("services.deploy failed")

    with tags(f"env:{env}"):
        tagged = failing_rollback(return_state=True)
    late = failing_deploy_tagged_late(return_state=True)
    assert tagged.is_failed() and late.is_failed()

    server = _server_trigger(monitoring.alert_trigger(env))
    [event] = _events_of(prefect_server, tagged.state_details.flow_run_id, "prefect.flow-run.Failed")
    assert {"prefect.resource.id": f"prefect.tag.env:{env}", "prefect.resource.role": "tag"} in \
        [dict(r.root) for r in event.related]
    assert server.covers(event)
    [late_event] = _events_of(prefect_server, late.state_details.flow_run_id, "prefect.flow-run.Failed")
    assert f"prefect.tag.env:{env}" not in [r.id for r in late_event.related]
    assert not server.covers(late_event)


# --- zombie detection: deployment runs whose heartbeats stop are marked Crashed ----------------------------------

def test_the_zombie_trigger_watches_the_heartbeats_of_this_projects_deployment_runs():
    from datetime import timedelta

    from prefect.events.schemas.automations import Posture

    from tasks import monitoring

    trigger = monitoring.zombie_trigger()
    assert trigger.after == {"prefect.flow-run.heartbeat"}
    assert trigger.expect == {"prefect.flow-run.heartbeat"} | {f"prefect.flow-run.{s}" for s in (
        "Completed", "Failed", "TimedOut", "Cancelled", "Crashed", "Paused", "Suspended", "AwaitingRetry")}
    assert trigger.match.root == {"prefect.resource.id": "prefect.flow-run.*"}
    assert [spec.root for spec in trigger.match_related] == [
        {"prefect.resource.role": "flow", "prefect.resource.name": [
            "promote-release", "deploy-environment", "rollback-environment", "prepare-dns", "smoke-api-keys",
            "maintenance-certificates", "maintenance-housekeeping", "maintenance-backup", "maintenance-restore-drill",
            "maintenance-drift"]},
        {"prefect.resource.role": "deployment"}]
    assert trigger.for_each == {"prefect.resource.id"}
    assert (trigger.posture, trigger.threshold, trigger.within) == (Posture.Proactive, 1, timedelta(seconds=150))
    assert monitoring.ZOMBIE_AFTER_S == 5 * monitoring.HEARTBEAT_S == 150

    server = _server_trigger(trigger)
    assert server.covers(_event("prefect.flow-run.heartbeat", [_flow("promote-release"), DEPLOYMENT]))
    assert server.covers(_event("prefect.flow-run.Suspended", [_flow("promote-release"), DEPLOYMENT]))
    # In-process runs beat at Prefect's default (180 s): never watched with a 150 s window.
    assert not server.covers(_event("prefect.flow-run.heartbeat", [_flow("deploy-environment"), _tag("env:test")]))
    assert not server.covers(_event("prefect.flow-run.heartbeat", [_flow("someone-elses-flow"), DEPLOYMENT]))

    [action] = monitoring.wanted_zombie_automation("technicia").actions
    assert (action.type, action.state.value, action.name, action.force) == ("change-flow-run-state", "CRASHED",
                                                                           "Crashed", False)
    assert action.message.startswith("process lost: no heartbeat for 150 s")


def test_the_zombie_automation_is_created_once(prefect_server):
    from tasks import monitoring

    project = f"unit{uuid.uuid4().hex[:6]}"
    assert monitoring.ensure_zombie_automation(project) == "created"
    assert monitoring.ensure_zombie_automation(project) == "unchanged"


def test_a_deployment_run_whose_heartbeats_stop_is_marked_crashed(prefect_server, monkeypatch):
    """Against the server, with a 10 s window (the server's minimum): one heartbeat then silence -> Crashed; a run that suspends
    itself after its heartbeat (an approval) is left Suspended."""
    import time
    from datetime import timedelta

    from prefect import flow, get_client
    from prefect.events import emit_event
    from prefect.states import Running, Suspended

    from tasks import monitoring

    @flow(name="promote-release")
    def placeholder():
        pass

    project = f"unit{uuid.uuid4().hex[:6]}"
    wanted = monitoring.wanted_zombie_automation(project)
    wanted.trigger.within = timedelta(seconds=10)
    with get_client(sync_client=True) as client:
        automation_id = client.create_automation(wanted)
        try:
            flow_id = client.create_flow_from_name("promote-release")
            deployment_id = client.create_deployment(flow_id=flow_id, name=f"zombie-{project}")
            runs = {}
            for label in ("dead", "suspended"):
                run = client.create_flow_run_from_deployment(deployment_id, name=f"{label}-{project}")
                client.set_flow_run_state(run.id, Running(), force=True)
                runs[label] = run.id
            time.sleep(1)  # the automation is loaded by the server's trigger service
            for label, run_id in runs.items():
                emit_event(event="prefect.flow-run.heartbeat",
                           resource={"prefect.resource.id": f"prefect.flow-run.{run_id}"},
                           related=[{"prefect.resource.id": f"prefect.flow.{flow_id}", "prefect.resource.role": "flow",
                                     "prefect.resource.name": "promote-release"},
                                    {"prefect.resource.id": f"prefect.deployment.{deployment_id}",
                                     "prefect.resource.role": "deployment"}])
            time.sleep(2)  # the suspension comes after the heartbeat, as in a real run
            client.set_flow_run_state(runs["suspended"], Suspended(timeout_seconds=3600), force=True)
            deadline = time.monotonic() + 60
            while client.read_flow_run(runs["dead"]).state.type.value != "CRASHED" and time.monotonic() < deadline:
                time.sleep(1)
            dead = client.read_flow_run(runs["dead"])
            assert dead.state.type.value == "CRASHED", dead.state
            assert dead.state.message.startswith("process lost: no heartbeat for 150 s")
            time.sleep(6)  # past the suspended run's window too
            assert client.read_flow_run(runs["suspended"]).state.name == "Suspended"
        finally:
            client.delete_automation(automation_id)
            if "deployment_id" in locals():
                client.delete_deployment(deployment_id)


# --- promotions: every failed promote-release run alerts production's destinations ---------------------------------

def test_the_promotion_trigger_matches_every_failed_promote_release_run():
    from prefect.events.schemas.automations import Posture

    from tasks import monitoring

    trigger = monitoring.promotion_trigger()
    assert trigger.expect == {"prefect.flow-run.Failed", "prefect.flow-run.TimedOut", "prefect.flow-run.Crashed"}
    assert trigger.match_related.root == {"prefect.resource.role": "flow", "prefect.resource.name": "promote-release"}
    assert (trigger.posture, trigger.threshold) == (Posture.Reactive, 1)

    server = _server_trigger(trigger)
    from_deployment = [_flow("promote-release"), DEPLOYMENT, _tag("flow:promote-release"), _tag("promotion")]
    assert server.covers(_event("prefect.flow-run.Failed", from_deployment))  # e.g. a failed gate
    assert server.covers(_event("prefect.flow-run.Failed", [_flow("promote-release")]))  # in-process, no tag at all
    assert server.covers(_event("prefect.flow-run.Crashed", from_deployment))
    assert server.covers(_event("prefect.flow-run.TimedOut", from_deployment))
    for waiting in ("Suspended", "Paused", "Completed", "Running"):  # the approval wait is no failure
        assert not server.covers(_event(f"prefect.flow-run.{waiting}", from_deployment))
    # A promotion's deploy subflow is the environment's business (its env: automation), not this one's.
    assert not server.covers(_event("prefect.flow-run.Failed", [_flow("deploy-environment"), _tag("env:test"),
                                                                _tag("promotion:0b3a")]))
    # ... and the environments' automations do not see promotions: one alert per failed promotion.
    assert not _server_trigger(monitoring.alert_trigger("production")).covers(
        _event("prefect.flow-run.Failed", from_deployment))


def test_promotion_alerts_use_productions_blocks_and_skip_unusable_destinations(prefect_server, inbox):
    from prefect.client.orchestration import get_client

    from tasks import monitoring

    _, http_port, _ = inbox
    project = f"unit{uuid.uuid4().hex[:6]}"
    urls = {"ops-webhook": f"json://127.0.0.1:{http_port}/hooks/production/TOKEN", "pager": "nosuchscheme://abc"}
    assert monitoring.ensure_promotion_alerts(project, urls) == ("created", ["pager"])
    assert monitoring.ensure_promotion_alerts(project, urls) == ("unchanged", ["pager"])
    assert monitoring.ensure_promotion_alerts(project, {"pager": "nosuchscheme://abc"}) == ("none (no destinations)",
                                                                                          ["pager"])
    block_id, changed = monitoring.ensure_notification_block(
        monitoring.notification_block_name(project, "production", "ops-webhook"), urls["ops-webhook"])
    assert not changed  # production's own notification block, the one its monitoring.alerts step keeps
    with get_client(sync_client=True) as client:
        [automation] = client.read_automations_by_name(monitoring.promotion_automation_name(project))
        try:
            assert [str(a.block_document_id) for a in automation.actions] == [block_id]
        finally:
            client.delete_automation(automation.id)


def test_a_promotion_that_fails_alerts_productions_destinations_even_before_production_exists(
        prefect_server, inbox, monkeypatch):
    """promote-release ensures the automation when it starts: its first failure (here its version does not resolve,
    as a failed gate or a rejected approval would end it too) reaches production's destinations."""
    from types import SimpleNamespace

    from prefect.client.orchestration import get_client

    from flows import promote_release as module
    from tasks import monitoring, runtime
    from technicia_deploy import versions

    record, http_port, _ = inbox
    project = f"unit{uuid.uuid4().hex[:6]}"
    urls = {"ops-webhook": f"json://127.0.0.1:{http_port}/hooks/production/{project}"}
    production = SimpleNamespace(alerts=lambda: SimpleNamespace(urls=lambda: urls),
                                 application=SimpleNamespace(repository="git://nowhere/app.git"))
    monkeypatch.setattr(runtime, "environment", lambda name, project="technicia": production)

    def unknown(repository, version, timeout=60.0):
        raise versions.UnknownVersion(f"version {version!r} does not exist in the repository")

    monkeypatch.setattr(versions, "resolve", unknown)
    try:
        state = module.promote_release(version="v9.9.9", operator="unit", project=project, return_state=True)
        assert state.is_failed()
        entry = receiver.wait_for(record, lambda e: e.get("path") == f"/hooks/production/{project}", timeout=60)
        assert "Promotion promote-v9.9.9 ended Failed" in entry["body"]["message"]
        assert "version 'v9.9.9' does not exist" in entry["body"]["message"]
        assert entry["body"]["title"] == f"[{project} promotion] promote-v9.9.9 Failed"
    finally:
        with get_client(sync_client=True) as client:
            for automation in client.read_automations_by_name(monitoring.promotion_automation_name(project)):
                client.delete_automation(automation.id)
