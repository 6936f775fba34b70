"""Where commands run: one SSH connection per host per flow run.

A :class:`HostConnection` wraps one Fabric connection with the host key pinned
(an unknown or different key refuses to connect: keys are declared, never
learnt), TCP_NODELAY set (paramiko does not, and every command would wait out
a delayed ACK), sudo without a password prompt, secrets passed on stdin only,
and bounded reconnect-and-retry on a dropped connection. Commands are built
elsewhere (``technicia_deploy.commands``) and are idempotent, so re-running one
after a drop is safe.
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

log = logging.getLogger(__name__)


class ConnectionFailed(Exception):
    """The server could not be reached or refused us; the message says what to check."""


class HostKeyMismatch(ConnectionFailed):
    """The server presented a host key other than the declared one."""


class Unreachable(ConnectionFailed):
    """Nothing answered at the address (down, rebooting, wrong address or filtered)."""


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


class HostConnection:
    """One SSH connection to one host, shared by every task of a flow run."""

    def __init__(self, host: str, port: int, user: str, host_key: str, private_key: str,
                 connect_timeout: float = 10.0, attempts: int = 3, label: str | None = None):
        self.host, self.port, self.user = host, port, user
        self.host_key = " ".join(host_key.split()[:2])
        self.label = label or f"{user}@{host}:{port}"
        self._pkey = load_private_key(private_key)
        self._connect_timeout = connect_timeout
        self._attempts = attempts
        self._conn = None
        self._lock = threading.Lock()
        self.commands_run = 0

    # -- connecting ---------------------------------------------------------------
    def _open(self):
        import paramiko
        from fabric import Connection

        try:
            sock = socket.create_connection((self.host, self.port), timeout=self._connect_timeout)
        except OSError as exc:
            raise Unreachable(f"cannot reach {self.host}:{self.port} over SSH ({exc.strerror or exc}); "
                                   "check the server is up and the address and firewall") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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
            sock.close()
            got = f"{exc.key.get_name()} {exc.key.get_base64()}"
            raise HostKeyMismatch(
                f"{self.host}:{self.port} presented host key {fingerprint(got)}, but {fingerprint(self.host_key)} is "
                "declared: refusing to connect. If the server was rebuilt, verify its new key out of band and update "
                "ssh.host_key in environments.yaml"
            ) from None
        except paramiko.SSHException as exc:
            sock.close()
            if "not found in known_hosts" in str(exc):  # RejectPolicy: no key of the declared type offered
                raise HostKeyMismatch(f"{self.host}:{self.port} offered no host key of the declared type "
                                      f"({key_type}); refusing to connect") from None
            if isinstance(exc, paramiko.AuthenticationException):
                raise ConnectionFailed(f"{self.label}: SSH authentication failed (is the deploy key authorized for "
                                       f"user {self.user}?)") from None
            raise ConnectionFailed(f"{self.label}: SSH handshake failed ({exc})") from None
        except OSError as exc:
            sock.close()
            raise ConnectionFailed(f"{self.label}: connection lost during the handshake ({exc})") from None
        return conn

    def open(self) -> "HostConnection":
        with self._lock:
            if self._conn is None or not self._alive():
                for attempt in range(1, self._attempts + 1):
                    try:
                        self._conn = self._open()
                        break
                    except Unreachable:
                        # A server that is rebooting answers again soon; a wrong address never does.
                        if attempt == self._attempts:
                            raise
                        time.sleep(min(1.0 * 2 ** (attempt - 1), 5))
        return self

    def _alive(self) -> bool:
        transport = self._conn.client.get_transport() if self._conn else None
        return bool(transport and transport.is_active())

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- running --------------------------------------------------------------------
    def run(self, command: str, *, sudo: bool = False, as_user: str | None = None, stdin: str | None = None,
            check: bool = True, timeout: float | None = 600) -> Result:
        """Run one command (as root with ``sudo``, as another user with ``as_user``);
        ``stdin`` carries secret content so it never appears in a command line."""
        import paramiko

        full = sudo_wrap(command, as_user) if (sudo or as_user) else command
        last_error: Exception | None = None
        for attempt in range(1, self._attempts + 1):
            try:
                self.open()
                if stdin is None:
                    result = self._conn.run(full, hide=True, warn=True, pty=False, timeout=timeout, in_stream=False)
                    out = Result(result.stdout, result.stderr, result.exited)
                else:
                    out = self._run_with_stdin(full, stdin, timeout)
                self.commands_run += 1
                if check and not out.ok:
                    raise CommandFailed(self.label, command, out.exit_code, out.stderr)
                return out
            except (paramiko.SSHException, EOFError, OSError) as exc:
                # A dropped connection: reconnect and run again (commands are idempotent).
                last_error = exc
                log.warning("%s: connection dropped (%s), attempt %d/%d", self.label, type(exc).__name__, attempt, self._attempts)
                self.close()
                if attempt < self._attempts:
                    time.sleep(min(0.5 * 2 ** (attempt - 1), 5))
        raise ConnectionFailed(f"{self.label}: connection kept dropping ({type(last_error).__name__}) after "
                               f"{self._attempts} attempts while running `{_short(command)}`")

    def _run_with_stdin(self, command: str, stdin: str, timeout: float | None) -> Result:
        """Run ``command`` with ``stdin`` sent in one go on the channel, then EOF.

        Not through Invoke's ``in_stream``: for a stream that is not a terminal it forwards one byte per
        loop turn with a 10 ms pause, so a 2 KB ``.env`` took ~40 s to write.
        """
        channel = self._conn.client.get_transport().open_session(timeout=timeout)
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
        if status == -1:  # the channel closed without an exit status: the connection was lost
            raise EOFError("the SSH channel closed before the command reported its exit status")
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
