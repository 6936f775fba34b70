"""The tracking document's maintenance table: what each maintenance run did, in the team's time zone.

Against a real Prefect server: a maintenance flow shaped like the conventions (flows/_maintenance.py, here with a
stand-in for the work) runs for all environments, a scheduled run waits, and a run that said nothing about itself
(Prefect's default message, a random name) completes; the history is read back as ``technicia-deploy report``
does. Offline: the recorded history (``recorded/maintenance.json``; TECHNICIA_RECORD_HISTORY=<dir> refreshes it)
rendered in French and English, row by row.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from technicia_deploy.tracking.history import FlowRunRecord, History
from technicia_deploy.tracking.labels import Labels
from technicia_deploy.tracking.render import render
from tests.unit.tracking.builders import HistoryBuilder

RECORDED = Path(__file__).parent / "recorded"
MARK = uuid.uuid4().hex[:8]
HEADING = {"fr": "## Maintenance et Mises à Jour Planifiées", "en": "## Scheduled Maintenance and Updates"}


def maintenance_rows(document: str, lang: str = "fr") -> list[str]:
    text = document.split(HEADING[lang], 1)[1].split("\n## ", 1)[0]
    return [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("|--")][1:]


# --- against a real server -------------------------------------------------------------------------

def _flows():
    from prefect import flow

    from flows import _maintenance
    from technicia_deploy.maintenance import Outcome

    def work(env) -> Outcome:
        return Outcome(env, f"certificate of {env}: 80 days left, chain verified [{MARK}]")

    @flow(name="maintenance-certificates", flow_run_name="certificates-{environment}")
    def certificates(environment: str = "all", project: str = "mttable"):
        return _maintenance.run(certificates, "certificates", "Certificates", environment, project, work,
                                touches_server=False)

    @flow(name="smoke-api-keys")
    def smoke(environment: str = "all") -> None:
        return None

    return certificates, smoke


@pytest.fixture(scope="module")
def history(prefect_server):
    import flows.deploy_environment as deploy
    from prefect import get_client, tags
    from prefect.states import Scheduled

    from technicia_deploy.tracking.history import bare_environments, read_history

    certificates, smoke = _flows()
    real_preflight = deploy.preflight
    deploy.preflight = lambda environment, project: environment  # no blocks: the work is a stand-in
    try:
        assert certificates(environment="all", return_state=True).is_completed()
    finally:
        deploy.preflight = real_preflight
    with tags("maintenance", "flow:smoke-api-keys"):
        smoke()
    with get_client(sync_client=True) as client:
        # The next scheduled run, as the deployment's schedule creates it (a random name until it starts).
        client.create_flow_run(certificates, parameters={"environment": "all"},
                               tags=["maintenance", "flow:maintenance-certificates"],
                               state=Scheduled(scheduled_time=datetime(2031, 1, 15, 2, 30, tzinfo=timezone.utc)))
        found = read_history(client, environments=bare_environments())
    record_to = os.environ.get("TECHNICIA_RECORD_HISTORY")
    if record_to:
        Path(record_to, "maintenance.json").write_text(found.to_json())
    return found


def test_each_environment_run_says_what_it_did_and_the_all_run_is_not_repeated(history):
    rows = [r for r in maintenance_rows(render(history, "fr")) if MARK in r]
    cells = [[c.strip() for c in r.strip("|").split("|")] for r in rows]
    assert [c[2] for c in cells] == ["Production", "Staging", "Test"]  # newest first
    for c in cells:
        assert c[1] == "Certificats"
        assert c[3] == f"unchanged: certificate of {c[2].lower()}: 80 days left, chain verified [{MARK}]"
        assert c[4:] == ["planificateur", "Complété"]
        assert c[0].endswith((" CET", " CEST"))
    # The 'all' run that created them has no row of its own.
    assert not any("certificates-all" in r for r in maintenance_rows(render(history, "fr")))


# --- the recorded history, offline ------------------------------------------------------------------

def recorded() -> History:
    return History.from_json((RECORDED / "maintenance.json").read_text())


def test_recorded_table_in_french_in_paris_time():
    rows = maintenance_rows(render(recorded(), "fr"))
    assert rows[0] == ("| 15 janvier 2031 03:30 CET | Certificats | Tous | Vérifier le certificat servi (jours restants, "
                       "chaîne, noms), le renouveler sous le seuil, tester le renouvellement (dry-run) | planificateur "
                       "| Planifié |")
    past = [[c.strip() for c in r.strip("|").split("|")] for r in rows[1:]]
    certificates = [c for c in past if c[1] == "Certificats"]
    assert [c[2] for c in certificates] == ["Production", "Staging", "Test"]
    assert all(c[3].startswith(f"unchanged: certificate of {c[2].lower()}: 80 days left") for c in certificates)
    assert all(c[0].endswith(" CET") for c in certificates)  # recorded on 2 December: winter time
    # A run that said nothing about itself shows its name, never Prefect's default message.
    smoke = next(c for c in past if c[1] == "Vérification des clés API")
    assert smoke[3] not in ("", "-", "All states completed.")


def test_recorded_table_in_english():
    rows = maintenance_rows(render(recorded(), "en"), "en")
    assert rows[0].startswith("| 15 Jan 2031 03:30 CET | Certificates | All | Check the served certificate")
    assert "| Completed |" in rows[1]


def test_times_follow_paris_summer_time_and_failures_say_why():
    b = HistoryBuilder()
    summer = datetime(2025, 7, 1, 0, 30, tzinfo=timezone.utc)
    b.maintenance += [
        FlowRunRecord("m1", "certificates-staging", "FAILED", "Failed",
                      "Flow run encountered an exception: staging: certbot renew --dry-run failed: challenge at /.well-known/acme-challenge/ answered 403",
                      summer, summer, summer + timedelta(seconds=40),
                      ("maintenance", "env:staging", "flow:maintenance-certificates")),
        FlowRunRecord("m2", "lumpy-dolphin", "COMPLETED", "Completed", "All states completed.",
                      summer - timedelta(days=1), summer - timedelta(days=1), summer - timedelta(days=1),
                      ("maintenance", "flow:smoke-api-keys")),
    ]
    rows = maintenance_rows(render(b.build(), "fr"))
    assert rows[0] == ("| 1 juillet 2025 02:30 CEST | Certificats | Staging | certificates-staging : staging: certbot renew "
                       "--dry-run failed: challenge at /.well-known/acme-challenge/ answered 403 | planificateur | Échec |")
    assert rows[1] == "| 30 juin 2025 02:30 CEST | Vérification des clés API | - | lumpy-dolphin | planificateur | Complété |"


def test_labels_in_a_zone():
    moment = datetime(2025, 3, 30, 1, 30, tzinfo=timezone.utc)  # an hour after the switch to summer time
    assert Labels("fr").datetime(moment, zone="Europe/Paris") == "30 mars 2025 03:30 CEST"
    assert Labels("en").datetime(moment - timedelta(hours=1), zone="Europe/Paris") == "30 Mar 2025 01:30 CET"
    assert Labels("en").datetime(moment) == "30 Mar 2025 01:30 UTC"


def test_upcoming_shows_the_next_run_of_each_flow_only():
    b = HistoryBuilder()
    day = timedelta(days=1)
    b.maintenance += [FlowRunRecord(f"d{i}", f"random-{i}", "SCHEDULED", "Scheduled", "", b.now + i * day, None, None,
                                    ("maintenance", "flow:maintenance-certificates"), {"environment": "all"})
                      for i in range(1, 12)]
    b.maintenance.append(FlowRunRecord("w1", "random-w", "SCHEDULED", "Scheduled", "", b.now + 5 * day, None, None,
                                       ("maintenance", "flow:maintenance-housekeeping"), {"environment": "all"}))
    rows = maintenance_rows(render(b.build(), "en"), "en")
    assert [r.split("|")[2].strip() for r in rows] == ["Certificates", "Docker housekeeping"]


def test_each_environment_s_last_drift_check_is_a_note():
    b = HistoryBuilder()
    when = b.now - timedelta(hours=3)
    b.maintenance += [
        FlowRunRecord("d1", "drift-test", "FAILED", "Failed",
                      "Flow run encountered an exception: DriftFound: test: 1 difference(s): firewall 8081/tcp: rule "
                      "`ufw allow 8081/tcp` allows it, declared nowhere (owner server.firewall)",
                      when, when, when, ("maintenance", "env:test", "flow:maintenance-drift")),
        FlowRunRecord("d0", "drift-test", "COMPLETED", "Completed", "unchanged: no drift",
                      when - timedelta(days=1), when - timedelta(days=1), when - timedelta(days=1),
                      ("maintenance", "env:test", "flow:maintenance-drift")),
        FlowRunRecord("d2", "drift-production", "COMPLETED", "Completed", "unchanged: no drift", when, when, when,
                      ("maintenance", "env:production", "flow:maintenance-drift")),
    ]
    notes = render(b.build(), "fr").split("## Notes et Observations", 1)[1]
    lines = [line for line in notes.splitlines() if line.startswith("- ")]
    assert len(lines) == 6
    assert lines[4] == ("- ⚠️ Contrôle de dérive de Test (23 avril 2025 06:00 UTC) : DriftFound: test: 1 difference(s): "
                        "firewall 8081/tcp: rule `ufw allow 8081/tcp` allows it, declared nowhere (owner server.firewall)")
    assert lines[5] == ("- ✅ Contrôle de dérive de Production (23 avril 2025 06:00 UTC) : le serveur est conforme à ce "
                        "que le pipeline déclare.")
