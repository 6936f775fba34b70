"""Smoke calls that prove an environment's cloud API keys can do the work the application does.

One cheap real call per service, through the vendor's SDK:

- Document AI processes a generated one-page PDF with the environment's processor,
  on the location-matched endpoint ``{location}-documentai.googleapis.com`` unless overridden;
- Vision runs text detection on a generated image (and reads the per-image error inside the 200);
- VoyageAI embeds one short text with the environment's model;
- Anthropic lists models and reads the environment's model (both free) and, when asked,
  sends a 1-token message with it.

Each outcome is classified (:class:`Status`). Invalid credentials and missing
permissions fail at once without retry; rate limits and transient errors are
retried a bounded number of times, honouring ``retry-after`` up to a cap and
within the service's time budget. The four services run concurrently.

Key values never leave this module: results carry a fingerprint (a short
hash), and every message taken from an SDK exception is scrubbed of the
secrets before it is kept. SDKs are imported only when a check runs.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Callable, Iterable, Protocol


class Status(StrEnum):
    OK = "ok"
    INVALID_CREDENTIAL = "invalid_credential"
    PERMISSION = "permission"
    RATE_LIMITED = "rate_limited"
    TRANSIENT = "transient"
    NETWORK = "network"
    MISCONFIGURED = "misconfigured"


RETRYABLE = frozenset({Status.RATE_LIMITED, Status.TRANSIENT})
SERVICES = ("documentai", "vision", "voyageai", "anthropic")
SERVICE_LABELS = {
    "documentai": "Google Document AI",
    "vision": "Google Vision",
    "voyageai": "VoyageAI",
    "anthropic": "Anthropic",
}
SMOKE_TEXT = "TechnicIA smoke test"
GRACE_S = 5.0  # past its budget, a service's own SDK timeout should have fired: stop waiting then


class ApiKeySettings(Protocol):
    """What a check needs: the fields of the ``CloudApiKeys`` block (secrets as SecretStr)."""

    google_project_id: str
    google_service_account_json: Any
    documentai_location: str
    documentai_processor_id: str
    documentai_endpoint: str | None
    vision_endpoint: str | None
    voyageai_api_key: Any
    voyageai_model: str
    voyageai_base_url: str | None
    anthropic_api_key: Any
    anthropic_model: str
    anthropic_base_url: str | None


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 10.0  # cap on any single wait, a server's retry-after included

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        return min(self.base_delay * 2 ** (attempt - 1) * (1 + random.random() / 4), self.max_delay)


@dataclass
class CheckResult:
    """One service's verdict for one environment. Plain data, no secret."""

    service: str
    environment: str
    status: Status
    latency_ms: float
    fingerprint: str
    attempts: int = 1
    detail: str = ""
    fix: str = ""
    quota: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = str(self.status)
        return data


class CallFailed(Exception):
    """A classified failure of one attempt (the message is already free of secrets)."""

    def __init__(self, status: Status, detail: str, retry_after: float | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.retry_after = retry_after


class ApiKeysRejected(Exception):
    """At least one key failed its smoke call. The message names service, environment, status and fix."""

    def __init__(self, results: list[dict[str, Any]]):
        self.results = results
        failed = [r for r in results if r["status"] != Status.OK]
        lines = [
            f"{SERVICE_LABELS.get(r['service'], r['service'])} key of environment {r['environment']!r}: "
            f"{r['status']} ({r['detail']}). Fix: {r['fix']}"
            for r in failed
        ]
        super().__init__(f"{len(failed)} API key check(s) failed:\n" + "\n".join(lines))

    def __reduce__(self):
        return (type(self), (self.results,))


def fingerprint(secret: str) -> str:
    """A short, stable identifier of a key that reveals nothing usable."""
    return "sha256:" + hashlib.sha256(secret.strip().encode()).hexdigest()[:12]


def documentai_endpoint(location: str, override: str | None) -> str:
    """The processor's regional endpoint: a processor is only reachable on its own location's host."""
    return override or f"{location}-documentai.googleapis.com"


def _secret(value: Any) -> str:
    return (value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)).strip()


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 6:
            text = text.replace(secret, "[redacted]")
    return text


def _left(deadline: float) -> float:
    """Seconds left before ``deadline`` (a small floor so a late call fails as a timeout, not an argument error)."""
    return max(deadline - time.monotonic(), 0.05)


def _retry_after(headers: Any) -> float | None:
    try:
        value = headers.get("retry-after") if headers is not None else None
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None  # an HTTP-date: fall back to our own backoff


def _short(text: Any, limit: int = 240) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------- generated inputs

