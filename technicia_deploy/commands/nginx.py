"""nginx as the TLS front for the environment's domain.

Two phases, because the certificate is obtained *through* this nginx
(HTTP-01, webroot):

1. no certificate yet: only the :80 server, which serves
   /.well-known/acme-challenge/ from the webroot and answers 503 elsewhere;
2. certificate present: the :80 server still serves the challenge path
   (renewals need it) and redirects everything else to https; the :443 server
   terminates TLS with Mozilla's "intermediate" profile (TLS 1.2 with ECDHE
   AEAD suites only, and TLS 1.3), staples OCSP when the certificate names a
   responder, sends the security headers (CSP and Permissions-Policy from the
   environment's ``http`` settings) and proxies / to the front end and /api/ to
   the API, both on 127.0.0.1.

In both phases a catch-all ``default_server`` on :80 and :443 closes the
connection (444) for any other Host, the bare IP included, and refuses the TLS
handshake for any other SNI (``ssl_reject_handshake``, nginx >= 1.19.4: no
certificate needed); ``server_tokens off`` everywhere.

The challenge location is written by us and comes before the redirect; we
never run ``certbot --nginx --redirect``, whose server-level redirect swallows
the challenge path so that later webroot renewals get 404.

Facts (one round trip): nginx installed and active, our site file, the
sites-enabled link, Debian's default site, the webroot, whether the
certificate files exist, the OCSP responder the certificate names (if any), and
whether the kernel has IPv6 at all (nginx refuses to start on ``listen [::]:80``
without it).

The lead's task runs: nginx operations -> certbot operations -> nginx facts
again -> nginx operations (which then switch to phase 2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..config import DEFAULT_CONTENT_SECURITY_POLICY, DEFAULT_PERMISSIONS_POLICY, header_value_problem
from .files import FileFact, WantedFile, ensure_file, file_fact_body, parse_file_section
from .shell import apt_install, dpkg_installed_section, fact_script, parse_sections, q

SITE_AVAILABLE = "/etc/nginx/sites-available/technicia.conf"
SITE_ENABLED = "/etc/nginx/sites-enabled/technicia.conf"
DEFAULT_SITE_ENABLED = "/etc/nginx/sites-enabled/default"
LIVE_DIR = "/etc/letsencrypt/live"
DEFAULT_WEBROOT = "/var/www/letsencrypt"
SECTIONS = ("nginx", "active", "site", "link", "default_site", "webroot", "cert", "ocsp", "ipv6")

# Mozilla's "intermediate" profile (ssl-config.mozilla.org, guidelines 5.7) for TLS 1.2: ECDHE key exchange with
# AEAD ciphers only (its DHE suites are left out: they need a dhparam file and no current client lacks ECDHE).
# TLS 1.3's suites are all AEAD and OpenSSL's defaults match the profile. One departure: Mozilla leaves the choice
# among these (all strong) suites to the client (ssl_prefer_server_ciphers off), which testssl.sh rates HIGH ("NOT a
# cipher order configured"); the server's order, this list's, costs nothing and sslyze's check of the profile
# does not look at it.
MOZILLA_INTERMEDIATE_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)
MOZILLA_INTERMEDIATE_CURVES = "X25519:prime256v1:secp384r1"

_DOMAIN = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
_PATH = re.compile(r"/[A-Za-z0-9._/-]*")


@dataclass(frozen=True)
class NginxSite:
    domain: str
    frontend_port: int
    api_port: int
    webroot: str = DEFAULT_WEBROOT
    client_max_body_size: str = "50m"  # documents are uploaded for analysis
    content_security_policy: str = DEFAULT_CONTENT_SECURITY_POLICY
    permissions_policy: str = DEFAULT_PERMISSIONS_POLICY
    ocsp_stapling: str = "auto"  # auto: when the certificate names an OCSP responder | off

    def __post_init__(self) -> None:
        if not _DOMAIN.fullmatch(self.domain):
            raise ValueError(f"domain {self.domain!r} is not a valid lower-case host name")
        for name in ("frontend_port", "api_port"):
            port = getattr(self, name)
            if not 1 <= port <= 65535:
                raise ValueError(f"{name} {port} is not a TCP port")
        if not _PATH.fullmatch(self.webroot) or "//" in self.webroot:
            raise ValueError(f"webroot {self.webroot!r} must be a plain absolute path")
        if not re.fullmatch(r"\d+[kKmMgG]?", self.client_max_body_size):
            raise ValueError(f"client_max_body_size {self.client_max_body_size!r} is not an nginx size")
        for name in ("content_security_policy", "permissions_policy"):
            problem = header_value_problem(getattr(self, name))
            if problem:
                raise ValueError(f"{name} {problem}")
        if self.ocsp_stapling not in ("auto", "off"):
            raise ValueError(f"ocsp_stapling {self.ocsp_stapling!r}: expected 'auto' or 'off'")

    @property
    def fullchain(self) -> str:
        return f"{LIVE_DIR}/{self.domain}/fullchain.pem"

    @property
    def privkey(self) -> str:
        return f"{LIVE_DIR}/{self.domain}/privkey.pem"

    @property
    def chain(self) -> str:
        return f"{LIVE_DIR}/{self.domain}/chain.pem"


@dataclass(frozen=True)
class NginxFacts:
    installed: bool
    active: bool
    site: FileFact
    link_target: str | None
    default_site_enabled: bool
    webroot_ok: bool  # exists, mode 755, owned by root
    cert_present: bool
    ipv6: bool
    ocsp_responder: str | None = None  # the OCSP URL in the certificate, None: the CA offers none


def fact_command(site: NginxSite) -> str:
    return fact_script([
        ("nginx", dpkg_installed_section("nginx")),
        ("active", "systemctl is-active nginx"),
        ("site", file_fact_body(SITE_AVAILABLE)),
        ("link", f"readlink {SITE_ENABLED}"),
        ("default_site", f"if [ -e {DEFAULT_SITE_ENABLED} ] || [ -L {DEFAULT_SITE_ENABLED} ]; then echo present; fi"),
        ("webroot", f"stat -c '%F %a %U' {q(site.webroot)}"),
        ("cert", f"[ -s {q(site.fullchain)} ] && [ -s {q(site.privkey)} ] && echo present"),
        ("ocsp", f"openssl x509 -noout -ocsp_uri -in {q(site.fullchain)}"),
        ("ipv6", "[ -e /proc/net/if_inet6 ] && echo yes"),
    ])


def parse_facts(output: str) -> NginxFacts:
    s = parse_sections(output, SECTIONS)
    return NginxFacts(
        installed=s["nginx"].ok,
        active=s["active"].lines[:1] == ["active"],
        site=parse_file_section(SITE_AVAILABLE, s["site"]),
        link_target=s["link"].lines[0].strip() if s["link"].ok and s["link"].lines else None,
        default_site_enabled=s["default_site"].lines == ["present"],
        webroot_ok=s["webroot"].ok and s["webroot"].lines == ["directory 755 root"],
        cert_present=s["cert"].ok and s["cert"].lines == ["present"],
        ipv6=s["ipv6"].ok and s["ipv6"].lines == ["yes"],
        ocsp_responder=next((line.strip() for line in s["ocsp"].lines if line.strip().startswith("http")), None)
        if s["ocsp"].ok else None,
    )


_PROXY_HEADERS = """\
    proxy_http_version 1.1;
    proxy_set_header Host $host;
    proxy_set_header X-Real-IP $remote_addr;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_set_header Upgrade $http_upgrade;
    proxy_set_header Connection $technicia_connection_upgrade;
