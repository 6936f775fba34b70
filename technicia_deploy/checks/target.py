"""What the post-deployment tests talk to: the environment's domain, at the address the world resolves it to.

Requests go to the resolved address with the domain as SNI and Host header, so
a check sees exactly what a visitor sees (the certificate nginx serves for the
name, the virtual host) even where the name resolves only through the zone's
own servers (the sandbox). Certificates are verified against the system store
plus, when the environment's issuer is not publicly trusted (the sandbox's
ACME server), that issuer's root.
"""

from __future__ import annotations

import functools
import http.client
import socket
import ssl
import time
from dataclasses import dataclass, field


# One context per trust store for the whole process: loading the system store costs tens of milliseconds
# of CPU per context, and a run's checks made one per request.
@functools.lru_cache(maxsize=8)
def _verified_context(extra_ca_pem: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if extra_ca_pem:
        context.load_verify_locations(cadata=extra_ca_pem)
    return context


@functools.lru_cache(maxsize=1)
def _unverified_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@dataclass(frozen=True)
class Target:
    domain: str
    address: str
    https_port: int = 443
    http_port: int = 80
    extra_ca_pem: str | None = field(default=None, repr=False)

    def ssl_context(self, *, verify: bool = True) -> ssl.SSLContext:
        """A client context (shared: callers must not change it; wrapping sockets from threads is safe)."""
        return _verified_context(self.extra_ca_pem) if verify else _unverified_context()

    def url(self, path: str = "/") -> str:
        return f"https://{self.domain}{'' if self.https_port == 443 else f':{self.https_port}'}{path}"


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    elapsed_ms: float

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class _DomainHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to an address, with the TLS name (SNI + certificate check) of the domain."""

    def __init__(self, address: str, port: int, domain: str, context: ssl.SSLContext, timeout: float):
        super().__init__(address, port, timeout=timeout, context=context)
        self._tls_name = domain
        self._tls_context = context

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self._tls_context.wrap_socket(sock, server_hostname=self._tls_name)


def fetch(target: Target, path: str = "/", *, scheme: str = "https", method: str = "GET",
          timeout: float = 10.0, max_body: int = 1 << 20, verify: bool = True) -> Response:
    """One request to the target; redirects are not followed (a check looks at each hop)."""
    if scheme == "https":
        conn: http.client.HTTPConnection = _DomainHTTPSConnection(
            target.address, target.https_port, target.domain, target.ssl_context(verify=verify), timeout)
    elif scheme == "http":
        conn = http.client.HTTPConnection(target.address, target.http_port, timeout=timeout)
    else:
        raise ValueError(f"scheme {scheme!r}: expected http or https")
    started = time.perf_counter()
    try:
        conn.request(method, path, headers={"Host": target.domain, "User-Agent": "technicia-deploy-checks",
                                            "Accept": "*/*", "Connection": "close"})
        resp = conn.getresponse()
        body = resp.read(max_body)
        elapsed = (time.perf_counter() - started) * 1000
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body, elapsed)
    finally:
        conn.close()


def resolve(domain: str, nameservers: list[str] | None = None) -> str:
    """The domain's IPv4 address as the zone's authoritative servers (if declared) or the system resolver give it."""
    if nameservers:
        from technicia_deploy import dns_check

        for server in (dns_check.Nameserver.parse(item) for item in nameservers):
            found = dns_check.answers(server, domain, "A")
            if found:
                return sorted(found)[0]
        raise LookupError(f"{domain}: no A record from the declared nameservers {', '.join(nameservers)}")
    try:
        infos = socket.getaddrinfo(domain, 443, socket.AF_INET, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise LookupError(f"{domain} does not resolve ({exc.strerror})") from None
    return infos[0][4][0]


def resolve6(domain: str, nameservers: list[str] | None = None) -> str | None:
    """The domain's IPv6 address (AAAA) as :func:`resolve` finds its IPv4, or None when it has none: a server
    reachable over IPv6 is scanned over IPv6 too."""
    if nameservers:
        from technicia_deploy import dns_check

        for server in (dns_check.Nameserver.parse(item) for item in nameservers):
            found = dns_check.answers(server, domain, "AAAA")
            if found:
                return sorted(found)[0]
        return None
    try:
        infos = socket.getaddrinfo(domain, 443, socket.AF_INET6, socket.SOCK_STREAM)
    except socket.gaierror:
        return None
    return infos[0][4][0] if infos else None
