"""nginx TLS front: two-phase site, challenge path before the redirect, checked before reload."""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
import urllib.error
import urllib.request

import pytest

from technicia_deploy.checks.target import Target, fetch
from technicia_deploy.commands import nginx as n
from technicia_deploy.commands.shell import APT_GET, render_sections
from tests.unit.live_nginx import free_port, main_conf, nginx_binary, running_nginx, self_signed

SITE = n.NginxSite(domain="test-technicia.exemple.fr", frontend_port=3000, api_port=8000)
LINK = (
    "rm -f /etc/nginx/sites-enabled/default && "
    "ln -sfn /etc/nginx/sites-available/technicia.conf /etc/nginx/sites-enabled/technicia.conf && "
    "if nginx -t; then systemctl reload-or-restart nginx; else rm -f /etc/nginx/sites-enabled/technicia.conf; exit 1; fi"
)


def facts(**overrides) -> n.NginxFacts:
    values = {
        "nginx": ("", 1),
        "active": ("inactive\n", 3),
        "site": ("absent\n", 0),
        "link": ("", 1),
        "default_site": ("", 0),
        "webroot": ("", 1),
        "cert": ("", 1),
        "ocsp": ("", 1),
        "ipv6": ("yes\n", 0),
    }
    values.update(overrides)
    return n.parse_facts(render_sections(values))


def serving(tls: bool, responder: str | None = None, **overrides) -> n.NginxFacts:
    """A server already converged (with the certificate naming OCSP ``responder``), with ``overrides`` applied."""
    digest = n.WantedFile(n.SITE_AVAILABLE, n.render_site(SITE, tls=tls, ocsp_responder=responder)).sha256
    values = {
        "nginx": ("1.22.1-9+deb12u1\n", 0),
        "active": ("active\n", 0),
        "site": (f"644 root root\n{digest}\n", 0),
        "link": (f"{n.SITE_AVAILABLE}\n", 0),
        "webroot": ("directory 755 root\n", 0),
        "cert": ("present\n", 0) if tls else ("", 1),
        "ocsp": (f"{responder}\n", 0) if responder else (("\n", 0) if tls else ("", 1)),
    }
    values.update(overrides)
    return facts(**values)


def test_phase_1_fresh_server(payload, bash_syntax):
    commands = n.operations(facts(), SITE)
    assert commands[0] == f"{APT_GET} update && {APT_GET} install --no-install-recommends nginx"
    assert commands[1] == "mkdir -p /var/www/letsencrypt && chown root:root /var/www/letsencrypt && chmod 755 /var/www/letsencrypt"
    site = commands[2]
    assert payload(site) == n.render_site(SITE, tls=False)
    assert "nginx -t -q -c" in site  # the new file is validated on its own before it is installed
    assert "reload" not in site  # not linked yet: the link command tests and reloads
    assert commands[3:] == [LINK, "systemctl enable --now nginx"]
    for command in commands:
        bash_syntax(command)


def test_phase_1_post_state_is_unchanged():
    assert n.operations(serving(tls=False), SITE) == []


def test_certificate_arrival_switches_to_phase_2(payload):
    after_certbot = serving(tls=False, cert=("present\n", 0))
    [command] = n.operations(after_certbot, SITE)
    assert payload(command) == n.render_site(SITE, tls=True)
    assert "if ! nginx -t;" in command and command.endswith("\nsystemctl reload-or-restart nginx")
    assert n.operations(serving(tls=True), SITE) == []


def test_phase_1_site_serves_only_the_challenge():
    text = n.render_site(SITE, tls=False)
    _, http = text.split("\nserver {")[1:]
    assert "listen 443 ssl http2" not in text and "return 503;" in http  # only the catch-all listens on 443
    assert "location ^~ /.well-known/acme-challenge/ {\n        root /var/www/letsencrypt;" in text


