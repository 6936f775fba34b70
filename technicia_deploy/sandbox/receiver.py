"""Sandbox component ``receiver``: where the sandbox's alerts land (a webhook + an SMTP server).

One daemon on the network gateway (reachable from the host and from the VPSes,
whose monitoring script posts its alerts itself) serves:
- HTTP: any POST/PUT is a webhook delivery (apprise ``json://`` and the
  monitoring script's payloads, Slack-shaped ``{"text": ...}`` too);
- SMTP: a minimal receiving server (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT,
  no STARTTLS, no AUTH), enough for apprise ``mailto://`` and ``curl smtp://``.
Every delivery is appended as one JSON line to ``<state>/receiver/received.jsonl``;
tests read it back with :func:`received` / :func:`wait_for`.

``up`` also writes each environment's alert destinations as secret files
(``<state>/alerts/<env>-webhook.url``, ``<env>-mail.url``): the webhook path
carries a random token, as a real one would. ``world`` puts them in
environments.yaml as ``{file: ...}`` references.
"""

from __future__ import annotations

import argparse
import datetime as dt
import email
import email.policy
import http.server
import json
import secrets
import socketserver
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from technicia_deploy.sandbox import processes
from technicia_deploy.sandbox.state import SandboxState

DAEMON = "alert-receiver"
ENVIRONMENTS = ("test", "staging", "production")


# --- the daemon ------------------------------------------------------------------------------------

class Recorder:
    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()

    def record(self, entry: dict[str, Any]) -> None:
        entry = {"at": dt.datetime.now(dt.timezone.utc).isoformat(), **entry}
        with self._lock, self.path.open("a") as out:
            out.write(json.dumps(entry) + "\n")


def _webhook_handler(recorder: Recorder) -> type:
    class Handler(http.server.BaseHTTPRequestHandler):
        def _receive(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            text = raw.decode("utf-8", "replace")
            try:
                body: Any = json.loads(text) if text else None
            except ValueError:
                body = text
            recorder.record({"kind": "webhook", "method": self.command, "path": self.path,
                             "content_type": self.headers.get("Content-Type", ""), "body": body})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        do_POST = do_PUT = _receive  # noqa: N815 - http.server's naming

        def do_GET(self) -> None:  # noqa: N802 - a liveness probe
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args) -> None:
            pass

    return Handler


def _smtp_handler(recorder: Recorder) -> type:
    class Handler(socketserver.StreamRequestHandler):
        timeout = 30

        def reply(self, line: str) -> None:
            self.wfile.write((line + "\r\n").encode())

        def handle(self) -> None:
            self.reply("220 technicia-sandbox-receiver ESMTP")
            sender, recipients = "", []
            while True:
                raw = self.rfile.readline()
                if not raw:
                    return
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                verb = line.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    self.wfile.write(b"250-technicia-sandbox-receiver\r\n250 8BITMIME\r\n")
                elif verb == "HELO" or verb in ("NOOP",):
                    self.reply("250 OK")
                elif verb == "RSET":
                    sender, recipients = "", []
                    self.reply("250 OK")
                elif verb == "MAIL":
                    sender = line.split(":", 1)[1].strip().split()[0].strip("<>") if ":" in line else ""
                    self.reply("250 OK")
                elif verb == "RCPT":
                    recipients.append(line.split(":", 1)[1].strip().split()[0].strip("<>") if ":" in line else "")
                    self.reply("250 OK")
                elif verb == "DATA":
                    if not recipients:
                        self.reply("503 RCPT first")
                        continue
                    self.reply("354 End data with <CR><LF>.<CR><LF>")
                    lines = []
                    while True:
                        data = self.rfile.readline()
                        if not data or data in (b".\r\n", b".\n"):
                            break
                        lines.append(data[1:] if data.startswith(b"..") else data)
                    message = email.message_from_bytes(b"".join(lines), policy=email.policy.default)
                    body = message.get_body(("plain", "html")) if message.is_multipart() else message
                    recorder.record({"kind": "email", "from": sender, "to": recipients,
                                     "subject": str(message.get("Subject", "")),
                                     "body": body.get_content() if body is not None else ""})
                    sender, recipients = "", []
                    self.reply("250 OK queued")
                elif verb == "QUIT":
                    self.reply("221 Bye")
                    return
                else:
                    self.reply("502 Command not implemented")

    return Handler


