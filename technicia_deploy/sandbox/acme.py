"""The sandbox's Let's Encrypt: Debian's ``pebble`` ACME test server.

It listens on the network gateway (the host as the VPSes see it), with a TLS
listener certificate for that IP signed by a sandbox CA: a VPS trusts that CA
(``ca_bundle``) to talk to pebble. Pebble resolves the names it validates
through the sandbox DNS server (the ovh component), so ``world`` brings ovh up
before acme. Pebble makes a new issuing root at every start: ``issuer_roots``
is fetched again each time it starts.
"""

from __future__ import annotations

import json
import shutil
import ssl
import time
import urllib.request
from pathlib import Path

from technicia_deploy.sandbox import pki, processes
from technicia_deploy.sandbox.state import SandboxState

DAEMON = "pebble"


def pebble_config(gateway: str, port: int, management_port: int, cert: Path, key: Path) -> dict:
    return {
        "pebble": {
            "listenAddress": f"{gateway}:{port}",
            "managementListenAddress": f"{gateway}:{management_port}",
            "certificate": str(cert),
            "privateKey": str(key),
            # Where pebble's validator connects on the VPS: the real ports, as Let's Encrypt does.
            "httpPort": 80,
            "tlsPort": 443,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }


def pebble_environment() -> dict[str, str]:
    # No random sleeps before validation, no random bad-nonce rejections: fast, deterministic tests. No reuse of
    # valid authorizations (pebble reuses half of them by default): every order, a renewal rehearsal included,
    # proves its HTTP challenge again, so a blocked challenge path is always seen.
    return {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}


def pebble_argv(config_path: Path, dns: str | None) -> list[str]:
    binary = shutil.which("pebble") or "pebble"
    argv = [binary, "-config", str(config_path)]
    if dns:
        argv += ["-dnsserver", dns]
    return argv


def _fetch_roots(url: str, ca_bundle: Path, timeout: float = 20.0) -> bytes:
    context = ssl.create_default_context(cafile=str(ca_bundle))
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, context=context, timeout=5) as resp:
                return resp.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def up(state: SandboxState) -> None:
    if shutil.which("pebble") is None:
        raise RuntimeError("pebble is not installed: `apt-get install pebble` (or `make bootstrap`)")
    gateway = state.data["network"]["gateway"]
    dns = (state.data.get("ovh") or {}).get("dns")
    current = state.data.get("acme") or {}
    directory = state.path("acme")
    ca_cert, ca_key = pki.ensure_ca(state.path("pki"), f"TechnicIA sandbox CA {state.prefix}")
    listener_cert, listener_key = directory / "listener.pem", directory / "listener-key.pem"
    if pki.cert_ip(listener_cert) != gateway:
        pki.issue_server_cert(ca_cert, ca_key, gateway, listener_cert, listener_key)

    running = processes.pid_of(state, DAEMON)
    if running and current.get("dns") == dns and current.get("gateway") == gateway:
        return
    processes.stop(state, DAEMON)
    port, management_port = processes.free_port(gateway), processes.free_port(gateway)
    config_path = directory / "pebble-config.json"
    config_path.write_text(json.dumps(pebble_config(gateway, port, management_port, listener_cert, listener_key), indent=2))
    processes.start(state, DAEMON, pebble_argv(config_path, dns), env=pebble_environment(), cwd=directory)
    log = state.logs / f"{DAEMON}.log"
    processes.wait_for_port(gateway, port, name=DAEMON, log=log)
    processes.wait_for_port(gateway, management_port, name=f"{DAEMON} management", log=log)
    roots = directory / "issuer-roots.pem"
    roots.write_bytes(_fetch_roots(f"https://{gateway}:{management_port}/roots/0", ca_cert))
    state.data["acme"] = {
        "directory": f"https://{gateway}:{port}/dir",
        "ca_bundle": str(ca_cert),
        "issuer_roots": str(roots),
        "management": f"https://{gateway}:{management_port}",
        "gateway": gateway,
        "dns": dns,
    }
    state.save()


def down(state: SandboxState) -> None:
    processes.stop(state, DAEMON)
    state.data.pop("acme", None)
    state.save()


def status(state: SandboxState) -> list[str]:
    acme = state.data.get("acme")
    if not acme:
        return ["acme: not started"]
    alive = "running" if processes.pid_of(state, DAEMON) else "STOPPED"
    dns = acme.get("dns") or "the host's resolver (no sandbox DNS yet)"
    return [f"acme: pebble {acme['directory']} ({alive}); resolves through {dns}; trust {acme['ca_bundle']}"]
