"""The cloud emulator's wire protocols, auth, fault injection, and the sandbox ``cloud`` component."""

from __future__ import annotations

import json
import stat
import threading
import time
from pathlib import Path

import httpx
import pytest

from technicia_deploy.sandbox import cloud as sandbox_cloud
from technicia_deploy.sandbox.cloud_emulator.registry import Registry
from technicia_deploy.sandbox.cloud_emulator.server import admin_request, run_in_thread
from technicia_deploy.sandbox.state import SandboxState


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    directory = tmp_path_factory.mktemp("emulator-keys")
    running = run_in_thread({})
    keys = sandbox_cloud.ensure_keys(directory, "test", running.url + "/token")
    running.emulator.registry = Registry.from_config(sandbox_cloud.emulator_config([keys]))
    running.keys = keys
    running.anthropic_key = Path(keys.anthropic_key_file).read_text()
    running.voyage_key = Path(keys.voyageai_key_file).read_text()
    running.account = json.loads(Path(keys.service_account_file).read_text())
    yield running
    running.stop()


@pytest.fixture
def emu(emulator):
    admin_request(emulator.url, "DELETE", "/_admin/faults")
    yield emulator
    admin_request(emulator.url, "DELETE", "/_admin/faults")


def anthropic_headers(key: str) -> dict[str, str]:
    return {"x-api-key": key, "anthropic-version": "2023-06-01"}


def self_signed_jwt(account: dict, lifetime: int = 300, issued: float | None = None) -> str:
    from google.auth import crypt, jwt

    signer = crypt.RSASigner.from_service_account_info(account)
    now = int(issued if issued is not None else time.time())
    claims = {"iss": account["client_email"], "sub": account["client_email"], "iat": now, "exp": now + lifetime,
              "scope": "https://www.googleapis.com/auth/cloud-platform"}
    return jwt.encode(signer, claims).decode()


def png() -> str:
    import base64

    from technicia_deploy.cloud import tiny_png

    return base64.b64encode(tiny_png()).decode()


# --------------------------------------------------------------------------- Anthropic

def test_anthropic_rejects_a_missing_or_unknown_key_with_its_error_shape(emu):
    missing = httpx.get(emu.url + "/v1/models", headers={"anthropic-version": "2023-06-01"})
    unknown = httpx.get(emu.url + "/v1/models", headers=anthropic_headers("sk-ant-api03-unknown"))
    for response in (missing, unknown):
        assert response.status_code == 401
        body = response.json()
        assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
        assert body["request_id"] == response.headers["request-id"]


def test_anthropic_requires_the_version_header_and_accepts_bearer(emu):
    no_version = httpx.get(emu.url + "/v1/models", headers={"x-api-key": emu.anthropic_key})
    assert no_version.status_code == 400 and no_version.json()["error"]["type"] == "invalid_request_error"
    bearer = httpx.get(emu.url + "/v1/models", headers={"authorization": f"Bearer {emu.anthropic_key}", "anthropic-version": "2023-06-01"})
    assert bearer.status_code == 200


def test_anthropic_models_messages_and_token_counting(emu):
    headers = anthropic_headers(emu.anthropic_key)
    first = httpx.get(emu.url + "/v1/models?limit=1", headers=headers)
    page = first.json()
    assert len(page["data"]) == 1 and page["has_more"] is True and page["data"][0]["type"] == "model"
    after = httpx.get(emu.url + f"/v1/models?limit=1&after_id={page['last_id']}", headers=headers).json()
    assert after["data"][0]["id"] != page["data"][0]["id"]
    second = httpx.get(emu.url + "/v1/models?limit=1", headers=headers)
    remaining = [int(r.headers["anthropic-ratelimit-requests-remaining"]) for r in (first, second)]
    window_rolled = first.headers["anthropic-ratelimit-requests-reset"] != second.headers["anthropic-ratelimit-requests-reset"]
    assert remaining[1] == remaining[0] - 2 or window_rolled  # each request uses headroom

    message = {"model": "claude-sonnet-4-6", "max_tokens": 1, "messages": [{"role": "user", "content": "ping"}]}
    sent = httpx.post(emu.url + "/v1/messages", headers=headers, json=message)
    assert sent.status_code == 200
    assert sent.json()["usage"]["output_tokens"] == 1 and sent.json()["stop_reason"] == "max_tokens"
    assert "anthropic-ratelimit-tokens-remaining" in sent.headers
    counted = httpx.post(emu.url + "/v1/messages/count_tokens", headers=headers, json={k: v for k, v in message.items() if k != "max_tokens"})
    assert counted.json()["input_tokens"] >= 1

    unknown = httpx.post(emu.url + "/v1/messages", headers=headers, json={**message, "model": "claude-0"})
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "not_found_error"
    no_max = httpx.post(emu.url + "/v1/messages", headers=headers, json={k: v for k, v in message.items() if k != "max_tokens"})
    assert no_max.status_code == 400


