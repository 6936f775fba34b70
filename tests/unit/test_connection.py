"""The connection layer's pure parts: sudo wrapping and host key fingerprints."""

from __future__ import annotations

import base64
import hashlib
import socket

import pytest

from technicia_deploy import connection


def test_sudo_runs_the_whole_compound_command_as_root():
    assert connection.sudo_wrap("apt-get update && apt-get install -y ufw") == \
        "sudo -n bash -c 'apt-get update && apt-get install -y ufw'"


def test_sudo_as_user_starts_with_fresh_groups():
    assert connection.sudo_wrap("docker ps", "deploy") == "sudo -n -u deploy bash -c 'docker ps'"


def test_fingerprint_is_openssh_sha256():
    blob = b"\x00\x00\x00\x0bssh-ed25519" + bytes(range(36))
    line = "ssh-ed25519 " + base64.b64encode(blob).decode() + " comment"
    expected = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    assert connection.fingerprint(line) == expected


def test_unreadable_private_key_is_named_without_its_content():
    with pytest.raises(connection.ConnectionFailed) as info:
        connection.load_private_key("-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-key-canary\n-----END OPENSSH PRIVATE KEY-----")
    assert "not-a-key-canary" not in str(info.value)


def test_nothing_listening_is_unreachable_after_bounded_attempts():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()).decode()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed as soon as the block ends: nothing listens there
    conn = connection.HostConnection("127.0.0.1", port, "deploy", "ssh-ed25519 " + base64.b64encode(b"x" * 51).decode(),
                                     pem, attempts=2)
    with pytest.raises(connection.Unreachable, match=f"cannot reach 127.0.0.1:{port} over SSH"):
        conn.open()


# --- faults classified at the connection, against a real SSH server in this process (paramiko's server side) -------

import threading  # noqa: E402
import time  # noqa: E402


def _client_key_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()).decode()


class FakeSshServer:
    """An SSH server on 127.0.0.1 whose commands misbehave on request.

    ``echo TEXT`` prints TEXT; ``exit N`` exits N; ``cat`` echoes stdin; ``drop-channel`` closes its channel without
    an exit status; ``drop-connection`` cuts the whole connection; ``flaky-N CMD``: the first N runs of it cut the
    connection, then it runs CMD; ``signal`` ends as a command killed by a signal (exit-signal, no status)."""

    def __init__(self):
        import paramiko

        self.host_key = paramiko.ECDSAKey.generate()
        self.host_key_line = f"{self.host_key.get_name()} {self.host_key.get_base64()}"
        self.runs: dict[str, int] = {}
        self.refuse_login = False  # every public key refused (a fresh VPS with no deploy user yet)
        self.transports = []
        self._listener = None
        self.port = None
        self.start()

    def start(self, port: int | None = None):
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port or 0))
        self._listener.listen(8)
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def stop(self):
        """Nothing listens any more, and every open connection is cut (a server going down)."""
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread (close alone does not)
        except OSError:
            pass
        self._listener.close()
        for transport in self.transports:
            transport.close()

    def _accept(self, listener):
        import paramiko

        server = self

        class Interface(paramiko.ServerInterface):
            def check_channel_request(self, kind, chanid):
                return paramiko.OPEN_SUCCEEDED

            def get_allowed_auths(self, username):
                return "publickey"

            def check_auth_publickey(self, username, key):
                return paramiko.AUTH_FAILED if server.refuse_login else paramiko.AUTH_SUCCESSFUL

            def check_channel_exec_request(self, channel, command):
                threading.Thread(target=server._exec, args=(channel, command.decode()), daemon=True).start()
                return True

        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            transport = paramiko.Transport(sock)
            transport.add_server_key(self.host_key)
            self.transports.append(transport)
            try:
                transport.start_server(server=Interface())
            except Exception:  # noqa: BLE001 - a client that went away during the handshake
                continue

    def _exec(self, channel, command: str):
        # Let the server answer the exec request first: a channel closed before that answer is a failed exec.
        time.sleep(0.05)
        self.runs[command] = self.runs.get(command, 0) + 1
        if command.startswith("flaky-"):
            count, _, command = command[len("flaky-"):].partition(" ")
            if self.runs[f"flaky-{count} {command}"] <= int(count):
                channel.get_transport().close()
                return
        if command == "drop-channel":
            channel.close()
        elif command == "drop-connection":
            channel.get_transport().close()
        elif command == "signal":
            channel.send_stderr(b"Killed\n")
            channel.close()
        elif command.startswith("exit "):
            channel.send_stderr(b"it went wrong\n")
            channel.send_exit_status(int(command.split()[1]))
            channel.close()
        elif command == "cat":
            data = b""
            while True:
                chunk = channel.recv(65536)
                if not chunk:
                    break
                data += chunk
            channel.sendall(data)
            channel.send_exit_status(0)
            channel.close()
        elif command.startswith("echo "):
            channel.sendall(command[5:].encode() + b"\n")
            channel.send_exit_status(0)
            channel.close()
        else:
            channel.send_exit_status(127)
            channel.close()


