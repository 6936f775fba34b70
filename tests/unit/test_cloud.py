"""The API-key smoke checks, with the real SDKs over HTTP against the cloud emulator on 127.0.0.1."""

from __future__ import annotations

import json
import time

import pytest
from pydantic import SecretStr

from technicia_deploy import cloud
from technicia_deploy.cloud import ApiKeysRejected, RetryPolicy, Status, check_api_keys, raise_for_failures
from technicia_deploy.sandbox import cloud as sandbox_cloud
from technicia_deploy.sandbox.cloud_emulator.registry import Registry
from technicia_deploy.sandbox.cloud_emulator.server import admin_request, run_in_thread

FAST = RetryPolicy(max_attempts=3, base_delay=0.05, max_delay=2.0)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    directory = tmp_path_factory.mktemp("cloud")
    running = run_in_thread({})
    keys = sandbox_cloud.ensure_keys(directory, "test", running.url + "/token")
    running.emulator.registry = Registry.from_config(sandbox_cloud.emulator_config([keys]))
    running.env_keys = keys
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def only_loopback(monkeypatch):
    """Fail a test whose SDK tried to resolve anything but loopback (e.g. a background call to Google)."""
    import socket

    attempted: list[str] = []
    real = socket.getaddrinfo

    def guarded(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost", "::1"):
            attempted.append(str(host))
            raise socket.gaierror(f"test network guard: {host} is not loopback")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)
    yield
    assert not attempted, f"non-loopback lookups: {attempted}"


@pytest.fixture
def emu(emulator):
    admin_request(emulator.url, "DELETE", "/_admin/faults")
    admin_request(emulator.url, "DELETE", "/_admin/requests")
    yield emulator
    admin_request(emulator.url, "DELETE", "/_admin/faults")


def block_for(emulator, **overrides):
    from blocks import CloudApiKeys

    fields = {**emulator.env_keys.block_fields(emulator.url), "voyageai_model": "voyage-3.5-lite",
              "anthropic_model": "claude-sonnet-4-6"}
    fields.update(overrides)
    return CloudApiKeys(**fields)


def by_service(results):
    return {r.service: r for r in results}


def fault(emu, **spec):
    admin_request(emu.url, "POST", "/_admin/faults", spec)


def counts(emu) -> dict[str, int]:
    return admin_request(emu.url, "GET", "/_admin/requests")["counts"]


def test_all_four_services_pass_with_the_sandbox_keys(emu):
    keys = block_for(emu)
    results = by_service(check_api_keys("test", keys, timeout=10, policy=FAST))

    assert set(results) == {"documentai", "vision", "voyageai", "anthropic"}
    assert {r.status for r in results.values()} == {Status.OK}
    assert all(r.attempts == 1 and r.latency_ms > 0 for r in results.values())
    # The fingerprint identifies the key without revealing it.
    anthropic_key = keys.anthropic_api_key.get_secret_value()
    assert results["anthropic"].fingerprint == cloud.fingerprint(anthropic_key)
    assert anthropic_key not in json.dumps([r.as_dict() for r in results.values()])
    # Anthropic reports its quota headroom in headers: it is recorded.
    assert int(results["anthropic"].quota["requests-remaining"]) < int(results["anthropic"].quota["requests-limit"])
    assert "requests" in cloud.quota_summary(results["anthropic"].quota)
    raise_for_failures(results.values())  # nothing to raise
    seen = counts(emu)
    assert seen["documentai"] == 1 and seen["vision"] == 1 and seen["voyageai"] == 1


@pytest.mark.parametrize("service", ["documentai", "vision", "voyageai", "anthropic"])
def test_an_invalid_key_fails_at_once_naming_service_environment_and_fix(emu, service, tmp_path):
    replacement = {
        "anthropic": {"anthropic_api_key": SecretStr(sandbox_cloud.new_anthropic_key())},
        "voyageai": {"voyageai_api_key": SecretStr(sandbox_cloud.new_voyage_key())},
        # A well-formed service account whose key the service has never seen: signed, but refused.
        "documentai": {"google_service_account_json": SecretStr(json.dumps(
            sandbox_cloud.new_service_account(emu.env_keys.project_id, "rogue", emu.url + "/token")))},
    }
    replacement["vision"] = replacement["documentai"]
    keys = block_for(emu, **replacement[service])
    results = by_service(check_api_keys("test", keys, timeout=10, policy=FAST, services=[service]))

    result = results[service]
    assert result.status is Status.INVALID_CREDENTIAL
    assert result.attempts == 1
    assert counts(emu)[service] == 1  # no retry reached the service
    with pytest.raises(ApiKeysRejected) as rejected:
        raise_for_failures(results.values())
    message = str(rejected.value)
    assert cloud.SERVICE_LABELS[service] in message and "'test'" in message and "invalid_credential" in message
    assert "environments.test.api_keys" in message and "blocks apply" in message


