"""The emulator process core: HTTP plumbing, signature check, fault injection, and the DNS servers.

``Emulator`` runs in a daemon (``python -m technicia_deploy.sandbox.ovh_emulator``)
or in-process in unit tests, where ``inventory`` and ``rebuild`` are injected.
The admin routes under ``/_emulator/`` (fault injection, slow DNS propagation,
extra credentials) need the ``X-Emulator-Admin`` token; without a token they do not exist:

- ``POST faults`` ``{"path", "status"?, "count"?, "method"?, "delay_s"?}``: the next ``count``
  API requests whose path starts with ``path`` answer ``status`` (after ``delay_s``);
- ``POST dns-delay`` ``{"delay_s"}``: from now on a zone refresh reaches the DNS server only
  ``delay_s`` seconds later (0: at once again);
- ``DELETE faults``: clears every fault and the DNS delay, and publishes a pending refresh now;
- ``POST credentials`` ``{"consumerKey", "rules"?, "status"?}``: another consumer key.
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl, unquote, urlsplit

from technicia_deploy.sandbox.ovh_emulator import auth, errors, routes, validation
from technicia_deploy.sandbox.ovh_emulator.dns_server import POLL_S, DnsServers
from technicia_deploy.sandbox.ovh_emulator.store import Store

ZONE = "exemple.test"
API_PREFIX = "/1.0"
ADMIN_PREFIX = "/_emulator/"

Inventory = Callable[[], dict[str, Any]]  # data["vps"] of the sandbox state
Rebuild = Callable[[str, str], None]  # (environment, public ssh key)


class Emulator:
    application_id = 4242

    def __init__(
        self,
        data_dir: Path,
        keys: auth.AppKeys,
        inventory: Inventory,
        rebuild: Rebuild,
        *,
        zone: str = ZONE,
        host: str = "127.0.0.1",
        api_port: int = 0,
        dns_port: int = 0,
        admin_token: str | None = None,
        settle_s: float = 0.5,
    ) -> None:
        self.keys = keys
        self.inventory = inventory
        self.rebuild = rebuild
        self.zone = zone
        self.host = host
        self.admin_token = admin_token
        self.settle_s = settle_s
        self.log = logging.getLogger("ovh_emulator")
        self.store = Store(Path(data_dir) / "emulator.json", zone)
        self._init_state()
        self.http = ThreadingHTTPServer((host, api_port), _Handler)
        self.http.daemon_threads = True
        self.http.emulator = self  # type: ignore[attr-defined]
        self.dns = DnsServers(self.store, zone, host, dns_port)
        self._threads: list[threading.Thread] = []

    def _init_state(self) -> None:
        with self.store.change() as data:
            self._credential(data, self.keys.consumer_key, auth.ALL_RULES, "validated")
            zone = data["zones"][self.zone]
            if not zone["records"]:  # a new OVH zone comes with its name server records
                for sub, kind, target in (("", "NS", f"ns1.{self.zone}."), ("ns1", "A", self.host)):
                    record_id = data["next_record_id"]
                    data["next_record_id"] += 1
                    zone["records"][str(record_id)] = {
                        "fieldType": kind,
                        "id": record_id,
                        "subDomain": sub,
                        "target": target,
                        "ttl": 0,
                        "zone": self.zone,
                    }
                zone["published"] = [dict(r) for r in zone["records"].values()]
            # A task cut short by a restart cannot finish any more.
            for task in data["tasks"].values():
                if task["state"] in ("todo", "doing"):
                    task["state"] = "error"

    @staticmethod
    def _credential(data: dict[str, Any], consumer_key: str, rules: list[dict[str, str]], status: str) -> None:
        known = data["credentials"].get(consumer_key)
        data["credentials"][consumer_key] = {
            "creation": known["creation"] if known else datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "credentialId": known["credentialId"] if known else len(data["credentials"]) + 1,
            "rules": rules,
            "status": status,
        }

    # --- lifecycle

    @property
    def api_port(self) -> int:
        return self.http.server_address[1]

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}{API_PREFIX}"

    @property
    def dns_port(self) -> int:
        return self.dns.port

    def start(self) -> "Emulator":
        self.dns.start()
        thread = threading.Thread(
            target=self.http.serve_forever, kwargs={"poll_interval": POLL_S}, name="ovh-api", daemon=True
        )
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.dns.stop()

    # --- test controls (also reachable through the admin routes)

    def add_credential(self, consumer_key: str, rules: list[dict[str, str]], status: str = "validated") -> None:
        with self.store.change() as data:
            self._credential(data, consumer_key, rules, status)

    def inject_fault(
        self, path: str, status: int | None = 503, count: int = 1, method: str | None = None, delay_s: float = 0
    ) -> None:
        """The next ``count`` requests whose API path starts with ``path`` answer ``status`` (after ``delay_s``)."""
        with self.store.change() as data:
            data["faults"].append(
                {"path": path, "status": status, "count": count, "method": method, "delay_s": delay_s}
            )

    def set_dns_delay(self, delay_s: float) -> None:
        """A zone refresh reaches the DNS server ``delay_s`` seconds after it (0: at once, the default)."""
        with self.store.change() as data:
            data["dns_delay_s"] = delay_s

    def clear_faults(self) -> None:
        """No fault left: API faults, the DNS delay, and any refresh still waiting for it published now."""
        from technicia_deploy.sandbox.ovh_emulator.store import publish_due

        with self.store.change() as data:
            data["faults"] = []
            data["dns_delay_s"] = 0
            for zone in data["zones"].values():
                publish_due(zone, force=True)

    def _take_fault(self, method: str, path: str) -> dict[str, Any] | None:
        with self.store.change() as data:
            for fault in data["faults"]:
                if path.startswith(fault["path"]) and fault["method"] in (None, method):
                    fault["count"] -= 1
                    if fault["count"] <= 0:
                        data["faults"].remove(fault)
                    return dict(fault)
        return None

    # --- request handling

    def handle_api(self, method: str, url: str, raw_path: str, query: str, headers: Any, body: str) -> Any:
        path = raw_path[len(API_PREFIX) :]
        fault = self._take_fault(method, path)
        if fault:
            time.sleep(fault["delay_s"])
            if fault["status"]:
                raise errors.server_error(fault["status"])
        for route in routes.ROUTES:
            match = route.pattern.match(path)
            if match and route.method == method:
                break
        else:
            raise errors.not_found("Got an invalid (or empty) URL")
        path_params = {k: unquote(v) for k, v in match.groupdict().items()}
        params = dict(path_params)
        if route.signed:
            with self.store.read() as data:
                credentials = dict(data["credentials"])
            auth.verify(headers, method, url, unquote(path), body, self.keys, credentials)
            params["_consumer_key"] = headers.get("X-Ovh-Consumer")
        payload = _json_object(body)
        query_params = dict(parse_qsl(query, keep_blank_values=True))
        # What OVH's schemas declare for the route (types, required, unknown names, enums, ranges), before any handler.
        validation.validate(method, route.template, path_params, query_params, payload)
        request = routes.Request(method, path, params, query_params, payload)
        return route.handler(self, request)

    def handle_admin(self, method: str, path: str, headers: Any, body: str) -> Any:
        token = headers.get("X-Emulator-Admin", "")
        if not self.admin_token or not hmac.compare_digest(token, self.admin_token):
            raise errors.not_found("Got an invalid (or empty) URL")
        payload = _json_object(body)
        action = path[len(ADMIN_PREFIX) :]
        if (method, action) == ("POST", "faults"):
            none = type(None)
            _admin_check(
                payload,
                {"path": (str,)},
                {"status": (int, none), "count": (int,), "method": (str, none), "delay_s": (int, float)},
            )
            self.inject_fault(
                payload["path"],
                payload.get("status", 503),
                payload.get("count", 1),
                payload.get("method"),
                payload.get("delay_s", 0),
            )
        elif (method, action) == ("DELETE", "faults"):
            self.clear_faults()
        elif (method, action) == ("POST", "dns-delay"):
            _admin_check(payload, {"delay_s": (int, float)}, {})
            if payload["delay_s"] < 0:
                raise errors.bad_request("[delay_s] must be >= 0")
            self.set_dns_delay(payload["delay_s"])
        elif (method, action) == ("POST", "credentials"):
            _admin_check(payload, {"consumerKey": (str,)}, {"rules": (list,), "status": (str,)})
            self.add_credential(
                payload["consumerKey"], payload.get("rules", auth.ALL_RULES), payload.get("status", "validated")
            )
        else:
            raise errors.not_found("Unknown admin action")
        return None


def _admin_check(
    payload: dict[str, Any], required: dict[str, tuple[type, ...]], optional: dict[str, tuple[type, ...]]
) -> None:
    """An admin body holds the required fields, nothing undeclared, each of its JSON type (else a 400)."""
    unknown = sorted(set(payload) - set(required) - set(optional))
    if unknown:
        raise errors.bad_request(f"Received not described parameters: ({', '.join(unknown)})")
    for name, kinds in {**required, **optional}.items():
        if name not in payload:
            if name in required:
                raise errors.bad_request(f"[{name}] Property is mandatory")
            continue
        value = payload[name]
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise errors.bad_request(f"[{name}] Given data ({json.dumps(value)}) is not valid")


class _Handler(BaseHTTPRequestHandler):
    server_version = "ovh-emulator"
    protocol_version = "HTTP/1.1"  # keep-alive, like python-ovh's requests.Session expects

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, Nagle + the client's delayed ACK add ~40 ms a call.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _dispatch(self) -> None:
        emu: Emulator = self.server.emulator  # type: ignore[attr-defined]
        split = urlsplit(self.path)
        # What python-ovh signed: its endpoint URL + path (+ query string).
        url = f"http://{self.headers.get('Host', '')}{self.path}"
        try:
            body = self._body()
            if split.path.startswith(ADMIN_PREFIX):
                status, answer = 200, emu.handle_admin(self.command, split.path, self.headers, body)
            elif split.path.startswith(API_PREFIX + "/"):
                status, answer = 200, emu.handle_api(self.command, url, split.path, split.query, self.headers, body)
            else:
                raise errors.not_found("Got an invalid (or empty) URL")
        except errors.ApiError as error:
            status, answer = error.status, error.body
        except Exception:
            emu.log.exception("%s %s failed", self.command, split.path)
            status, answer = 500, errors.server_error(500).body
        data = json.dumps(answer).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. timed out on an injected delay)

    def _body(self) -> str:
        raw_length = self.headers.get("Content-Length") or "0"
        if not (raw_length.isascii() and raw_length.isdigit()):
            self.close_connection = True  # where this body ends is unknown: the connection cannot be reused
            raise errors.bad_request("Invalid Content-Length header")
        length = int(raw_length)
        data = self.rfile.read(length) if length else b""
        try:
            return data.decode()
        except UnicodeDecodeError:
            raise errors.bad_request("Invalid JSON received: the body is not UTF-8") from None

    do_GET = do_POST = do_PUT = do_DELETE = _dispatch

    def log_message(self, format: str, *args: Any) -> None:  # request lines carry no secret (headers are not logged)
        logging.getLogger("ovh_emulator.http").info("%s " + format, self.address_string(), *args)


def _json_object(body: str) -> dict:
    """A request body as a JSON object ({} when empty); OVH's 400 otherwise."""
    try:
        payload = json.loads(body) if body else {}
    except ValueError:
        raise errors.bad_request("Invalid JSON received") from None
    if not isinstance(payload, dict):
        raise errors.bad_request("Invalid JSON received: an object was expected")
    return payload