# --------------------------------------------------------------------------- VoyageAI

def test_voyage_embeddings_and_detail_errors(emu):
    auth = {"authorization": f"Bearer {emu.voyage_key}"}
    ok = httpx.post(emu.url + "/v1/embeddings", headers=auth, json={"input": ["a", "b"], "model": "voyage-3.5-lite"})
    body = ok.json()
    assert [d["index"] for d in body["data"]] == [0, 1] and len(body["data"][0]["embedding"]) == 1024
    again = httpx.post(emu.url + "/v1/embeddings", headers=auth, json={"input": "a", "model": "voyage-3.5-lite"}).json()
    assert again["data"][0]["embedding"] == body["data"][0]["embedding"]  # same text, same vector
    bad_key = httpx.post(emu.url + "/v1/embeddings", headers={"authorization": "Bearer pa-nope"}, json={"input": "a", "model": "voyage-3.5-lite"})
    assert bad_key.status_code == 401 and "detail" in bad_key.json()
    bad_model = httpx.post(emu.url + "/v1/embeddings", headers=auth, json={"input": "a", "model": "voyage-0"})
    assert bad_model.status_code == 400 and "voyage-0" in bad_model.json()["detail"]


# --------------------------------------------------------------------------- Google auth, Vision, Document AI

def annotate(emu, token: str | None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.post(emu.url + "/v1/images:annotate", headers=headers,
                      json={"requests": [{"image": {"content": png()}, "features": [{"type": 5}]}]})


def test_google_accepts_a_jwt_signed_by_the_registered_key_only(emu):
    ok = annotate(emu, self_signed_jwt(emu.account))
    assert ok.status_code == 200 and ok.json()["responses"][0]["fullTextAnnotation"]["text"]

    rogue = sandbox_cloud.new_service_account(emu.keys.project_id, "rogue", emu.url + "/token")
    rogue["private_key_id"] = emu.account["private_key_id"]  # claims to be the registered key, signed with another
    expired = self_signed_jwt(emu.account, lifetime=60, issued=time.time() - 3600)
    for token in (None, "not-a-jwt", self_signed_jwt(rogue), expired):
        response = annotate(emu, token)
        assert response.status_code == 401
        assert response.json()["error"]["status"] == "UNAUTHENTICATED"


def test_google_token_endpoint_exchanges_a_signed_assertion(emu):
    from google.auth import crypt, jwt

    signer = crypt.RSASigner.from_service_account_info(emu.account)
    now = int(time.time())
    assertion = jwt.encode(signer, {"iss": emu.account["client_email"], "aud": emu.url + "/token", "iat": now, "exp": now + 300,
                                    "scope": "https://www.googleapis.com/auth/cloud-platform"}).decode()
    grant = httpx.post(emu.url + "/token", data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion})
    assert grant.status_code == 200
    assert annotate(emu, grant.json()["access_token"]).status_code == 200
    refused = httpx.post(emu.url + "/token", data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": "x.y.z"})
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


def test_document_ai_checks_project_processor_location_and_input(emu):
    from technicia_deploy.cloud import tiny_pdf
    import base64

    token = self_signed_jwt(emu.account)
    k = emu.keys

    def process(project=k.project_id, location=k.location, processor=k.processor_id, content=tiny_pdf()):
        return httpx.post(f"{emu.url}/v1/projects/{project}/locations/{location}/processors/{processor}:process",
                          headers={"authorization": f"Bearer {token}"},
                          json={"rawDocument": {"content": base64.b64encode(content).decode(), "mimeType": "application/pdf"}})

    ok = process()
    assert ok.status_code == 200 and "TechnicIA smoke test" in ok.json()["document"]["text"]
    assert process(project="other-project").status_code == 403
    assert process(processor="ffffffffffffffff").status_code == 404
    wrong_location = process(location="us")
    assert wrong_location.status_code == 400 and "eu" in wrong_location.json()["error"]["message"]
    assert process(content=b"not a pdf").status_code == 400


# --------------------------------------------------------------------------- faults

def test_injected_status_carries_retry_after_in_each_service_shape(emu):
    admin_request(emu.url, "POST", "/_admin/faults", {"service": "anthropic", "status": 429, "retry_after": 7})
    admin_request(emu.url, "POST", "/_admin/faults", {"service": "voyageai", "status": 429, "retry_after": 3, "times": 2})
    limited = httpx.get(emu.url + "/v1/models", headers=anthropic_headers(emu.anthropic_key))
    assert limited.status_code == 429 and limited.headers["retry-after"] == "7"
    assert limited.json()["error"]["type"] == "rate_limit_error"
    assert httpx.get(emu.url + "/v1/models", headers=anthropic_headers(emu.anthropic_key)).status_code == 200  # used up

    auth = {"authorization": f"Bearer {emu.voyage_key}"}
    payload = {"input": "a", "model": "voyage-3.5-lite"}
    codes = [httpx.post(emu.url + "/v1/embeddings", headers=auth, json=payload).status_code for _ in range(3)]
    assert codes == [429, 429, 200]


def test_faults_apply_after_authentication_and_can_target_an_environment(emu):
    admin_request(emu.url, "POST", "/_admin/faults", {"service": "anthropic", "status": 503, "environment": "production"})
    # A bad key is still a 401, and the fault (for another environment) is not consumed.
    assert httpx.get(emu.url + "/v1/models", headers=anthropic_headers("sk-ant-bad")).status_code == 401
    assert httpx.get(emu.url + "/v1/models", headers=anthropic_headers(emu.anthropic_key)).status_code == 200
    pending = admin_request(emu.url, "GET", "/_admin/requests")["pending_faults"]
    assert [f["environment"] for f in pending] == ["production"]


def test_a_hang_is_released_when_the_faults_are_cleared(emu):
    admin_request(emu.url, "POST", "/_admin/faults", {"service": "vision", "delay": 60})
    outcome: dict = {}

    def call():
        outcome["status"] = annotate(emu, self_signed_jwt(emu.account)).status_code

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 10
    while not admin_request(emu.url, "GET", "/_admin/requests")["pending_faults"] == [] and time.monotonic() < deadline:
        time.sleep(0.02)  # poll: the fault is taken once the request arrived
    admin_request(emu.url, "DELETE", "/_admin/faults")
    caller.join(timeout=10)
    assert not caller.is_alive() and outcome["status"] == 200


def test_a_malformed_fault_is_refused(emu):
    with pytest.raises(Exception) as refused:
        admin_request(emu.url, "POST", "/_admin/faults", {"service": "ovh", "status": 500})
    assert "400" in str(refused.value)


# --------------------------------------------------------------------------- the sandbox component

def test_component_up_is_idempotent_serves_the_keys_and_down_removes_everything(tmp_path):
    from blocks import CloudApiKeys
    from pydantic import SecretStr

    from technicia_deploy.cloud import Status, check_api_keys
    from technicia_deploy.sandbox import processes

    state = SandboxState(tmp_path / "sbx")
    try:
        sandbox_cloud.up(state)
        data = state.data["cloud"]
        pid = processes.pid_of(state, sandbox_cloud.DAEMON)
        assert pid and set(data["environments"]) == {"test", "staging", "production"}
        files = {name: Path(data["environments"]["test"][name]) for name in ("anthropic_key_file", "voyageai_key_file", "service_account_file")}
        keys_before = {name: path.read_text() for name, path in files.items()}
        assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in files.values())
        assert keys_before["anthropic_key_file"].startswith("sk-ant-") and keys_before["voyageai_key_file"].startswith("pa-")
        # The emulator's configuration holds hashes and public keys, never a key.
        config_text = Path(data["config"]).read_text()
        assert keys_before["anthropic_key_file"] not in config_text and "PRIVATE KEY" not in config_text

        sandbox_cloud.up(state)  # again: same daemon, same keys
        assert processes.pid_of(state, sandbox_cloud.DAEMON) == pid
        assert {name: path.read_text() for name, path in files.items()} == keys_before
        assert any("running" in line for line in sandbox_cloud.status(state))

        # The daemon answers the product's checks with the keys the component recorded.
        section = data["environments"]["staging"]["api_keys"]
        keys = CloudApiKeys(
            google_project_id=section["google"]["project_id"],
            google_service_account_json=SecretStr(Path(section["google"]["service_account_json"]["file"]).read_text()),
            documentai_location=section["google"]["documentai_location"],
            documentai_processor_id=section["google"]["documentai_processor_id"],
            documentai_endpoint=section["google"]["documentai_endpoint"],
            vision_endpoint=section["google"]["vision_endpoint"],
            voyageai_api_key=SecretStr(Path(section["voyageai"]["api_key"]["file"]).read_text()),
            voyageai_model=section["voyageai"]["model"],
            voyageai_base_url=section["voyageai"]["base_url"],
            anthropic_api_key=SecretStr(Path(section["anthropic"]["api_key"]["file"]).read_text()),
            anthropic_model=section["anthropic"]["model"],
            anthropic_base_url=section["anthropic"]["base_url"],
        )
        results = check_api_keys("staging", keys, timeout=15)
        assert {r.status for r in results} == {Status.OK}, [r.as_dict() for r in results]
        # Every request was authenticated as staging: keys are per environment.
        counts = admin_request(data["url"], "GET", "/_admin/requests")["requests"]
        assert {r["environment"] for r in counts} == {"staging"}
    finally:
        sandbox_cloud.down(state)
    assert processes.pid_of(state, sandbox_cloud.DAEMON) is None
    assert not state.path("cloud").exists() and "cloud" not in state.data
    assert sandbox_cloud.status(state) == ["cloud: not set up"]
    sandbox_cloud.down(state)  # tolerates nothing left to remove
