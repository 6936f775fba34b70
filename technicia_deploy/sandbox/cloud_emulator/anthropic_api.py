"""Anthropic Messages API: /v1/models, /v1/messages, /v1/messages/count_tokens.

Authentication by ``x-api-key`` (or ``Authorization: Bearer``), a required
``anthropic-version`` header, Anthropic's error body
``{"type": "error", "error": {"type": ..., "message": ...}, "request_id": ...}``
and the ``anthropic-ratelimit-*`` headers the product reads as quota headroom.
"""

from __future__ import annotations

import secrets
import threading
import time
from datetime import datetime, timezone

from technicia_deploy.sandbox.cloud_emulator.http import Request, Response
from technicia_deploy.sandbox.cloud_emulator.registry import Registry

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
MESSAGES = {
    401: "invalid x-api-key",
    403: "Your API key does not have permission to use the specified resource.",
    429: "Number of requests has exceeded your per-minute rate limit.",
    500: "Internal server error",
    529: "Overloaded",
}
_CREATED = "2025-09-29T00:00:00Z"


def error(status: int, message: str | None = None, retry_after: float | None = None) -> Response:
    kind = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    request_id = "req_" + secrets.token_hex(12)
    headers = {"request-id": request_id}
    if retry_after is not None:
        headers["retry-after"] = f"{retry_after:g}"
    body = {"type": "error", "error": {"type": kind, "message": message or MESSAGES.get(status, kind)}, "request_id": request_id}
    return Response(status, body, headers)


def authenticate(req: Request, registry: Registry) -> tuple[str | None, Response | None]:
    key = req.headers.get("x-api-key") or req.bearer()
    if not key:
        return None, error(401, "x-api-key header is required")
    environment = registry.anthropic_environment(key)
    if environment is None:
        return None, error(401)
    if not req.headers.get("anthropic-version"):
        return None, error(400, "anthropic-version: header is required")
    return environment, None


class RateWindow:
    """Per-environment request/token counters over one-minute windows, reported in the headers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[int, int, int]] = {}  # env -> (minute, requests, tokens)

    def use(self, environment: str, tokens: int, limits: dict[str, int]) -> dict[str, str]:
        minute = int(time.time() // 60)
        with self._lock:
            start, used_requests, used_tokens = self._windows.get(environment, (minute, 0, 0))
            if start != minute:
                used_requests, used_tokens = 0, 0
            used_requests, used_tokens = used_requests + 1, used_tokens + tokens
            self._windows[environment] = (minute, used_requests, used_tokens)
        reset = (datetime.fromtimestamp((minute + 1) * 60, timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
        req_limit, tok_limit = limits.get("requests", 50), limits.get("tokens", 40000)
        return {
            "anthropic-ratelimit-requests-limit": str(req_limit),
            "anthropic-ratelimit-requests-remaining": str(max(req_limit - used_requests, 0)),
            "anthropic-ratelimit-requests-reset": reset,
            "anthropic-ratelimit-tokens-limit": str(tok_limit),
            "anthropic-ratelimit-tokens-remaining": str(max(tok_limit - used_tokens, 0)),
            "anthropic-ratelimit-tokens-reset": reset,
        }


def _model(model_id: str) -> dict:
    return {"type": "model", "id": model_id, "display_name": model_id.replace("-", " ").title(), "created_at": _CREATED}


def _count_tokens(payload: dict) -> int:
    text = str(payload.get("system", "")) + "".join(str(m.get("content", "")) for m in payload.get("messages", []) if isinstance(m, dict))
    return max(1, len(text) // 4)


def _validate_message(payload, registry: Registry, need_max_tokens: bool) -> Response | None:
    if not isinstance(payload, dict):
        return error(400, "request body must be a JSON object")
    model = payload.get("model")
    if not model:
        return error(400, "model: Field required")
    if model not in registry.anthropic_models:
        return error(404, f"model: {model}")
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        return error(400, "messages: at least one message is required")
    if need_max_tokens:
        max_tokens = payload.get("max_tokens")
        if not isinstance(max_tokens, int) or max_tokens < 1:
            return error(400, "max_tokens: Field required (an integer >= 1)")
    return None


def handle(req: Request, environment: str, registry: Registry, window: RateWindow) -> Response:
    path = req.path.rstrip("/")
    if req.method == "GET" and path == "/v1/models":
        models = [_model(m) for m in registry.anthropic_models]
        after, limit = req.arg("after_id"), int(req.arg("limit") or 20)
        if after in registry.anthropic_models:
            models = models[registry.anthropic_models.index(after) + 1:]
        page = models[:limit]
        return Response(200, {
            "data": page,
            "has_more": len(models) > limit,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
        }, window.use(environment, 0, registry.anthropic_ratelimit))
    if req.method == "GET" and path.startswith("/v1/models/"):
        model_id = path.removeprefix("/v1/models/")
        if model_id not in registry.anthropic_models:
            return error(404, f"model: {model_id}")
        return Response(200, _model(model_id))
    if req.method == "POST" and path == "/v1/messages/count_tokens":
        payload = req.json()
        problem = _validate_message(payload, registry, need_max_tokens=False)
        return problem or Response(200, {"input_tokens": _count_tokens(payload)})
    if req.method == "POST" and path == "/v1/messages":
        payload = req.json()
        problem = _validate_message(payload, registry, need_max_tokens=True)
        if problem:
            return problem
        input_tokens = _count_tokens(payload)
        output_tokens = min(payload["max_tokens"], 2)
        text = "OK"[:output_tokens]
        headers = window.use(environment, input_tokens + output_tokens, registry.anthropic_ratelimit)
        return Response(200, {
            "id": "msg_" + secrets.token_hex(12),
            "type": "message",
            "role": "assistant",
            "model": payload["model"],
            "content": [{"type": "text", "text": text}],
            "stop_reason": "max_tokens" if output_tokens >= payload["max_tokens"] else "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
        }, headers)
    return error(404, f"Not found: {req.method} {req.path}")