def test_each_service_reports_its_own_invalid_key_when_checked_together(emu):
    keys = block_for(emu, anthropic_api_key=SecretStr(sandbox_cloud.new_anthropic_key()),
                     voyageai_api_key=SecretStr("pa-not-a-real-key-000000"))
    results = by_service(check_api_keys("test", keys, timeout=10, policy=FAST))
    assert results["anthropic"].status is Status.INVALID_CREDENTIAL
    assert results["voyageai"].status is Status.INVALID_CREDENTIAL
    assert results["vision"].status is Status.OK and results["documentai"].status is Status.OK
    assert "invalid x-api-key" in results["anthropic"].detail
    assert "API key is invalid" in results["voyageai"].detail


@pytest.mark.parametrize("service", ["documentai", "vision", "voyageai", "anthropic"])
def test_a_429_with_retry_after_is_retried_then_succeeds(emu, service):
    fault(emu, service=service, status=429, retry_after=0.3)
    result = check_api_keys("test", block_for(emu), timeout=10, policy=FAST, services=[service])[0]
    assert result.status is Status.OK
    assert result.attempts == 2
    assert result.latency_ms >= 300  # the server's retry-after was honoured


def test_a_long_retry_after_is_capped(emu):
    fault(emu, service="voyageai", status=429, retry_after=60)
    started = time.monotonic()
    result = check_api_keys("test", block_for(emu), timeout=10, policy=RetryPolicy(max_delay=0.2), services=["voyageai"])[0]
    assert result.status is Status.OK and result.attempts == 2
    assert time.monotonic() - started < 5


def test_a_rate_limit_that_persists_gives_up_after_the_bounded_retries(emu):
    fault(emu, service="anthropic", status=429, retry_after=0.05, times=10)
    result = check_api_keys("test", block_for(emu), timeout=10, policy=FAST, services=["anthropic"])[0]
    assert result.status is Status.RATE_LIMITED
    assert result.attempts == FAST.max_attempts
    assert counts(emu)["anthropic"] == FAST.max_attempts
    assert "quota" in result.fix


def test_a_retry_after_beyond_the_budget_is_not_waited_for(emu):
    fault(emu, service="vision", status=429, retry_after=5)
    result = check_api_keys("test", block_for(emu), timeout=1.0, policy=RetryPolicy(max_delay=10), services=["vision"])[0]
    assert result.status is Status.RATE_LIMITED and result.attempts == 1
    assert "budget" in result.detail


@pytest.mark.parametrize("service,status", [("documentai", 503), ("anthropic", 529), ("voyageai", 502), ("vision", 500)])
def test_a_transient_server_error_is_retried(emu, service, status):
    fault(emu, service=service, status=status)
    result = check_api_keys("test", block_for(emu), timeout=10, policy=FAST, services=[service])[0]
    assert result.status is Status.OK and result.attempts == 2


def test_a_server_error_that_persists_is_reported_transient(emu):
    fault(emu, service="documentai", status=500, times=10)
    result = check_api_keys("test", block_for(emu), timeout=10, policy=FAST, services=["documentai"])[0]
    assert result.status is Status.TRANSIENT and result.attempts == FAST.max_attempts


@pytest.mark.parametrize("service", ["documentai", "vision", "voyageai", "anthropic"])
def test_a_permission_error_fails_at_once(emu, service):
    fault(emu, service=service, status=403, times=5)
    result = check_api_keys("test", block_for(emu), timeout=10, policy=FAST, services=[service])[0]
    assert result.status is Status.PERMISSION and result.attempts == 1
    assert counts(emu)[service] == 1
    assert result.fix


def test_document_ai_processor_of_another_project_is_a_permission_error(emu):
    keys = block_for(emu, google_project_id="someone-elses-project")
    result = check_api_keys("test", keys, timeout=10, policy=FAST, services=["documentai"])[0]
    assert result.status is Status.PERMISSION
    assert "roles/documentai.apiUser" in result.fix and "someone-elses-project" in result.fix


def test_vision_per_image_error_inside_a_200_is_classified(emu):
    fault(emu, service="vision", image_error={"code": 7, "message": "Cloud Vision API has not been used in project"})
    result = check_api_keys("test", block_for(emu), timeout=10, policy=FAST, services=["vision"])[0]
    assert result.status is Status.PERMISSION
    assert "image error 7" in result.detail


