"""Where commands run: one SSH connection per host per flow run.

A :class:`HostConnection` wraps one Fabric connection with the host key pinned
(an unknown or different key refuses to connect: keys are declared, never
learnt), TCP_NODELAY set (paramiko does not, and every command would wait out
a delayed ACK), sudo without a password prompt, secrets passed on stdin only,
and bounded reconnect-and-retry on a dropped connection. Commands are built
elsewhere (``technicia_deploy.commands``) and are idempotent, so re-running one
after a drop is safe.

Faults are classified here, once:

* the server never answered, or the connection/channel went away under a command
  (EOF, reset, timeout, or a command whose exit status never came: paramiko and so
  Fabric/Invoke report -1) -> :class:`Unreachable` (:class:`ConnectionLost` for a
  drop under a command): transient, the steps retry it (``tasks.step.is_transient``);
* a command that ran and reported an exit status other than 0 -> :class:`CommandFailed`;
* a different host key -> :class:`HostKeyMismatch`; a refused login, an unreadable key
  or an SSH negotiation failure -> :class:`ConnectionFailed`: never retried.

After a loss, reconnecting keeps trying for up to ``reboot_wait_s`` from the moment the
connection was lost (a rebooting server answers again within that bound; a dead one
never does), and TCP keepalives plus SSH keepalives make a server that vanished
without a reset (power cut, hard reboot) show as a drop within about a minute.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import shlex
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from .commands.batch import Read

log = logging.getLogger(__name__)

NO_EXIT_STATUS = -1  # paramiko's (so Fabric/Invoke's) exit code when the channel closed without an exit status
REBOOT_WAIT_S = 180.0  # after a lost connection: how long a reboot may take before the server counts as down
KEEPALIVE_S = 15  # an SSH keepalive this often: a vanished server shows as a dead socket, not a silent hang
TCP_USER_TIMEOUT_S = 60  # unacknowledged data for this long aborts the TCP connection (Linux)


class ConnectionFailed(Exception):
    """The server could not be reached or refused us; the message says what to check."""


class HostKeyMismatch(ConnectionFailed):
    """The server presented a host key other than the declared one."""


class Unreachable(ConnectionFailed):
    """Nothing answered at the address (down, rebooting, wrong address or filtered), or what answered went
    away: a fault that can pass by itself, so the steps retry it (bounded)."""


class ConnectionLost(Unreachable):
    """The SSH connection or channel dropped under a command (EOF, reset, timeout, or the channel closed
    without the command's exit status): the command's outcome is unknown, so it is never a CommandFailed.

    ``drops``: how many times the connection was lost running it; ``reruns``: how many times it was run
    again on a new connection."""

    def __init__(self, message: str, *, command: str | None = None, drops: int = 1, reruns: int = 0):
        super().__init__(message)
        self.command, self.drops, self.reruns = command, drops, reruns


class _Dropped(Exception):
    """Internal: the channel went away under a command without an exception of its own."""


def drop_reason(exc: BaseException) -> str | None:
    """What ``exc``, raised while running a command, says was lost; None when it is not a dropped
    connection or channel (the exception is then the command's own fault, re-raised as is)."""
    import paramiko
    from invoke.exceptions import ThreadException

    if isinstance(exc, _Dropped):
        return str(exc)
    if isinstance(exc, ThreadException):  # Invoke's IO threads died: dropped if one of them saw the connection go
        reasons = [r for r in (drop_reason(w.value) for w in exc.exceptions if isinstance(w.value, BaseException)) if r]
        return reasons[0] if reasons else None
    if isinstance(exc, (paramiko.SSHException, EOFError, OSError)):
        text = str(exc).strip()
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return None


def _handshake_interrupted(exc: Exception) -> bool:
    """An SSH handshake that the server cut short (sshd still starting, restarting, or overloaded)."""
    return "Error reading SSH protocol banner" in str(exc) or isinstance(exc.__cause__ or exc.__context__,
                                                                          (EOFError, OSError))


def _tune_socket(sock: socket.socket) -> None:
    """TCP_NODELAY (paramiko does not set it), and keepalive/user-timeout so a dead peer is noticed."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", KEEPALIVE_S), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 4),
                        ("TCP_USER_TIMEOUT", TCP_USER_TIMEOUT_S * 1000)):
        option = getattr(socket, name, None)
        if option is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
            except OSError:  # not supported on this platform: the SSH keepalive still applies
                pass


class CommandFailed(Exception):
    def __init__(self, host: str, command: str, exit_code: int, stderr: str):
        self.host, self.command, self.exit_code, self.stderr = host, command, exit_code, stderr
        tail = "\n".join(stderr.strip().splitlines()[-8:])
        super().__init__(f"{host}: `{_short(command)}` exited {exit_code}" + (f": {tail}" if tail else ""))


def _short(command: str, limit: int = 160) -> str:
    command = " ".join(command.split())
    return command if len(command) <= limit else command[: limit - 1] + "…"


@dataclass(frozen=True)
class Result:
    stdout: str
    stderr: str
    exit_code: int

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def fingerprint(public_key_line: str) -> str:
    """OpenSSH's SHA256 fingerprint of a public key line ('ssh-ed25519 AAAA...')."""
    blob = base64.b64decode(public_key_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def load_private_key(text: str):
    """A paramiko key from PEM/OpenSSH text, whatever its type; the error never quotes the key."""
    import paramiko

    for kind in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return kind.from_private_key(io.StringIO(text))
        except (paramiko.SSHException, ValueError):
            continue
    raise ConnectionFailed("the SSH private key is not a readable ed25519, ECDSA or RSA key (check the SSH block)")


def sudo_wrap(command: str, user: str | None = None) -> str:
    """Run ``command`` as root (or ``user``): ``sudo -n`` never prompts (a missing sudo right fails
    at once), and ``bash -c`` makes the whole compound command run so, not just its first part.
    sudo also starts ``user`` with fresh groups: docker group membership granted during this
    SSH connection applies at once."""
    as_user = f"-u {shlex.quote(user)} " if user else ""
    return f"sudo -n {as_user}bash -c {shlex.quote(command)}"


def _abandon(conn, sock: socket.socket) -> None:
    """Give up a connection whose handshake or login failed: stop its transport first, then the socket.

    paramiko leaves the transport's reader thread running after a failed login; closing the socket under it
    made that thread log "Socket exception: Bad file descriptor (9)" at ERROR in a run that went on fine."""
    try:
        conn.client.close()
    except Exception:  # noqa: BLE001 - what is left of a failed handshake may fail to close
        pass
    sock.close()


class HostConnection:
    """One SSH connection to one host, shared by every task of a flow run."""

    def __init__(self, host: str, port: int, user: str, host_key: str, private_key: str,
                 connect_timeout: float = 10.0, attempts: int = 3, label: str | None = None,
                 reboot_wait_s: float = REBOOT_WAIT_S):
        self.host, self.port, self.user = host, port, user
        self.host_key = " ".join(host_key.split()[:2])
        self.label = label or f"{user}@{host}:{port}"
        self._pkey = load_private_key(private_key)
        self._connect_timeout = connect_timeout
        self._attempts = attempts
        self._reboot_wait_s = reboot_wait_s
        self._conn = None
        self._lock = threading.Lock()
        self._lost_at: float | None = None  # monotonic time the connection was lost, until it is back
        self.commands_run = 0
        self.reconnects = 0
        self.reads_reused = 0
        self.prefetched = 0  # fact commands fetched ahead in batches (see prefetch)
        self._writes = 0  # commands that may have changed the server: a read older than the last one is stale
        self._reads: dict[tuple[str, bool], tuple[int, Result]] = {}

    # -- connecting ---------------------------------------------------------------
    def _open(self):
        import paramiko
        from fabric import Connection

        try:
            sock = socket.create_connection((self.host, self.port), timeout=self._connect_timeout)
        except OSError as exc:
            raise Unreachable(f"cannot reach {self.host}:{self.port} over SSH ({exc.strerror or exc}); "
                                   "check the server is up and the address and firewall") from None
        _tune_socket(sock)
        conn = Connection(
            self.host, user=self.user, port=self.port, connect_timeout=int(self._connect_timeout),
            connect_kwargs={"sock": sock, "pkey": self._pkey, "allow_agent": False, "look_for_keys": False,
                            "banner_timeout": self._connect_timeout, "auth_timeout": self._connect_timeout},
        )
        # Pin the declared key; Fabric's default policy would accept any key.
        conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        key_type, key_b64 = self.host_key.split()[:2]
        known_as = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        conn.client.get_host_keys().add(known_as, key_type, paramiko.PKey.from_type_string(key_type, base64.b64decode(key_b64)))
        try:
            conn.open()
        except paramiko.BadHostKeyException as exc:
            _abandon(conn, sock)
            got = f"{exc.key.get_name()} {exc.key.get_base64()}"
            raise HostKeyMismatch(
                f"{self.host}:{self.port} presented host key {fingerprint(got)}, but {fingerprint(self.host_key)} is "
                "declared: refusing to connect. If the server was rebuilt, verify its new key out of band and update "
                "ssh.host_key in environments.yaml"
            ) from None
        except paramiko.SSHException as exc:
            _abandon(conn, sock)
            if "not found in known_hosts" in str(exc):  # RejectPolicy: no key of the declared type offered
                raise HostKeyMismatch(f"{self.host}:{self.port} offered no host key of the declared type "
                                      f"({key_type}); refusing to connect") from None
            if isinstance(exc, paramiko.AuthenticationException):
                raise ConnectionFailed(f"{self.label}: SSH authentication failed (is the deploy key authorized for "
                                       f"user {self.user}?)") from None
            if _handshake_interrupted(exc):
                raise Unreachable(f"{self.label}: the server cut the SSH handshake short ({exc}); sshd is starting, "
                                  "restarting or overloaded") from None
            raise ConnectionFailed(f"{self.label}: SSH handshake failed ({exc})") from None
        except (OSError, EOFError) as exc:
            _abandon(conn, sock)
            raise Unreachable(f"{self.label}: connection lost during the SSH handshake "
                              f"({drop_reason(exc)})") from None
        transport = conn.client.get_transport()
        if transport is not None:
            transport.set_keepalive(KEEPALIVE_S)
        return conn

    def open(self) -> "HostConnection":
        self._session()
        return self

    def _session(self):
        """The live Fabric connection, (re)opened if needed; the object a command runs on."""
        with self._lock:
            if self._conn is not None and not self._alive():
                self._forget(lost=True)  # it died between commands (reboot, network): reconnect below
            if self._conn is None:
                self._conn = self._connect()
            return self._conn

    def _connect(self):
        """Open the connection: ``attempts`` tries with a short backoff. After a lost connection, keep trying
        until ``reboot_wait_s`` after the loss: a rebooting server answers again within that bound, a dead
        one never does (and later calls, such as a step's retry, no longer wait once the bound has passed)."""
        deadline = self._lost_at + self._reboot_wait_s if self._lost_at is not None else None
        attempt = 0
        while True:
            attempt += 1
            try:
                conn = self._open()
            except Unreachable as exc:
                now = time.monotonic()
                waiting = deadline is not None and now < deadline
                if not waiting and attempt >= self._attempts:
                    if self._lost_at is None:
                        raise Unreachable(f"{exc} ({attempt} attempts)") from None
                    raise Unreachable(f"{exc}; the connection was lost {now - self._lost_at:.0f} s ago and "
                                      f"{attempt} reconnection attempts since failed (a reboot is waited for up to "
                                      f"{self._reboot_wait_s:.0f} s): the server is down or did not come back") from None
                pause = min(1.0 * 2 ** (attempt - 1), 5.0)
                if waiting:
                    pause = max(min(pause, deadline - now), 0.05)
                time.sleep(pause)
                continue
            if self._lost_at is not None:
                self.reconnects += 1
                log.info("%s: reconnected %.0f s after the connection was lost", self.label,
                         time.monotonic() - self._lost_at)
            self._lost_at = None
            return conn

    def _alive(self) -> bool:
        transport = self._conn.client.get_transport() if self._conn else None
        return bool(transport and transport.is_active())

    def _forget(self, *, lost: bool) -> None:
        """Drop the Fabric connection (with ``self._lock`` held); ``lost``: it went away, remember when."""
        self._reads.clear()  # a new connection may reach a server that restarted or was rebuilt: read again
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001 - what is left of a dead connection may fail to close
                pass
            self._conn = None
        if lost and self._lost_at is None:
            self._lost_at = time.monotonic()

    def _dropped(self, conn) -> None:
        """``conn`` went away under a command. Another thread may already have reconnected: only the
        connection the command ran on is dropped."""
        with self._lock:
            if self._conn is conn:
                self._forget(lost=True)
            elif self._lost_at is None and self._conn is None:
                self._lost_at = time.monotonic()

    def close(self) -> None:
        with self._lock:
            self._forget(lost=False)

    # -- running --------------------------------------------------------------------
    def read(self, command: str, *, sudo: bool = False) -> Result:
        """Run a read-only fact command, or return its output from earlier in this connection's life if no
        other command has run since (steps of one phase read some of the same facts: nginx, certbot,
        monitoring). Any other command, even a failed one, and any lost connection forget what was read."""
        key = (command, sudo)
        with self._lock:
            cached = self._reads.get(key)
            if cached is not None and cached[0] == self._writes:
                self.reads_reused += 1
                return cached[1]
            generation = self._writes
        out = self._run(command, sudo=sudo, as_user=None, stdin=None, check=True, timeout=600, rerun_on_drop=True)
        with self._lock:
            if generation == self._writes:
                self._reads[key] = (generation, out)
        return out

    def probe(self, command: str, *, sudo: bool = False, timeout: float | None = 600) -> Result:
        """Run a read-only test whose answer must be fresh (a health probe from the server): never kept as a read,
        and, since it changes nothing, it does not make the kept reads stale either (a phase running alongside
        keeps reading them)."""
        return self._run(command, sudo=sudo, as_user=None, stdin=None, check=True, timeout=timeout, rerun_on_drop=True)

    def prefetch(self, reads: "Sequence[Read]") -> int:
        """Run the fact commands ``reads`` side by side in one round trip and keep each answer as :meth:`read`
        would (then a step's read costs nothing); returns how many were fetched. Reads already kept are not
        fetched again; a read that fails is not kept (the step's own read runs it and reports the failure)."""
        from .commands.batch import batch_script, parse_batch

        with self._lock:
            wanted = list(dict.fromkeys(r for r in reads if (cached := self._reads.get((r.command, r.sudo))) is None
                                        or cached[0] != self._writes))
            generation = self._writes
        if not wanted:
            return 0
        out = self._run(batch_script(wanted), sudo=False, as_user=None, stdin=None, check=True, timeout=600,
                        rerun_on_drop=True)
        answers = parse_batch(out.stdout, len(wanted))
        with self._lock:
            if generation != self._writes:
                return 0  # another thread changed the server meanwhile: these answers may be stale
            for read, answer in zip(wanted, answers):
                if answer.exit_code == 0:
                    self._reads[(read.command, read.sudo)] = (generation, Result(answer.stdout, answer.stderr, 0))
        self.prefetched += len(wanted)
        return len(wanted)

    def run(self, command: str, *, sudo: bool = False, as_user: str | None = None, stdin: str | None = None,
            check: bool = True, timeout: float | None = 600, rerun_on_drop: bool = True) -> Result:
        """Run a command that may change the server (see :meth:`_run`); what :meth:`read` kept is forgotten."""
        with self._lock:
            self._writes += 1
            self._reads.clear()
        return self._run(command, sudo=sudo, as_user=as_user, stdin=stdin, check=check, timeout=timeout,
                         rerun_on_drop=rerun_on_drop)

    def _run(self, command: str, *, sudo: bool, as_user: str | None, stdin: str | None,
             check: bool, timeout: float | None, rerun_on_drop: bool) -> Result:
        """Run one command (as root with ``sudo``, as another user with ``as_user``);
        ``stdin`` carries secret content so it never appears in a command line.

        A dropped connection or channel is never the command's failure: the command is run again on a new
        connection (commands are idempotent), up to ``attempts`` times in all, then :class:`ConnectionLost`
        says what was lost and how often. ``rerun_on_drop=False`` raises it at the first drop instead, for a
        long command whose caller re-reads the server's state before deciding to run it again."""
        full = sudo_wrap(command, as_user) if (sudo or as_user) else command
        drops: list[str] = []
        for attempt in range(1, self._attempts + 1):
            try:
                conn = self._session()
            except Unreachable as exc:
                if not drops:
                    raise  # never reached the server for this command: the message says why
                raise ConnectionLost(f"{self.label}: connection lost while running `{_short(command)}` ({drops[-1]}), "
                                     f"re-ran it {len(drops) - 1} time(s), then could not reconnect: {exc}",
                                     command=command, drops=len(drops), reruns=len(drops) - 1) from None
            try:
                out = self._execute(conn, full, stdin, timeout)
            except Exception as exc:
                reason = drop_reason(exc)
                if reason is None:
                    raise
                drops.append(reason)
                self._dropped(conn)
                with self._lock:
                    self._reads.clear()  # the server may have restarted: facts are read again
                log.warning("%s: connection lost running `%s` (%s), attempt %d/%d", self.label, _short(command, 80),
                            reason, attempt, self._attempts)
                if not rerun_on_drop:
                    raise ConnectionLost(f"{self.label}: connection lost while running `{_short(command)}` ({reason}); "
                                         "not run again on this connection: its outcome is unknown until the "
                                         "server's state is read again", command=command) from None
                if attempt < self._attempts:
                    time.sleep(min(0.5 * 2 ** (attempt - 1), 5))
                continue
            self.commands_run += 1
            if check and not out.ok:
                raise CommandFailed(self.label, command, out.exit_code, out.stderr)
            return out
        raise ConnectionLost(f"{self.label}: connection lost {len(drops)} times while running `{_short(command)}` "
                             f"(last: {drops[-1]}); re-ran it {len(drops) - 1} time(s) on a new connection, then "
                             "gave up", command=command, drops=len(drops), reruns=len(drops) - 1)

    def _execute(self, conn, full: str, stdin: str | None, timeout: float | None) -> Result:
        """Run ``full`` once on ``conn``; a missing exit status is a drop, never an exit code."""
        if stdin is None:
            result = conn.run(full, hide=True, warn=True, pty=False, timeout=timeout, in_stream=False)
            out = Result(result.stdout, result.stderr, result.exited)
        else:
            out = self._run_with_stdin(conn, full, stdin, timeout)
        if out.exit_code == NO_EXIT_STATUS:
            transport = conn.client.get_transport()
            if transport is not None and transport.is_active():
                raise _Dropped("the SSH channel closed without the command's exit status (its session was cut, "
                               "or it was killed by a signal)")
            raise _Dropped("the SSH connection dropped before the command reported its exit status")
        return out

    def _run_with_stdin(self, conn, command: str, stdin: str, timeout: float | None) -> Result:
        """Run ``command`` with ``stdin`` sent in one go on the channel, then EOF.

        Not through Invoke's ``in_stream``: for a stream that is not a terminal it forwards one byte per
        loop turn with a 10 ms pause, so a 2 KB ``.env`` took ~40 s to write.
        """
        transport = conn.client.get_transport()
        if transport is None or not transport.is_active():
            raise _Dropped("the SSH connection closed before the command could start")
        channel = transport.open_session(timeout=timeout)
        try:
            channel.settimeout(timeout)
            channel.exec_command(command)
            channel.sendall(stdin.encode())
            channel.shutdown_write()
            errors: list[bytes] = []
            reader = threading.Thread(target=lambda: errors.append(channel.makefile_stderr("rb").read()), daemon=True)
            reader.start()
            stdout = channel.makefile("rb").read()
            reader.join(timeout)
            status = channel.recv_exit_status()
        finally:
            channel.close()
        # status -1: the channel closed without an exit status; _execute reports it as a drop.
        return Result(stdout.decode(errors="replace"), b"".join(errors).decode(errors="replace"), status)

    def __enter__(self) -> "HostConnection":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


class ConnectionPool:
    """The connections of one flow run, by (user, host, port): opened on first use, closed at the end."""

    def __init__(self):
        self._connections: dict[tuple[str, str, int], HostConnection] = {}
        self._lock = threading.Lock()

    def get(self, host: str, port: int, user: str, host_key: str, private_key: str) -> HostConnection:
        key = (user, host, port)
        with self._lock:
            conn = self._connections.get(key)
            if conn is None:
                conn = HostConnection(host, port, user, host_key, private_key)
                self._connections[key] = conn
        return conn.open()

    def drop(self, host: str, port: int, user: str) -> None:
        with self._lock:
            conn = self._connections.pop((user, host, port), None)
        if conn:
            conn.close()

    def close(self) -> None:
        with self._lock:
            conns, self._connections = list(self._connections.values()), {}
        for conn in conns:
            conn.close()

    def __len__(self) -> int:
        return len(self._connections)
