"""Keys and certificates the sandbox generates."""

from __future__ import annotations

import ssl
import stat

import paramiko
from cryptography import x509

from technicia_deploy.sandbox import pki


def test_ssh_keypair_is_created_once_private_and_loadable(tmp_path):
    path = tmp_path / "keys" / "id_ed25519"
    line = pki.ssh_keypair(path, "me@sandbox")
    assert line.startswith("ssh-ed25519 AAAA") and line.endswith(" me@sandbox")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert pki.ssh_keypair(path, "other") == line  # kept: a host key survives rebuilds
    key = paramiko.Ed25519Key.from_private_key_file(str(path))
    assert key.get_base64() == line.split()[1]


def test_server_cert_is_for_the_ip_and_chains_to_the_ca(tmp_path):
    ca_cert, ca_key = pki.ensure_ca(tmp_path / "pki", "Test CA")
    assert pki.ensure_ca(tmp_path / "pki", "Test CA") == (ca_cert, ca_key)
    assert stat.S_IMODE(ca_key.stat().st_mode) == 0o600
    cert, key = tmp_path / "srv.pem", tmp_path / "srv-key.pem"
    pki.issue_server_cert(ca_cert, ca_key, "10.213.1.1", cert, key)
    assert pki.cert_ip(cert) == "10.213.1.1"
    leaf = x509.load_pem_x509_certificate(cert.read_bytes())
    root = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    leaf.verify_directly_issued_by(root)
    # What a TLS client does with it: the pair loads as a server identity.
    ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)


def test_cert_ip_of_a_missing_file_is_none(tmp_path):
    assert pki.cert_ip(tmp_path / "nope.pem") is None
