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


# The request fields each endpoint accepts (anything else: "x: Extra inputs are not permitted"): what the
# anthropic SDK sends (a unit test compares with the installed SDK) and the sampling fields older models take.
MESSAGE_FIELDS = frozenset({
    "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream", "tools", "tool_choice",
    "thinking", "service_tier", "container", "mcp_servers", "context_management", "cache_control", "diagnostics",
    "inference_geo", "output_config", "speed", "user_profile_id", "workspace_id", "temperature", "top_k", "top_p",
})
COUNT_TOKENS_FIELDS = frozenset({
    "model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers", "context_management",
    "cache_control", "output_config", "output_format", "speed", "user_profile_id", "workspace_id",
})
_TYPES = {
    "string": ((str,), "a valid string"),
    "integer": ((int,), "a valid integer"),
    "number": ((int, float), "a valid number"),
    "boolean": ((bool,), "a valid boolean"),
    "object": ((dict,), "a valid dictionary"),
    "array": ((list,), "a valid list"),
}


class Invalid(Exception):
    """One problem with a request body, as Anthropic words it: ``<field path>: <reason>``."""


def _expect(value, kind: str, loc: str) -> None:
    types, words = _TYPES[kind]
    if (isinstance(value, bool) and kind != "boolean") or not isinstance(value, types):
        raise Invalid(f"{loc}: Input should be {words}")


def _bounded(value, kind: str, loc: str, low: float | None = None, high: float | None = None) -> None:
    _expect(value, kind, loc)
    if low is not None and value < low:
        raise Invalid(f"{loc}: Input should be greater than or equal to {low:g}")
    if high is not None and value > high:
        raise Invalid(f"{loc}: Input should be less than or equal to {high:g}")


def _blocks(value, loc: str) -> None:
    """Content given as a list of blocks: objects with a string ``type`` (text blocks carry a string ``text``)."""
    _expect(value, "array", loc)
    for i, block in enumerate(value):
        _expect(block, "object", f"{loc}.{i}")
        if "type" not in block:
            raise Invalid(f"{loc}.{i}.type: Field required")
        _expect(block["type"], "string", f"{loc}.{i}.type")
        if block["type"] == "text":
            if "text" not in block:
                raise Invalid(f"{loc}.{i}.text: Field required")
            _expect(block["text"], "string", f"{loc}.{i}.text")


def check_message_request(payload, fields: frozenset[str], need_max_tokens: bool) -> None:
    """Raise Invalid for the first problem of a Messages (or count_tokens) request body."""
    if not isinstance(payload, dict):
        raise Invalid("body: Input should be a valid dictionary")
    for name in payload:
        if name not in fields:
            raise Invalid(f"{name}: Extra inputs are not permitted")
    for name in ("model", "messages", "max_tokens") if need_max_tokens else ("model", "messages"):
        if name not in payload:
            raise Invalid(f"{name}: Field required")
    _expect(payload["model"], "string", "model")
    if not payload["model"]:
        raise Invalid("model: String should have at least 1 character")
    if need_max_tokens:
        _bounded(payload["max_tokens"], "integer", "max_tokens", low=1)
    messages = payload["messages"]
    _expect(messages, "array", "messages")
    if not messages:
        raise Invalid("messages: at least one message is required")
    for i, message in enumerate(messages):
        loc = f"messages.{i}"
        _expect(message, "object", loc)
        for name in message:
            if name not in ("role", "content"):
                raise Invalid(f"{loc}.{name}: Extra inputs are not permitted")
        for name in ("role", "content"):
            if name not in message:
                raise Invalid(f"{loc}.{name}: Field required")
        if message["role"] not in ("user", "assistant"):
            raise Invalid(f"{loc}.role: Input should be 'user' or 'assistant'")
        if not isinstance(message["content"], str):
            _blocks(message["content"], f"{loc}.content")
    if "system" in payload and not isinstance(payload["system"], str):
        _blocks(payload["system"], "system")
    optional = {
        "temperature": ("number", 0, 1), "top_p": ("number", 0, 1), "top_k": ("integer", 0, None),
        "stream": ("boolean", None, None), "metadata": ("object", None, None), "stop_sequences": ("array", None, None),
        "tools": ("array", None, None), "tool_choice": ("object", None, None), "thinking": ("object", None, None),
        "service_tier": ("string", None, None),
    }
    for name, (kind, low, high) in optional.items():
        if name in payload and payload[name] is not None:
            _bounded(payload[name], kind, name, low, high)
    for i, stop in enumerate(payload.get("stop_sequences") or []):
        _expect(stop, "string", f"stop_sequences.{i}")
    if payload.get("service_tier") not in (None, "auto", "standard_only"):
        raise Invalid("service_tier: Input should be 'auto' or 'standard_only'")
    if payload.get("speed") not in (None, "standard", "fast"):
        raise Invalid("speed: Input should be 'standard' or 'fast'")


def _validate_message(req: Request, registry: Registry, need_max_tokens: bool) -> Response | None:
    payload, not_json = req.parsed_json()
    if not_json is not None:
        return error(400, f"There was an error parsing the body of your request: {not_json}")
    if payload is None:
        return error(400, "body: Field required (a JSON object)")
    try:
        check_message_request(payload, MESSAGE_FIELDS if need_max_tokens else COUNT_TOKENS_FIELDS, need_max_tokens)
    except Invalid as problem:
        return error(400, str(problem))
    if payload["model"] not in registry.anthropic_models:
        return error(404, f"model: {payload['model']}")
    return None


def _limit(req: Request) -> int | Response:
    raw = req.arg("limit")
    if raw is None:
        return 20
    if not raw.strip().lstrip("-").isdigit():
        return error(400, "limit: Input should be a valid integer, unable to parse string as an integer")
    limit = int(raw)
    if not 1 <= limit <= 1000:
        return error(400, "limit: Input should be greater than or equal to 1 and less than or equal to 1000")
    return limit


def handle(req: Request, environment: str, registry: Registry, window: RateWindow) -> Response:
    path = req.path.rstrip("/")
    if req.method == "GET" and path == "/v1/models":
        models = [_model(m) for m in registry.anthropic_models]
        after, limit = req.arg("after_id"), _limit(req)
        if isinstance(limit, Response):
            return limit
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
        problem = _validate_message(req, registry, need_max_tokens=False)
        return problem or Response(200, {"input_tokens": _count_tokens(req.json())})
    if req.method == "POST" and path == "/v1/messages":
        problem = _validate_message(req, registry, need_max_tokens=True)
        if problem:
            return problem
        payload = req.json()
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