def test_a_hanging_service_is_cut_at_its_timeout(emu):
    fault(emu, service="voyageai", delay=30)
    started = time.monotonic()
    results = by_service(check_api_keys("test", block_for(emu), timeout=1.5, policy=FAST))
    elapsed = time.monotonic() - started
    assert results["voyageai"].status is Status.NETWORK
    assert "timed out" in results["voyageai"].detail
    assert 1.4 <= results["voyageai"].latency_ms / 1000 < 3.5
    assert elapsed < 8  # imports included; nowhere near the 30 s hang
    assert all(results[s].status is Status.OK for s in ("documentai", "vision", "anthropic"))


def test_a_hanging_anthropic_is_cut_at_its_timeout(emu):
    fault(emu, service="anthropic", delay=30)
    result = check_api_keys("test", block_for(emu), timeout=1.0, policy=FAST, services=["anthropic"])[0]
    assert result.status is Status.NETWORK and result.latency_ms < 3000


def test_wrong_processor_or_location_is_misconfigured(emu):
    wrong_id = check_api_keys("test", block_for(emu, documentai_processor_id="0123456789abcdef"), timeout=10, policy=FAST,
                              services=["documentai"])[0]
    assert wrong_id.status is Status.MISCONFIGURED and wrong_id.attempts == 1
    assert "0123456789abcdef" in wrong_id.fix
    wrong_location = check_api_keys("test", block_for(emu, documentai_location="us"), timeout=10, policy=FAST,
                                    services=["documentai"])[0]
    assert wrong_location.status is Status.MISCONFIGURED
    assert "us-documentai.googleapis.com" in wrong_location.fix


def test_unknown_models_are_misconfigured(emu):
    keys = block_for(emu, anthropic_model="claude-nonexistent", voyageai_model="voyage-0")
    results = by_service(check_api_keys("test", keys, timeout=10, policy=FAST, services=["anthropic", "voyageai"]))
    assert results["anthropic"].status is Status.MISCONFIGURED and "claude-nonexistent" in results["anthropic"].fix
    assert results["voyageai"].status is Status.MISCONFIGURED


def test_message_mode_sends_one_token_and_records_token_headroom(emu):
    result = check_api_keys("test", block_for(emu), timeout=10, policy=FAST, services=["anthropic"], send_message=True)[0]
    assert result.status is Status.OK
    assert "tokens-remaining" in result.quota
    paths = [r["path"] for r in admin_request(emu.url, "GET", "/_admin/requests")["requests"]]
    assert "/v1/messages" in paths


def test_an_unreachable_endpoint_is_a_network_failure(emu):
    from technicia_deploy.sandbox.processes import free_port

    closed = f"http://127.0.0.1:{free_port()}"
    keys = block_for(emu, anthropic_base_url=closed, vision_endpoint=closed)
    results = by_service(check_api_keys("test", keys, timeout=5, policy=FAST, services=["anthropic", "vision"]))
    assert results["anthropic"].status is Status.NETWORK and results["vision"].status is Status.NETWORK
    assert results["anthropic"].attempts == 1


def test_a_malformed_service_account_file_is_an_invalid_credential_without_echoing_it(emu):
    garbage = '{"type": "service_account", "private_key": "canary-not-a-pem-77e1"}'
    keys = block_for(emu, google_service_account_json=SecretStr(garbage))
    results = check_api_keys("test", keys, timeout=5, policy=FAST, services=["documentai", "vision"])
    assert {r.status for r in results} == {Status.INVALID_CREDENTIAL}
    assert "canary-not-a-pem-77e1" not in json.dumps([r.as_dict() for r in results])


def test_document_ai_endpoint_follows_the_processor_location():
    assert cloud.documentai_endpoint("eu", None) == "eu-documentai.googleapis.com"
    assert cloud.documentai_endpoint("us", None) == "us-documentai.googleapis.com"
    assert cloud.documentai_endpoint("eu", "http://127.0.0.1:9") == "http://127.0.0.1:9"


def test_generated_pdf_has_a_consistent_cross_reference_table():
    pdf = cloud.tiny_pdf()
    startxref = int(pdf.rsplit(b"startxref\n", 1)[1].split(b"\n")[0])
    assert pdf[startxref:].startswith(b"xref")
    entries = pdf[startxref:].split(b"\n")[3:8]
    for number, entry in enumerate(entries, start=1):
        assert pdf[int(entry[:10]):].startswith(b"%d 0 obj" % number)


def test_redaction_and_rejection_message_carry_no_secret():
    secret = "sk-ant-api03-SECRETSECRET"
    assert secret not in cloud.redact(f"bad key {secret}!", [secret])
    rejected = ApiKeysRejected([{"service": "anthropic", "environment": "staging", "status": "permission",
                                 "detail": "HTTP 403", "fix": "give access"}])
    assert "Anthropic key of environment 'staging': permission" in str(rejected)
    import pickle

    assert pickle.loads(pickle.dumps(rejected)).results == rejected.results