@pytest.fixture
def ssh_server():
    server = FakeSshServer()
    yield server
    server.stop()


@pytest.fixture
def no_sleep(monkeypatch):
    """Backoff pauses recorded instead of slept (the reconnect itself is real)."""
    from types import SimpleNamespace

    pauses = []
    # The module's own view of `time` only: patching time.sleep itself would stop the SSH server's threads too.
    monkeypatch.setattr(connection, "time", SimpleNamespace(sleep=pauses.append, monotonic=time.monotonic))
    return pauses


def _conn(server, **kwargs) -> connection.HostConnection:
    return connection.HostConnection("127.0.0.1", server.port, "deploy", server.host_key_line, _client_key_pem(),
                                     connect_timeout=5, **kwargs)


def test_a_command_runs_and_a_real_exit_status_is_a_command_failure(ssh_server):
    with _conn(ssh_server) as conn:
        assert conn.run("echo hello").stdout == "hello\n"
        assert conn.run("cat", stdin="SECRET=1\n").stdout == "SECRET=1\n"
        with pytest.raises(connection.CommandFailed) as info:
            conn.run("exit 3")
        assert info.value.exit_code == 3 and "exited 3: it went wrong" in str(info.value)
        assert conn.run("exit 3", check=False).exit_code == 3


@pytest.mark.parametrize("stdin", [None, "A=1\n"])
@pytest.mark.parametrize("command", ["drop-channel", "signal", "drop-connection"])
def test_a_dropped_channel_or_connection_is_a_lost_connection_never_a_command_failure(ssh_server, no_sleep, command,
                                                                                      stdin):
    """Which error the client meets first (no exit status, EOF, a closed channel or socket) depends on timing;
    each is a lost connection, even for an unchecked command."""
    conn = _conn(ssh_server)
    with pytest.raises(connection.ConnectionLost) as info:
        conn.run(command, stdin=stdin, check=False)
    error = info.value
    assert isinstance(error, connection.Unreachable) and not isinstance(error, connection.CommandFailed)
    assert (error.drops, error.reruns, error.command) == (3, 2, command)
    assert ssh_server.runs[command] == 3
    assert str(error).startswith(f"deploy@127.0.0.1:{ssh_server.port}: connection lost 3 times while running "
                                 f"`{command}` (last: ")
    assert str(error).endswith("); re-ran it 2 time(s) on a new connection, then gave up")
    conn.close()


class _FakeTransport:
    def __init__(self, active=True):
        self.active = active

    def is_active(self):
        return self.active

    def set_keepalive(self, interval):
        pass


class _FakeFabric:
    """What Fabric/Invoke hand back: a result whose ``exited`` may be -1 (no exit status), or an exception."""

    def __init__(self, outcomes, transport_active=True):
        from types import SimpleNamespace

        self.outcomes = list(outcomes)
        self.client = SimpleNamespace(get_transport=lambda: _FakeTransport(transport_active))
        self.closed = False

    def run(self, command, **kwargs):
        from types import SimpleNamespace

        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return SimpleNamespace(stdout="out\n", stderr="err\n", exited=outcome)

    def close(self):
        self.closed = True


def _faked(monkeypatch, *connections, **kwargs) -> connection.HostConnection:
    import paramiko

    key = paramiko.ECDSAKey.generate()
    conn = connection.HostConnection("10.0.0.9", 22, "deploy", f"{key.get_name()} {key.get_base64()}",
                                     _client_key_pem(), **kwargs)
    opened = list(connections)
    monkeypatch.setattr(conn, "_open", lambda: opened.pop(0))
    return conn


