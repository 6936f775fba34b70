"""Fault injection and request accounting, shared by the handler threads.

A fault is queued per service and consumed by that service's next request(s):
an optional delay (a "hang" is a delay longer than the client's timeout), then
either an error status (with optional retry-after) or, for Vision, a
per-image error inside a 200. Clearing the faults releases every request
still waiting in a delay, so a test never leaves a thread behind.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

SERVICES = ("anthropic", "voyageai", "vision", "documentai")


@dataclass
class Fault:
    service: str
    status: int | None = None  # HTTP status to answer instead of the normal response
    retry_after: float | None = None  # seconds, sent as the retry-after header
    delay: float = 0.0  # seconds to wait before answering (interrupted by clear())
    image_error: dict[str, Any] | None = None  # Vision: {"code": 7, "message": "..."} inside a 200
    environment: str | None = None  # only requests authenticated as this environment
    times: int = 1  # how many requests it applies to

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Fault":
        if not isinstance(data, dict):
            raise ValueError("a fault is a JSON object")
        service = data.get("service")
        if service not in SERVICES:
            raise ValueError(f"service must be one of {', '.join(SERVICES)}")
        allowed = {"service", "status", "retry_after", "delay", "image_error", "environment", "times"}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        status, times = data.get("status"), data.get("times", 1)
        if status is not None and (type(status) is not int or not 100 <= status <= 599):
            raise ValueError("status must be an HTTP status code (100-599) or null")
        if type(times) is not int or times < 1:
            raise ValueError("times must be an integer >= 1")
        for name, default in (("retry_after", None), ("delay", 0.0)):
            value = data.get(name, default)
            if (value is not None or default is not None) and (type(value) not in (int, float) or value < 0):
                raise ValueError(f"{name} must be a number >= 0")
        for name, kind in (("image_error", dict), ("environment", str)):
            if data.get(name) is not None and not isinstance(data[name], kind):
                raise ValueError(f"{name} must be {'an object' if kind is dict else 'a string'} or null")
        return cls(**data)


@dataclass
class RequestRecord:
    service: str
    path: str
    status: int
    environment: str | None


@dataclass
class FaultBoard:
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _faults: list[Fault] = field(default_factory=list)
    _release: threading.Event = field(default_factory=threading.Event)
    requests: list[RequestRecord] = field(default_factory=list)

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def take(self, service: str, environment: str | None) -> Fault | None:
        """The first pending fault for this service (and environment), consuming one use of it."""
        with self._lock:
            for fault in self._faults:
                if fault.service == service and fault.environment in (None, environment):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def wait(self, seconds: float) -> None:
        """Sleep ``seconds`` unless the faults are cleared meanwhile."""
        if seconds > 0:
            with self._lock:
                release = self._release
            release.wait(seconds)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._release.set()
            self._release = threading.Event()

    def record(self, record: RequestRecord) -> None:
        with self._lock:
            self.requests.append(record)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            counts = {s: sum(r.service == s for r in self.requests) for s in SERVICES}
            return {
                "counts": counts,
                "requests": [vars(r) for r in self.requests[-200:]],
                "pending_faults": [vars(f) for f in self._faults],
            }

    def reset_requests(self) -> None:
        with self._lock:
            self.requests.clear()
