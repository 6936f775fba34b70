"""Google Vision and Document AI over REST, and Google's service-account authentication.

A service account authenticates with a JWT it signs itself with its private
key (``kid`` = private_key_id); the emulator verifies the signature against
the public key registered for that key id, so a wrong or revoked key is a real
401. The OAuth token endpoint (``POST /token``, jwt-bearer grant) is served
too, so a client that exchanges its assertion for an access token also stays
on loopback.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time

from technicia_deploy.sandbox.cloud_emulator.http import Request, Response
from technicia_deploy.sandbox.cloud_emulator.registry import Registry, ServiceAccount

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
MESSAGES = {
    401: "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
    403: "The caller does not have permission",
    429: "Quota exceeded for quota metric 'Requests' and limit 'Requests per minute'.",
    500: "Internal error encountered.",
    503: "The service is currently unavailable.",
}
PROCESS_PATH = re.compile(
    r"^/v1(?:beta3)?/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/processors/(?P<processor>[^/:]+)"
    r"(?:/processorVersions/[^/:]+)?:process$"
)


def error(status: int, message: str | None = None, retry_after: float | None = None) -> Response:
    headers = {"retry-after": f"{retry_after:g}"} if retry_after is not None else {}
    name = STATUS_NAMES.get(status, "UNKNOWN")
    return Response(status, {"error": {"code": status, "message": message or MESSAGES.get(status, name), "status": name}}, headers)


class TokenStore:
    """Access tokens issued by /token, mapped to their service account."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[str, float]] = {}  # token -> (key id, expiry)

    def issue(self, key_id: str) -> str:
        token = "ya29.sandbox." + secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = (key_id, time.time() + 3600)
        return token

    def lookup(self, token: str) -> str | None:
        with self._lock:
            key_id, expiry = self._tokens.get(token, (None, 0.0))
        return key_id if expiry > time.time() else None


def _jwt_header(token: str) -> dict:
    segment = token.split(".", 1)[0]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def _verify_assertion(token: str, registry: Registry) -> ServiceAccount | None:
    """The registered service account whose key signed this JWT, or None."""
    from google.auth import jwt

    try:
        header = _jwt_header(token)
        account = registry.service_accounts.get(header.get("kid", ""))
        if account is None:
            return None
        claims = jwt.decode(token, certs={account.key_id: account.public_key}, verify=True, clock_skew_in_seconds=30)
    except Exception:  # any malformed, badly signed or expired token is simply not authenticated
        return None
    if claims.get("iss") != account.email:
        return None
    return account


def authenticate(req: Request, registry: Registry, tokens: TokenStore) -> tuple[ServiceAccount | None, Response | None]:
    token = req.bearer()
    if not token:
        return None, error(401)
    if token.startswith("ya29."):
        key_id = tokens.lookup(token)
        account = registry.service_accounts.get(key_id or "")
    else:
        account = _verify_assertion(token, registry)
    if account is None:
        return None, error(401)
    return account, None


def token_endpoint(req: Request, registry: Registry, tokens: TokenStore) -> Response:
    form = req.form()
    if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
        return Response(400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type."})
    account = _verify_assertion(form.get("assertion", ""), registry)
    if account is None:
        return Response(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
    return Response(200, {"access_token": tokens.issue(account.key_id), "expires_in": 3600, "token_type": "Bearer"})


def _decode(content) -> bytes | None:
    try:
        return base64.b64decode(content or "", validate=True)
    except (ValueError, TypeError):
        return None


def annotate(req: Request, image_error: dict | None) -> Response:
    payload = req.json()
    if not isinstance(payload, dict) or not isinstance(payload.get("requests"), list) or not payload["requests"]:
        return error(400, "requests: at least one AnnotateImageRequest is required")
    responses = []
    for item in payload["requests"]:
        data = _decode((item.get("image") or {}).get("content"))
        if image_error is not None:
            responses.append({"error": image_error})
        elif not data or not (data.startswith(b"\x89PNG") or data.startswith(b"\xff\xd8")):
            responses.append({"error": {"code": 3, "message": "Bad image data."}})
        else:
            text = "TechnicIA"
            responses.append({
                "textAnnotations": [{"locale": "fr", "description": text}],
                "fullTextAnnotation": {"text": text},
            })
    return Response(200, {"responses": responses})


def process(req: Request, account: ServiceAccount, registry: Registry) -> Response:
    match = PROCESS_PATH.match(req.path)
    assert match is not None  # the router only sends matching paths
    project, location, processor_id = match["project"], match["location"], match["processor"]
    resource = f"projects/{project}/locations/{location}/processors/{processor_id}"
    if project not in account.projects:
        return error(403, f"Permission 'documentai.processors.processOnline' denied on resource '{resource}' (or it may not exist).")
    if registry.processor(project, location, processor_id) is None:
        elsewhere = registry.processor_elsewhere(project, processor_id)
        if elsewhere is not None:
            return error(400, f"Processor is in location '{elsewhere.location}', not '{location}': call the {elsewhere.location}-documentai endpoint.")
        return error(404, f"Processor '{resource}' not found.")
    payload = req.json()
    raw = (payload or {}).get("rawDocument") or (payload or {}).get("raw_document") or {}
    data = _decode(raw.get("content"))
    if not data or not data.startswith(b"%PDF"):
        return error(400, "Unsupported input file format.")
    text = "\n".join(m.decode("latin-1") for m in re.findall(rb"\(([^)]*)\)\s*Tj", data)) + "\n"
    return Response(200, {
        "document": {
            "mimeType": raw.get("mimeType", "application/pdf"),
            "text": text,
            "pages": [{"pageNumber": 1, "dimension": {"width": 612, "height": 792, "unit": "points"}}],
        },
        "humanReviewStatus": {"state": 3},
    })