@pytest.mark.parametrize("active, said", [
    (True, "the SSH channel closed without the command's exit status (its session was cut, or it was killed by a signal)"),
    (False, "the SSH connection dropped before the command reported its exit status"),
])
def test_exit_status_minus_one_from_invoke_is_a_drop(monkeypatch, no_sleep, active, said):
    first, second = _FakeFabric([-1], transport_active=active), _FakeFabric([0])
    conn = _faked(monkeypatch, first, second)
    assert conn.run("docker ps").stdout == "out\n"  # run again on a new connection
    assert first.closed and conn.reconnects == 1 and no_sleep == [0.5]
    first, second = _FakeFabric([-1], transport_active=active), _FakeFabric([0])
    conn = _faked(monkeypatch, first, second)
    with pytest.raises(connection.ConnectionLost) as info:
        conn.run("./deploy.sh", rerun_on_drop=False)
    assert str(info.value) == (f"deploy@10.0.0.9:22: connection lost while running `./deploy.sh` ({said}); not run "
                               "again on this connection: its outcome is unknown until the server's state is read again")


@pytest.mark.parametrize("fault", [EOFError(), ConnectionResetError(104, "Connection reset by peer"),
                                   socket.timeout("timed out"), OSError("Socket is closed")])
def test_eof_reset_and_timeouts_are_drops(monkeypatch, no_sleep, fault):
    conn = _faked(monkeypatch, _FakeFabric([fault]), _FakeFabric([fault]), _FakeFabric([7]))
    with pytest.raises(connection.CommandFailed) as info:  # the third run reports a real exit status: its own failure
        conn.run("false")
    assert info.value.exit_code == 7 and conn.reconnects == 2


def test_a_command_timeout_or_another_error_is_not_a_drop(monkeypatch, no_sleep):
    from invoke.exceptions import CommandTimedOut

    conn = _faked(monkeypatch, _FakeFabric([CommandTimedOut(None, 5)]), _FakeFabric([0]))
    with pytest.raises(CommandTimedOut):
        conn.run("sleep 99", timeout=5)
    assert conn.reconnects == 0


def test_a_dropped_connection_is_reopened_and_the_command_run_again(ssh_server, no_sleep):
    conn = _conn(ssh_server)
    assert conn.run("flaky-2 echo back").stdout == "back\n"
    assert ssh_server.runs["flaky-2 echo back"] == 3
    assert conn.reconnects == 2 and conn.commands_run == 1
    conn.close()


def test_a_long_command_is_not_run_again_blindly_after_a_drop(ssh_server, no_sleep):
    conn = _conn(ssh_server)
    with pytest.raises(connection.ConnectionLost) as info:
        conn.run("flaky-1 echo deployed", rerun_on_drop=False)
    assert ssh_server.runs["flaky-1 echo deployed"] == 1
    assert "not run again on this connection: its outcome is unknown" in str(info.value)
    # The next command (the step's retry reading the facts) reconnects.
    assert conn.run("echo facts").stdout == "facts\n" and conn.reconnects == 1
    conn.close()


def test_a_server_that_reboots_is_waited_for_then_the_command_runs_again(ssh_server):
    conn = _conn(ssh_server, reboot_wait_s=30)
    assert conn.run("echo before").stdout == "before\n"
    port = ssh_server.port
    ssh_server.stop()  # the server goes down: open connections cut, nothing listening
    threading.Timer(2.0, ssh_server.start, kwargs={"port": port}).start()  # and is back 2 s later
    started = time.monotonic()
    assert conn.run("echo after").stdout == "after\n"
    assert 1.5 < time.monotonic() - started < 25 and conn.reconnects == 1
    conn.close()


def test_a_server_that_does_not_come_back_fails_saying_what_was_lost_and_how_often(ssh_server, no_sleep):
    conn = _conn(ssh_server, reboot_wait_s=0)
    conn.run("echo up")
    ssh_server.stop()
    with pytest.raises(connection.ConnectionLost) as info:
        conn.run("echo facts")
    message = str(info.value)
    assert message.startswith(f"deploy@127.0.0.1:{ssh_server.port}: connection lost while running `echo facts` (")
    assert "re-ran it 0 time(s), then could not reconnect: cannot reach 127.0.0.1" in message
    assert "reconnection attempts since failed (a reboot is waited for up to 0 s)" in message
    # A later attempt (the step's retry) does not wait again for the same loss.
    with pytest.raises(connection.Unreachable, match="the connection was lost"):
        conn.open()


