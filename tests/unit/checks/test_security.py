"""Security checks against real servers on 127.0.0.1: ports, TLS, redirect, headers, SSH auth, .env mode."""

from __future__ import annotations

import socket
import ssl
import threading

import pytest

from technicia_deploy.checks import security
from technicia_deploy.checks.target import Target
from technicia_deploy.commands.shell import render_sections
from technicia_deploy.config import Firewall
from tests.unit.live_nginx import free_port, nginx_binary, running_nginx

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
        "Referrer-Policy": "low", "Server": "low", "Content-Security-Policy": "medium", "Permissions-Policy": "low"}


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


# --- TLS against Mozilla intermediate (sslyze) -------------------------------------------------------------

def _tls_profile_findings(pki, servers, ciphers: str | None) -> list:
    tls = server_tls(*pki.leaf())
    if ciphers:
        tls.set_ciphers(ciphers)
    https = servers({"*": Route(200, PAGE)}, tls)
    return security.judge_tls_profile(DOMAIN, security.scan_tls_profile(target_for(pki, https.port)))


def test_default_cipher_list_offers_cbc_suites_which_are_high(pki, servers):
    # Python's (like nginx's) default list still has ECDHE with AES-CBC-SHA256/384.
    findings = _tls_profile_findings(pki, servers, None)
    cbc = [f for f in findings if "_CBC_" in f.subject]
    assert cbc and all(f.severity == "high" and "CBC/non-AEAD" in f.message for f in cbc)
    assert "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256" in {f.subject for f in cbc}
    assert security.failed(findings)


def test_mozilla_intermediate_suites_pass_the_profile(pki, servers):
    from technicia_deploy.commands.nginx import MOZILLA_INTERMEDIATE_CIPHERS

    findings = _tls_profile_findings(pki, servers, MOZILLA_INTERMEDIATE_CIPHERS)
    # Python cannot restrict its server's curves the way nginx's ssl_ecdh_curve does: that one stays (low).
    assert [(f.severity, f.subject) for f in findings] == [("low", "tls_curves")]


@pytest.mark.skipif(nginx_binary() is None, reason="no nginx binary")
def test_the_rendered_nginx_site_is_mozilla_intermediate_compliant(pki, tmp_path):
    """What the pipeline renders for nginx, served by a real nginx and judged by sslyze: not one finding."""
    from technicia_deploy.commands import nginx

    cert, key = pki.leaf()
    http_port, https_port = free_port(), free_port()
    site = nginx.NginxSite(domain=DOMAIN, frontend_port=closed_port(), api_port=closed_port())
    text = (nginx.render_site(site, tls=True, ipv6=False)
            .replace(site.fullchain, str(cert)).replace(site.privkey, str(key))
            .replace("listen 80", f"listen 127.0.0.1:{http_port}").replace("listen 443", f"listen 127.0.0.1:{https_port}"))
    with running_nginx(tmp_path, text, https_port):
        scan = security.scan_tls_profile(target_for(pki, https_port, http_port))
    assert scan.error is None and scan.issues == {}
    assert set(scan.tls12_suites) == {"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
                                      "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"}
    assert security.judge_tls_profile(DOMAIN, scan) == []