def tiny_png() -> bytes:
    """An 8x8 RGB PNG, built by hand (no imaging library needed)."""
    import struct
    import zlib

    rows = b"".join(b"\x00" + bytes((0 if (x + y) % 3 else 255) for x in range(8) for _ in range(3)) for y in range(8))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def tiny_pdf(text: str = SMOKE_TEXT) -> bytes:
    """A valid one-page PDF with one line of text (correct xref offsets)."""
    stream = f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


# --------------------------------------------------------------------------- what to tell the operator

def fix_hint(service: str, status: Status, environment: str, keys: ApiKeySettings) -> str:
    at = f"environments.{environment}.api_keys"
    apply = "then `technicia-deploy blocks apply`"
    if status is Status.OK:
        return ""
    if status is Status.INVALID_CREDENTIAL:
        return {
            "anthropic": f"create a new key in the Anthropic console and point {at}.anthropic.api_key at it, {apply}",
            "voyageai": f"create a new key in the VoyageAI dashboard and point {at}.voyageai.api_key at it, {apply}",
        }.get(service, f"create a new key for the service account (IAM > Service accounts > Keys) and point "
                       f"{at}.google.service_account_json at the downloaded JSON, {apply}")
    if status is Status.PERMISSION:
        return {
            "documentai": f"grant the service account roles/documentai.apiUser on project {keys.google_project_id} "
                          "and enable the Document AI API",
            "vision": f"enable the Cloud Vision API on project {keys.google_project_id} and allow the service account to use it",
            "anthropic": f"give the key's workspace access to model {keys.anthropic_model}",
            "voyageai": f"give the key's organisation access to model {keys.voyageai_model}",
        }[service]
    if status is Status.RATE_LIMITED:
        return "quota or rate limit exhausted: wait for the reset, or raise the limit / add credits on the account"
    if status is Status.TRANSIENT:
        return "the service failed on its side: run the check again later; if it persists, see the vendor's status page"
    if status is Status.NETWORK:
        return "the service did not answer in time or could not be reached: check the endpoint/base URL and outbound network"
    return {
        "documentai": f"check {at}.google.documentai_processor_id ({keys.documentai_processor_id}) and documentai_location "
                      f"({keys.documentai_location}); the endpoint must be {keys.documentai_location}-documentai.googleapis.com",
        "vision": f"check {at}.google.vision_endpoint",
        "anthropic": f"check {at}.anthropic.model ({keys.anthropic_model}) and base_url",
        "voyageai": f"check {at}.voyageai.model ({keys.voyageai_model}) and base_url",
    }[service]


# --------------------------------------------------------------------------- per-service calls and classification

@dataclass
class ServiceCall:
    service: str
    secrets: tuple[str, ...]  # for fingerprint and redaction; never stored in a result
    prepare: Callable[[], None]  # imports the SDK (not counted in the time budget)
    attempt: Callable[[float], dict[str, str]]  # one try that must end by this monotonic deadline; returns quota info
    classify: Callable[[BaseException], CallFailed]

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.secrets[0])


