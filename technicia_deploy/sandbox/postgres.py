"""The sandbox's PostgreSQL: Debian's package, an unprivileged cluster of its own in the state directory.

``up`` makes (once) and starts a cluster in ``<dir>/postgres/data`` with ``initdb``/``pg_ctl`` from
``/usr/lib/postgresql/<version>/bin`` (the ``postgresql`` package; no system service is used):
TCP on 127.0.0.1 only (a free port, kept across restarts when it is still free), no unix socket, password
authentication (scram-sha-256) for one role, ``prefect``, owner of one database, ``prefect``. The password is
generated once and kept in ``<dir>/postgres/password`` (mode 0600); it is never printed, logged or put in a
command line (initdb reads it from a file that is removed at once, clients get it through the environment).

PostgreSQL refuses to run as root: when the sandbox runs as root, the cluster belongs to the ``postgres``
system user that Debian's package creates, and every ``initdb``/``pg_ctl`` runs as that user. That user must be
able to reach the state directory (every directory above it searchable by others, as ``./.sandbox`` in a
checkout under ``/work`` or ``/srv`` is); a state directory under a private directory (``/root``, mode 0700)
is refused with a message saying which directory and what to do.

``down`` stops the server (fast shutdown: open connections are closed). The cluster stays, like every other
piece of the state directory: the next ``up`` starts it again with its data (the Prefect run history).
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import socket
import stat
import subprocess
import time
from pathlib import Path

from technicia_deploy.sandbox import processes
from technicia_deploy.sandbox.state import SandboxState

HOST = "127.0.0.1"
ROLE = "prefect"
DATABASE = "prefect"
OS_USER_WHEN_ROOT = "postgres"  # created by Debian's postgresql-common
LOG = "postgres"  # <dir>/logs/postgres.log


class PostgresUnavailable(RuntimeError):
    """PostgreSQL cannot be run here (package missing, directory not reachable): the message says what to do."""


def bin_dir() -> Path:
    """The newest /usr/lib/postgresql/<version>/bin that has initdb and pg_ctl."""
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/pg_ctl") if Path(p).with_name("initdb").exists()]
    if not found:
        raise PostgresUnavailable("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin: install Debian's package "
                                  "(apt-get install postgresql, or make bootstrap)")
    return max(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)


def home(state: SandboxState) -> Path:
    return state.path("postgres")


def data_dir(state: SandboxState) -> Path:
    return home(state) / "data"


def password_file(state: SandboxState) -> Path:
    return home(state) / "password"


def password(state: SandboxState) -> str:
    return password_file(state).read_text().strip()


def connection_url(state: SandboxState) -> str:
    """The SQLAlchemy URL Prefect's server takes (PREFECT_API_DATABASE_CONNECTION_URL). Contains the password:
    give it to a process through its environment only, never print it."""
    info = state.data["postgres"]
    return f"postgresql+asyncpg://{ROLE}:{password(state)}@{info['host']}:{info['port']}/{DATABASE}"


def _os_user() -> pwd.struct_passwd | None:
    """The user the cluster runs as: None for the current (non-root) user, else Debian's ``postgres``."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(OS_USER_WHEN_ROOT)
    except KeyError:
        raise PostgresUnavailable(f"running as root, and there is no {OS_USER_WHEN_ROOT!r} user to run PostgreSQL as "
                                  "(PostgreSQL refuses root): install Debian's postgresql package, which creates it") from None


def _check_reachable(directory: Path, user: pwd.struct_passwd) -> None:
    """Every directory above ``directory`` must be searchable by ``user`` (root's private directories are not)."""
    for parent in reversed(directory.parents):
        st = parent.stat()
        if st.st_uid == user.pw_uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid == user.pw_gid:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            raise PostgresUnavailable(
                f"PostgreSQL runs as user {user.pw_name!r} (it refuses root) and cannot reach {directory}: {parent} "
                f"is mode {stat.S_IMODE(st.st_mode):o}. Use a sandbox directory others can traverse (--dir), "
                f"or `chmod o+x {parent}`")