def test_phase_2_site():
    text = n.render_site(SITE, tls=True)
    catch_all, http, https = text.split("\nserver {")[1:]
    # The challenge location precedes (and with ^~ beats) the redirect.
    assert http.index("acme-challenge") < http.index("return 301 https://test-technicia.exemple.fr$request_uri;")
    assert "listen 443 ssl http2;" in https and "listen [::]:443 ssl http2;" in https
    assert "ssl_certificate /etc/letsencrypt/live/test-technicia.exemple.fr/fullchain.pem;" in https
    assert "ssl_certificate_key /etc/letsencrypt/live/test-technicia.exemple.fr/privkey.pem;" in https
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in https
    for header in ("Strict-Transport-Security", "X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy"):
        assert f"add_header {header} " in https
    assert "location /api/ {\n        proxy_pass http://127.0.0.1:8000;" in https
    assert "location / {\n        proxy_pass http://127.0.0.1:3000;" in https


MOZILLA_INTERMEDIATE = """\
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:\
ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305;
    ssl_ecdh_curve X25519:prime256v1:secp384r1;
    ssl_prefer_server_ciphers on;
    ssl_session_timeout 1d;
    ssl_session_cache shared:technicia_tls:10m;
    ssl_session_tickets off;
"""
CATCH_ALL = """
server {
    listen 80 default_server;
    listen [::]:80 default_server;
    listen 443 ssl default_server;
    listen [::]:443 ssl default_server;
    server_name _;
    server_tokens off;
    ssl_reject_handshake on;
    # Mozilla intermediate (see MOZILLA_INTERMEDIATE_CIPHERS).
""" + MOZILLA_INTERMEDIATE + """\
    return 444;
}
"""


def test_phase_2_tls_is_mozilla_intermediate_without_stapling_when_the_ca_has_no_responder():
    https = n.render_site(SITE, tls=True).split("\nserver {")[3]
    assert MOZILLA_INTERMEDIATE in https
    assert "ssl_stapling" not in https and "ssl_trusted_certificate" not in https  # pebble: no OCSP responder
    assert "    gzip off;\n" in https  # BREACH


@pytest.mark.parametrize("tls", [False, True])
def test_catch_all_default_server_in_both_phases(tls):
    text = n.render_site(SITE, tls=tls)
    assert CATCH_ALL in text
    assert text.count("default_server;") == 4  # only the catch-all is a default server
    assert text.count("server_tokens off;") == (3 if tls else 2)  # every server block


def test_security_headers_are_the_configured_policies():
    https = n.render_site(SITE, tls=True).split("\nserver {")[3]
    assert (f'    add_header Content-Security-Policy "{n.DEFAULT_CONTENT_SECURITY_POLICY}" always;\n'
            f'    add_header Permissions-Policy "{n.DEFAULT_PERMISSIONS_POLICY}" always;\n') in https
    custom = n.NginxSite(domain=SITE.domain, frontend_port=3000, api_port=8000,
                         content_security_policy="default-src 'self'; connect-src 'self' https://api.exemple.fr",
                         permissions_policy='camera=(), geolocation=(self "https://maps.exemple.fr")')
    text = n.render_site(custom, tls=True)
    assert "add_header Content-Security-Policy \"default-src 'self'; connect-src 'self' https://api.exemple.fr\" always;" in text
    # nginx unescapes \" inside a double-quoted string: the origin reaches the browser quoted.
    assert 'add_header Permissions-Policy "camera=(), geolocation=(self \\"https://maps.exemple.fr\\")" always;' in text


def test_ocsp_stapling_follows_the_certificate_and_the_setting(payload):
    responder = "http://ocsp.exemple-ca.test"
    # The certificate names a responder: stapling on, verified against the chain certbot writes.
    [command] = n.operations(serving(tls=True, ocsp=(f"{responder}\n", 0)), SITE)
    text = payload(command)
    assert text == n.render_site(SITE, tls=True, ocsp_responder=responder)
    assert ("    ssl_stapling on;\n    ssl_stapling_verify on;\n"
            "    ssl_trusted_certificate /etc/letsencrypt/live/test-technicia.exemple.fr/chain.pem;\n") in text
    assert n.operations(serving(tls=True, responder=responder), SITE) == []  # second run: unchanged
    off = n.NginxSite(domain=SITE.domain, frontend_port=3000, api_port=8000, ocsp_stapling="off")
    assert "ssl_stapling" not in n.render_site(off, tls=True, ocsp_responder=responder)


