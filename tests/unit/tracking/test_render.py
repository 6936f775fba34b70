"""The tracking document rendered from recorded histories: sections, statuses, languages."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from technicia_deploy.steps import PHASES, STEPS
from technicia_deploy.tracking.history import ArtifactRecord, DeploymentRecord, FlowRunRecord, History
from technicia_deploy.tracking.labels import TABLES, Labels
from technicia_deploy.tracking.render import cell, overall_status, render
from tests.unit.tracking.builders import HistoryBuilder

RECORDED = Path(__file__).parent / "recorded"
SECTIONS_FR = ("## État Global du Déploiement", "## Environnements", "## Configuration du Serveur OVH",
               "## Configuration du Firewall", "## Processus de Déploiement - Environnement de Test",
               "## Processus de Déploiement - Environnement de Staging",
               "## Processus de Déploiement - Environnement de Production", "## Configuration des Clés API",
               "## Problèmes Rencontrés", "## Maintenance et Mises à Jour Planifiées", "## Notes et Observations")


def recorded(name: str) -> History:
    return History.from_json((RECORDED / name).read_text())


def section(document: str, heading: str) -> str:
    return document.split(heading, 1)[1].split("\n## ", 1)[0]


def row(document: str, heading: str, label: str) -> list[str]:
    line = next(line for line in section(document, heading).splitlines() if line.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("|--")]


def test_recorded_failure_shows_blocked_step_with_error_and_open_problem():
    document = render(recorded("server_failed_v1.json"), "fr")
    process = "## Processus de Déploiement - Environnement de Test"
    firewall = row(document, process, "- Configuration Firewall")
    assert firewall[1] == "Bloqué" and firewall[5].startswith("RuntimeError: server.firewall broke on test")
    assert row(document, process, "**Préparation du serveur**")[1] == "Bloqué"
    assert row(document, process, "**Déploiement des services**")[1] == "Non commencé"
    problem = [r for r in table_rows(section(document, "## Problèmes Rencontrés")) if r.startswith("| P-")]
    assert len(problem) == 1 and "| Ouvert |" in problem[0]
    assert "**Prochaine étape :** Résoudre le problème P-" in document


def test_recorded_rerun_resolves_the_problem():
    document = render(recorded("server_resolved_v2.json"), "fr")
    problem = [r for r in table_rows(section(document, "## Problèmes Rencontrés")) if r.startswith("| P-")]
    assert len(problem) == 1
    assert "| Résolu |" in problem[0] and "release v2" in problem[0]
    assert "**État global :** Complété" in document


@pytest.mark.parametrize("name", ["server_failed_v1.json", "server_resolved_v2.json"])
def test_recorded_histories_round_trip_through_json(name):
    history = recorded(name)
    assert History.from_json(history.to_json()) == history


def _full_history() -> History:
    b = HistoryBuilder()
    b.deploy("test", "v1.0.0")
    b.deploy("staging", "v1.0.0", fail_at="https.certificate", error="CertbotError: too many | requests\nretry later")
    b.deploy("staging", "v1.0.0")
    b.deploy("production", "v1.0.0", extra_tags=("approver:dave", "docs-confirmed"))
    b.artifact("api-keys-production", [
        {"service": s, "environment": "production", "status": "ok", "latency_ms": 120, "fingerprint": "sha256:ab12",
         "checked_at": b.clock.isoformat()} for s in ("documentai", "vision", "voyageai", "anthropic")
    ])
    return b.build()


def test_every_section_is_present_and_filled():
    document = render(_full_history(), "fr")
    positions = [document.index(heading) for heading in SECTIONS_FR]
    assert positions == sorted(positions)
    for env in ("Test", "Staging", "Production"):
        assert row(document, "## Environnements", env)[1] == "Déployé"
    # every catalogue step has its row in each process table, in catalogue order
    for env in ("Test", "Staging", "Production"):
        text = section(document, f"## Processus de Déploiement - Environnement de {env}")
        labels = [line.split("|")[1].strip() for line in table_rows(text)[1:]]
        assert labels == [x for p in PHASES for x in (f"**{p.fr}**", *(f"- {s.fr}" for s in p.steps))]
    assert "Responsable" in document and "| dave |" not in document
    assert row(document, "## Processus de Déploiement - Environnement de Production", "- Installation OS")[4] == \
        "alice (approuvé par dave)"


def test_english_is_the_same_document_in_english():
    history = _full_history()
    fr, en = render(history, "fr"), render(history, "en")
    assert len(fr.splitlines()) == len(en.splitlines())
    assert [len(line.split("|")) for line in fr.splitlines()] == [len(line.split("|")) for line in en.splitlines()]
    for word in ("Complété", "Bloqué", "Non commencé", "Environnement", "Résolu", "Déployé", "Préparation"):
        assert word not in en
    assert "**Overall status:** Completed" in en
    assert "| - Firewall configuration | Completed |" in en


def test_label_tables_have_the_same_keys():
    assert set(TABLES["fr"]) == set(TABLES["en"])
    with pytest.raises(ValueError, match="unknown language"):
        Labels("de")


def test_failure_text_is_kept_on_one_table_line():
    document = render(_full_history(), "fr")
    problem = next(r for r in table_rows(section(document, "## Problèmes Rencontrés")) if r.startswith("| P-"))
    assert "too many \\| requests retry later" in problem
    assert cell("x" * 400).endswith("…") and len(cell("x" * 400)) == 300


def test_no_history_is_planned_with_every_step_not_started():
    history = HistoryBuilder().build()
    document = render(history, "fr")
    assert "**État global :** Planifié" in document
    assert "**Environnement en cours :** N/A" in document
    assert "**Prochaine étape :** Déploiement sur environnement de Test" in document
    assert row(document, "## Environnements", "Production")[1] == "Non déployé"
    rows = table_rows(section(document, "## Processus de Déploiement - Environnement de Staging"))[1:]
    assert len(rows) == len(PHASES) + len(STEPS) and all("| Non commencé |" in r for r in rows)
    assert overall_status(history) == "planned"


def test_running_deployment_shows_progress_and_next_step():
    b = HistoryBuilder()
    b.deploy("test", "v1.0.0")
    b.deploy("staging", "v1.0.1", running_at="https.certbot")
    history = b.build()
    document = render(history, "fr")
    assert "**État global :** En cours" in document
    assert "**Environnement en cours :** Staging" in document
    assert "**Prochaine étape :** Installation Certbot (Staging)" in document
    process = "## Processus de Déploiement - Environnement de Staging"
    assert row(document, process, "- Installation Certbot")[1] == "En cours"
    assert row(document, process, "**Configuration HTTPS**")[1] == "En cours"
    assert row(document, process, "**Déploiement des services**")[1] == "Complété"
    assert row(document, "## Environnements", "Staging")[1] == "Déploiement en cours"


def test_completed_everywhere_suggests_promoting_the_newest_release():
    b = HistoryBuilder()
    for env in ("test", "staging", "production"):
        b.deploy(env, "v1.0.0")
    b.deploy("test", "v1.1.0", sha="fedcba9876543210fedc")
    document = render(b.build(), "fr")
    assert "**Prochaine étape :** Déploiement de la release v1.1.0 sur environnement de Staging" in document
    assert row(document, "## Environnements", "Test")[4] == "v1.1.0 (fedcba987654)"
    assert row(document, "## Environnements", "Staging")[4] == "v1.0.0 (0123456789ab)"


def test_sha_falls_back_to_the_clone_summary():
    b = HistoryBuilder()
    run = b.deploy("test", "v1.0.0", sha="00112233445566778899")
    b.runs[-1] = FlowRunRecord(**{**run.__dict__, "tags": tuple(t for t in run.tags if not t.startswith("sha:"))})
    assert row(render(b.build(), "fr"), "## Environnements", "Test")[4] == "v1.0.0 (001122334455)"


def test_unchanged_steps_say_so():
    b = HistoryBuilder()
    b.deploy("test", "v1", unchanged=("server.docker",))
    document = render(b.build(), "en")
    assert row(document, "## Deployment Process - Test Environment", "- Docker installation")[5] == "(unchanged) server.docker done"


def test_server_configuration_marks_differences():
    b = HistoryBuilder()
    b.artifact("server-production", [
        {"parameter": "model", "ovh": "VPS-SSD-4", "server": None},
        {"parameter": "vcores", "ovh": "4", "server": "4"},
        {"parameter": "ram_gb", "ovh": "8", "server": "7"},
        {"parameter": "ip", "ovh": "203.0.113.10", "server": "203.0.113.10"},
    ])
    document = render(b.build(), "fr")
    heading = "## Configuration du Serveur OVH"
    assert row(document, heading, "Modèle")[1:] == ["VPS-SSD-2", "-", "-", "-"]  # test: not observed
    production = section(document, "### Serveur Production (VPS-PRODUCTION-XYZ)")
    assert "| Modèle | VPS-SSD-4 | VPS-SSD-4 | - | ✓ |" in production
    assert "| CPU | 4 vCores | 4 vCores | 4 vCores | ✓ |" in production
    assert "| RAM | 8 GB | 8 GB | 7 GB | ≠ écart |" in production
    assert "| IP | - | 203.0.113.10 | 203.0.113.10 | ✓ |" in production
    assert "| OS | Ubuntu Server 22.04 LTS | - | - | non relevé |" in production


def test_firewall_compares_intended_exposure_with_the_last_security_test():
    b = HistoryBuilder()
    b.artifact("security-staging", [
        {"port": 22, "protocol": "tcp", "observed": "open", "checked_at": "2025-03-25T10:00:00+00:00"},
        {"port": 443, "protocol": "tcp", "observed": "closed", "checked_at": "2025-03-25T10:00:00+00:00"},
        {"port": 6333, "protocol": "tcp", "observed": "open", "checked_at": "2025-03-25T10:00:00+00:00"},
        {"port": 5678, "protocol": "tcp", "observed": "filtered", "checked_at": "2025-03-25T10:00:00+00:00"},
        {"port": 8080, "protocol": "tcp", "observed": "open", "checked_at": "2025-03-25T10:00:00+00:00"},
        # rows as technicia_deploy/checks/security.py writes them: no protocol, a finding, non-port findings
        {"port": 80, "service": "HTTP", "expected": "public", "observed": "open", "severity": "", "finding": ""},
        {"port": 3306, "service": "MySQL", "expected": "closed", "observed": "open", "severity": "high",
         "finding": "3306/tcp reachable from outside"},
        {"port": "", "service": "headers", "expected": "", "observed": "https://staging", "severity": "low", "finding": "x"},
    ])
    document = render(b.build(), "fr")
    staging = section(document, "## Configuration du Firewall").split("### Staging", 1)[1].split("###", 1)[0]
    assert "Dernier test de sécurité : 25 mars 2025 10:00 UTC." in staging
    assert "| 22/tcp | SSH | Public | ouvert | Accès administrateur |" in staging
    assert "| 443/tcp | HTTPS | Public | fermé ⚠ écart |" in staging
    assert "| 6333/tcp | Qdrant API | Interne uniquement | ouvert ⚠ écart |" in staging
    assert "| 5678/tcp | n8n | Interne uniquement | filtré |" in staging
    assert "| 8080/tcp | - | Non déclaré | ouvert ⚠ écart | - |" in staging
    assert "| 80/tcp | HTTP | Public | ouvert | Redirection vers HTTPS |" in staging
    assert "| 3306/tcp | MySQL | Non déclaré | ouvert ⚠ écart (3306/tcp reachable from outside) | - |" in staging
    assert "Aucun test de sécurité enregistré (artefact `security-test`)." in document


def test_api_keys_table_comes_from_the_latest_smoke_calls():
    b = HistoryBuilder()
    # the columns tasks/api_keys.py publishes
    b.artifact("api-keys-test", [
        {"service": "Google Document AI", "environment": "test", "status": "ok", "latency_ms": 85.4, "attempts": 1,
         "key_fingerprint": "sha256:1a2b3c", "quota_headroom": "not reported", "detail": "", "fix": "",
         "checked_at": "2025-03-24 10:00:00 UTC"},
        {"service": "Anthropic", "environment": "test", "status": "invalid_credential", "latency_ms": 12, "attempts": 1,
         "key_fingerprint": "sha256:9f9f", "quota_headroom": "not reported", "detail": "HTTP 401",
         "fix": "replace the key", "checked_at": "2025-03-24 10:00:01 UTC"},
        {"service": "VoyageAI", "environment": "test", "status": "rate_limited", "latency_ms": None, "attempts": 3,
         "key_fingerprint": "sha256:7e7e", "quota_headroom": "", "detail": "HTTP 429", "fix": "",
         "checked_at": "2025-03-24 10:00:02 UTC"},
        {"service": "Google Vision", "environment": "test", "status": "ok", "latency_ms": 40, "attempts": 1,
         "key_fingerprint": "sha256:5555", "quota_headroom": "requests 90/100", "detail": "", "fix": "",
         "checked_at": "2025-03-24 10:00:03 UTC"},
    ])
    document = render(b.build(), "fr")
    heading = "## Configuration des Clés API"
    rows = table_rows(section(document, heading))[1:]
    assert len(rows) == 12  # 4 services x 3 environments, as in the seed
    assert "| Google Cloud (Document AI) | Test | Valide | 24 mars 2025 10:00 UTC | 85 ms | sha256:1a2b3c | - |" in rows
    assert "| Anthropic (Claude) | Test | Clé invalide | 24 mars 2025 10:00 UTC | 12 ms | sha256:9f9f | HTTP 401; replace the key |" in rows
    assert "| VoyageAI | Test | Limite de débit atteinte | 24 mars 2025 10:00 UTC | - | sha256:7e7e | HTTP 429 |" in rows
    assert "| Google Cloud (Vision AI) | Test | Valide | 24 mars 2025 10:00 UTC | 40 ms | sha256:5555 | requests 90/100 |" in rows
    assert "| Google Cloud (Vision AI) | Production | Non vérifié | - | - | - | - |" in rows


def test_maintenance_lists_upcoming_then_recent_runs():
    b = HistoryBuilder()
    when = b.now + timedelta(days=1)
    b.maintenance += [
        FlowRunRecord("m1", "nightly-keys", "SCHEDULED", "Scheduled", "", when, None, None,
                      ("maintenance", "env:production", "flow:smoke-api-keys")),
        FlowRunRecord("m2", "renew-1", "FAILED", "Failed", "certbot exited 1", b.now - timedelta(days=1),
                      b.now - timedelta(days=1), b.now - timedelta(days=1),
                      ("maintenance", "env:staging", "flow:renew-certificates"), {"operator": "erin"}),
    ]
    rows = table_rows(section(render(b.build(), "fr"), "## Maintenance et Mises à Jour Planifiées"))[1:]
    # Times in the team's time zone (the schedules'); an upcoming run says what it will do (its name is random).
    assert rows[0] == ("| 24 avril 2025 11:00 CEST | Vérification des clés API | Production | Appel de vérification de "
                       "chaque clé API de chaque environnement | planificateur | Planifié |")
    assert rows[1] == "| 22 avril 2025 11:00 CEST | Renouvellement des certificats | Staging | renew-1 : certbot exited 1 | erin | Échec |"


def test_notes_are_live_checks():
    history = _full_history()
    notes = section(render(history, "fr"), "## Notes et Observations")
    lines = [line for line in notes.splitlines() if line.startswith("- ")]
    assert len(lines) == 4
    assert lines[0].startswith("- ✅ Les quotas d'API")
    # DNS configured during the production deployment itself: not 24 h before it
    assert lines[1].startswith("- ⚠️ La configuration DNS de production date du") and "0 h avant le déploiement" in lines[1]
    assert lines[2].startswith("- ⚠️ Aucun suivi des coûts")
    assert lines[3].startswith("- ✅ La documentation utilisateur a été confirmée") and "dave" in lines[3]


def test_notes_pass_when_dns_precedes_production_by_a_day_and_costs_are_monitored():
    b = HistoryBuilder()
    b.deploy("production", "v1", fail_at="services.clone")  # DNS is not reached: no DNS yet
    assert "⚠️ La configuration DNS de production n'a pas encore été faite" in render(b.build(), "fr")
    b.deploy("production", "v1", gap=timedelta(hours=30))
    b.deploy("production", "v1", unchanged=("https.dns",), extra_tags=("approver:dave",))
    b.cost.append(DeploymentRecord("cost-monitoring-daily", "cost-monitoring", True, "COMPLETED", b.clock))
    lines = [x for x in section(render(b.build(), "fr"), "## Notes et Observations").splitlines() if x.startswith("- ")]
    assert lines[1].startswith("- ✅ La configuration DNS de production date du"), lines[1]
    assert lines[2].startswith("- ✅ Le suivi des coûts des services cloud est actif (déploiement `cost-monitoring-daily`")
    assert lines[3].startswith("- ⚠️ La documentation utilisateur n'a pas été confirmée")
    assert re.search(r"quotas.*aucune vérification des clés de production", lines[0])


def test_quota_note_names_the_failing_services():
    b = HistoryBuilder()
    b.artifacts["api-keys-production"] = ArtifactRecord("api-keys-production", "table", [
        {"service": "documentai", "status": "ok"}, {"service": "vision", "status": "quota_exceeded"},
        {"service": "voyageai", "status": "ok"}, {"service": "anthropic", "status": "ok"},
    ], b.clock)
    assert "en échec : Google Cloud (Vision AI)" in render(b.build(), "fr")


def _rolled_back_history() -> History:
    import uuid

    from technicia_deploy.tracking.history import TaskRunRecord

    b = HistoryBuilder()
    b.deploy("test", "v1.0.0")
    failed = b.deploy("test", "v1.2.0", fail_at="services.deploy", error="ReleaseUnhealthy: api (running/unhealthy)")
    b.tasks.append(TaskRunRecord(str(uuid.uuid4()), failed.id, "services.rollback", "test", "COMPLETED", "Completed",
                                 "changed: rolled back to v1.0.0 (0123456789ab) (from v1.2.0 (bbbbbbbbbbbb)); "
                                 "functional tests: 5/5 checks passed", failed.end, failed.end, failed.end))
    return b.build()


def test_a_rolled_back_release_shows_where_the_environment_is_and_why():
    fr, en = render(_rolled_back_history(), "fr"), render(_rolled_back_history(), "en")
    status, version = row(fr, "## Environnements", "Test")[1], row(fr, "## Environnements", "Test")[4]
    assert status == "Retour à v1.0.0 (0123456789ab) (v1.2.0 en échec)" and version.startswith("v1.0.0")
    problem = section(fr, "## Problèmes Rencontrés")
    assert "ReleaseUnhealthy: api (running/unhealthy)" in problem
    assert "Retour automatique à v1.0.0 (0123456789ab), vérifié par les tests fonctionnels" in problem
    assert "rolled back to v1.0.0 (0123456789ab) automatically" in section(en, "## Problems")


def test_quota_note_says_who_confirmed_the_quotas_at_the_approval():
    b = HistoryBuilder()
    b.deploy("production", "v1.0.0", extra_tags=("approver:dave", "docs-confirmed", "quotas-confirmed"))
    b.artifact("api-keys-production", [{"service": s, "environment": "production", "status": "ok",
                                         "checked_at": b.clock.isoformat()} for s in ("documentai", "vision", "voyageai", "anthropic")])
    notes = section(render(b.build(), "fr"), "## Notes et Observations")
    assert "Quotas confirmés vérifiés lors de l'approbation de production (dave," in notes
