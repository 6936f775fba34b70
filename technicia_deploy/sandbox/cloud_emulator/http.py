"""The small request/response model the service modules work with (no framework: fast start, no deps)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes

    @classmethod
    def build(cls, method: str, target: str, headers: dict[str, str], body: bytes) -> "Request":
        path, _, query = target.partition("?")
        return cls(method, path, parse_qs(query), {k.lower(): v for k, v in headers.items()}, body)

    def json(self) -> Any:
        """The JSON body, or None when it is absent or not JSON (callers answer 400)."""
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def parsed_json(self) -> tuple[Any, str | None]:
        """(the JSON body, None), (None, None) when there is no body, or (None, why it is not JSON)."""
        if not self.body:
            return None, None
        try:
            return json.loads(self.body), None
        except ValueError as exc:  # includes a body that is not UTF-8
            return None, str(exc)

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode("utf-8", "replace")).items()}

    def bearer(self) -> str | None:
        auth = self.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class Response:
    status: int
    body: Any = None  # JSON-serialisable
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> bytes:
        return b"" if self.body is None else json.dumps(self.body).encode()
