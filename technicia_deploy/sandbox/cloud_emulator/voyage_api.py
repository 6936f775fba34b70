"""VoyageAI embeddings: POST /v1/embeddings, Bearer key, errors as ``{"detail": ...}`` (what the SDK parses)."""

from __future__ import annotations

import hashlib
import struct

from technicia_deploy.sandbox.cloud_emulator.http import Request, Response
from technicia_deploy.sandbox.cloud_emulator.registry import Registry

MESSAGES = {
    401: "Provided API key is invalid.",
    403: "You do not have access to this resource.",
    429: "You have exceeded the rate limit (requests per minute) for your organization.",
    500: "Internal server error.",
}


def error(status: int, message: str | None = None, retry_after: float | None = None) -> Response:
    headers = {"retry-after": f"{retry_after:g}"} if retry_after is not None else {}
    return Response(status, {"detail": message or MESSAGES.get(status, "Service unavailable.")}, headers)


def authenticate(req: Request, registry: Registry) -> tuple[str | None, Response | None]:
    environment = registry.voyage_environment(req.bearer())
    if environment is None:
        return None, error(401)
    return environment, None


def _vector(text: str, dimension: int) -> list[float]:
    """A deterministic unit-ish vector derived from the text (same text, same embedding)."""
    out: list[float] = []
    counter = 0
    while len(out) < dimension:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        out += [(v / 2**31) - 1.0 for v in struct.unpack(">8I", digest)]
        counter += 1
    return [round(v, 6) for v in out[:dimension]]


# The optional fields of an embeddings request and the values each accepts (None = the default).
INPUT_TYPES = (None, "query", "document")
OUTPUT_DIMENSIONS = (None, 256, 512, 1024, 2048)
OUTPUT_DTYPES = (None, "float", "int8", "uint8", "binary", "ubinary")
ENCODING_FORMATS = (None, "base64")
MAX_TEXTS = 1000


def _choice(payload: dict, name: str, allowed: tuple) -> str | None:
    value = payload.get(name)
    types = {type(a) for a in allowed}
    if type(value) not in types or value not in allowed:  # exact types: neither True for 1 nor 1024.0 for 1024
        accepted = ", ".join("None" if a is None else repr(a) for a in allowed)
        return f"Value {value!r} supplied for argument '{name}' is not valid -- accepted values are {accepted}."
    return None


def check_request(payload, registry: Registry) -> str | None:
    """The ``detail`` of the 400 Voyage answers to this embeddings request body, or None if it is valid."""
    if not isinstance(payload, dict):
        return "Request body must be a JSON object."
    for name in ("input", "model"):
        if name not in payload or payload[name] is None:
            return f"Field '{name}' is required."
    model = payload["model"]
    if not isinstance(model, str):
        return f"Field 'model' must be a string, got {type(model).__name__}."
    if model not in registry.voyage_models:
        return f"Model {model} is not supported. Supported models are {', '.join(registry.voyage_models)}."
    texts = payload["input"]
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        return "Field 'input' must be a non-empty string or a non-empty list of strings."
    if len(texts) > MAX_TEXTS:
        return f"Field 'input' has {len(texts)} texts; the maximum is {MAX_TEXTS}."
    if "truncation" in payload and not isinstance(payload["truncation"], bool):
        return f"Field 'truncation' must be a boolean, got {payload['truncation']!r}."
    for name, allowed in (
        ("input_type", INPUT_TYPES),
        ("output_dimension", OUTPUT_DIMENSIONS),
        ("output_dtype", OUTPUT_DTYPES),
        ("encoding_format", ENCODING_FORMATS),
    ):
        problem = _choice(payload, name, allowed)
        if problem:
            return problem
    return None


def handle(req: Request, registry: Registry) -> Response:
    if req.method != "POST" or req.path.rstrip("/") != "/v1/embeddings":
        return error(404, "Not Found")
    payload, not_json = req.parsed_json()
    if not_json is not None:
        return error(400, f"Request body is not valid JSON: {not_json}")
    problem = check_request(payload, registry)
    if problem:
        return error(400, problem)
    model, texts = payload["model"], payload["input"]
    if isinstance(texts, str):
        texts = [texts]
    dimension = payload.get("output_dimension") or 1024
    data = [{"object": "embedding", "embedding": _vector(t, dimension), "index": i} for i, t in enumerate(texts)]
    tokens = sum(max(1, len(t) // 4) for t in texts)
    return Response(200, {"object": "list", "data": data, "model": model, "usage": {"total_tokens": tokens}})