def _classify_anthropic(exc: BaseException) -> CallFailed:
    import anthropic

    if isinstance(exc, anthropic.APITimeoutError):
        return CallFailed(Status.NETWORK, "timed out")
    if isinstance(exc, anthropic.APIConnectionError):
        return CallFailed(Status.NETWORK, f"cannot connect ({type(exc.__cause__ or exc).__name__})")
    if isinstance(exc, anthropic.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        message = (body.get("error") or {}).get("message") if isinstance(body.get("error"), dict) else None
        detail = f"HTTP {exc.status_code}: {message or exc.message}"
        retry_after = _retry_after(exc.response.headers)
        if isinstance(exc, anthropic.AuthenticationError):
            return CallFailed(Status.INVALID_CREDENTIAL, detail)
        if isinstance(exc, anthropic.PermissionDeniedError):
            return CallFailed(Status.PERMISSION, detail)
        if isinstance(exc, (anthropic.RateLimitError, anthropic.PaymentRequiredError)):
            return CallFailed(Status.RATE_LIMITED, detail, retry_after)
        if exc.status_code >= 500 or exc.status_code in (408, 409):
            return CallFailed(Status.TRANSIENT, detail, retry_after)
        return CallFailed(Status.MISCONFIGURED, detail)
    return CallFailed(Status.TRANSIENT, f"unexpected {type(exc).__name__}")


def _anthropic_quota(headers: Any) -> dict[str, str]:
    prefix = "anthropic-ratelimit-"
    return {name.removeprefix(prefix): value for name, value in headers.items() if name.lower().startswith(prefix)}


def _anthropic_call(keys: ApiKeySettings, send_message: bool) -> ServiceCall:
    key = _secret(keys.anthropic_api_key)

    def prepare() -> None:
        import anthropic  # noqa: F401

    def attempt(deadline: float) -> dict[str, str]:
        import anthropic

        with anthropic.Anthropic(api_key=key, base_url=keys.anthropic_base_url or None, max_retries=0, timeout=_left(deadline)) as client:
            listed = client.models.with_raw_response.list(limit=1)
            listed.parse()
            quota = _anthropic_quota(listed.headers)
            # Free, and proves the configured model exists for this key.
            client.with_options(timeout=_left(deadline)).models.retrieve(keys.anthropic_model)
            if send_message:
                sent = client.with_options(timeout=_left(deadline)).messages.with_raw_response.create(
                    model=keys.anthropic_model, max_tokens=1, messages=[{"role": "user", "content": "ping"}]
                )
                sent.parse()
                quota = _anthropic_quota(sent.headers) or quota
        return quota

    return ServiceCall("anthropic", (key,), prepare, attempt, _classify_anthropic)


def _classify_voyage(exc: BaseException) -> CallFailed:
    from voyageai import error

    if isinstance(exc, error.Timeout):
        return CallFailed(Status.NETWORK, "timed out")
    if isinstance(exc, error.APIConnectionError):
        return CallFailed(Status.NETWORK, "cannot connect")
    if isinstance(exc, error.VoyageError):
        status = exc.http_status or 0
        body = exc.json_body if isinstance(exc.json_body, dict) else {}
        detail = f"HTTP {status}: {body.get('detail') or type(exc).__name__}"
        retry_after = _retry_after(exc.headers)
        if isinstance(exc, error.AuthenticationError) or status == 401:
            return CallFailed(Status.INVALID_CREDENTIAL, detail)
        if status == 403:
            return CallFailed(Status.PERMISSION, detail)
        if isinstance(exc, error.RateLimitError) or status == 429:
            return CallFailed(Status.RATE_LIMITED, detail, retry_after)
        if isinstance(exc, (error.ServerError, error.ServiceUnavailableError)) or status >= 500:
            return CallFailed(Status.TRANSIENT, detail, retry_after)
        return CallFailed(Status.MISCONFIGURED, detail)
    return CallFailed(Status.TRANSIENT, f"unexpected {type(exc).__name__}")


def _voyage_call(keys: ApiKeySettings) -> ServiceCall:
    key = _secret(keys.voyageai_api_key)

    def prepare() -> None:
        import voyageai  # noqa: F401

    def attempt(deadline: float) -> dict[str, str]:
        import voyageai

        client = voyageai.Client(api_key=key, base_url=keys.voyageai_base_url or None, max_retries=0, timeout=_left(deadline))
        result = client.embed([SMOKE_TEXT], model=keys.voyageai_model, input_type="document")
        if not result.embeddings or not result.embeddings[0]:
            raise CallFailed(Status.TRANSIENT, "the answer held no embedding")
        return {}

    return ServiceCall("voyageai", (key,), prepare, attempt, _classify_voyage)


# Codes of google.rpc.Code found in Vision's per-image errors (inside an HTTP 200).
_RPC_CODES = {
    3: Status.MISCONFIGURED,  # INVALID_ARGUMENT
    4: Status.NETWORK,  # DEADLINE_EXCEEDED
    5: Status.MISCONFIGURED,  # NOT_FOUND
    7: Status.PERMISSION,  # PERMISSION_DENIED
    8: Status.RATE_LIMITED,  # RESOURCE_EXHAUSTED
    16: Status.INVALID_CREDENTIAL,  # UNAUTHENTICATED
}


def _classify_google(exc: BaseException) -> CallFailed:
    import requests
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    if isinstance(exc, requests.exceptions.Timeout):
        return CallFailed(Status.NETWORK, "timed out")
    if isinstance(exc, requests.exceptions.ConnectionError):
        return CallFailed(Status.NETWORK, "cannot connect")
    if isinstance(exc, auth_exc.RefreshError):
        return CallFailed(Status.INVALID_CREDENTIAL, "the service account key was refused when signing in")
    if isinstance(exc, auth_exc.TransportError):
        return CallFailed(Status.NETWORK, "cannot reach the token endpoint")
    if isinstance(exc, gexc.GoogleAPICallError):
        detail = f"HTTP {exc.code}: {exc.message}"
        response = getattr(exc, "response", None)
        retry_after = _retry_after(getattr(response, "headers", None))
        if isinstance(exc, gexc.Unauthorized):
            return CallFailed(Status.INVALID_CREDENTIAL, detail)
        if isinstance(exc, gexc.Forbidden):
            return CallFailed(Status.PERMISSION, detail)
        if isinstance(exc, gexc.TooManyRequests):
            return CallFailed(Status.RATE_LIMITED, detail, retry_after)
        if isinstance(exc, gexc.ServerError):
            return CallFailed(Status.TRANSIENT, detail, retry_after)
        return CallFailed(Status.MISCONFIGURED, detail)
    return CallFailed(Status.TRANSIENT, f"unexpected {type(exc).__name__}")


def _google_credentials(service_account_json: str):
    from google.oauth2 import service_account

    try:
        info = json.loads(service_account_json)
        return service_account.Credentials.from_service_account_info(info)
    except (ValueError, KeyError, TypeError):
        # The parser's message may quote the file: say what is wrong without it.
        raise CallFailed(Status.INVALID_CREDENTIAL, "the service account JSON is not a valid service account key") from None


def _google_client(client_class, credentials, endpoint: str | None):
    """A REST client for ``endpoint`` that reports a refused key after one request."""
    options: dict[str, str] = {}
    if endpoint:
        options["api_endpoint"] = endpoint
    if credentials.universe_domain != "googleapis.com":
        # A key from another universe (the sandbox's): the client must agree with it. google-auth also
        # skips its access-boundary lookup at iamcredentials.googleapis.com for such keys.
        options["universe_domain"] = credentials.universe_domain
    client = client_class(credentials=credentials, transport="rest", client_options=options or None)
    # The transport's session otherwise re-signs and resends up to twice on a 401: a refused key
    # must cost one request. (No public option for this; harmless if the attribute goes away.)
    session = getattr(client.transport, "_session", None)
    if session is not None and hasattr(session, "_max_refresh_attempts"):
        session._max_refresh_attempts = 0
    return client


def _vision_call(keys: ApiKeySettings) -> ServiceCall:
    account_json = _secret(keys.google_service_account_json)

    def prepare() -> None:
        from google.cloud import vision  # noqa: F401

    def attempt(deadline: float) -> dict[str, str]:
        from google.cloud import vision

        client = _google_client(vision.ImageAnnotatorClient, _google_credentials(account_json), keys.vision_endpoint)
        request = vision.AnnotateImageRequest(
            image=vision.Image(content=tiny_png()), features=[vision.Feature(type_=vision.Feature.Type.TEXT_DETECTION)]
        )
        batch = client.batch_annotate_images(requests=[request], retry=None, timeout=_left(deadline))
        error = batch.responses[0].error
        if error.code:
            # Vision reports per-image failures inside a successful HTTP answer.
            raise CallFailed(_RPC_CODES.get(error.code, Status.TRANSIENT), f"image error {error.code}: {error.message}")
        return {}

    return ServiceCall("vision", (account_json, _private_key_of(account_json)), prepare, attempt, _classify_google)


def _documentai_call(keys: ApiKeySettings) -> ServiceCall:
    account_json = _secret(keys.google_service_account_json)

    def prepare() -> None:
        from google.cloud import documentai  # noqa: F401

    def attempt(deadline: float) -> dict[str, str]:
        from google.cloud import documentai

        endpoint = documentai_endpoint(keys.documentai_location, keys.documentai_endpoint)
        client = _google_client(documentai.DocumentProcessorServiceClient, _google_credentials(account_json), endpoint)
        name = client.processor_path(keys.google_project_id, keys.documentai_location, keys.documentai_processor_id)
        result = client.process_document(
            request=documentai.ProcessRequest(
                name=name, raw_document=documentai.RawDocument(content=tiny_pdf(), mime_type="application/pdf")
            ),
            retry=None,
            timeout=_left(deadline),
        )
        if not result.document.pages and not result.document.text:
            raise CallFailed(Status.TRANSIENT, "the processor returned an empty document")
        return {}

    return ServiceCall("documentai", (account_json, _private_key_of(account_json)), prepare, attempt, _classify_google)


def _private_key_of(account_json: str) -> str:
    try:
        return str(json.loads(account_json).get("private_key", ""))
    except (ValueError, AttributeError):
        return ""


def service_calls(keys: ApiKeySettings, send_message: bool = False) -> dict[str, ServiceCall]:
    return {
        "documentai": _documentai_call(keys),
        "vision": _vision_call(keys),
        "voyageai": _voyage_call(keys),
        "anthropic": _anthropic_call(keys, send_message),
    }


# --------------------------------------------------------------------------- freshness of a passing check

SETTINGS_FIELDS = tuple(ApiKeySettings.__annotations__)


def settings_digest(keys: ApiKeySettings) -> str:
    """A digest of everything a smoke call depends on: each secret by its fingerprint, the rest as is.

    Two checks with the same digest called the same services with the same keys, models and endpoints.
    """
    def plain(value: Any) -> Any:
        if hasattr(value, "get_secret_value"):
            secret = value.get_secret_value()
            return fingerprint(secret if isinstance(secret, str) else json.dumps(secret, sort_keys=True))
        return value

    from technicia_deploy.freshness import digest

    return digest({name: plain(getattr(keys, name, None)) for name in SETTINGS_FIELDS})


# --------------------------------------------------------------------------- running the checks

def run_check(
    call: ServiceCall,
    environment: str,
    keys: ApiKeySettings,
    timeout: float,
    policy: RetryPolicy,
) -> CheckResult:
    """One service: attempts within ``timeout`` seconds in all, retrying only what may pass later.

    ``call.prepare()`` (the SDK import) must have run: it is not part of the budget.
    """
    start = time.monotonic()
    deadline = start + timeout
    attempts = 0
    quota: dict[str, str] = {}
    while True:
        attempts += 1
        failure: CallFailed | None = None
        try:
            quota = call.attempt(deadline)
        except CallFailed as exc:
            failure = exc
        except Exception as exc:  # classified below; anything unknown counts as transient
            failure = call.classify(exc)
        if failure is None:
            status, detail = Status.OK, ""
            break
        status, detail = failure.status, failure.detail
        if status not in RETRYABLE or attempts >= policy.max_attempts:
            break
        wait = policy.delay(attempts, failure.retry_after)
        if time.monotonic() + wait >= deadline:
            detail += f" (waiting {wait:g}s more would pass the {timeout:g}s budget)"
            break
        time.sleep(wait)  # bounded: capped by the policy and by the budget
    latency_ms = round((time.monotonic() - start) * 1000, 1)
    if status is Status.NETWORK and detail == "timed out":
        detail = f"timed out (budget {timeout:g}s)"
    return CheckResult(
        service=call.service,
        environment=environment,
        status=status,
        latency_ms=latency_ms,
        fingerprint=call.fingerprint,
        attempts=attempts,
        detail=_short(redact(detail, call.secrets)),
        fix=fix_hint(call.service, status, environment, keys),
        quota=quota,
    )


def check_api_keys(
    environment: str,
    keys: ApiKeySettings,
    *,
    send_message: bool = False,
    timeout: float = 20.0,
    policy: RetryPolicy = RetryPolicy(),
    services: Iterable[str] = SERVICES,
) -> list[CheckResult]:
    """Check the environment's keys, all services at once; each gets ``timeout`` seconds in all.

    A service still running past its budget (plus a short grace for the SDK to
    notice its own timeout) is reported as a network timeout and not waited for.
    The SDKs are imported first, concurrently, outside the budgets (imports are
    local work, slow only on a loaded machine).
    """
    calls = service_calls(keys, send_message)
    wanted = [calls[s] for s in services]
    pool = ThreadPoolExecutor(max_workers=len(wanted), thread_name_prefix=f"api-keys-{environment}")
    try:
        for imported in [pool.submit(c.prepare) for c in wanted]:
            imported.result()
        futures = {pool.submit(run_check, c, environment, keys, timeout, policy): c for c in wanted}
        wait_futures(futures, timeout=timeout + GRACE_S)
        results = []
        for future, call in futures.items():
            if future.done():
                results.append(future.result())
            else:
                results.append(CheckResult(
                    call.service, environment, Status.NETWORK, round((timeout + GRACE_S) * 1000, 1), call.fingerprint,
                    detail=f"no answer within {timeout:g}s", fix=fix_hint(call.service, Status.NETWORK, environment, keys),
                ))
        return results
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def raise_for_failures(results: Iterable[CheckResult | dict[str, Any]]) -> None:
    """Raise :class:`ApiKeysRejected` if any result is not ok (the deploy step's gate)."""
    plain = [r.as_dict() if isinstance(r, CheckResult) else r for r in results]
    if any(r["status"] != Status.OK for r in plain):
        raise ApiKeysRejected(plain)


def quota_summary(quota: dict[str, str]) -> str:
    """'requests 49/50, tokens 39990/40000' from Anthropic's rate-limit headers."""
    parts = []
    for kind in ("requests", "tokens", "input-tokens", "output-tokens"):
        remaining, limit = quota.get(f"{kind}-remaining"), quota.get(f"{kind}-limit")
        if remaining is not None and limit is not None:
            parts.append(f"{kind} {remaining}/{limit}")
    return ", ".join(parts)
