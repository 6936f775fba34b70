"""The HTTP server: routing, authentication before faults, the admin routes.

Admin routes (sandbox and tests only; the daemon listens on loopback):
``POST /_admin/faults`` (a Fault as JSON), ``DELETE /_admin/faults`` (clear, releasing hangs),
``GET /_admin/requests`` (counts per service and recent requests), ``DELETE /_admin/requests``,
``POST /_admin/reload`` (re-read the config file), ``GET /_admin/health``.
"""

from __future__ import annotations

import json
import sys
import threading
import traceback
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from technicia_deploy.sandbox.cloud_emulator import anthropic_api, google_api, voyage_api
from technicia_deploy.sandbox.cloud_emulator.faults import Fault, FaultBoard, RequestRecord
from technicia_deploy.sandbox.cloud_emulator.http import Request, Response
from technicia_deploy.sandbox.cloud_emulator.registry import Registry

ERROR_BUILDERS = {
    "anthropic": anthropic_api.error,
    "voyageai": voyage_api.error,
    "vision": google_api.error,
    "documentai": google_api.error,
}


@dataclass
class Emulator:
    """Everything the handler threads share."""

    registry: Registry
    config_file: Path | None = None
    faults: FaultBoard = field(default_factory=FaultBoard)
    tokens: google_api.TokenStore = field(default_factory=google_api.TokenStore)
    window: anthropic_api.RateWindow = field(default_factory=anthropic_api.RateWindow)

    def service_of(self, req: Request) -> str | None:
        path = req.path.rstrip("/")
        if path == "/v1/models" or path.startswith("/v1/models/") or path.startswith("/v1/messages"):
            return "anthropic"
        if path == "/v1/embeddings":
            return "voyageai"
        if path == "/v1/images:annotate":
            return "vision"
        if google_api.PROCESS_PATH.match(path):
            return "documentai"
        return None

    def dispatch(self, req: Request) -> Response:
        if req.path.startswith("/_admin/"):
            return self.admin(req)
        if req.method == "POST" and req.path == "/token":
            return google_api.token_endpoint(req, self.registry, self.tokens)
        service = self.service_of(req)
        if service is None:
            return Response(404, {"error": f"no such route: {req.method} {req.path}"})
        response, environment = self._serve(service, req)
        self.faults.record(RequestRecord(service, req.path, response.status, environment))
        return response

    def _serve(self, service: str, req: Request) -> tuple[Response, str | None]:
        # Authentication comes first, as on the real services: a bad key is a 401 whatever else is wrong.
        account = None
        if service == "anthropic":
            environment, problem = anthropic_api.authenticate(req, self.registry)
        elif service == "voyageai":
            environment, problem = voyage_api.authenticate(req, self.registry)
        else:
            account, problem = google_api.authenticate(req, self.registry, self.tokens)
            environment = account.environment if account else None
        if problem is not None:
            return problem, environment
        fault = self.faults.take(service, environment)
        if fault is not None:
            self.faults.wait(fault.delay)
            if fault.status is not None:
                return ERROR_BUILDERS[service](fault.status, None, fault.retry_after), environment
        if service == "anthropic":
            return anthropic_api.handle(req, environment, self.registry, self.window), environment
        if service == "voyageai":
            return voyage_api.handle(req, self.registry), environment
        if service == "vision":
            return google_api.annotate(req, fault.image_error if fault else None), environment
        return google_api.process(req, account, self.registry), environment

    def admin(self, req: Request) -> Response:
        route = (req.method, req.path.rstrip("/"))
        if route == ("GET", "/_admin/health"):
            return Response(200, {"ok": True})
        if route == ("POST", "/_admin/faults"):
            try:
                fault = Fault.from_json(req.json() or {})
            except (TypeError, ValueError) as exc:
                return Response(400, {"error": str(exc)})
            self.faults.add(fault)
            return Response(201, vars(fault))
        if route == ("DELETE", "/_admin/faults"):
            self.faults.clear()
            return Response(204)
        if route == ("GET", "/_admin/requests"):
            return Response(200, self.faults.snapshot())
        if route == ("DELETE", "/_admin/requests"):
            self.faults.reset_requests()
            return Response(204)
        if route == ("POST", "/_admin/reload"):
            if self.config_file is None:
                return Response(409, {"error": "started without a config file"})
            self.registry = Registry.from_file(self.config_file)
            return Response(200, {"ok": True})
        return Response(404, {"error": f"no such admin route: {req.method} {req.path}"})


def _error_for(service: str | None, status: int, message: str | None) -> Response:
    """An error in the shape of the service the request was for (a plain one outside the four services)."""
    if service is None:
        return Response(status, {"error": message or "internal error"})
    return ERROR_BUILDERS[service](status, message, None)


def _handler_class(emulator: Emulator, quiet: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs' connection pools expect
        server_version = "technicia-cloud-emulator"

        def _handle(self) -> None:
            raw_length = self.headers.get("content-length") or "0"
            if raw_length.isascii() and raw_length.isdigit():
                length = int(raw_length)
                body = self.rfile.read(length) if length else b""
                req = Request.build(self.command, self.path, dict(self.headers.items()), body)
                response = self._answer(req)
            else:  # where the body ends is unknown: answer, then close the connection
                self.close_connection = True
                req = Request.build(self.command, self.path, dict(self.headers.items()), b"")
                response = _error_for(emulator.service_of(req), 400, "Invalid Content-Length header.")
            payload = response.encoded()
            try:
                self.send_response(response.status)
                if payload:
                    self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a hang it timed out on)

        def _answer(self, req: Request) -> Response:
            try:
                return emulator.dispatch(req)
            except Exception:  # an emulator bug: the service's own 500 and a traceback, not a dropped connection
                traceback.print_exc(file=sys.stderr)
                return _error_for(emulator.service_of(req), 500, None)

        do_GET = do_POST = do_DELETE = do_PUT = _handle

        def log_message(self, format: str, *args: Any) -> None:
            # Request line and status only: never headers, which carry the keys.
            if not quiet:
                sys.stderr.write(f"{self.address_string()} {format % args}\n")

    return Handler


class RunningEmulator:
    """An emulator serving in a background thread (tests, benchmarks)."""

    def __init__(self, emulator: Emulator, host: str = "127.0.0.1", port: int = 0, quiet: bool = True):
        self.emulator = emulator
        self.httpd = ThreadingHTTPServer((host, port), _handler_class(emulator, quiet))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="cloud-emulator", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self.emulator.faults.clear()  # release any request held in a delay
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> "RunningEmulator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_in_thread(config: dict[str, Any] | Registry, port: int = 0) -> RunningEmulator:
    registry = config if isinstance(config, Registry) else Registry.from_config(config)
    return RunningEmulator(Emulator(registry), port=port)


def serve(config_file: Path, host: str, port: int) -> None:
    emulator = Emulator(Registry.from_file(config_file), config_file=config_file)
    httpd = ThreadingHTTPServer((host, port), _handler_class(emulator, quiet=False))
    httpd.daemon_threads = True
    sys.stderr.write(f"cloud emulator listening on http://{host}:{port}\n")
    sys.stderr.flush()
    httpd.serve_forever()


def admin_request(url: str, method: str, path: str, body: dict | None = None, timeout: float = 5.0) -> Any:
    """Call an admin route (tests, the sandbox CLI); returns the decoded JSON or None."""
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data, method=method, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        raw = response.read()
    return json.loads(raw) if raw else None
