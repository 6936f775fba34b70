"""Faults in the services the pipeline depends on, injected into the sandbox: OVH, its DNS, the cloud APIs; and the
alerts a failure must raise.

On the sandbox's test environment (an earlier module's deployment is reused; deployed here only if there is none):

- OVH answering 500 twice: the ``https.dns`` step completes, the OVH client's two retries in its message and details;
- the zone's DNS server catching up only seconds after the refresh: the step waits, completes and says how long it
  waited; past its deadline it fails naming what the server still answers;
- the cloud APIs answering 429 (retry-after) then 503 then OK: the smoke flow ends OK, 3 attempts per service in its
  results and in the ``api-keys-test`` table; an invalid key fails at once (1 request), naming service and environment;
- a CLI-started deployment failing on OVH after the guard: its alert reaches test's webhook and mailbox;
- a promotion stopped by its test stage: its alert reaches production's destinations.

Every fault is cleared in a ``finally``; the environment is left as it was (same record, same release, same keys).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from technicia_deploy.sandbox import ovh as sandbox_ovh
from technicia_deploy.sandbox import receiver
from tests.e2e.helpers import block_changed, latest_table, vps_exec

pytestmark = pytest.mark.e2e

GOOD = "v1.0.0"
CLI = str(Path(sys.executable).parent / "technicia-deploy")
SERVICES = ("documentai", "vision", "voyageai", "anthropic")
ELSEWHERE = "203.0.113.9"  # TEST-NET-3: where the record points before the step puts it back
DNS_DELAY_S = 5


# -- helpers ------------------------------------------------------------------------------------
def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=timeout, env=os.environ.copy())


@contextmanager
def ovh_faults(sandbox):
    """``inject(path=..., status=..., count=..., method=...)`` for the OVH emulator; every fault cleared at the end."""
    try:
        yield lambda **fault: sandbox_ovh.admin(sandbox, "POST", "faults", fault)
    finally:
        sandbox_ovh.admin(sandbox, "DELETE", "faults")  # also drops the DNS delay and publishes what it held back


def cloud_admin(sandbox, method: str, path: str, payload: dict | None = None):
    answer = httpx.request(method, sandbox.data["cloud"]["url"] + path, json=payload, timeout=10)
    assert answer.status_code < 300, answer.text
    return answer.json() if answer.content else None


@contextmanager
def cloud_faults(sandbox):
    """``add(fault)`` for the cloud emulator (faults.py), its request log emptied first; faults cleared at the end."""
    cloud_admin(sandbox, "DELETE", "/_admin/requests")
    try:
        yield lambda fault: cloud_admin(sandbox, "POST", "/_admin/faults", fault)
    finally:
        cloud_admin(sandbox, "DELETE", "/_admin/faults")


def new_delivery(record: Path, already: int, match, timeout: float = 90) -> dict:
    """The first delivery after the first ``already`` ones that ``match``es, polled until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        for entry in receiver.read(record)[already:]:
            if match(entry):
                return entry
        assert time.monotonic() < deadline, f"no matching delivery within {timeout:.0f}s: " \
                                            f"{[receiver.text_of(e)[:160] for e in receiver.read(record)[already:]]}"
        time.sleep(0.5)


def ovh_secrets(sandbox) -> list[str]:
    known = sandbox.data["ovh"]
    return [Path(known[f"{field}_file"]).read_text().strip()
            for field in ("application_key", "application_secret", "consumer_key")]


def current_release(sandbox, env: str) -> str:
    return vps_exec(sandbox.data["vps"][env]["container"], "readlink /opt/technicia/current || echo none").strip()


