"""Security checks against real servers on 127.0.0.1: ports, TLS, redirect, headers, SSH auth, .env mode."""

from __future__ import annotations

import socket
import ssl
import threading

import pytest

from technicia_deploy.checks import security
from technicia_deploy.commands.shell import render_sections
from technicia_deploy.config import Firewall

from .conftest import DOMAIN, NGINX_HEADERS, PAGE, Route, closed_port, server_tls, target_for

FIREWALL = Firewall.model_validate({
    "public": [{"port": 22, "service": "SSH"}, {"port": 80, "service": "HTTP"}, {"port": 443, "service": "HTTPS"}],
    "internal": [{"port": 5678, "service": "n8n"}, {"port": 6333, "service": "Qdrant API"}],
})


# --- ports ---------------------------------------------------------------------------------------

def test_scan_tells_open_from_closed():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    open_port, shut = listener.getsockname()[1], closed_port()
    try:
        assert security.scan("127.0.0.1", [open_port, shut]) == {open_port: "open", shut: "closed"}
    finally:
        listener.close()


def test_qdrant_published_to_the_internet_is_a_high_finding_naming_the_port():
    wanted = security.expected_ports(FIREWALL, {8000: "API (container)"})
    observed = {port: "closed" for port in wanted} | {22: "open", 80: "open", 443: "open", 6333: "open"}
    states, findings = security.judge_ports(wanted, observed)
    assert [(f.severity, f.subject) for f in findings] == [("high", "6333/tcp (Qdrant API)")]
    assert "6333" in security.summary(findings) and security.failed(findings)
    row = next(r for r in security.table_rows(states, findings) if r["port"] == 6333)
    assert (row["service"], row["expected"], row["observed"], row["severity"]) == ("Qdrant API", "internal", "open", "high")


def test_expected_ports_cover_the_stack_and_common_services():
    wanted = security.expected_ports(FIREWALL)
    assert wanted[443] == ("public", "HTTPS") and wanted[5678] == ("internal", "n8n")
    assert wanted[2375] == ("closed", "Docker API") and wanted[3306][0] == "closed"


def test_unexpected_open_port_and_closed_public_port():
    wanted = security.expected_ports(FIREWALL)
    observed = {port: "closed" for port in wanted} | {22: "open", 443: "open", 6379: "open"}
    _, findings = security.judge_ports(wanted, observed)
    assert {(f.severity, f.subject) for f in findings} == {("high", "6379/tcp (Redis)"), ("medium", "80/tcp (HTTP)")}


# --- TLS -----------------------------------------------------------------------------------------

def test_good_certificate_and_modern_tls_have_no_findings(pki, servers):
    https = servers({"*": Route(200, PAGE)}, server_tls(*pki.leaf()))
    facts = security.inspect_tls(target_for(pki, https.port))
    assert facts.verified and facts.protocol in ("TLSv1.2", "TLSv1.3") and facts.names == (DOMAIN,)
    assert not facts.accepted_old
    assert [f for f in security.judge_tls(DOMAIN, facts, 30) if f.severity != "info"] == []


def test_incomplete_chain_is_high(pki, servers):
    https = servers({"*": Route(200, PAGE)}, server_tls(*pki.leaf(full_chain=False)))
    facts = security.inspect_tls(target_for(pki, https.port))
    findings = security.judge_tls(DOMAIN, facts, 30)
    assert not facts.verified
    assert any(f.severity == "high" and "incomplete chain" in f.message for f in findings)


def test_wrong_name_and_near_expiry_are_high(pki, servers):
    https = servers({"*": Route(200, PAGE)}, server_tls(*pki.leaf(names=("other.exemple.test",), days=10)))
    findings = security.judge_tls(DOMAIN, security.inspect_tls(target_for(pki, https.port)), 30)
    messages = [f.message for f in findings if f.severity == "high"]
    assert any("not valid for" in m for m in messages)
    assert any("expires in 9 day(s)" in m or "expires in 10 day(s)" in m for m in messages)


def test_server_accepting_tls_1_0_is_high(pki, servers):
    https = servers({"*": Route(200, PAGE)}, server_tls(*pki.leaf(), oldest=ssl.TLSVersion.TLSv1))
    facts = security.inspect_tls(target_for(pki, https.port))
    if facts.untested:
        pytest.skip(f"this OpenSSL cannot offer {facts.untested}")
    assert "TLSv1" in facts.accepted_old
    assert any(f.severity == "high" and f.subject == "TLSv1" for f in security.judge_tls(DOMAIN, facts, 30))


# --- HTTP redirect and headers ----------------------------------------------------------------------

def test_redirect_to_https_passes_and_plain_content_fails(pki, servers):
    redirect = servers({"*": Route(301, b"", {"Location": f"https://{DOMAIN}/"})})
    assert security.check_redirect(target_for(pki, 1, redirect.port)) == []
    plain = servers({"*": Route(200, PAGE)})
    findings = security.check_redirect(target_for(pki, 1, plain.port))
    assert [f.severity for f in findings] == ["high"] and "not a redirect" in findings[0].message


def test_security_headers(pki, servers):
    good = servers({"*": Route(200, PAGE, NGINX_HEADERS)}, server_tls(*pki.leaf()))
    assert security.check_headers(target_for(pki, good.port)) == []
    bare = servers({"*": Route(200, PAGE, {"Server": "nginx/1.22.1"})}, server_tls(*pki.leaf()))
    findings = security.check_headers(target_for(pki, bare.port))
    assert {f.subject: f.severity for f in findings} == {
        "Strict-Transport-Security": "medium", "X-Content-Type-Options": "low", "X-Frame-Options": "low",
        "Referrer-Policy": "low", "Server": "low"}


# --- SSH ------------------------------------------------------------------------------------------

class _SshServer:
    """A paramiko SSH server on 127.0.0.1 that offers the given authentication methods."""

    def __init__(self, methods: str):
        self.methods = methods
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import paramiko
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        import io

        pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())
        host_key = paramiko.RSAKey.from_private_key(io.StringIO(pem.decode()))
        methods = self.methods

        class Interface(paramiko.ServerInterface):
            def get_allowed_auths(self, username):
                return methods

        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        transport = paramiko.Transport(conn)
        transport.add_server_key(host_key)
        transport.start_server(server=Interface())
        transport.accept(5)
        transport.close()

    def close(self) -> None:
        self.listener.close()


@pytest.mark.parametrize("methods,severity", [("publickey,password", "high"), ("publickey", None)])
def test_ssh_password_authentication(methods, severity):
    server = _SshServer(methods)
    try:
        offered = security.ssh_auth_methods("127.0.0.1", server.port)
    finally:
        server.close()
    assert set(offered) == set(methods.split(","))
    findings = security.judge_ssh("127.0.0.1", offered, server.port)
    assert [f.severity for f in findings] == ([severity] if severity else [])


def test_ssh_not_answering_is_info_only():
    assert security.ssh_auth_methods("127.0.0.1", closed_port()) is None
    assert [f.severity for f in security.judge_ssh("127.0.0.1", None)] == ["info"]


# --- .env ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("stat,severity", [("600 deploy deploy", None), ("640 deploy docker", None),
                                           ("644 deploy deploy", "high"), ("", "medium")])
def test_env_file_mode(stat, severity):
    output = render_sections({"env_file": (stat, 0 if stat else 1)})
    findings = security.judge_env_file("/opt/technicia/.env", output)
    assert [f.severity for f in findings] == ([severity] if severity else [])
