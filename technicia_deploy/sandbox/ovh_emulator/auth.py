"""OVH request signing, verified the way the real API does it.

A signed request carries X-Ovh-Application, X-Ovh-Consumer, X-Ovh-Timestamp and
X-Ovh-Signature = "$1$" + sha1_hex(AS+"+"+CK+"+"+METHOD+"+"+full_url+"+"+body+"+"+timestamp).
The consumer key is a credential with access rules (method + path glob).
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import secrets
import string
import time
from dataclasses import dataclass
from typing import Any, Mapping

from technicia_deploy.sandbox.ovh_emulator import errors

# How far a request's timestamp may drift from the server clock.
MAX_CLOCK_SKEW_S = 60

ALL_RULES = [{"method": m, "path": "/*"} for m in ("GET", "POST", "PUT", "DELETE")]


@dataclass(frozen=True)
class AppKeys:
    """The application (key + secret) the emulator knows, and its first consumer key."""

    application_key: str
    application_secret: str
    consumer_key: str

    def __repr__(self) -> str:  # never show secrets in logs or test output
        return "AppKeys(***)"


def random_token(length: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def new_app_keys() -> AppKeys:
    # OVH's lengths: 16-character application key, 32-character secret and consumer key.
    return AppKeys(random_token(16), random_token(32), random_token(32))


def signature(secret: str, consumer_key: str, method: str, url: str, body: str, timestamp: str) -> str:
    digest = hashlib.sha1("+".join([secret, consumer_key, method.upper(), url, body, timestamp]).encode())
    return "$1$" + digest.hexdigest()


def rule_allows(rules: list[dict[str, str]], method: str, path: str) -> bool:
    return any(r["method"] == method.upper() and fnmatch.fnmatchcase(path, r["path"]) for r in rules)


def verify(
    headers: Mapping[str, str],
    method: str,
    url: str,
    path: str,
    body: str,
    keys: AppKeys,
    credentials: Mapping[str, dict[str, Any]],
    now: float | None = None,
) -> None:
    """Raise the ApiError OVH would answer, or return if the request is signed and granted."""
    if not hmac.compare_digest(headers.get("X-Ovh-Application", ""), keys.application_key):
        raise errors.invalid_key()
    consumer_key = headers.get("X-Ovh-Consumer")
    if not consumer_key:
        raise errors.not_credential()
    credential = credentials.get(consumer_key)
    if credential is None:
        raise errors.unknown_credential()
    if credential["status"] != "validated":
        raise errors.credential_not_valid()
    timestamp = headers.get("X-Ovh-Timestamp", "")
    current = time.time() if now is None else now
    if not timestamp.isdigit() or abs(int(timestamp) - current) > MAX_CLOCK_SKEW_S:
        raise errors.query_out_of_time()
    expected = signature(keys.application_secret, consumer_key, method, url, body, timestamp)
    if not hmac.compare_digest(headers.get("X-Ovh-Signature", ""), expected):
        raise errors.invalid_signature()
    if not rule_allows(credential["rules"], method, path):
        raise errors.not_granted()
