"""Promotion test -> staging -> production against the sandbox, its Prefect server (UI on) and its worker.

In order: production cannot be reached outside a promotion; a promotion whose DNS gate fails stops
before production; a promotion waits for its approval while the worker is restarted, is approved in the
real Prefect UI (headless Chromium) and deploys production with staging's SHA; a broken release rolls test
back and never reaches staging; reject, a missing confirmation and a timeout leave production untouched;
two deployments of one environment never overlap while two environments deploy in parallel.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.helpers import vps_exec

pytestmark = pytest.mark.e2e

GOOD, NEXT, BROKEN = "v1.0.0", "v1.1.0", "v1.2.0"
CLI = str(Path(sys.executable).parent / "technicia-deploy")


# -- helpers ------------------------------------------------------------------------------------
def cli(*args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=timeout, env=os.environ.copy())


def current_release(sandbox, env: str) -> str:
    return vps_exec(sandbox.data["vps"][env]["container"], "readlink /opt/technicia/current || echo none").strip()


def served_version(sandbox, env: str) -> str:
    """What the environment's API answers over HTTPS, from outside, on its domain (certificate verified)."""
    config = __import__("yaml").safe_load(sandbox.path("environments.yaml").read_text())["environments"][env]
    ip, domain = sandbox.data["vps"][env]["ip"], config["domain"]
    context = ssl.create_default_context(cafile=sandbox.data["acme"]["issuer_roots"])
    with httpx.Client(transport=httpx.HTTPTransport(verify=context), timeout=10) as client:
        answer = client.get(f"https://{ip}/api/version", headers={"Host": domain}, extensions={"sni_hostname": domain})
    assert answer.status_code == 200, answer.text
    return answer.json()["version"]


def read_run(run_id: str):
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


def wait_state(run_id: str, done, deadline_s: float = 900):
    """Poll the run until ``done(state)`` holds (or fail at the deadline naming its last state)."""
    deadline = time.monotonic() + deadline_s
    while True:
        run = read_run(run_id)
        if done(run.state):
            return run
        assert time.monotonic() < deadline, f"run {run.name} still {run.state.name}: {run.state.message}"
        time.sleep(1)


def promotion_runs(promotion_id: str) -> dict[str, list]:
    """The deploy runs of a promotion, by environment."""
    from prefect import get_client
    from prefect.client.schemas import filters as F

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=F.FlowRunFilter(
            tags=F.FlowRunFilterTags(all_=[f"promotion:{promotion_id}"])))
    found: dict[str, list] = {}
    for run in runs:
        env = next(t[4:] for t in run.tags if t.startswith("env:"))
        found.setdefault(env, []).append(run)
    return found