"""


# In both :443 servers. The catch-all is the default server, whose settings OpenSSL starts every handshake with
# (the key-exchange groups are fixed before SNI selects our server): without them there, the http-level defaults of
# Debian's nginx.conf (TLS 1.0/1.1 on, every curve) would apply.
_TLS_PROFILE = f"""\
    # Mozilla intermediate (see MOZILLA_INTERMEDIATE_CIPHERS).
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers {MOZILLA_INTERMEDIATE_CIPHERS};
    ssl_ecdh_curve {MOZILLA_INTERMEDIATE_CURVES};
    ssl_prefer_server_ciphers on;
    ssl_session_timeout 1d;
    ssl_session_cache shared:technicia_tls:10m;
    ssl_session_tickets off;
"""


def _header_value(value: str) -> str:
    """``value`` inside an nginx double-quoted string (Permissions-Policy origins are quoted)."""
    return value.replace('"', '\\"')


def staples_ocsp(site: NginxSite, ocsp_responder: str | None) -> bool:
    """Stapling only where the CA runs a responder: without one nginx has nothing to staple and warns at each reload."""
    return site.ocsp_stapling == "auto" and ocsp_responder is not None


def render_site(site: NginxSite, *, tls: bool, ipv6: bool = True, ocsp_responder: str | None = None) -> str:
    """The site file. ``tls=False``: phase 1 (:80 only, for the first HTTP-01 challenge)."""
    def listen(port: str) -> str:
        lines = f"    listen {port};\n"
        return lines + (f"    listen [::]:{port};\n" if ipv6 else "")

    http_fallback = f"return 301 https://{site.domain}$request_uri;" if tls else "return 503;"
    text = f"""\
