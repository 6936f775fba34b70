"""Tests de performance: a built-in HTTP/1.1 load generator (asyncio protocols, keep-alive).

``concurrency`` connections each send one request at a time for ``duration_s``
seconds (a closed loop, like ``wrk -c N``); every answer's latency is kept, so
p50/p95/p99 are exact, not histogram estimates. A non-2xx/3xx status, a
timeout or a dropped connection is an error. The generator works on raw
asyncio protocols rather than an HTTP client library: per request it does one
``write`` and an incremental parse of the answer, which keeps its ceiling far
above what one VPS serves (see docs/benchmarks.md, "Load generator ceiling"),
and the generator reports its own CPU use (``generator_busy``) so a run where
it, not the server, was saturated is flagged instead of trusted.
"""

from __future__ import annotations

import asyncio
import math
import ssl
import time
from collections import Counter
from dataclasses import dataclass, field

from .target import Target

REQUEST_TIMEOUT_S = 10.0


@dataclass
class _Stats:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)  # kind -> count (transport failures and bad statuses)


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    duration_s: float
    requests_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    error_rate: float
    statuses: dict[int, int]
    error_kinds: dict[str, int]
    concurrency: int
    generator_busy: float = 0.0  # CPU time of the generator / wall time: near 1.0, it was the bottleneck

    def metrics(self) -> dict[str, float]:
        return {"requests_per_s": self.requests_per_s, "p50_ms": self.p50_ms, "p95_ms": self.p95_ms,
                "p99_ms": self.p99_ms, "error_rate": self.error_rate}


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class _Connection(asyncio.Protocol):
    """One keep-alive connection: send, parse the answer incrementally, send again until the deadline."""

    def __init__(self, request: bytes, stats: _Stats, deadline: float, loop: asyncio.AbstractEventLoop):
        self.request, self.stats, self.deadline, self.loop = request, stats, deadline, loop
        self.closed: asyncio.Future = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.sent_at = 0.0
        self.in_flight = False
        self.timer: asyncio.TimerHandle | None = None
        self._reset_response()

    def _reset_response(self) -> None:
        self.status = 0
        self.headers_done = False
        self.length: int | None = None
        self.chunked = False
        self.keep_alive = True

    # -- sending ----------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        self._send()

    def _send(self) -> None:
        if time.perf_counter() >= self.deadline:
            self.transport.close()
            return
        self.in_flight = True
        self.sent_at = time.perf_counter()
        self.timer = self.loop.call_later(REQUEST_TIMEOUT_S, self._timed_out)
        self.transport.write(self.request)

    def _timed_out(self) -> None:
        if self.in_flight:
            self.in_flight = False
            self.stats.errors["timeout"] += 1
            self.transport.abort()

    # -- receiving ----------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.in_flight and self._parse():
            pass

    def _parse(self) -> bool:
        """Consume one complete answer from the buffer if there is one; True if it did."""
        if not self.headers_done:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return False
            head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            del self.buffer[: end + 4]
            parts = head[0].split(" ", 2)
            self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            for line in head[1:]:
                name, _, value = line.partition(":")
                name, value = name.strip().lower(), value.strip().lower()
                if name == "content-length":
                    self.length = int(value)
                elif name == "transfer-encoding" and "chunked" in value:
                    self.chunked = True
                elif name == "connection" and value == "close":
                    self.keep_alive = False
            if parts[0] == "HTTP/1.0" and self.keep_alive:
                self.keep_alive = False
            self.headers_done = True
        if self.chunked:
            if not self._consume_chunks():
                return False
        elif self.length is not None:
            if len(self.buffer) < self.length:
                return False
            del self.buffer[: self.length]
        elif self.status in (204, 304) or 100 <= self.status < 200:
            pass
        else:
            return False  # body until close: completed in connection_lost
        self._complete()
        return True

    def _consume_chunks(self) -> bool:
        while True:
            line_end = self.buffer.find(b"\r\n")
            if line_end < 0:
                return False
            size = int(bytes(self.buffer[:line_end]).split(b";")[0] or b"0", 16)
            if size == 0:
                trailer_end = self.buffer.find(b"\r\n\r\n", line_end)
                if trailer_end < 0:
                    return False
                del self.buffer[: trailer_end + 4]
                return True
            if len(self.buffer) < line_end + 2 + size + 2:
                return False
            del self.buffer[: line_end + 2 + size + 2]

    def _complete(self) -> None:
        latency = (time.perf_counter() - self.sent_at) * 1000
        self.in_flight = False
        if self.timer:
            self.timer.cancel()
        self.stats.latencies_ms.append(latency)
        self.stats.statuses[self.status] += 1
        if not 200 <= self.status < 400:
            self.stats.errors[f"HTTP {self.status}"] += 1
        keep_alive = self.keep_alive
        self._reset_response()
        if keep_alive:
            self._send()
        else:
            self.transport.close()

    def connection_lost(self, exc) -> None:
        if self.timer:
            self.timer.cancel()
        if self.in_flight:
            if self.headers_done and self.length is None and not self.chunked:
                self._complete_on_close()
            else:
                self.stats.errors["connection lost"] += 1
            self.in_flight = False
        if not self.closed.done():
            self.closed.set_result(None)

    def _complete_on_close(self) -> None:
        self.in_flight = False
        self.stats.latencies_ms.append((time.perf_counter() - self.sent_at) * 1000)
        self.stats.statuses[self.status] += 1
        if not 200 <= self.status < 400:
            self.stats.errors[f"HTTP {self.status}"] += 1


