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


# --- request bodies, checked the way Google's proto-JSON front end does it ----------------------


class Message:
    """A proto message as its REST (proto-JSON) form: field (lowerCamelCase) -> kind.

    A kind is "string", "bytes", "bool", "int32", "any" (a message the emulator does not look into),
    a Message, an Enum, ``[kind]`` (repeated) or ``("map", kind)``.
    """

    def __init__(self, name: str, fields: dict) -> None:
        self.name, self.fields = name, fields


class Enum:
    def __init__(self, name: str, values: dict[str, int]) -> None:
        self.name, self.values = name, values


class BadRequest(Exception):
    """A body Google would refuse with 400 INVALID_ARGUMENT; the message is Google's wording."""


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def _camel(name: str) -> str:
    return re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), name)


def _invalid(path: str, kind, value) -> BadRequest:
    names = {"string": "TYPE_STRING", "bytes": "TYPE_BYTES", "bool": "TYPE_BOOL", "int32": "TYPE_INT32"}
    if isinstance(kind, (Message, Enum)):
        what = f"type.googleapis.com/{kind.name}"
    else:
        what = names.get(kind, "TYPE_MESSAGE") if isinstance(kind, str) else "TYPE_MESSAGE"
    return BadRequest(f"Invalid value at '{path}' ({what}), {json.dumps(value)}")


def _base64(value: str) -> bytes | None:
    """Proto JSON bytes: standard or URL-safe base64, padding optional."""
    text = value.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except ValueError:
        return None


def check_body(value, kind, path: str = "") -> None:
    """Raise BadRequest for the first part of ``value`` that is not a ``kind`` in proto JSON (null = default)."""
    if value is None:
        return
    if isinstance(kind, list):
        if not isinstance(value, list):
            raise _invalid(path, kind[0], value)
        for i, item in enumerate(value):
            check_body(item, kind[0], f"{path}[{i}]")
    elif isinstance(kind, tuple):  # ("map", kind)
        if not isinstance(value, dict):
            raise _invalid(path, "map", value)
        for key, item in value.items():
            check_body(item, kind[1], f"{path}[{key}]")
    elif isinstance(kind, Message):
        if not isinstance(value, dict):
            raise _invalid(path, kind, value)
        for key, item in value.items():
            field = kind.fields.get(_camel(key))
            if field is None:
                at = f" at '{path}'" if path else ""
                raise BadRequest(f'Invalid JSON payload received. Unknown name "{key}"{at}: Cannot find field.')
            check_body(item, field, f"{path}.{_snake(_camel(key))}" if path else _snake(_camel(key)))
    elif isinstance(kind, Enum):
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value in kind.values)):
            raise _invalid(path, kind, value)
    elif kind == "string":
        if not isinstance(value, str):
            raise _invalid(path, kind, value)
    elif kind == "bool":
        if not isinstance(value, bool):
            raise _invalid(path, kind, value)
    elif kind == "int32":
        number = value if isinstance(value, int) and not isinstance(value, bool) else None
        if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value):
            number = int(value)
        if number is None or not -(2**31) <= number < 2**31:
            raise _invalid(path, kind, value)
    elif kind == "bytes":
        if not isinstance(value, str):
            raise _invalid(path, kind, value)
        if _base64(value) is None:
            shown = value if len(value) <= 40 else value[:40] + "..."
            raise BadRequest(f"Invalid value at '{path}' (TYPE_BYTES), Base64 decoding failed for \"{shown}\"")
    elif kind != "any":
        raise AssertionError(f"unknown kind {kind!r}")


def _field(payload: dict, name: str):
    """A field sent under its lowerCamelCase or its proto (snake_case) name."""
    return payload.get(name, payload.get(_snake(name)))


