"""The tracking document against a real Prefect server, fed by a flow shaped like the contract (docs/tracking.md).

A fake ``deploy-environment`` flow runs one task per catalogue step (named by the
step id, untagged: its flow run carries ``env:<env>``), publishes through tracking.publish,
and fails at a chosen step. The document is then read back through the public
API exactly as ``technicia-deploy report`` does.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from technicia_deploy.steps import PHASES
from technicia_deploy.tracking.publish import DOCUMENT_KEY, DOCUMENT_KEY_EN, progress_key

SHA = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
# Other tests share the session's Prefect server: our releases and errors carry a marker of their own.
MARK = uuid.uuid4().hex[:8]
V1, V2 = f"v1-{MARK}", f"v2-{MARK}"


def _flows():
    from prefect import flow, task

    from tasks.step import StepResult, tracked_step, untagged
    from technicia_deploy.tracking import publish

    def make_step(step_id: str):
        """Steps through the real step wrapper (tasks/step.py); services.clone by hand, as the contract describes."""
        if step_id == "services.clone":
            def clone(environment: str, fail: bool):
                publish.record_commit(SHA)
                return publish.step_completed({"step": step_id, "outcome": "changed", "summary": f"checked out {SHA[:12]}", "details": {}})

            return task(name=step_id, task_run_name=step_id)(clone)

        def run(environment: str, fail: bool) -> StepResult:
            if fail:
                raise RuntimeError(f"{step_id} broke on {environment} [{MARK}]")
            return StepResult(step_id, "unchanged" if step_id == "server.os" else "changed", f"{step_id} ok")

        return tracked_step(step_id, retries=0)(run)

    steps = {s.id: make_step(s.id) for p in PHASES for s in p.steps}
    hooks = [publish.publish_on_end]

    @flow(name="deploy-environment", on_completion=hooks, on_failure=hooks, on_crashed=hooks)
    def deploy_environment(environment: str, version: str, operator: str, fail_step: str = "") -> None:
        publish.tag_flow_run(environment, version)
        publish.start_progress(environment)
        total, done = sum(len(p.steps) for p in PHASES), 0
        with untagged():
            for phase in PHASES:
                for s in phase.steps:
                    steps[s.id](environment, s.id == fail_step)
                done += len(phase.steps)
                publish.phase_ended(environment, phase.id, done=done, total=total)

    @flow(name="smoke-api-keys")
    def smoke(environment: str) -> None:
        from prefect.artifacts import create_table_artifact

        now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")  # as tasks/api_keys.py writes it
        create_table_artifact(
            [
                {"service": s, "environment": environment, "status": "ok", "latency_ms": 42.0 + i, "quota_headroom": "not reported",
                 "key_fingerprint": f"sha256:{i}f00", "checked_at": now}
                for i, s in enumerate(("documentai", "vision", "voyageai", "anthropic"))
            ],
            key=f"api-keys-{environment}",
        )

    return deploy_environment, smoke


@pytest.fixture(scope="module")
def deployed(prefect_server):
    """Two deployments of test: v1 fails at server.firewall, v2 succeeds; plus a smoke run and a scheduled maintenance."""
    from prefect import get_client
    from prefect.states import Scheduled

    from blocks import TechniciaEnvironment
    from tests.unit.tracking.builders import spec

    deploy, smoke = _flows()
    # The environment's settings as `blocks apply` stores them.
    TechniciaEnvironment(
        name="test", application={"repository": "https://example.invalid/app.git"},
        settings={"url": "https://test-technicia.exemple.fr", "domain": "test-technicia.exemple.fr",
                  "server": {"label": "VPS-TEST-XYZ", "model": "VPS-SSD-2", "vcores": 2, "ram_gb": 4, "disk_gb": 80,
                             "os": "Ubuntu Server 22.04 LTS", "zone": "GRA11"},
                  "firewall": {"public": [{"port": 443, "service": "HTTPS", "comment": "Frontend + API"}],
                               "internal": [{"port": 6333, "service": "Qdrant API"}]}},
        ovh_block="x", ssh_block="x", api_keys_block="x", alerts_block="x",
    ).save("technicia-test", overwrite=True)
    assert spec("test").url == "https://test-technicia.exemple.fr"

    with pytest.raises(RuntimeError, match="server.firewall broke"):
        deploy("test", V1, "alice", fail_step="server.firewall")
    with get_client(sync_client=True) as client:
        first = _history(client)
    deploy("test", V2, "bob")
    smoke("test")
    with get_client(sync_client=True) as client:
        # A scheduled maintenance run, as a deployment's schedule would create it.
        client.create_flow_run(
            smoke, parameters={"environment": "test"}, tags=["maintenance", "env:test", "flow:smoke-api-keys"],
            state=Scheduled(scheduled_time=datetime.now(timezone.utc) + timedelta(days=2)),
        )
        second = _history(client)
    record_to = os.environ.get("TECHNICIA_RECORD_HISTORY")
    if record_to:  # refresh the recorded histories the offline tests use
        Path(record_to, "server_failed_v1.json").write_text(first.to_json())
        Path(record_to, "server_resolved_v2.json").write_text(second.to_json())
    return first, second


def _history(client):
    """The history as `report` reads it, limited to the test environment (the one these runs deploy)."""
    from technicia_deploy.tracking.history import read_environment_blocks, read_history

    return read_history(client, environments=tuple(e for e in read_environment_blocks(client) if e.name == "test"))


def _problem_rows(document: str) -> list[list[str]]:
    """Problem rows opened by this module's runs."""
    section = document.split("## Problèmes Rencontrés", 1)[1].split("\n## ", 1)[0]
    return [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines()
            if line.startswith("| P-") and f"[{MARK}]" in line]


