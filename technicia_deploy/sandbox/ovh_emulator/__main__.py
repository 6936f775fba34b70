"""Daemon entry point: the OVH API emulator and the zone's DNS server, in one process sharing one state.

It reads the keys from files under ``<state>/ovh/``, the VPS inventory from the
sandbox state (``data["vps"]``, re-read on each request) and rebuilds VPSes with
``technicia_deploy.sandbox.vps.rebuild``.
"""

from __future__ import annotations

import argparse
import logging
import signal
from pathlib import Path
from typing import Any

from technicia_deploy.sandbox.ovh_emulator import files
from technicia_deploy.sandbox.ovh_emulator.server import ZONE, Emulator
from technicia_deploy.sandbox.state import SandboxState


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m technicia_deploy.sandbox.ovh_emulator")
    parser.add_argument("--state", required=True, type=Path, help="sandbox state directory")
    parser.add_argument("--api-port", required=True, type=int)
    parser.add_argument("--dns-port", required=True, type=int)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--zone", default=ZONE)
    parser.add_argument("--settle-s", type=float, default=0.5, help="how long firewall changes stay pending")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    state_dir = args.state.resolve()

    def inventory() -> dict[str, Any]:
        return SandboxState.load(state_dir).data.get("vps", {})

    def rebuild(env: str, public_key: str) -> None:
        from technicia_deploy.sandbox import vps  # heavy (Docker SDK) and written separately: load on first use

        # Its subprocesses (docker) must not inherit the blocked stop signals. A stop during a
        # rebuild then ends the process at once, which leaves the task unfinished (error on restart).
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
        vps.rebuild(SandboxState.load(state_dir), env, public_key)

    # Block the stop signals before any thread exists (threads inherit the mask): the kernel may
    # hand a process signal to any thread, and a Python handler would then not wake a main thread
    # blocked in a wait. The main thread takes them synchronously with sigwait() below.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    token_file = files.admin_token_file(state_dir)
    emulator = Emulator(
        files.data_dir(state_dir),
        files.read_keys(state_dir),
        inventory,
        rebuild,
        zone=args.zone,
        host=args.host,
        api_port=args.api_port,
        dns_port=args.dns_port,
        admin_token=token_file.read_text().strip() if token_file.exists() else None,
        settle_s=args.settle_s,
    ).start()
    logging.getLogger("ovh_emulator").info(
        "API on %s, DNS on %s:%d (zone %s)", emulator.api_url, args.host, emulator.dns_port, args.zone
    )
    received = signal.sigwait(stop_signals)
    logging.getLogger("ovh_emulator").info("stopping on %s", signal.Signals(received).name)
    emulator.stop()


if __name__ == "__main__":
    main()