FEATURE_TYPES = {
    "TYPE_UNSPECIFIED": 0, "FACE_DETECTION": 1, "LANDMARK_DETECTION": 2, "LOGO_DETECTION": 3, "LABEL_DETECTION": 4,
    "TEXT_DETECTION": 5, "SAFE_SEARCH_DETECTION": 6, "IMAGE_PROPERTIES": 7, "CROP_HINTS": 9, "WEB_DETECTION": 10,
    "DOCUMENT_TEXT_DETECTION": 11, "PRODUCT_SEARCH": 12, "OBJECT_LOCALIZATION": 19,
}
_VISION = "google.cloud.vision.v1."
BATCH_ANNOTATE_IMAGES_REQUEST = Message(_VISION + "BatchAnnotateImagesRequest", {
    "requests": [Message(_VISION + "AnnotateImageRequest", {
        "image": Message(_VISION + "Image", {
            "content": "bytes",
            "source": Message(_VISION + "ImageSource", {"gcsImageUri": "string", "imageUri": "string"}),
        }),
        "features": [Message(_VISION + "Feature", {
            "type": Enum(_VISION + "Feature.Type", FEATURE_TYPES), "maxResults": "int32", "model": "string",
        })],
        "imageContext": "any",
    })],
    "parent": "string",
    "labels": ("map", "string"),
})
_DOCAI = "google.cloud.documentai.v1."
PROCESS_REQUEST = Message(_DOCAI + "ProcessRequest", {
    "name": "string",
    "inlineDocument": "any",
    "rawDocument": Message(_DOCAI + "RawDocument", {"content": "bytes", "mimeType": "string", "displayName": "string"}),
    "gcsDocument": Message(_DOCAI + "GcsDocument", {"gcsUri": "string", "mimeType": "string"}),
    "skipHumanReview": "bool",
    "fieldMask": "string",
    "processOptions": "any",
    "labels": ("map", "string"),
    "imagelessMode": "bool",
})


def _parse(req: Request, kind: Message) -> dict:
    """The body as a checked JSON object, or BadRequest."""
    payload, not_json = req.parsed_json()
    if not_json is not None:
        raise BadRequest(f"Invalid JSON payload received. {not_json}")
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise BadRequest(f"Invalid JSON payload received. Expected an object, got {json.dumps(payload)[:40]}")
    check_body(payload, kind)
    return payload


def _decode(content) -> bytes | None:
    return _base64(content) if isinstance(content, str) else None


def annotate(req: Request, image_error: dict | None) -> Response:
    try:
        payload = _parse(req, BATCH_ANNOTATE_IMAGES_REQUEST)
    except BadRequest as problem:
        return error(400, str(problem))
    if not payload.get("requests"):
        return error(400, "requests: at least one AnnotateImageRequest is required")
    responses = []
    for item in payload["requests"]:
        data = _decode(((item or {}).get("image") or {}).get("content"))
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
    try:  # a malformed body is refused before any resource is looked at
        payload = _parse(req, PROCESS_REQUEST)
    except BadRequest as problem:
        return error(400, str(problem))
    if project not in account.projects:
        return error(403, f"Permission 'documentai.processors.processOnline' denied on resource '{resource}' (or it may not exist).")
    if registry.processor(project, location, processor_id) is None:
        elsewhere = registry.processor_elsewhere(project, processor_id)
        if elsewhere is not None:
            return error(400, f"Processor is in location '{elsewhere.location}', not '{location}': call the {elsewhere.location}-documentai endpoint.")
        return error(404, f"Processor '{resource}' not found.")
    raw = _field(payload, "rawDocument")
    if raw is None:
        if _field(payload, "inlineDocument") is not None or _field(payload, "gcsDocument") is not None:
            return error(400, "The sandbox emulator processes raw_document only.")
        return error(400, "Document is required: set one of inline_document, raw_document or gcs_document.")
    if not _field(raw, "mimeType"):
        return error(400, "raw_document.mime_type is required.")
    data = _decode(raw.get("content"))
    if not data or not data.startswith(b"%PDF"):
        return error(400, "Unsupported input file format.")
    text = "\n".join(m.decode("latin-1") for m in re.findall(rb"\(([^)]*)\)\s*Tj", data)) + "\n"
    return Response(200, {
        "document": {
            "mimeType": _field(raw, "mimeType"),
            "text": text,
            "pages": [{"pageNumber": 1, "dimension": {"width": 612, "height": 792, "unit": "points"}}],
        },
        "humanReviewStatus": {"state": 3},
    })
