"""Background daemons of a sandbox (emulators, DNS, pebble, Prefect server).

Each daemon is a detached process with a pid file and a log under the
sandbox directory; starting one that already runs is a no-op.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from technicia_deploy.sandbox.state import SandboxState


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on now (the kernel's choice, so sandboxes don't collide)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _pidfile(state: SandboxState, name: str) -> Path:
    return state.path("run", f"{name}.pid")


def pid_of(state: SandboxState, name: str) -> int | None:
    """The daemon's pid if it is alive, else None."""
    try:
        pid = int(_pidfile(state, name).read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    # A zombie is not alive: /proc tells.
    try:
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            return None
    except OSError:
        return None
    return pid


def start(state: SandboxState, name: str, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
    """Start ``argv`` detached unless ``name`` already runs; returns its pid."""
    running = pid_of(state, name)
    if running:
        return running
    state.logs.mkdir(parents=True, exist_ok=True)
    _pidfile(state, name).parent.mkdir(parents=True, exist_ok=True)
    log = open(state.logs / f"{name}.log", "ab")
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        start_new_session=True,  # survives the CLI; not killed by the terminal's signals
    )
    log.close()
    _pidfile(state, name).write_text(str(proc.pid))
    return proc.pid


def stop(state: SandboxState, name: str, timeout: float = 10.0) -> bool:
    """Stop the daemon (SIGTERM, then SIGKILL at the deadline). True if one was running."""
    pid = pid_of(state, name)
    _pidfile(state, name).unlink(missing_ok=True)
    if not pid:
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return True


def wait_for_port(host: str, port: int, timeout: float = 30.0, name: str = "", log: Path | None = None) -> None:
    """Poll until ``host:port`` accepts TCP connections, or raise naming the daemon and its log."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                hint = f"; see {log}" if log else ""
                raise TimeoutError(f"{name or 'daemon'} did not listen on {host}:{port} within {timeout:.0f}s{hint}") from None
            time.sleep(0.05)
