"""Sandbox component ``ovh``: the OVH API emulator + the zone's authoritative DNS, one daemon.

up() generates the application key/secret and a consumer key into files under
``<state>/ovh/`` (kept across restarts, like a real OVH application), starts the
daemon on free ports (the same ones again if the daemon is restarted) and
records ``data["ovh"]``. The records, tasks and firewall rules survive a
restart: they live in ``<state>/ovh/emulator.json``.
"""

from __future__ import annotations

import json
import shutil
import socket
import sys
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from technicia_deploy.sandbox import processes
from technicia_deploy.sandbox.ovh_emulator import ZONE, files
from technicia_deploy.sandbox.ovh_emulator.auth import new_app_keys, random_token
from technicia_deploy.sandbox.ovh_emulator.dns_server import port_is_free_for_udp
from technicia_deploy.sandbox.state import SandboxState

NAME = "ovh"
HOST = "127.0.0.1"


def _ensure_keys(state: SandboxState) -> None:
    if all(files.key_file(state.dir, f).exists() for f in files.KEY_FILES):
        return
    keys = new_app_keys()
    for field in files.KEY_FILES:
        files.write_secret(files.key_file(state.dir, field), getattr(keys, field))
    files.write_secret(files.admin_token_file(state.dir), random_token(32))


def _ports(state: SandboxState) -> tuple[int, int]:
    """The recorded ports if still free (URLs in environments.yaml keep working), else new ones."""
    known = state.data.get(NAME) or {}
    api = urlsplit(known["api_url"]).port or 0 if known.get("api_url") else 0
    dns = int(known["dns"].rsplit(":", 1)[1]) if known.get("dns") else 0
    if not api or not _tcp_free(api):
        api = processes.free_port(HOST)
    if not dns or not (_tcp_free(dns) and port_is_free_for_udp(HOST, dns)) or dns == api:
        while True:
            dns = processes.free_port(HOST)
            if dns != api and port_is_free_for_udp(HOST, dns):
                break
    return api, dns


def _tcp_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def up(state: SandboxState) -> None:
    _ensure_keys(state)
    known = state.data.get(NAME)
    if known and processes.pid_of(state, NAME):
        return
    api_port, dns_port = _ports(state)
    argv = [
        sys.executable,
        "-m",
        "technicia_deploy.sandbox.ovh_emulator",
        "--state",
        str(state.dir),
        "--api-port",
        str(api_port),
        "--dns-port",
        str(dns_port),
        "--zone",
        ZONE,
    ]
    processes.start(state, NAME, argv)
    log = state.logs / f"{NAME}.log"
    processes.wait_for_port(HOST, api_port, name="OVH API emulator", log=log)
    processes.wait_for_port(HOST, dns_port, name="OVH DNS server", log=log)
    state.data[NAME] = {
        "api_url": f"http://{HOST}:{api_port}/1.0",
        "dns": f"{HOST}:{dns_port}",
        "zone": ZONE,
        "application_key_file": str(files.key_file(state.dir, "application_key")),
        "application_secret_file": str(files.key_file(state.dir, "application_secret")),
        "consumer_key_file": str(files.key_file(state.dir, "consumer_key")),
        "admin_token_file": str(files.admin_token_file(state.dir)),
    }
    state.save()


def down(state: SandboxState) -> None:
    processes.stop(state, NAME)
    shutil.rmtree(files.data_dir(state.dir), ignore_errors=True)
    if state.data.pop(NAME, None) is not None:
        state.save()


def status(state: SandboxState) -> list[str]:
    known = state.data.get(NAME)
    pid = processes.pid_of(state, NAME)
    if not known:
        return [f"ovh: not set up{' (a daemon runs: pid %d)' % pid if pid else ''}"]
    if not pid:
        return [f"ovh: daemon not running (API was {known['api_url']}); run `sandbox up` again"]
    lines = [f"ovh: API {known['api_url']}, DNS {known['dns']} (zone {known['zone']}), pid {pid}"]
    try:
        with urllib.request.urlopen(known["api_url"] + "/auth/time", timeout=2) as answer:
            json.loads(answer.read())
        lines.append("ovh: API answers")
    except OSError as error:
        lines.append(f"ovh: API does not answer: {error}")
    return lines


def admin(state: SandboxState, method: str, action: str, payload: dict[str, Any] | None = None) -> None:
    """Drive the emulator's test controls (fault injection, credentials) through its admin route."""
    known = state.data[NAME]
    base = known["api_url"].rsplit("/1.0", 1)[0]
    token = files.admin_token_file(state.dir).read_text().strip()
    request = urllib.request.Request(
        f"{base}/_emulator/{action}",
        data=json.dumps(payload or {}).encode(),
        method=method,
        headers={"X-Emulator-Admin": token, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5):
        pass
