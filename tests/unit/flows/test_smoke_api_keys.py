"""The smoke-api-keys flow against a real Prefect server and the cloud emulator, with canary keys.

The keys are recognisable canaries registered in the emulator: the flow must pass with them, fail
clearly with a bad one, and no key value may appear in the Prefect database (WAL included), the
result storage, the artifacts or the logs.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from pydantic import SecretStr

from technicia_deploy.cloud import ApiKeysRejected
from technicia_deploy.config import ENVIRONMENTS
from technicia_deploy.sandbox import cloud as sandbox_cloud
from technicia_deploy.sandbox.cloud_emulator.registry import Registry
from technicia_deploy.sandbox.cloud_emulator.server import run_in_thread

PROJECT = "smokecanary"


def write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value)
    path.chmod(0o600)


def save_blocks(project: str, env: str, keys: sandbox_cloud.EnvironmentKeys, url: str, **overrides) -> None:
    from blocks import CloudApiKeys, TechniciaEnvironment, environment_block_name

    base = environment_block_name(project, env)
    fields = keys.block_fields(url)
    fields.update(overrides)
    CloudApiKeys(**fields).save(f"{base}-api-keys", overwrite=True)
    TechniciaEnvironment(
        name=env, application={}, settings={}, ovh_block=f"{project}-ovh", ssh_block=f"{base}-ssh",
        api_keys_block=f"{base}-api-keys", alerts_block=f"{base}-alerts",
    ).save(base, overwrite=True)


@pytest.fixture(scope="module")
def world(prefect_server, tmp_path_factory):
    """Canary keys for the three environments, registered in an emulator, stored in blocks."""
    directory = tmp_path_factory.mktemp("smoke-keys")
    emulator = run_in_thread({})
    canaries: list[str] = []
    all_keys = []
    for env in ENVIRONMENTS:
        anthropic = f"sk-ant-api03-CANARY-{env}-{secrets.token_hex(10)}"
        voyage = f"pa-CANARY-{env}-{secrets.token_hex(10)}"
        write_secret(directory / env / "anthropic.key", anthropic)
        write_secret(directory / env / "voyageai.key", voyage)
        keys = sandbox_cloud.ensure_keys(directory, env, emulator.url + "/token")
        account = json.loads(Path(keys.service_account_file).read_text())
        # A line from the middle of the PEM body: the service account's secret part.
        canaries += [anthropic, voyage, account["private_key"].splitlines()[10]]
        all_keys.append(keys)
        save_blocks(PROJECT, env, keys, emulator.url)
    emulator.emulator.registry = Registry.from_config(sandbox_cloud.emulator_config(all_keys))
    # A second project whose staging Anthropic key is a canary the service does not know.
    bad_key = f"sk-ant-api03-CANARYBAD-{secrets.token_hex(10)}"
    canaries.append(bad_key)
    save_blocks("smokebad", "staging", all_keys[1], emulator.url, anthropic_api_key=SecretStr(bad_key))
    yield {"emulator": emulator, "canaries": canaries, "directory": directory}
    emulator.stop()


@pytest.fixture(scope="module")
def runs(world, tmp_path_factory):
    """Both flows run once, with result persistence on so that the result storage is exercised too."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, PREFECT_RESULTS_PERSIST_BY_DEFAULT, temporary_settings

    from flows.smoke_api_keys import smoke_api_keys

    storage = tmp_path_factory.mktemp("results")
    with temporary_settings({PREFECT_RESULTS_PERSIST_BY_DEFAULT: True, PREFECT_LOCAL_STORAGE_PATH: storage}):
        good = smoke_api_keys(environment="all", project=PROJECT, timeout=10, return_state=True)
        bad = smoke_api_keys(environment="staging", project="smokebad", timeout=10, return_state=True)
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)  # the logs reach the database before it is scanned
    return {"good": good, "bad": bad, "storage": storage}


def test_all_environments_pass_and_each_gets_its_table_and_tag(runs):
    from prefect.artifacts import Artifact
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    state = runs["good"]
    assert state.is_completed()
    results = state.result()
    assert len(results) == 12 and {r["status"] for r in results} == {"ok"}
    # What it did, as the tracking document's maintenance table shows it.
    assert state.message == ("12 API key(s) answered their smoke call: test, staging, production "
                             "(documentai, vision, voyageai, anthropic)")
    assert {r["environment"] for r in results} == set(ENVIRONMENTS)

    for env in ENVIRONMENTS:
        artifact = Artifact.get(f"api-keys-{env}")
        assert artifact is not None and artifact.type == "table"
        table = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
        rows = {row["service"]: row for row in table}
        # The last version of the table may come from another test's run: it must still be this environment's.
        assert set(rows) == {"Google Document AI", "Google Vision", "VoyageAI", "Anthropic"}
        assert all(row["environment"] == env and row["key_fingerprint"].startswith("sha256:") for row in rows.values())
        if rows["Anthropic"]["status"] == "ok":  # staging's last version comes from the bad-key run
            assert "requests" in rows["Anthropic"]["quota_headroom"]

    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
    tags = {run.name: set(run.tags) for run in task_runs}
    for env in ENVIRONMENTS:
        assert f"env:{env}" in tags[f"check-api-keys-{env}"]


