"""The load generator against real servers on 127.0.0.1: counts, latencies, errors, HTTP framing."""

from __future__ import annotations

import socket
import threading

import pytest

from technicia_deploy.checks import loadtest

from .conftest import PAGE, Route, closed_port, server_tls, target_for


def test_percentiles_are_nearest_rank():
    values = sorted(float(v) for v in range(1, 101))
    assert (loadtest.percentile(values, 50), loadtest.percentile(values, 95), loadtest.percentile(values, 99)) == (50, 95, 99)
    assert loadtest.percentile([], 95) == 0.0 and loadtest.percentile([7.0], 99) == 7.0


def test_https_keep_alive_load_counts_every_answer(pki, servers):
    https = servers({"/": Route(200, PAGE, {"Content-Type": "text/html"})}, server_tls(*pki.leaf()))
    result = loadtest.run(target_for(pki, https.port), "/", concurrency=3, duration_s=0.5)
    assert result.requests > 20 and result.errors == 0 and result.error_rate == 0
    assert result.statuses == {200: result.requests}
    assert 0 < result.p50_ms <= result.p95_ms <= result.p99_ms
    assert result.requests_per_s == pytest.approx(result.requests / result.duration_s)
    assert 0 < result.generator_busy <= 1.5


def test_server_errors_count_in_the_error_rate(pki, servers):
    https = servers({"/": Route(503, b"down")}, server_tls(*pki.leaf()))
    result = loadtest.run(target_for(pki, https.port), "/", concurrency=2, duration_s=0.3)
    assert result.requests > 0 and result.error_rate == 1.0 and result.error_kinds == {"HTTP 503": result.requests}


def test_refused_connections_are_errors_not_a_hang(pki):
    result = loadtest.run(target_for(pki, closed_port()), "/", concurrency=2, duration_s=0.3)
    assert result.requests == 0 and result.error_rate == 1.0
    assert list(result.error_kinds) == ["connect: ConnectionRefusedError"]


def _raw_server(answer: bytes, close_after: bool) -> tuple[int, socket.socket]:
    """A server that answers every request on a connection with ``answer`` (framing under test)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)

    def handle(conn: socket.socket) -> None:
        with conn:
            buffer = b""
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buffer += data
                while b"\r\n\r\n" in buffer:
                    _, buffer = buffer.split(b"\r\n\r\n", 1)
                    conn.sendall(answer)
                    if close_after:
                        return

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return listener.getsockname()[1], listener


@pytest.mark.parametrize("answer,close_after", [
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n", False),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", True),
    (b"HTTP/1.0 200 OK\r\n\r\nbody until close", True),
], ids=["chunked", "connection-close", "http-1.0-until-close"])
def test_http_framing(pki, answer, close_after):
    port, listener = _raw_server(answer, close_after)
    try:
        result = loadtest.run(target_for(pki, 1, port), "/", concurrency=2, duration_s=0.3, scheme="http")
    finally:
        listener.close()
    assert result.requests > 5 and result.errors == 0, result.error_kinds