def _run(argv: list[str], user: pwd.struct_passwd | None, *, cwd: Path, check: bool = True,
         timeout: float = 120) -> subprocess.CompletedProcess:
    """A PostgreSQL tool as the cluster's user. Its output never holds the password (only files carry it)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    if user is not None:
        env.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          user=user.pw_uid if user else None, group=user.pw_gid if user else None,
                          extra_groups=[] if user else None, start_new_session=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"{Path(argv[0]).name} failed (exit {done.returncode}): "
                           f"{(done.stdout + done.stderr).strip()[-600:]}")
    return done


def _chown(path: Path, user: pwd.struct_passwd | None) -> None:
    if user is not None:
        os.chown(path, user.pw_uid, user.pw_gid)


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def _initdb(state: SandboxState, user: pwd.struct_passwd | None, binaries: Path) -> None:
    data = data_dir(state)
    data.mkdir(mode=0o700, exist_ok=True)
    _chown(data, user)
    # initdb reads the superuser's password from a file: one of the cluster user's, removed right after.
    transfer = home(state) / ".initdb-password"
    fd = os.open(transfer, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (password(state) + "\n").encode())
        os.close(fd)
        _chown(transfer, user)
        _run([str(binaries / "initdb"), "-D", str(data), "-U", ROLE, f"--pwfile={transfer}", "-A", "scram-sha-256",
              "-E", "UTF8", "--locale=C.UTF-8"], user, cwd=data)
    finally:
        transfer.unlink(missing_ok=True)
    # Only password logins over TCP on loopback; no unix socket, no trust anywhere.
    (data / "pg_hba.conf").write_text("# technicia-deploy sandbox: password (scram-sha-256) over loopback TCP only\n"
                                      "host all all 127.0.0.1/32 scram-sha-256\n")
    with open(data / "postgresql.conf", "a") as conf:
        conf.write("\n# technicia-deploy sandbox: address and port, rewritten by each `sandbox up`\n"
                   "include_if_exists = 'sandbox.conf'\n")
    for name in ("pg_hba.conf", "postgresql.conf"):
        _chown(data / name, user)


def _write_settings(state: SandboxState, user: pwd.struct_passwd | None, port: int) -> None:
    path = data_dir(state) / "sandbox.conf"
    path.write_text(f"listen_addresses = '{HOST}'\nport = {port}\nunix_socket_directories = ''\n"
                    "password_encryption = 'scram-sha-256'\n"
                    # The Prefect server and two workers' runs: Prefect's pool (5 + 10 overflow) per server process.
                    "max_connections = 100\n")
    _chown(path, user)


def running(state: SandboxState) -> bool:
    info = state.data.get("postgres")
    if not info or not (data_dir(state) / "PG_VERSION").exists():
        return False
    done = _run([str(Path(info["bin"]) / "pg_ctl"), "status", "-D", str(data_dir(state))], _os_user(),
                cwd=data_dir(state), check=False, timeout=30)
    return done.returncode == 0


def _accepting(state: SandboxState) -> bool:
    info = state.data["postgres"]
    done = subprocess.run([str(Path(info["bin"]) / "pg_isready"), "-q", "-h", info["host"], "-p", str(info["port"]),
                           "-d", DATABASE, "-U", ROLE], capture_output=True, timeout=10)
    return done.returncode == 0


def up(state: SandboxState, log=lambda line: None) -> dict:
    """Make the cluster if needed and start it unless it runs; returns ``state.data["postgres"]``. Idempotent."""
    binaries = bin_dir()
    user = _os_user()
    root = home(state)
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o711)  # the cluster user may pass through to data/, not list the directory (password file)
    if user is not None:
        _check_reachable(root, user)
    if not password_file(state).exists():
        fd = os.open(password_file(state), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(24) + "\n")
    os.chmod(password_file(state), 0o600)
    previous = state.data.get("postgres") or {}
    if not (data_dir(state) / "PG_VERSION").exists():
        log(f"postgres: initdb {data_dir(state)} (as {user.pw_name if user else 'this user'})")
        _initdb(state, user, binaries)
    info = {"bin": str(binaries), "host": HOST, "port": previous.get("port"), "data_dir": str(data_dir(state)),
            "database": DATABASE, "user": ROLE, "password_file": str(password_file(state)),
            "os_user": user.pw_name if user else None, "version": binaries.parent.name}
    state.data["postgres"] = info
    if previous.get("port") and running(state) and _accepting(state):
        state.save()
        return info
    stop(state)  # a half-dead server (e.g. the port taken): start clean
    port = previous.get("port") if previous.get("port") and _port_free(previous["port"]) else processes.free_port(HOST)
    info["port"] = port
    _write_settings(state, user, port)
    logfile = state.logs / f"{LOG}.log"
    state.logs.mkdir(parents=True, exist_ok=True)
    logfile.touch()
    _chown(logfile, user)
    log(f"postgres: starting PostgreSQL {info['version']} on {HOST}:{port} (log {logfile})")
    _run([str(binaries / "pg_ctl"), "start", "-D", str(data_dir(state)), "-l", str(logfile), "-w", "-t", "90"],
         user, cwd=data_dir(state), timeout=120)
    state.save()
    _ensure_database(state)
    return info


def _ensure_database(state: SandboxState) -> None:
    """The ``prefect`` database, owned by the ``prefect`` role (the cluster's superuser, made by initdb)."""
    import asyncio

    import asyncpg

    info = state.data["postgres"]

    async def ensure() -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = await asyncpg.connect(host=info["host"], port=info["port"], user=ROLE, password=password(state),
                                             database="postgres", timeout=5)
                break
            except (OSError, asyncpg.CannotConnectNowError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
                await conn.execute(f'CREATE DATABASE "{DATABASE}" OWNER "{ROLE}"')
        finally:
            await conn.close()

    asyncio.run(ensure())


def stop(state: SandboxState) -> bool:
    """Fast shutdown (clients disconnected, no data lost). True if it was running."""
    if not running(state):
        return False
    info = state.data["postgres"]
    _run([str(Path(info["bin"]) / "pg_ctl"), "stop", "-D", str(data_dir(state)), "-m", "fast", "-w", "-t", "60"],
         _os_user(), cwd=data_dir(state), timeout=90)
    return True


def down(state: SandboxState) -> bool:
    return stop(state)


def status(state: SandboxState) -> list[str]:
    info = state.data.get("postgres")
    if not info:
        return []
    alive = "running" if running(state) else "STOPPED"
    who = f", as user {info['os_user']}" if info.get("os_user") else ""
    return [f"postgres: PostgreSQL {info.get('version', '?')} on {info['host']}:{info['port']} ({alive}), database "
            f"{DATABASE}, role {ROLE}, cluster {info['data_dir']}{who}; password in {info['password_file']} (0600)"]