def test_a_bad_key_fails_the_run_naming_service_environment_and_fix(runs):
    state = runs["bad"]
    assert state.is_failed()
    with pytest.raises(ApiKeysRejected) as rejected:
        state.result()
    message = str(rejected.value)
    assert "Anthropic key of environment 'staging': invalid_credential" in message
    assert "environments.staging.api_keys.anthropic.api_key" in message
    statuses = {r["service"]: r["status"] for r in rejected.value.results}
    assert statuses == {"documentai": "ok", "vision": "ok", "voyageai": "ok", "anthropic": "invalid_credential"}


def test_no_key_value_reaches_the_database_logs_artifacts_or_results(runs, world):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.settings import PREFECT_HOME, PREFECT_SERVER_DATABASE_CONNECTION_URL

    # The logs were written (so the scan below means something).
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[runs["bad"].state_details.flow_run_id])))
    assert any("Anthropic [staging] invalid_credential" in log.message for log in logs)

    database = Path(PREFECT_SERVER_DATABASE_CONNECTION_URL.value().split("///", 1)[1])
    scanned = [p for p in database.parent.iterdir() if p.name.startswith(database.name)]  # .db, -wal, -shm
    assert database in scanned
    stored = [p for p in runs["storage"].rglob("*") if p.is_file()]
    assert stored, "result persistence was on: the results must have been written"
    scanned += stored + [p for p in Path(PREFECT_HOME.value()).rglob("*") if p.is_file()]
    # What the runs did write is found by this scan (a fingerprint), so an absent canary means absent.
    fingerprint = runs["bad"].result(raise_on_failure=False).results[-1]["fingerprint"].encode()
    found_fingerprint = False
    leaks = []
    for path in scanned:
        data = path.read_bytes()
        found_fingerprint |= fingerprint in data
        leaks += [f"{path}: canary {canary[:18]}..." for canary in world["canaries"] if canary.encode() in data]
    assert found_fingerprint
    assert not leaks, leaks


def test_a_repeated_check_in_one_run_calls_the_services_again_even_with_persisted_results(world, tmp_path):
    from prefect import flow
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, PREFECT_RESULTS_PERSIST_BY_DEFAULT, temporary_settings

    from tasks.api_keys import check_api_keys
    from technicia_deploy.sandbox.cloud_emulator.server import admin_request

    def vision_calls() -> int:
        return admin_request(world["emulator"].url, "GET", "/_admin/requests")["counts"]["vision"]

    @flow
    def check_twice():
        # Same parameters twice in one run, as a flow re-run from the top after a suspend would do.
        check_api_keys("test", project=PROJECT, timeout=10)
        check_api_keys("test", project=PROJECT, timeout=10)

    with temporary_settings({PREFECT_RESULTS_PERSIST_BY_DEFAULT: True, PREFECT_LOCAL_STORAGE_PATH: tmp_path}):
        before = vision_calls()
        check_twice()
    assert vision_calls() == before + 2  # no cached verdict


def test_cli_smoke_prints_the_table_and_sets_the_exit_status(world, capsys):
    from technicia_deploy.cli import main

    assert main(["smoke", "test", "--project", PROJECT, "--timeout", "10"]) == 0
    out = capsys.readouterr().out
    assert "Google Document AI" in out and "sha256:" in out and "requests" in out
    assert main(["smoke", "staging", "--project", "smokebad", "--timeout", "10"]) == 1
    out = capsys.readouterr().out
    assert "invalid_credential" in out and "fix:" in out
    assert not any(canary in out for canary in world["canaries"])


def test_the_daily_deployment_runs_this_flow_for_every_environment():
    import inspect

    import yaml

    from flows.smoke_api_keys import smoke_api_keys

    deployments = yaml.safe_load((Path(__file__).resolve().parents[3] / "deployments.yaml").read_text())["deployments"]
    entry = next(d for d in deployments if d["entrypoint"] == "flows/smoke_api_keys.py:smoke_api_keys")
    assert smoke_api_keys.name == "smoke-api-keys"
    assert entry["parameters"]["environment"] == "all"
    assert set(entry["parameters"]) <= set(inspect.signature(smoke_api_keys.fn).parameters)
    assert [s["cron"].split()[2:] for s in entry["schedules"]] == [["*", "*", "*"]]  # every day