@pytest.mark.parametrize("issues,suites,expected", [
    ({"tls_versions": "TLS versions {'TLSv1'} are supported"}, (), [("high", "tls_versions")]),
    ({"maximum_certificate_lifespan": "Certificate life span is 1826 days"}, (), [("low", "maximum_certificate_lifespan")]),
    ({"tls_vulnerability_fallback_scsv": "no TLS_FALLBACK_SCSV"}, (), [("medium", "tls_vulnerability_fallback_scsv")]),
    ({"something_new": "a check sslyze adds later"}, (), [("medium", "something_new")]),
    # A non-profile AEAD suite (CCM, ARIA-GCM) is medium; CBC and CCM_8-less non-AEAD ones high.
    ({"ciphers": "..."}, ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ARIA128_GCM_SHA256", "TLS_RSA_WITH_AES_128_CCM_8",
                         "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"),
     [("medium", "TLS_ECDHE_ARIA128_GCM_SHA256"), ("high", "TLS_RSA_WITH_AES_128_CCM_8"),
      ("high", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA")]),
])
def test_profile_issues_have_severities(issues, suites, expected):
    scan = security.TlsProfileScan(issues, suites, frozenset({"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"}))
    assert [(f.severity, f.subject) for f in security.judge_tls_profile(DOMAIN, scan)] == expected


def test_a_tls_profile_scan_that_cannot_connect_is_medium():
    scan = security.scan_tls_profile(Target(DOMAIN, "127.0.0.1", https_port=closed_port()))
    assert scan.error
    assert [f.severity for f in security.judge_tls_profile(DOMAIN, scan)] == ["medium"]


# --- SSH algorithms (ssh-audit) ----------------------------------------------------------------------------

class _ParamikoSshd:
    """A paramiko SSH server on 127.0.0.1 answering any number of connections (ssh-audit opens several) with
    paramiko's own algorithm lists: NIST key exchanges, CBC, SHA-1 and MD5 MACs, 3DES."""

    def __init__(self):
        import io

        import paramiko
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519

        pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
        self.key = paramiko.Ed25519Key.from_private_key(io.StringIO(pem.decode()))
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn) -> None:
        import paramiko

        class Interface(paramiko.ServerInterface):
            def get_allowed_auths(self, username):
                return "publickey"

        transport = paramiko.Transport(conn)
        transport.add_server_key(self.key)
        try:
            transport.start_server(server=Interface())
            transport.accept(2)
        except (paramiko.SSHException, EOFError, OSError):
            pass  # ssh-audit hangs up after the key exchange it wanted to see
        finally:
            transport.close()

    def close(self) -> None:
        self.listener.close()


def test_ssh_audit_fails_nist_kex_and_broken_macs_and_warns_on_cbc():
    server = _ParamikoSshd()
    try:
        report = security.ssh_audit("127.0.0.1", server.port)
    finally:
        server.close()
    findings = {(f.severity, f.subject) for f in security.judge_ssh_algorithms("127.0.0.1", report, server.port)}
    assert {("high", "kex ecdh-sha2-nistp256"), ("high", "mac hmac-sha1"), ("high", "mac hmac-md5"),
            ("high", "enc 3des-cbc")} <= findings
    assert ("medium", "enc aes128-cbc") in findings and ("medium", "mac hmac-sha2-256") in findings
    assert ("low", "kex curve25519-sha256@libssh.org") in findings  # not post-quantum: paramiko has nothing better
    assert not any(subject in ("key ssh-ed25519", "enc aes256-gcm@openssh.com", "mac hmac-sha2-256-etm@openssh.com")
                   for _, subject in findings)


def test_ssh_audit_without_an_ssh_server_is_info_only():
    report = security.ssh_audit("127.0.0.1", closed_port(), timeout=2)
    assert report is None
    assert [f.severity for f in security.judge_ssh_algorithms("127.0.0.1", report)] == ["info"]


# --- what the server exposes against what answers from outside ---------------------------------------------

EXPOSURE = render_sections({
    "docker": ("technicia-qdrant-1\t0.0.0.0:6333->6333/tcp, :::6333->6333/tcp\n"
               "technicia-api-1\t127.0.0.1:8000->8000/tcp\n"
               "extra\t0.0.0.0:9000->80/tcp, :::9000->80/tcp\n"
               "ranged\t0.0.0.0:7000-7001->7000-7001/tcp\n"
               "technicia-worker-1\t80/tcp\n", 0),
    "sockets": ('LISTEN 0 128 0.0.0.0:22 0.0.0.0:* users:(("sshd",pid=301,fd=3))\n'
                'LISTEN 0 511 0.0.0.0:443 0.0.0.0:* users:(("nginx",pid=400,fd=6))\n'
                'LISTEN 0 4096 0.0.0.0:6333 0.0.0.0:* users:(("docker-proxy",pid=900,fd=4))\n'
                'LISTEN 0 4096 127.0.0.53%lo:53 0.0.0.0:* users:(("systemd-resolve",pid=200,fd=14))\n'
                'LISTEN 0 64 [::]:111 [::]:* users:(("rpcbind",pid=210,fd=8))\n'
                'LISTEN 0 128 [::1]:631 [::]:*\n', 0),
})


def test_exposure_is_read_from_docker_and_the_listening_sockets():
    exposed = security.parse_exposure(EXPOSURE)
    assert [(e.port, e.address, e.source, e.public) for e in exposed] == [
        (6333, "0.0.0.0", "container technicia-qdrant-1", True), (6333, "::", "container technicia-qdrant-1", True),
        (8000, "127.0.0.1", "container technicia-api-1", False),
        (9000, "0.0.0.0", "container extra", True), (9000, "::", "container extra", True),
        (7000, "0.0.0.0", "container ranged", True), (7001, "0.0.0.0", "container ranged", True),
        (22, "0.0.0.0", "sshd (process)", True), (443, "0.0.0.0", "nginx (process)", True),
        (53, "127.0.0.53", "systemd-resolve (process)", False), (111, "::", "rpcbind (process)", True),
        (631, "::1", "listening socket", False),
    ]


@pytest.mark.parametrize("answering,expected", [
    # Blocked by the firewall today: still high for the container (one DOCKER-USER rule from the internet).
    ((), {("high", "9000/tcp (container extra)"), ("high", "7000/tcp (container ranged)"),
          ("high", "7001/tcp (container ranged)"), ("low", "111/tcp (rpcbind (process))")}),
    # Answering from outside: judge_ports says so (high), judge_exposure does not repeat it.
    ((9000, 7000, 7001, 111), {("high", "9000/tcp (container extra)"), ("high", "7000/tcp (container ranged)"),
                               ("high", "7001/tcp (container ranged)"), ("high", "111/tcp (rpcbind (process))")}),
])
def test_an_undeclared_published_port_is_high_and_named(answering, expected):
    exposed = security.parse_exposure(EXPOSURE)
    wanted = security.expected_ports(FIREWALL, {8000: "API (container)"}, exposed)
    assert wanted[9000] == ("closed", "container extra") and wanted[6333] == ("internal", "Qdrant API")
    observed = {port: "filtered" for port in wanted} | {22: "open", 80: "open", 443: "open"} | {p: "open" for p in answering}
    states, findings = security.judge_ports(wanted, observed)
    findings += security.judge_exposure(exposed, wanted, observed)
    assert {(f.severity, f.subject) for f in findings} == expected
    assert "9000" in security.summary(findings)
    row = next(r for r in security.table_rows(states, findings) if r["port"] == 9000)
    assert (row["service"], row["severity"]) == ("container extra", "high")


def test_summary_says_what_was_found():
    findings = [security.Finding("high", "ports", "9000/tcp (container extra)", "port 9000 is published on 0.0.0.0"),
                security.Finding("medium", "ssh-algorithms", "enc aes128-cbc", "..."),
                security.Finding("low", "tls-profile", "maximum_certificate_lifespan", "..."),
                security.Finding("low", "ssh-algorithms", "kex curve25519-sha256", "..."),
                security.Finding("info", "tls", "TLSv1", "...")]
    assert security.summary(findings) == (
        "1 high, 1 medium, 2 low, 1 info: port 9000 is published on 0.0.0.0; medium: enc aes128-cbc; "
        "low: maximum_certificate_lifespan, kex curve25519-sha256")
    assert security.summary([]) == "no findings"


@pytest.mark.skipif(nginx_binary() is None, reason="no nginx binary")
def test_catch_all_passes_on_the_rendered_site_and_fails_without_it(pki, tmp_path):
    from technicia_deploy.commands import nginx

    cert, key = pki.leaf()
    site = nginx.NginxSite(domain=DOMAIN, frontend_port=closed_port(), api_port=closed_port())
    rendered = nginx.render_site(site, tls=True, ipv6=False).replace(site.fullchain, str(cert)).replace(site.privkey, str(key))
    start, end = rendered.index("# Catch-all"), rendered.index("return 444;\n}\n") + len("return 444;\n}\n")
    for text, expected in ((rendered, set()),
                           (rendered[:start] + rendered[end:],  # without the catch-all: the domain's servers answer all
                            {"Host: 127.0.0.1", "Host: unknown-host.invalid", "SNI (none)", "SNI unknown-host.invalid"})):
        http_port, https_port = free_port(), free_port()
        local = text.replace("listen 80", f"listen 127.0.0.1:{http_port}").replace("listen 443", f"listen 127.0.0.1:{https_port}")
        with running_nginx(tmp_path, local, https_port):
            findings = security.check_catch_all(target_for(pki, https_port, http_port))
        assert {f.subject for f in findings} == expected
        assert all(f.severity == "medium" for f in findings)


def test_the_ipv6_scan_is_judged_on_its_own_and_named():
    """The same ports over the AAAA address: an internal port open over IPv6 only is high, named 'over IPv6'."""
    wanted = {22: ("public", "SSH"), 5678: ("internal", "n8n"), 6333: ("internal", "Qdrant API")}
    states4, findings4 = security.judge_ports(wanted, {22: "open", 5678: "filtered", 6333: "filtered"})
    states6, findings6 = security.judge_ports(wanted, {22: "open", 5678: "open", 6333: "filtered"}, family="IPv6")
    assert findings4 == []
    [high] = findings6
    assert (high.severity, high.subject) == ("high", "5678/tcp (n8n) over IPv6")
    assert "reachable from outside over IPv6" in high.message
    rows = security.table_rows(states4 + states6, findings6)
    assert [(r["port"], r["family"], r["severity"]) for r in rows] == [
        (22, "IPv4", ""), (5678, "IPv4", ""), (6333, "IPv4", ""),
        ("22 (IPv6)", "IPv6", ""), ("5678 (IPv6)", "IPv6", "high"), ("6333 (IPv6)", "IPv6", "")]
    assert next(r for r in rows if r["port"] == 5678)["family"] == "IPv4"  # a reader keyed by port number
    # A declared public port that does not answer over IPv6 (ufw with IPV6=no drops all of it) is named too.
    _, [medium] = security.judge_ports({443: ("public", "HTTPS")}, {443: "filtered"}, family="IPv6")
    assert medium.severity == "medium" and medium.message.endswith("does not answer over IPv6 (filtered)")


def test_scan_over_ipv6_loopback():
    import socket

    with socket.socket(socket.AF_INET6) as server:
        server.bind(("::1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert security.scan("::1", [port]) == {port: "open"}
