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