def start_promotion(version: str, *extra: str) -> str:
    done = cli("promote", version, "--operator", "e2e", "--no-wait", *extra, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.split("(", 1)[1].split(")", 1)[0]


def wait_for_approval(run_id: str):
    return wait_state(run_id, lambda s: s.is_paused() or s.is_final(), deadline_s=1200)


def final(run_id: str):
    return wait_state(run_id, lambda s: s.is_final(), deadline_s=1200)


# -- production only through a promotion --------------------------------------------------------
def test_production_is_refused_outside_a_promotion(sandbox):
    from prefect.deployments import run_deployment

    from flows.deploy_environment import deploy_environment

    done = cli("deploy", "production", "--version", GOOD, timeout=120)
    assert done.returncode == 2 and "only by an approved promotion" in done.stderr, done.stderr

    custom = run_deployment("deploy-environment/staging", parameters={"environment": "production", "version": GOOD},
                            timeout=600, as_subflow=False)
    assert custom.state.is_failed(), custom.state
    assert "the 'staging' deployment deploys staging only, not production" in custom.state.message

    in_process = deploy_environment(environment="production", version=GOOD, operator="e2e", return_state=True)
    assert in_process.is_failed() and "only by an approved promotion" in in_process.message

    assert current_release(sandbox, "production") == "none"  # nothing reached the server


@pytest.fixture(scope="module")
def dns_prepared(sandbox):
    done = cli("dns", "prepare", "production", timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_failed_gate_stops_before_production(sandbox, dns_prepared):
    from blocks import TechniciaEnvironment

    block = TechniciaEnvironment.load("technicia-production")
    settings = json.loads(json.dumps(block.settings))
    settings["promotion"] = {**settings.get("promotion", {}), "dns_age_policy": "block"}
    original = block.settings
    block.settings = settings
    block.save("technicia-production", overwrite=True)
    try:
        done = cli("promote", GOOD, "--operator", "e2e")
    finally:
        block.settings = original
        block.save("technicia-production", overwrite=True)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "gate(s) failed, production untouched: production-dns:" in done.stdout
    assert "younger than the 24 h minimum (policy: block)" in done.stdout
    assert current_release(sandbox, "production") == "none"


# -- the approved promotion ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def approved_promotion(sandbox, dns_prepared, tmp_path_factory):
    from technicia_deploy.sandbox import orchestration, processes, world

    from tests.e2e.prefect_ui import answer_approval

    run_id = start_promotion(GOOD)
    paused = wait_for_approval(run_id)
    assert paused.state.is_paused(), paused.state.message
    before_restart = {env: len(runs) for env, runs in promotion_runs(run_id).items()}

    # The pending approval holds no process: the worker is killed, the Prefect server restarted, both come back.
    url = sandbox.data["prefect"]["url"]
    assert processes.stop(sandbox, orchestration.WORKER_DAEMON)
    assert processes.stop(sandbox, world.PREFECT_DAEMON)
    assert world.prefect_up(sandbox, lambda line: None) == url
    orchestration.up(sandbox, url, lambda line: None)
    assert read_run(run_id).state.is_paused()

    shot = tmp_path_factory.mktemp("ui") / "approval-form.png"
    answer_approval(sandbox.data["prefect"]["url"].removesuffix("/api"), run_id,
                    {"approver": "Alice Martin", "decision": "approve", "documentation_finalised": True,
                     "quotas_verified": True, "comment": "e2e: approved in the UI"}, screenshot=shot)
    run = final(run_id)
    return {"id": run_id, "run": run, "before_restart": before_restart, "screenshot": shot}


def test_approved_promotion_deploys_production_with_stagings_sha(sandbox, approved_promotion):
    run = approved_promotion["run"]
    assert run.state.is_completed(), run.state.message
    runs = promotion_runs(approved_promotion["id"])
    # test and staging deployed once, before the pause; not again after the resume.
    assert approved_promotion["before_restart"] == {"test": 1, "staging": 1}
    assert {env: len(r) for env, r in runs.items()} == {"test": 1, "staging": 1, "production": 1}
    production = runs["production"][0]
    assert {"approver:Alice Martin", "docs-confirmed", "quotas-confirmed"} <= set(production.tags)

    sha_tags = {env: next(t for t in r[0].tags if t.startswith("sha:")) for env, r in runs.items()}
    assert len(set(sha_tags.values())) == 1, sha_tags
    assert current_release(sandbox, "production") == current_release(sandbox, "staging")
    assert sha_tags["production"][4:] in current_release(sandbox, "production")
    assert served_version(sandbox, "production") == served_version(sandbox, "staging") == GOOD.lstrip("v")
    assert approved_promotion["screenshot"].stat().st_size > 10_000


def test_tracking_document_shows_the_promotion_and_its_approval(sandbox, approved_promotion, tmp_path):
    out = tmp_path / "tracking.md"
    done = cli("report", "--output", str(out), timeout=120)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    sha = next(t for t in approved_promotion["run"].tags if t.startswith("sha:"))[4:]
    rows = [line for line in text.splitlines() if line.startswith(("| Test |", "| Staging |", "| Production |"))][:3]
    assert len(rows) == 3 and all("Déployé" in r and sha in r for r in rows), rows
    assert "approuvé par Alice Martin" in text
    notes = text.split("## Notes et Observations", 1)[1]
    assert "Alice Martin" in notes.split("documentation utilisateur")[1].splitlines()[0]


# -- a broken release -------------------------------------------------------------------------------
def test_broken_release_rolls_test_back_and_never_reaches_staging(sandbox, approved_promotion):
    staging_before, production_before = current_release(sandbox, "staging"), current_release(sandbox, "production")
    test_before = current_release(sandbox, "test")
    run_id = start_promotion(BROKEN)
    run = final(run_id)
    assert run.state.is_failed()
    assert "test failed" in run.state.message and "staging, production untouched" in run.state.message
    runs = promotion_runs(run_id)
    assert list(runs) == ["test"], runs
    test_run = runs["test"][0]
    assert "rolled back to v1.0.0" in test_run.state.message, test_run.state.message

    # From outside: test serves v1.0.0 again; on the server, current is what it was.
    assert served_version(sandbox, "test") == GOOD.lstrip("v")
    assert current_release(sandbox, "test") == test_before
    assert current_release(sandbox, "staging") == staging_before
    assert current_release(sandbox, "production") == production_before

    report = cli("report", "--lang", "en", timeout=120).stdout
    assert "v1.2.0" in report and "rolled back to v1.0.0" in report


# -- no approval, no production ----------------------------------------------------------------------
def test_reject_a_missing_confirmation_or_no_answer_leave_production_untouched(sandbox, approved_promotion):
    """Three promotions at once (they queue on test's and staging's locks): one rejected, one approved without the
    quota confirmation, one never answered before its (18 s) timeout."""
    production_before = current_release(sandbox, "production")
    answers = {
        start_promotion(NEXT): (["--reject", "--comment", "not this week"], "production approval rejected by Bob"),
        start_promotion(NEXT): (["--documentation-finalised"], "confirmation(s) missing: quotas API vérifiés"),
        start_promotion(NEXT, "--approval-timeout-hours", "0.005"): (None, "never resumed"),
    }
    for run_id, (how, _) in answers.items():
        if how is None:
            continue
        assert wait_for_approval(run_id).state.is_paused()
        done = cli("approve", run_id, "--approver", "Bob", *how, timeout=120)
        assert done.returncode == 0, done.stderr
    for run_id, (how, expected) in answers.items():
        run = final(run_id)
        assert run.state.is_failed() and expected in run.state.message, run.state.message
        if how is not None:
            assert "production untouched" in run.state.message
        assert "production" not in promotion_runs(run_id)
    assert current_release(sandbox, "production") == production_before


# -- locks ------------------------------------------------------------------------------------------
def step_ranges(run_id: str) -> list[tuple[float, float]]:
    from prefect import get_client
    from prefect.client.schemas import filters as F

    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(flow_run_filter=F.FlowRunFilter(id=F.FlowRunFilterId(any_=[run_id])), limit=200)
    return [(t.start_time.timestamp(), t.end_time.timestamp()) for t in tasks if t.start_time and t.end_time]


def test_two_deployments_of_one_environment_never_overlap(sandbox, approved_promotion):
    from prefect import get_client
    from prefect.client.schemas import filters as F
    from prefect.deployments import run_deployment

    started = time.time()
    from_cli = subprocess.Popen([CLI, "deploy", "test", "--version", GOOD, "--operator", "cli"], env=os.environ.copy(),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    from_ui = run_deployment("deploy-environment/test", parameters={"version": GOOD, "operator": "ui"}, timeout=0,
                             as_subflow=False)
    staging = run_deployment("deploy-environment/staging", parameters={"version": GOOD, "operator": "ui"}, timeout=0,
                             as_subflow=False)
    output, _ = from_cli.communicate(timeout=1200)
    assert from_cli.returncode == 0, output
    ui_run, staging_run = final(str(from_ui.id)), final(str(staging.id))
    assert ui_run.state.is_completed() and staging_run.state.is_completed()

    with get_client(sync_client=True) as client:
        test_runs = client.read_flow_runs(flow_run_filter=F.FlowRunFilter(
            tags=F.FlowRunFilterTags(all_=["env:test"]), start_time=F.FlowRunFilterStartTime(after_=_utc(started))),
            flow_filter=F.FlowFilter(name=F.FlowFilterName(any_=["deploy-environment"])))
        assert len(test_runs) == 2
        logs = {str(r.id): " ".join(log.message for log in client.read_logs(
            log_filter=F.LogFilter(flow_run_id=F.LogFilterFlowRunId(any_=[r.id])))) for r in test_runs}
    first, second = sorted(test_runs, key=lambda r: min(s for s, _ in step_ranges(str(r.id))))
    assert max(e for _, e in step_ranges(str(first.id))) <= min(s for s, _ in step_ranges(str(second.id)))
    assert f"test is held by run {first.name!r}" in logs[str(second.id)]
    # Different environments do not wait for each other: staging ran while test was deployed.
    staging_span = step_ranges(str(staging.id))
    test_span = [r for run in test_runs for r in step_ranges(str(run.id))]
    assert min(s for s, _ in staging_span) < max(e for _, e in test_span)
    assert max(e for _, e in staging_span) > min(s for s, _ in test_span)


def _utc(timestamp: float):
    from datetime import datetime, timezone

    return datetime.fromtimestamp(timestamp, tz=timezone.utc)


def test_rollback_on_demand_goes_back_once_and_verifies(sandbox, approved_promotion):
    # After the runs above, test runs v1.0.0 and its previous release is v1.1.0 (the unapproved promotions').
    assert GOOD in current_release(sandbox, "test")
    done = cli("rollback", "test", "--operator", "e2e", "--reason", "on-demand check", timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rolled back to v1.1.0" in done.stdout and "functional tests: 5 check(s) passed" in done.stdout
    assert served_version(sandbox, "test") == NEXT.lstrip("v")
    # previous was consumed: a second rollback has nothing to go back to and touches nothing.
    before = current_release(sandbox, "test")
    again = cli("rollback", "test", "--operator", "e2e", timeout=600)
    assert again.returncode == 1 and "no previous release to go back to" in again.stderr, again.stderr
    assert current_release(sandbox, "test") == before