async def _worker(target: Target, request: bytes, context: ssl.SSLContext | None, stats: _Stats, deadline: float) -> None:
    loop = asyncio.get_running_loop()
    port = target.https_port if context else target.http_port
    while time.perf_counter() < deadline:
        connection = _Connection(request, stats, deadline, loop)
        try:
            await asyncio.wait_for(
                loop.create_connection(lambda: connection, target.address, port, ssl=context,
                                       server_hostname=target.domain if context else None),
                timeout=REQUEST_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError, ssl.SSLError) as exc:
            stats.errors[f"connect: {type(exc).__name__}"] += 1
            # A refused connection fails in microseconds: pace retries so errors stay countable, not spun.
            await asyncio.sleep(0.05)
            continue
        await connection.closed


async def run_async(target: Target, path: str, concurrency: int, duration_s: float, *, scheme: str = "https") -> LoadResult:
    if concurrency < 1 or duration_s <= 0:
        raise ValueError("concurrency must be >= 1 and duration_s > 0")
    context = target.ssl_context() if scheme == "https" else None
    request = (f"GET {path} HTTP/1.1\r\nHost: {target.domain}\r\nUser-Agent: technicia-deploy-loadtest\r\n"
               "Accept: */*\r\n\r\n").encode()
    stats = _Stats()
    cpu_started = time.thread_time()  # the event loop runs in this thread: its CPU time is the generator's
    started = time.perf_counter()
    deadline = started + duration_s
    await asyncio.gather(*(_worker(target, request, context, stats, deadline) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    busy = (time.thread_time() - cpu_started) / elapsed if elapsed > 0 else 0.0
    latencies = sorted(stats.latencies_ms)
    completed = len(latencies)
    transport_errors = sum(n for kind, n in stats.errors.items() if not kind.startswith("HTTP "))
    attempts = completed + transport_errors
    errors = sum(stats.errors.values())
    return LoadResult(
        requests=completed, errors=errors, duration_s=elapsed,
        requests_per_s=completed / elapsed if elapsed > 0 else 0.0,
        p50_ms=percentile(latencies, 50), p95_ms=percentile(latencies, 95), p99_ms=percentile(latencies, 99),
        error_rate=errors / attempts if attempts else 1.0,
        statuses=dict(stats.statuses), error_kinds=dict(stats.errors), concurrency=concurrency,
        generator_busy=busy,
    )


def run(target: Target, path: str, concurrency: int, duration_s: float, *, scheme: str = "https") -> LoadResult:
    """Run the load test (its own event loop: callable from a Prefect task's worker thread)."""
    return asyncio.run(run_async(target, path, concurrency, duration_s, scheme=scheme))