def _row(document: str, label: str, after: str) -> list[str]:
    section = document.split(after, 1)[1]
    line = next(line for line in section.splitlines() if line.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_failed_step_is_blocked_with_its_error_and_becomes_a_problem(deployed):
    from technicia_deploy.tracking.render import render

    first, _ = deployed
    document = render(first, "fr")
    process = "## Processus de Déploiement - Environnement de Test"
    row = _row(document, "- Configuration Firewall", process)
    assert row[1] == "Bloqué"
    assert f"RuntimeError: server.firewall broke on test [{MARK}]" in row[5]
    assert row[4] == "alice"
    assert _row(document, "- Installation OS", process)[1] == "Complété"
    assert "(inchangé) server.os ok" in _row(document, "- Installation OS", process)[5]
    assert _row(document, "- Installation Docker", process)[1] == "Non commencé"
    assert "**État global :** Bloqué" in document
    rows = _problem_rows(document)
    assert len(rows) == 1
    problem = rows[0]
    assert problem[1] == "Test" and problem[3] == "Ouvert"
    assert "Configuration Firewall" in problem[2] and "server.firewall broke" in problem[2]


def test_successful_rerun_resolves_the_problem_and_fills_the_document(deployed):
    from technicia_deploy.tracking.render import render

    _, second = deployed
    document = render(second, "fr")
    rows = _problem_rows(document)
    assert len(rows) == 1
    cells = rows[0]
    assert cells[3] == "Résolu"
    assert cells[5] != "-"
    assert f"release {V2}" in cells[6]
    env_row = _row(document, "Test", "## Environnements")
    assert env_row[1] == "Déployé"
    assert env_row[2] == "https://test-technicia.exemple.fr" and env_row[3] == "VPS-TEST-XYZ"
    assert env_row[4] == f"{V2} ({SHA[:12]})"
    process = "## Processus de Déploiement - Environnement de Test"
    for phase in PHASES:
        assert _row(document, f"**{phase.fr}**", process)[1] == "Complété"
    assert _row(document, "- Clonage du repository", process)[4] == "bob"
    assert "**État global :** Complété" in document
    keys = _row(document, "Anthropic (Claude)", "## Configuration des Clés API")
    assert keys[1] == "Test" and keys[2] == "Valide" and keys[4] == "45 ms" and keys[5] == "sha256:3f00"
    maintenance = document.split("## Maintenance et Mises à Jour Planifiées", 1)[1].split("##", 1)[0]
    assert "Vérification des clés API" in maintenance and "Planifié" in maintenance
    # The observed column depends on whichever security test last ran on this (shared) server.
    firewall = _row(document, "443/tcp", "## Configuration du Firewall")
    assert firewall[1:3] == ["HTTPS", "Public"] and firewall[-1] == "Frontend + API"


def test_published_artifacts_follow_the_run(deployed):
    from prefect import get_client
    from prefect.client.schemas import filters as F

    with get_client(sync_client=True) as client:
        latest = {
            a.key: a for a in client.read_latest_artifacts(
                artifact_filter=F.ArtifactCollectionFilter(key=F.ArtifactCollectionFilterKey(
                    any_=[DOCUMENT_KEY, DOCUMENT_KEY_EN, progress_key("test")])),
            )
        }
        ours = [r.id for r in client.read_flow_runs(
            flow_run_filter=F.FlowRunFilter(tags=F.FlowRunFilterTags(any_=[f"release:{V1}", f"release:{V2}"])), limit=10,
        )]
        versions = client.read_artifacts(
            artifact_filter=F.ArtifactFilter(key=F.ArtifactFilterKey(any_=[DOCUMENT_KEY]),
                                             flow_run_id=F.ArtifactFilterFlowRunId(any_=ours)),
            limit=200,
        )
    # The successful run's end hook published last: its final state is in the latest version.
    latest_fr, latest_en = latest[DOCUMENT_KEY].data, latest[DOCUMENT_KEY_EN].data
    assert f"release {V2} · Completed · opérateur bob" in latest_fr
    assert "| **Monitoring configuration** | Completed |" in latest_en
    assert float(latest[progress_key("test")].data) == 100.0
    # One version per run (its end), whatever the number of phases: progress is updated in place.
    assert len(versions) == 2
    assert sum(f"release {V1} · Failed" in v.data for v in versions) == 1


def test_problem_note_is_shown_beside_the_problem(deployed, capsys):
    from prefect import get_client

    from technicia_deploy.cli import main
    from technicia_deploy.tracking.history import read_history
    from technicia_deploy.tracking.render import problems, render

    _, second = deployed
    [pid] = [p.id for p in problems(second) if MARK in p.error]
    assert main(["problem", "note", pid.lower(), "Rule order fixed in ufw before.rules", "--by", "carol"]) == 0
    assert main(["problem", "note", "P-00000000", "nothing"]) == 2
    assert "no problem P-00000000" in capsys.readouterr().err
    with get_client(sync_client=True) as client:
        document = render(read_history(client), "fr")
    row = next(line for line in document.splitlines() if line.startswith(f"| {pid} |"))
    assert "Rule order fixed in ufw before.rules (carol," in row


def test_report_command_writes_the_english_document(deployed, tmp_path):
    from technicia_deploy.cli import main

    out = tmp_path / "tracking-en.md"
    assert main(["report", "--lang", "en", "--output", str(out)]) == 0
    document = out.read_text()
    assert document.startswith("# TechnicIA MVP Deployment Tracking")
    assert "| - Firewall configuration | Completed |" in document
    for french in ("Complété", "Bloqué", "Non commencé", "Environnement"):
        assert french not in document


def test_report_takes_environment_settings_from_a_config_file(deployed, tmp_path):
    from technicia_deploy.cli import main

    out = tmp_path / "tracking.md"
    example = Path(__file__).resolve().parents[3] / "environments.example.yaml"
    assert main(["report", "--config", str(example), "--output", str(out)]) == 0
    document = out.read_text()
    production = _row(document, "Production", "## Environnements")
    assert production[2:4] == ["https://technicia.exemple.fr", "VPS-PROD-XYZ"]
    assert "### Serveur Production (VPS-PROD-XYZ)" in document
    assert "| 6333/tcp | Qdrant API | Interne uniquement | non testé | Base vectorielle (accès interne uniquement) |" in document
