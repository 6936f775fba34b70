"""Real servers on 127.0.0.1 for the post-deployment checks: a CA chain, HTTPS/HTTP servers, an SSH server."""

from __future__ import annotations

import datetime as dt
import http.server
import socket
import ssl
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from technicia_deploy.checks.target import Target

DOMAIN = "test-technicia.exemple.test"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key, issuer: str, issuer_key, *, ca: bool, days: int = 90, names: tuple[str, ...] = ()):
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               # Key identifiers, as any real CA sets them: strict RFC 5280 validators (sslyze's) require them.
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@dataclass
class Pki:
    """Root -> intermediate -> leaf, the shape an ACME CA issues (pebble, Let's Encrypt)."""

    directory: Path
    root_pem: str = ""
    _root: tuple = ()
    _intermediate: tuple = ()

    def __post_init__(self) -> None:
        root_key, inter_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
        root = _cert("Test Root", root_key, "Test Root", root_key, ca=True, days=3650)
        inter = _cert("Test Intermediate", inter_key, "Test Root", root_key, ca=True, days=1825)
        self._root, self._intermediate = (root, root_key), (inter, inter_key)
        self.root_pem = _pem(root)

    def leaf(self, names: tuple[str, ...] = (DOMAIN,), days: int = 90, full_chain: bool = True) -> tuple[Path, Path]:
        """(cert file, key file) for a server; ``full_chain=False`` serves the leaf alone (a broken nginx config)."""
        key = ec.generate_private_key(ec.SECP256R1())
        inter, inter_key = self._intermediate
        leaf = _cert(names[0], key, "Test Intermediate", inter_key, ca=False, days=days, names=names)
        tag = f"{names[0]}-{days}-{full_chain}"
        cert_path, key_path = self.directory / f"{tag}.crt", self.directory / f"{tag}.key"
        cert_path.write_text(_pem(leaf) + (_pem(inter) if full_chain else ""))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return cert_path, key_path


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as nginx
    routes: dict[str, Route] = {}

    def _route(self) -> Route:
        return self.routes.get(self.path) or self.routes.get("*") or Route(404, b"not found")

    def version_string(self) -> str:
        # http.server would announce "BaseHTTP/0.6 Python/3.x"; servers here say what the route says, or "nginx".
        return self._route().headers.get("Server", "nginx")

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        route = self._route()
        self.send_response(route.status)
        for name, value in route.headers.items():
            if name != "Server":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(route.body)))
        self.end_headers()
        self.wfile.write(route.body)

    def log_message(self, *args) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


@dataclass
class RunningServer:
    port: int
    server: _Server

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve(routes: dict[str, Route], tls: ssl.SSLContext | None = None) -> RunningServer:
    handler = type("Handler", (_Handler,), {"routes": routes})
    server = _Server(("127.0.0.1", 0), handler)
    if tls:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return RunningServer(server.server_address[1], server)


def server_tls(cert: Path, key: Path, *, oldest: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    if oldest < ssl.TLSVersion.TLSv1_2:
        context.set_ciphers("ALL:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0 on purpose: the server a check must catch
        context.minimum_version = oldest
    return context


@pytest.fixture
def servers():
    """Start servers for one test; all stopped at its end."""
    started: list[RunningServer] = []

    def start(routes: dict[str, Route], tls: ssl.SSLContext | None = None) -> RunningServer:
        running = serve(routes, tls)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


def closed_port() -> int:
    """A loopback port nobody listens on (the kernel's pick, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def target_for(pki: Pki, https_port: int, http_port: int | None = None) -> Target:
    return Target(DOMAIN, "127.0.0.1", https_port=https_port, http_port=http_port or closed_port(), extra_ca_pem=pki.root_pem)


NGINX_HEADERS = {
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "SAMEORIGIN",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'self'",
    "Permissions-Policy": "camera=(), microphone=()",
}
PAGE = b"<!doctype html><html><head><title>TechnicIA</title></head><body>ok</body></html>"