def test_site_settings_come_from_the_environment_config():
    from tests.unit.config_data import EXAMPLE

    from technicia_deploy import config

    env = config.load(EXAMPLE).environment("test")
    assert env.http.content_security_policy == n.DEFAULT_CONTENT_SECURITY_POLICY
    assert env.http.permissions_policy == n.DEFAULT_PERMISSIONS_POLICY
    assert env.tls.ocsp_stapling == "auto"


def test_no_ipv6_kernel_means_no_ipv6_listen(payload):
    # nginx refuses to start on 'listen [::]:80' when the kernel has no IPv6.
    assert "[::]" not in n.render_site(SITE, tls=True, ipv6=False)
    site_cmd = n.operations(facts(ipv6=("", 1)), SITE)[2]
    assert "listen 80;" in payload(site_cmd) and "[::]" not in payload(site_cmd)


def test_default_site_is_disabled_even_when_ours_is_linked():
    assert n.operations(serving(tls=True, default_site=("present\n", 0)), SITE) == [LINK]


def test_unsafe_values_are_refused():
    with pytest.raises(ValueError, match="domain"):
        n.NginxSite(domain="x.fr; include /etc/passwd", frontend_port=1, api_port=2)
    with pytest.raises(ValueError, match="webroot"):
        n.NginxSite(domain="x.fr", frontend_port=1, api_port=2, webroot="/var/www/le; root /")
    with pytest.raises(ValueError, match="port"):
        n.NginxSite(domain="x.fr", frontend_port=0, api_port=2)
    with pytest.raises(ValueError, match="content_security_policy"):
        n.NginxSite(domain="x.fr", frontend_port=1, api_port=2, content_security_policy="default-src $host")
    with pytest.raises(ValueError, match="permissions_policy"):
        n.NginxSite(domain="x.fr", frontend_port=1, api_port=2, permissions_policy="camera=()\nadd_header X 1")
    with pytest.raises(ValueError, match="ocsp_stapling"):
        n.NginxSite(domain="x.fr", frontend_port=1, api_port=2, ocsp_stapling="on")


def test_fact_script_is_valid_and_runs_read_only_here(bash_syntax):
    bash_syntax(n.fact_command(SITE))
    result = subprocess.run(["bash", "-c", n.fact_command(SITE)], capture_output=True, text=True)
    assert isinstance(n.parse_facts(result.stdout), n.NginxFacts)


# --- With a real nginx binary (skipped when none is on PATH or in TECHNICIA_NGINX) ---