def last_deploy_run(environment: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas import filters as F
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        [run] = client.read_flow_runs(
            flow_filter=F.FlowFilter(name=F.FlowFilterName(any_=["deploy-environment"])),
            flow_run_filter=F.FlowRunFilter(tags=F.FlowRunFilterTags(all_=[f"env:{environment}"])),
            sort=FlowRunSort.START_TIME_DESC, limit=1)
        tasks = client.read_task_runs(flow_run_filter=F.FlowRunFilter(id=F.FlowRunFilterId(any_=[run.id])))
    return run, {t.name: t for t in tasks}


def read_task_run(task_run_id):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_task_run(task_run_id)


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def test_env(sandbox):
    """The test environment deployed, its alert automations in place: what an earlier module left, else deployed now.

    Returns the version it runs (a failing deployment below asks for it: nothing would change if it went on)."""
    from prefect.client.orchestration import get_client

    from tasks.monitoring import automation_name

    def automations():
        with get_client(sync_client=True) as client:
            return client.read_automations_by_name(automation_name("technicia", "test"))

    current = current_release(sandbox, "test")
    if current == "none" or not automations():
        from flows.deploy_environment import deploy_environment

        state = deploy_environment(environment="test", version=GOOD, operator="e2e-faults", return_state=True)
        assert state.is_completed(), state.message
        current = current_release(sandbox, "test")
    assert automations(), "the test environment's alert automation is missing after its deployment"
    return Path(current).name.rsplit("-", 1)[0]  # releases/<version>-<sha12>


@pytest.fixture
def outside_a_flow():
    """Steps called directly share the 'local' runtime context (blocks, connections): released after the test."""
    from tasks import runtime

    yield runtime.environment("test")
    runtime.release()


def _dns_facts(ctx):
    from tasks.https import _subdomain
    from technicia_deploy import dns_check

    settings = ctx.settings
    servers = dns_check.authoritative_servers(settings.dns.zone, settings.dns.nameservers)
    return (settings.dns.zone, _subdomain(settings.domain, settings.dns.zone), settings.domain,
            lambda: {str(s): dns_check.answers(s, settings.domain, "A") for s in servers})


@contextmanager
def record_moved_away(sandbox, ctx):
    """The test domain's A record pointing elsewhere (published at once); put back and published at the end."""
    zone, sub, _, answers = _dns_facts(ctx)
    address = ctx.address()
    sandbox_ovh.admin(sandbox, "DELETE", "faults")  # no delay left over: the move is published at once
    ctx.ovh().ensure_record(zone, sub, "A", ELSEWHERE, ctx.settings.dns.ttl)
    assert set(map(frozenset, answers().values())) == {frozenset({ELSEWHERE})}
    try:
        yield address
    finally:
        sandbox_ovh.admin(sandbox, "DELETE", "faults")
        ctx.ovh().ensure_record(zone, sub, "A", address, ctx.settings.dns.ttl)
        assert set(map(frozenset, answers().values())) == {frozenset({address})}


# -- 1. OVH answering 500 twice -----------------------------------------------------------------
def test_ovh_500_twice_is_retried_by_the_client_and_the_dns_step_says_so(sandbox, test_env, outside_a_flow):
    from tasks import https

    zone = outside_a_flow.settings.dns.zone
    call = f"GET /domain/zone/{zone}/record"
    with ovh_faults(sandbox) as inject:
        inject(path=f"/domain/zone/{zone}/record", status=500, count=2, method="GET")
        state = https.dns(environment="test", return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert [(r["call"], r["status"], r["attempt"]) for r in result["details"]["ovh_retries"]] == [
        (call, 500, 1), (call, 500, 2)]
    assert state.message.startswith("unchanged: ")  # the record was right: retried reads, nothing written
    assert state.message.endswith(f"; OVH API retried 2 transient error(s): {call} HTTP 500 ×2")
    # The client absorbed the fault: the step itself ran once, its recorded state says the same as above.
    task_run = read_task_run(state.state_details.task_run_id)
    assert (task_run.run_count, task_run.state.type.value, task_run.state.message) == (1, "COMPLETED", state.message)


# -- 2. DNS propagating late --------------------------------------------------------------------
def test_a_late_dns_answer_is_waited_for_and_the_step_says_it_waited(sandbox, test_env, outside_a_flow):
    from tasks import https

    with record_moved_away(sandbox, outside_a_flow) as address:
        sandbox_ovh.admin(sandbox, "POST", "dns-delay", {"delay_s": DNS_DELAY_S})
        started = time.monotonic()
        state = https.dns(environment="test", return_state=True)
        took = time.monotonic() - started
    assert state.is_completed(), state.message
    details = state.result()["details"]
    assert DNS_DELAY_S - 0.5 <= details["propagation_wait_s"] <= took and details["propagation_polls"] >= 2
    assert state.message.startswith(f"changed: {outside_a_flow.settings.domain} A {address} (record written, ")
    assert f"after waiting {details['propagation_wait_s']:g}s for propagation ({details['propagation_polls']} rounds)" \
        in state.message


def test_a_dns_answer_later_than_the_deadline_fails_the_step_naming_the_server(sandbox, test_env, outside_a_flow):
    from tasks import https

    with record_moved_away(sandbox, outside_a_flow) as address:
        sandbox_ovh.admin(sandbox, "POST", "dns-delay", {"delay_s": 600})
        started = time.monotonic()
        state = https.dns(environment="test", deadline_s=3, return_state=True)
        took = time.monotonic() - started
        assert state.is_failed()
        [server] = _dns_facts(outside_a_flow)[3]()  # the zone's one authoritative server, "host:port"
        assert f"{outside_a_flow.settings.domain} A not yet {address} after 3s" in state.message
        assert f"{server} answers ['{ELSEWHERE}']" in state.message
        assert took < 30  # bounded: the deadline, one round more, no retry of the step
        assert read_task_run(state.state_details.task_run_id).run_count == 1


# -- 3. cloud APIs: an invalid key, then 429 + retry-after, 503, OK --------------------------------
def test_an_invalid_key_fails_the_smoke_run_at_once_naming_service_and_environment(sandbox):
    from pydantic import SecretStr

    from blocks import CloudApiKeys
    from flows.smoke_api_keys import smoke_api_keys

    forged = "sk-ant-api03-" + "f0rgedKey" * 9
    with cloud_faults(sandbox):
        with block_changed(CloudApiKeys, "technicia-test-api-keys", anthropic_api_key=SecretStr(forged)):
            state = smoke_api_keys(environment="test", return_state=True)
        seen = cloud_admin(sandbox, "GET", "/_admin/requests")
    assert state.is_failed()
    assert "1 API key check(s) failed" in state.message
    assert "Anthropic key of environment 'test': invalid_credential (HTTP 401" in state.message
    assert "Fix: create a new key in the Anthropic console" in state.message
    assert forged not in state.message
    # Not retried: one request reached the service, one attempt in the table.
    assert [r["status"] for r in seen["requests"] if r["service"] == "anthropic"] == [401]
    rows = {row["service"]: row for row in latest_table("api-keys-test")}
    assert (rows["Anthropic"]["status"], rows["Anthropic"]["attempts"]) == ("invalid_credential", 1)
    assert all(row["status"] == "ok" for name, row in rows.items() if name != "Anthropic"), rows
    assert forged not in json.dumps(rows)


def test_rate_limited_then_unavailable_then_ok_passes_on_the_third_attempt(sandbox):
    from flows.smoke_api_keys import smoke_api_keys

    retry_after = 2
    with cloud_faults(sandbox) as add:
        for service in SERVICES:  # consumed in order by each service's next requests with test's keys
            add({"service": service, "status": 429, "retry_after": retry_after, "environment": "test"})
            add({"service": service, "status": 503, "environment": "test"})
        results = smoke_api_keys(environment="test")
        seen = cloud_admin(sandbox, "GET", "/_admin/requests")
    assert {r["service"]: (r["status"], r["attempts"]) for r in results} == {s: ("ok", 3) for s in SERVICES}
    assert all(r["latency_ms"] >= retry_after * 1000 for r in results), results  # the retry-after was waited out
    assert seen["pending_faults"] == []
    for service in SERVICES:
        statuses = [r["status"] for r in seen["requests"] if r["service"] == service and r["environment"] == "test"]
        assert statuses[:2] == [429, 503] and set(statuses[2:]) == {200}, (service, statuses)
    rows = latest_table("api-keys-test")
    assert len(rows) == 4 and {(row["status"], row["attempts"]) for row in rows} == {("ok", 3)}, rows


# -- 4. a CLI-started deployment failing after the guard alerts its environment ------------------
def test_a_cli_deploy_failing_on_ovh_alerts_the_environments_destinations(sandbox, test_env):
    record = Path(sandbox.data["receiver"]["record"])
    service_name = sandbox.data["vps"]["test"]["service_name"]
    before = current_release(sandbox, "test")
    already = len(receiver.read(record))
    with ovh_faults(sandbox) as inject:
        inject(path=f"/vps/{service_name}", status=500, count=50, method="GET")  # OVH down for the VPS calls
        done = cli("deploy", "test", "--version", test_env, "--operator", "e2e-faults", timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    error = f"OVH API GET /vps/{service_name}: transient failure (HTTP 500: Internal Server Error; gave up after 4 attempts)"
    assert error in done.stderr, done.stderr

    run, steps = last_deploy_run("test")
    assert run.state.is_failed() and error in run.state.message
    assert steps["server.os"].state.type.value == "FAILED" and error in steps["server.os"].state.message
    assert "server.firewall" not in steps  # it stopped at the failing step
    assert current_release(sandbox, "test") == before

    def about_this_run(entry: dict) -> bool:
        text = receiver.text_of(entry)
        return f"Run {run.name} of test ended Failed" in text and error in text

    hook = new_delivery(record, already, lambda e: e["kind"] == "webhook" and e["path"].startswith("/hooks/test/")
                        and about_this_run(e))
    mail = new_delivery(record, already, lambda e: e["kind"] == "email" and e["to"] == ["ops-test@exemple.test"]
                        and about_this_run(e))
    assert hook["body"]["type"] == "failure" and "[technicia test] run Failed" in mail["subject"]
    delivered = receiver.text_of(hook) + receiver.text_of(mail) + done.stdout + done.stderr
    assert not [s[:6] for s in ovh_secrets(sandbox) if s in delivered]


# -- 5. a promotion that fails alerts production's destinations ----------------------------------
def test_a_failed_promotion_alerts_productions_destinations(sandbox, test_env):
    record = Path(sandbox.data["receiver"]["record"])
    service_name = sandbox.data["vps"]["test"]["service_name"]
    releases = {env: current_release(sandbox, env) for env in ("test", "staging", "production")}
    already = len(receiver.read(record))
    with ovh_faults(sandbox) as inject:
        inject(path=f"/vps/{service_name}", status=500, count=50, method="GET")  # its test stage cannot pass
        done = cli("promote", test_env, "--operator", "e2e-faults", timeout=600)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "test failed:" in done.stdout and "staging, production untouched" in done.stdout, done.stdout
    run_id = done.stdout.split("(", 1)[1].split(")", 1)[0]
    assert {env: current_release(sandbox, env) for env in releases} == releases

    def about_this_promotion(entry: dict) -> bool:
        text = receiver.text_of(entry)
        return f"Promotion promote-{test_env} ended Failed" in text and "test failed:" in text \
            and "staging, production untouched" in text

    hook = new_delivery(record, already, lambda e: e["kind"] == "webhook"
                        and e["path"].startswith("/hooks/production/") and about_this_promotion(e))
    mail = new_delivery(record, already, lambda e: e["kind"] == "email" and e["to"] == ["ops-production@exemple.test"]
                        and about_this_promotion(e))
    assert hook["body"]["type"] == "failure"
    assert mail["subject"].startswith(f"[technicia promotion] promote-{test_env} Failed")
    assert f"promotion:{run_id}" not in receiver.text_of(hook)  # the promotion's own run, not a subflow's
    # Its test stage alerted test's destinations too, as any failed run of test does.
    new_delivery(record, already, lambda e: e["kind"] == "webhook" and e["path"].startswith("/hooks/test/")
                 and f"promotion:{run_id}" in receiver.text_of(e) and "ended Failed" in receiver.text_of(e))
