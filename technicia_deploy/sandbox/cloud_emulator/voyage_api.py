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


def handle(req: Request, registry: Registry) -> Response:
    if req.method != "POST" or req.path.rstrip("/") != "/v1/embeddings":
        return error(404, "Not Found")
    payload = req.json()
    if not isinstance(payload, dict):
        return error(400, "Request body must be a JSON object.")
    model = payload.get("model")
    if model not in registry.voyage_models:
        return error(400, f"Model {model} is not supported. Supported models are {', '.join(registry.voyage_models)}.")
    texts = payload.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        return error(400, "input: expected a non-empty string or list of strings")
    dimension = payload.get("output_dimension") or 1024
    data = [{"object": "embedding", "embedding": _vector(t, dimension), "index": i} for i, t in enumerate(texts)]
    tokens = sum(max(1, len(t) // 4) for t in texts)
    return Response(200, {"object": "list", "data": data, "model": model, "usage": {"total_tokens": tokens}})
