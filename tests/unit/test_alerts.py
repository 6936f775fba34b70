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
    assert automation.trigger.expect == {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"}
    assert {str(a.block_document_id) for a in automation.actions} == {block_id, other_id}
    related = {tuple(sorted(spec.items())) for spec in (s.root if hasattr(s, "root") else s for s in automation.trigger.match_related)}
    assert any(("prefect.resource.id", f"prefect.tag.env:{env}") in r for r in related)


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
