"""nginx TLS front: two-phase site, challenge path before the redirect, checked before reload."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from technicia_deploy.commands import nginx as n
from technicia_deploy.commands.shell import APT_GET, render_sections

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
        "ipv6": ("yes\n", 0),
    }
    values.update(overrides)
    return n.parse_facts(render_sections(values))


def serving(tls: bool, **overrides) -> n.NginxFacts:
    digest = n.WantedFile(n.SITE_AVAILABLE, n.render_site(SITE, tls=tls)).sha256
    values = {
        "nginx": ("1.22.1-9+deb12u1\n", 0),
        "active": ("active\n", 0),
        "site": (f"644 root root\n{digest}\n", 0),
        "link": (f"{n.SITE_AVAILABLE}\n", 0),
        "webroot": ("directory 755 root\n", 0),
        "cert": ("present\n", 0) if tls else ("", 1),
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
    assert "listen 443" not in text and "return 503;" in text
    assert "location ^~ /.well-known/acme-challenge/ {\n        root /var/www/letsencrypt;" in text


def test_phase_2_site():
    text = n.render_site(SITE, tls=True)
    http, https = text.split("\nserver {")[1:]
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


def test_fact_script_is_valid_and_runs_read_only_here(bash_syntax):
    bash_syntax(n.fact_command(SITE))
    result = subprocess.run(["bash", "-c", n.fact_command(SITE)], capture_output=True, text=True)
    assert isinstance(n.parse_facts(result.stdout), n.NginxFacts)


# --- With a real nginx binary (skipped when none is on PATH or in TECHNICIA_NGINX) ---

def _nginx_binary() -> str | None:
    return os.environ.get("TECHNICIA_NGINX") or shutil.which("nginx")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _main_conf(tmp_path, site_text: str) -> str:
    (tmp_path / "site.conf").write_text(site_text)
    temp = " ".join(f"{kind}_temp_path {tmp_path}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    main = tmp_path / "nginx.conf"
    # Workers run as 'nobody' under root and could not read pytest's 0700 temporary directory.
    user = "user root;\n" if os.geteuid() == 0 else ""
    main.write_text(
        f"{user}pid {tmp_path}/nginx.pid;\nerror_log stderr;\ndaemon off;\nevents {{}}\n"
        f"http {{\naccess_log off;\n{temp}\ninclude {tmp_path}/site.conf;\n}}\n"
    )
    return str(main)


@pytest.mark.skipif(_nginx_binary() is None, reason="no nginx binary")
@pytest.mark.parametrize("tls", [False, True])
def test_rendered_site_passes_nginx_t(tmp_path, tls):
    site = SITE
    text = n.render_site(site, tls=tls)
    if tls:
        live = tmp_path / "live"
        live.mkdir()
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={site.domain}",
             "-keyout", str(live / "privkey.pem"), "-out", str(live / "fullchain.pem")],
            check=True, capture_output=True,
        )
        text = text.replace(f"/etc/letsencrypt/live/{site.domain}", str(live))
    main = _main_conf(tmp_path, text)
    result = subprocess.run([_nginx_binary(), "-e", "stderr", "-p", str(tmp_path), "-t", "-c", main], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(_nginx_binary() is None, reason="no nginx binary")
def test_challenge_is_served_and_everything_else_redirected(tmp_path):
    """The FACTS.md trap, checked on a live nginx on loopback: the redirect must not swallow the challenge."""
    port = _free_port()
    webroot = tmp_path / "webroot"
    (webroot / ".well-known" / "acme-challenge").mkdir(parents=True)
    (webroot / ".well-known" / "acme-challenge" / "tok123").write_text("tok123.thumbprint")
    site = n.NginxSite(domain=SITE.domain, frontend_port=3000, api_port=8000, webroot=str(webroot))
    text = n.render_site(site, tls=True, ipv6=False)
    http_only = text.split("\nserver {")[0] + "\nserver {" + text.split("\nserver {")[1]  # the :80 server
    http_only = http_only.replace("listen 80;", f"listen 127.0.0.1:{port};").replace("return 503;", "")
    main = _main_conf(tmp_path, http_only)
    proc = subprocess.Popen([_nginx_binary(), "-e", "stderr", "-p", str(tmp_path), "-c", main], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, "nginx did not listen"
                time.sleep(0.02)

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
    finally:
        proc.terminate()
        proc.wait(timeout=10)