class _ThreadingTCP(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class _ThreadingHTTP(http.server.ThreadingHTTPServer):
    daemon_threads = True


def serve(host: str, http_port: int, smtp_port: int, record: Path) -> tuple[Callable[[], None], int, int]:
    """Start both servers in threads; returns (stop, http port, smtp port). Port 0 picks a free one."""
    recorder = Recorder(record)
    web = _ThreadingHTTP((host, http_port), _webhook_handler(recorder))
    smtp = _ThreadingTCP((host, smtp_port), _smtp_handler(recorder))
    for server in (web, smtp):
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop() -> None:
        for server in (web, smtp):
            server.shutdown()
            server.server_close()

    return stop, web.server_address[1], smtp.server_address[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="the sandbox's alert receiver (webhook + SMTP)")
    parser.add_argument("--host", required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--smtp-port", type=int, required=True)
    parser.add_argument("--record", type=Path, required=True)
    args = parser.parse_args(argv)
    args.record.parent.mkdir(parents=True, exist_ok=True)
    serve(args.host, args.http_port, args.smtp_port, args.record)
    print(f"alert receiver: webhook http://{args.host}:{args.http_port}/ smtp {args.host}:{args.smtp_port}", flush=True)
    threading.Event().wait()


# --- reading back ---------------------------------------------------------------------------------------

def read(record: Path) -> list[dict[str, Any]]:
    try:
        lines = record.read_text().splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines if line.strip()]


def received(state: SandboxState) -> list[dict[str, Any]]:
    return read(Path(state.data["receiver"]["record"]))


def text_of(entry: dict[str, Any]) -> str:
    """Everything a delivery says (title, message, subject, body), for matching."""
    body = entry.get("body")
    return " ".join(str(part) for part in (entry.get("subject", ""), json.dumps(body) if isinstance(body, dict) else body or ""))


def wait_for(record: Path, match: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
    """The first delivery matching ``match``, polling the record until ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        for entry in read(record):
            if match(entry):
                return entry
        if time.monotonic() > deadline:
            raise TimeoutError(f"no matching delivery in {record} within {timeout:.0f}s")
        time.sleep(0.2)


# --- the component ----------------------------------------------------------------------------------

def _destination_files(state: SandboxState, env: str) -> tuple[Path, Path]:
    return state.path("alerts", f"{env}-webhook.url"), state.path("alerts", f"{env}-mail.url")


def up(state: SandboxState) -> None:
    from technicia_deploy.sandbox import pki

    gateway = state.data["network"]["gateway"]
    previous = state.data.get("receiver") or {}
    record = state.path("receiver", "received.jsonl")
    record.parent.mkdir(parents=True, exist_ok=True)
    if previous and processes.pid_of(state, DAEMON):
        http_port, smtp_port = previous["http_port"], previous["smtp_port"]
    else:
        processes.stop(state, DAEMON)
        http_port, smtp_port = processes.free_port(gateway), processes.free_port(gateway)
        processes.start(state, DAEMON, [sys.executable, "-m", "technicia_deploy.sandbox.receiver", "--host", gateway,
                                         "--http-port", str(http_port), "--smtp-port", str(smtp_port), "--record", str(record)])
    log = state.logs / f"{DAEMON}.log"
    processes.wait_for_port(gateway, http_port, 15, DAEMON, log)
    processes.wait_for_port(gateway, smtp_port, 15, DAEMON, log)
    destinations = {}
    for env in ENVIRONMENTS:
        webhook_file, mail_file = _destination_files(state, env)
        if not webhook_file.exists() or f"{gateway}:{http_port}/" not in webhook_file.read_text():
            token = secrets.token_urlsafe(18)
            pki.write_private(webhook_file, f"json://{gateway}:{http_port}/hooks/{env}/{token}".encode())
        if not mail_file.exists() or f"{gateway}:{smtp_port}" not in mail_file.read_text():
            pki.write_private(mail_file, f"mailto://{gateway}:{smtp_port}?from=monitor-{env}@exemple.test"
                                         f"&to=ops-{env}@exemple.test".encode())
        destinations[env] = [{"name": "ops-webhook", "url": {"file": str(webhook_file)}},
                             {"name": "ops-mail", "url": {"file": str(mail_file)}}]
    state.data["receiver"] = {"http_port": http_port, "smtp_port": smtp_port, "host": gateway,
                              "record": str(record), "destinations": destinations}
    state.save()


def down(state: SandboxState) -> None:
    processes.stop(state, DAEMON)
    state.data.pop("receiver", None)
    state.save()


def status(state: SandboxState) -> list[str]:
    data = state.data.get("receiver")
    if not data:
        return ["receiver: not up"]
    alive = "running" if processes.pid_of(state, DAEMON) else "STOPPED"
    return [f"receiver: webhook http://{data['host']}:{data['http_port']}/ smtp {data['host']}:{data['smtp_port']} "
            f"({alive}); {len(read(Path(data['record'])))} delivery(ies) in {data['record']}"]


if __name__ == "__main__":
    main()