@pytest.mark.skipif(nginx_binary() is None, reason="no nginx binary")
@pytest.mark.parametrize("tls,responder", [(False, None), (True, None), (True, "http://ocsp.exemple-ca.test")])
def test_rendered_site_passes_nginx_t(tmp_path, tls, responder):
    site = SITE
    text = n.render_site(site, tls=tls, ocsp_responder=responder)
    if tls:
        self_signed(tmp_path / "live", site.domain)
        text = text.replace(f"/etc/letsencrypt/live/{site.domain}", str(tmp_path / "live"))
    main = main_conf(tmp_path, text)
    result = subprocess.run([nginx_binary(), "-e", "stderr", "-p", str(tmp_path), "-t", "-c", main], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _http_status(port: int, host: str) -> int | None:
    """The status nginx answers on plain HTTP for ``host``; None when it closes the connection without answering."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/", headers={"Host": host})
        return conn.getresponse().status
    except http.client.RemoteDisconnected:
        return None
    finally:
        conn.close()


def _tls_client(*, tls12_ciphers: str | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if tls12_ciphers:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(f"{tls12_ciphers}:@SECLEVEL=0")  # offer exactly these, weak or not
    return context


def _handshake(port: int, sni: str | None, context: ssl.SSLContext) -> ssl.SSLSocket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        return context.wrap_socket(sock, server_hostname=sni)
    except BaseException:
        sock.close()
        raise


@pytest.mark.skipif(nginx_binary() is None, reason="no nginx binary")
def test_live_site_answers_only_its_domain_with_mozilla_intermediate_tls_and_policies(tmp_path):
    http_port, https_port = free_port(), free_port()
    self_signed(tmp_path / "live", SITE.domain)
    text = (n.render_site(SITE, tls=True, ipv6=False)
            .replace(f"/etc/letsencrypt/live/{SITE.domain}", str(tmp_path / "live"))
            .replace("listen 80", f"listen 127.0.0.1:{http_port}").replace("listen 443", f"listen 127.0.0.1:{https_port}"))
    with running_nginx(tmp_path, text, https_port):
        # Plain HTTP: the domain is redirected, the bare IP and any other Host get nothing.
        assert _http_status(http_port, SITE.domain) == 301
        assert _http_status(http_port, "127.0.0.1") is None
        assert _http_status(http_port, "other.exemple.fr") is None
        # TLS: no handshake (so no certificate shown) without the domain's name.
        for sni in (None, "other.exemple.fr"):
            with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME|unrecognized name"):
                _handshake(https_port, sni, _tls_client()).close()
        # TLS 1.2: a CBC suite is refused, an ECDHE AEAD one accepted.
        for cbc in ("ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES256-SHA384", "AES128-GCM-SHA256"):
            with pytest.raises(ssl.SSLError):
                _handshake(https_port, SITE.domain, _tls_client(tls12_ciphers=cbc)).close()
        with _handshake(https_port, SITE.domain, _tls_client(tls12_ciphers="ECDHE-RSA-AES128-GCM-SHA256")) as tls:
            assert tls.version() == "TLSv1.2"
        # The domain's HTTPS answers (502: no upstream here) carry the policies, and the Server header no version.
        resp = fetch(Target(SITE.domain, "127.0.0.1", https_port=https_port, http_port=http_port), "/", verify=False)
        assert resp.status == 502
        assert resp.header("Content-Security-Policy") == n.DEFAULT_CONTENT_SECURITY_POLICY
        assert resp.header("Permissions-Policy") == n.DEFAULT_PERMISSIONS_POLICY
        assert resp.header("Server") == "nginx"


@pytest.mark.skipif(nginx_binary() is None, reason="no nginx binary")
def test_challenge_is_served_and_everything_else_redirected(tmp_path):
    """The FACTS.md trap, checked on a live nginx on loopback: the redirect must not swallow the challenge."""
    port = free_port()
    webroot = tmp_path / "webroot"
    (webroot / ".well-known" / "acme-challenge").mkdir(parents=True)
    (webroot / ".well-known" / "acme-challenge" / "tok123").write_text("tok123.thumbprint")
    site = n.NginxSite(domain=SITE.domain, frontend_port=3000, api_port=8000, webroot=str(webroot))
    text = n.render_site(site, tls=True, ipv6=False)
    parts = text.split("\nserver {")
    http_only = parts[0] + "\nserver {" + parts[2]  # the domain's :80 server
    http_only = http_only.replace("listen 80;", f"listen 127.0.0.1:{port};").replace("return 503;", "")
    with running_nginx(tmp_path, http_only, port):
        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        opener = urllib.request.build_opener(NoRedirect)
        headers = {"Host": SITE.domain}
        with opener.open(urllib.request.Request(f"http://127.0.0.1:{port}/.well-known/acme-challenge/tok123", headers=headers)) as r:
            assert r.status == 200 and r.read() == b"tok123.thumbprint"
        with pytest.raises(urllib.error.HTTPError) as redirect:
            opener.open(urllib.request.Request(f"http://127.0.0.1:{port}/app?x=1", headers=headers))
        assert redirect.value.code == 301
        assert redirect.value.headers["Location"] == f"https://{SITE.domain}/app?x=1"
        with pytest.raises(urllib.error.HTTPError) as missing:
            opener.open(urllib.request.Request(f"http://127.0.0.1:{port}/.well-known/acme-challenge/nope", headers=headers))
        assert missing.value.code == 404  # a missing token is a 404, not a redirect
