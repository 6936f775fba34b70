"""The sandbox's cloud emulators, seen through the real SDKs with the keys the sandbox wrote into its blocks."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

pytestmark = pytest.mark.e2e


@pytest.fixture
def keys(sandbox):
    from blocks import CloudApiKeys

    return CloudApiKeys.load("technicia-test-api-keys")


def test_every_sdk_succeeds_with_the_sandbox_key(keys):
    from technicia_deploy.cloud import Status, check_api_keys

    results = check_api_keys("test", keys, send_message=True)
    assert {r.service: r.status for r in results} == {r.service: Status.OK for r in results}
    assert len(results) == 4


@pytest.mark.parametrize("field", ["anthropic_api_key", "voyageai_api_key"])
def test_another_key_is_refused_as_the_service_refuses_it(keys, field):
    from technicia_deploy.cloud import Status, check_api_keys

    forged = keys.model_copy(update={field: SecretStr("sk-not-a-sandbox-key-0000")})
    service = {"anthropic_api_key": "anthropic", "voyageai_api_key": "voyageai"}[field]
    (result,) = [r for r in check_api_keys("test", forged) if r.service == service]
    assert result.status is Status.INVALID_CREDENTIAL
    assert result.attempts == 1  # an invalid key is not retried


def test_a_google_service_account_from_another_sandbox_is_refused(keys, sandbox):
    from technicia_deploy.cloud import Status, check_api_keys

    other = keys.model_copy(update={"google_service_account_json": SecretStr(
        _with_another_key(keys.google_service_account_json.get_secret_value()))})
    results = {r.service: r for r in check_api_keys("test", other, services=("vision", "documentai"))}
    assert {s: r.status for s, r in results.items()} == {"vision": Status.INVALID_CREDENTIAL,
                                                          "documentai": Status.INVALID_CREDENTIAL}


def _with_another_key(account_json: str) -> str:
    """The same service account with a freshly generated RSA key the emulator has never seen."""
    import json

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    account = json.loads(account_json)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    account["private_key"] = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()).decode()
    account["private_key_id"] = "0" * 40
    return json.dumps(account)