# Managed by technicia-deploy: edits are overwritten.
map $http_upgrade $technicia_connection_upgrade {{
    default upgrade;
    ''      close;
}}

# Catch-all: a request for the bare IP or any other Host gets nothing (444 closes the connection), and a TLS
# handshake for any other name is refused, so no certificate is needed here and none is disclosed.
server {{
{listen("80 default_server")}{listen("443 ssl default_server")}    server_name _;
    server_tokens off;
    ssl_reject_handshake on;
{_TLS_PROFILE}    return 444;
}}

server {{
{listen("80")}    server_name {site.domain};
    server_tokens off;

    # ACME HTTP-01 challenges (certbot --webroot). Must stay ahead of the redirect.
    location ^~ /.well-known/acme-challenge/ {{
        root {site.webroot};
        default_type text/plain;
        try_files $uri =404;
    }}

    location / {{
        {http_fallback}
    }}
}}
"""
    if not tls:
        return text
    stapling = (f"""
    ssl_stapling on;
    ssl_stapling_verify on;
    ssl_trusted_certificate {site.chain};
""" if staples_ocsp(site, ocsp_responder) else "")
    return text + f"""
server {{
{listen("443 ssl http2")}    server_name {site.domain};
    server_tokens off;

    ssl_certificate {site.fullchain};
    ssl_certificate_key {site.privkey};
{_TLS_PROFILE}{stapling}
    add_header Strict-Transport-Security "max-age=63072000; includeSubDomains" always;
    add_header X-Content-Type-Options "nosniff" always;
    add_header X-Frame-Options "SAMEORIGIN" always;
    add_header Referrer-Policy "strict-origin-when-cross-origin" always;
    add_header Content-Security-Policy "{_header_value(site.content_security_policy)}" always;
    add_header Permissions-Policy "{_header_value(site.permissions_policy)}" always;
    # BREACH: a compressed HTTPS answer that reflects input next to a secret leaks it by its length (Debian's
    # nginx.conf turns gzip on for every server).
    gzip off;

    client_max_body_size {site.client_max_body_size};

{_PROXY_HEADERS}
    location /api/ {{
        proxy_pass http://127.0.0.1:{site.api_port};
        proxy_read_timeout 300s;
    }}

    location / {{
        proxy_pass http://127.0.0.1:{site.frontend_port};
    }}
}}
"""


# Validate the new site on its own before it replaces the old one: a minimal
# main config that includes only it. Then the real 'nginx -t' once installed.
ISOLATED_CHECK = (
    "printf 'events {}\\nhttp {\\ninclude /etc/nginx/mime.types;\\ninclude %s;\\n}\\n' {tmp} > {tmp}.main; "
    "if ! nginx -t -q -c {tmp}.main; then rm -f {tmp}.main; exit 1; fi; rm -f {tmp}.main"
)
RELOAD = "systemctl reload-or-restart nginx"  # starts it if the package left it stopped


def operations(facts: NginxFacts, site: NginxSite) -> list[str]:
    cmds: list[str] = []
    if not facts.installed:
        cmds.append(apt_install(["nginx"]))
    if not facts.webroot_ok:
        w = q(site.webroot)
        cmds.append(f"mkdir -p {w} && chown root:root {w} && chmod 755 {w}")

    linked = facts.link_target == SITE_AVAILABLE
    wanted = WantedFile(SITE_AVAILABLE, render_site(site, tls=facts.cert_present, ipv6=facts.ipv6,
                                                    ocsp_responder=facts.ocsp_responder))
    cmds += ensure_file(
        facts.site,
        wanted,
        check=ISOLATED_CHECK,
        # Not yet linked: nginx does not read the file, the link command below tests and reloads.
        check_installed="nginx -t" if linked else None,
        then=RELOAD if linked else None,
    )
    if not linked or facts.default_site_enabled:
        # Debian's default site answers any Host; ours is the only one served.
        cmds.append(
            f"rm -f {DEFAULT_SITE_ENABLED} && ln -sfn {SITE_AVAILABLE} {SITE_ENABLED} && "
            f"if nginx -t; then {RELOAD}; else rm -f {SITE_ENABLED}; exit 1; fi"
        )
    if not facts.active:
        cmds.append("systemctl enable --now nginx")
    return cmds