def test_a_server_cutting_the_handshake_short_is_unreachable_not_a_refusal(no_sleep):
    """sshd starting (or restarting) accepts TCP then closes: transient, unlike a refused login."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)

    def accept_and_close():
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            sock.close()

    threading.Thread(target=accept_and_close, daemon=True).start()
    try:
        import paramiko

        key = paramiko.ECDSAKey.generate()
        conn = connection.HostConnection("127.0.0.1", listener.getsockname()[1], "deploy",
                                         f"{key.get_name()} {key.get_base64()}", _client_key_pem(), connect_timeout=5)
        with pytest.raises(connection.Unreachable) as info:
            conn.open()
        assert "(3 attempts)" in str(info.value)
    finally:
        listener.close()


def test_drop_reason_classifies_each_fault():
    import paramiko
    from invoke.exceptions import ThreadException
    from invoke.util import ExceptionWrapper

    assert connection.drop_reason(EOFError()) == "EOFError"
    assert connection.drop_reason(ConnectionResetError(104, "Connection reset by peer")) == \
        "ConnectionResetError: [Errno 104] Connection reset by peer"
    assert connection.drop_reason(socket.timeout("timed out")) == "TimeoutError: timed out"
    assert connection.drop_reason(paramiko.SSHException("SSH session not active")) == \
        "SSHException: SSH session not active"
    assert connection.drop_reason(paramiko.ChannelException(2, "Connect failed")) is not None
    # Invoke's IO threads: a drop if one of them saw the connection go.
    dropped = ThreadException([ExceptionWrapper({}, OSError, OSError("Socket is closed"), None)])
    assert connection.drop_reason(dropped) == "OSError: Socket is closed"
    assert connection.drop_reason(ThreadException([ExceptionWrapper({}, ValueError, ValueError("x"), None)])) is None
    # The command's own faults are not drops.
    assert connection.drop_reason(ValueError("bad")) is None
    assert connection.drop_reason(connection.CommandFailed("h", "c", 1, "")) is None


def test_only_transient_faults_are_retried():
    from types import SimpleNamespace

    import paramiko  # noqa: F401

    from tasks.step import is_transient, is_transient_error

    assert is_transient_error(connection.ConnectionLost("lost"))
    assert is_transient_error(connection.Unreachable("cannot reach"))
    assert not is_transient_error(connection.HostKeyMismatch("refusing to connect"))
    assert not is_transient_error(connection.ConnectionFailed("SSH authentication failed"))
    assert not is_transient_error(connection.CommandFailed("h", "deploy.sh", 1, "boom"))
    assert not is_transient_error(RuntimeError("deployed but not healthy"))
    transient = RuntimeError("OVH 503")
    transient.transient = True
    assert is_transient_error(transient)

    def state_raising(exc):
        def result():
            raise exc
        return SimpleNamespace(result=result)

    assert is_transient(None, None, state_raising(connection.ConnectionLost("lost"))) is True
    assert is_transient(None, None, state_raising(connection.CommandFailed("h", "c", 2, ""))) is False
    assert is_transient(None, None, SimpleNamespace(result=lambda: None)) is False


def test_a_fact_read_twice_is_read_once_until_another_command_runs(ssh_server):
    """Steps of one phase read some of the same facts: the second read costs no round trip, unless the server
    may have changed in between (any other command, a failed one included, or a lost connection)."""
    with _conn(ssh_server) as conn:
        first = conn.read("echo facts", sudo=False)
        assert conn.read("echo facts").stdout == first.stdout == "facts\n"
        assert ssh_server.runs["echo facts"] == 1 and conn.reads_reused == 1
        conn.run("echo change")
        conn.read("echo facts")
        assert ssh_server.runs["echo facts"] == 2
        with pytest.raises(connection.CommandFailed):
            conn.run("exit 3")
        conn.read("echo facts")
        assert ssh_server.runs["echo facts"] == 3


def test_a_refused_login_is_named_and_its_transport_stopped_without_an_error_log(ssh_server, caplog):
    """A fresh VPS refuses the deploy user (the flow then logs in as the admin user): nothing logs at ERROR."""
    import logging

    ssh_server.refuse_login = True
    conn = _conn(ssh_server)
    with caplog.at_level(logging.DEBUG, logger="paramiko"):
        with pytest.raises(connection.ConnectionFailed, match="SSH authentication failed"):
            conn.open()
        # The transport's reader thread is gone (a thread left reading a closed socket logs at ERROR).
        import paramiko

        deadline = time.monotonic() + 10
        while any(isinstance(t, paramiko.Transport) and not t.server_mode and t.is_alive() for t in threading.enumerate()):
            assert time.monotonic() < deadline, "a paramiko transport thread is still running"
            time.sleep(0.05)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
