"""Tests de sécurité: the server as an attacker on the internet sees it.

From outside (the machine running the flow): a TCP connect scan of the ports
the stack uses plus commonly exposed ones, the TLS configuration (certificate
valid for the domain with a complete chain, days left, no protocol below TLS
1.2), the HTTP -> HTTPS redirect, security headers, and whether SSH offers
password authentication (asked the way any client asks: an auth "none"
attempt lists the methods the server accepts). From inside, one fact: the
mode of the application's ``.env``.

Each problem is a :class:`Finding` with a severity; any ``high`` finding fails
the step. A port is judged against environments.yaml: declared public ports
must answer, declared internal ports (n8n, Qdrant, the containers' own ports)
and any other scanned port must not.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import socket
import ssl
import warnings
from dataclasses import asdict, dataclass
from typing import Iterable

from technicia_deploy.commands.shell import fact_script, parse_sections, q
from technicia_deploy.config import Firewall

from .target import Target, fetch

HIGH, MEDIUM, LOW, INFO = "high", "medium", "low", "info"
SEVERITIES = (HIGH, MEDIUM, LOW, INFO)

# Commonly exposed services an attacker tries first; the stack's own ports are added from the configuration.
COMMON_PORTS = {
    21: "FTP", 23: "Telnet", 25: "SMTP", 53: "DNS", 110: "POP3", 111: "rpcbind", 135: "MS RPC", 139: "NetBIOS",
    143: "IMAP", 445: "SMB", 993: "IMAPS", 995: "POP3S", 2375: "Docker API", 2376: "Docker API (TLS)",
    3000: "dev server", 3306: "MySQL", 5432: "PostgreSQL", 5678: "n8n", 6333: "Qdrant API", 6334: "Qdrant gRPC",
    6379: "Redis", 8000: "API (container)", 8080: "front end (container)", 8443: "HTTPS alt", 9000: "admin UI",
    9090: "Prometheus", 9200: "Elasticsearch", 11211: "memcached", 27017: "MongoDB",
}
HSTS_MIN_AGE_S = 180 * 24 * 3600


@dataclass(frozen=True)
class Finding:
    severity: str
    check: str  # ports | tls | redirect | headers | ssh | env-file
    subject: str  # what it is about: "6333/tcp (Qdrant API)", the domain, a header...
    message: str

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity {self.severity!r} not in {SEVERITIES}")


@dataclass(frozen=True)
class PortState:
    port: int
    service: str
    expected: str  # public | internal | closed
    observed: str  # open | closed | filtered

    def as_row(self) -> dict:
        return asdict(self)


# --- ports -----------------------------------------------------------------------------------------

def expected_ports(firewall: Firewall, extra_internal: dict[int, str] | None = None) -> dict[int, tuple[str, str]]:
    """port -> (expected, service) for every TCP port to scan."""
    wanted: dict[int, tuple[str, str]] = {port: ("closed", name) for port, name in COMMON_PORTS.items()}
    for port, name in (extra_internal or {}).items():
        wanted[port] = ("internal", name)
    for rule in firewall.internal:
        if rule.protocol == "tcp":
            wanted[rule.port] = ("internal", rule.service)
    for rule in firewall.public:
        if rule.protocol == "tcp":
            wanted[rule.port] = ("public", rule.service)
    return dict(sorted(wanted.items()))


async def _probe(address: str, port: int, timeout: float, gate: asyncio.Semaphore) -> str:
    async with gate:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(address, port), timeout)
        except ConnectionRefusedError:
            return "closed"
        except (asyncio.TimeoutError, OSError):
            return "filtered"  # dropped silently, or unreachable: nothing answers either way
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
        return "open"


def scan(address: str, ports: Iterable[int], timeout: float = 1.5, parallel: int = 64) -> dict[int, str]:
    """TCP connect scan: port -> open | closed | filtered."""
    ports = list(ports)

    async def main() -> list[str]:
        gate = asyncio.Semaphore(parallel)
        return await asyncio.gather(*(_probe(address, port, timeout, gate) for port in ports))

    return dict(zip(ports, asyncio.run(main())))


def judge_ports(wanted: dict[int, tuple[str, str]], observed: dict[int, str]) -> tuple[list[PortState], list[Finding]]:
    states, findings = [], []
    for port, (expected, service) in wanted.items():
        seen = observed.get(port, "filtered")
        states.append(PortState(port, service, expected, seen))
        subject = f"{port}/tcp ({service})"
        if seen == "open" and expected == "internal":
            findings.append(Finding(HIGH, "ports", subject, f"port {port} ({service}) is reachable from outside; "
                                    "it must be internal only (publish it on 127.0.0.1 or block it in DOCKER-USER)"))
        elif seen == "open" and expected == "closed":
            findings.append(Finding(HIGH, "ports", subject, f"port {port} ({service}) is open to the internet and "
                                    "not declared public in environments.yaml"))
        elif seen != "open" and expected == "public":
            findings.append(Finding(MEDIUM, "ports", subject, f"declared public port {port} ({service}) does not answer ({seen})"))
    return states, findings


# --- TLS --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TlsFacts:
    verified: bool
    verify_error: str | None
    protocol: str | None
    not_after: dt.datetime | None
    days_left: int | None
    names: tuple[str, ...]
    issuer: str | None
    accepted_old: tuple[str, ...]  # protocols below TLS 1.2 the server accepted
    untested: tuple[str, ...]  # protocols this machine's OpenSSL cannot offer


def _handshake(target: Target, context: ssl.SSLContext, timeout: float) -> ssl.SSLSocket:
    sock = socket.create_connection((target.address, target.https_port), timeout)
    try:
        return context.wrap_socket(sock, server_hostname=target.domain)
    except BaseException:
        sock.close()
        raise


def _old_protocol_context(version: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("ALL:@SECLEVEL=0")  # or OpenSSL 3 refuses to even offer TLS 1.0/1.1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # offering them is the point of the probe
        context.minimum_version = version
        context.maximum_version = version
    return context


def inspect_tls(target: Target, timeout: float = 5.0) -> TlsFacts:
    from cryptography import x509

    verified, verify_error = True, None
    try:
        _handshake(target, target.ssl_context(), timeout).close()
    except ssl.SSLCertVerificationError as exc:
        verified, verify_error = False, exc.verify_message or str(exc)
    tls = _handshake(target, target.ssl_context(verify=False), timeout)
    try:
        protocol = tls.version()
        der = tls.getpeercert(binary_form=True)
    finally:
        tls.close()
    cert = x509.load_der_x509_certificate(der)
    try:
        names = tuple(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    not_after = cert.not_valid_after_utc
    days_left = (not_after - dt.datetime.now(dt.timezone.utc)).days
    accepted, untested = [], []
    for label, version in (("TLSv1", ssl.TLSVersion.TLSv1), ("TLSv1.1", ssl.TLSVersion.TLSv1_1)):
        try:
            _handshake(target, _old_protocol_context(version), timeout).close()
            accepted.append(label)
        except ssl.SSLError as exc:
            if "NO_PROTOCOLS_AVAILABLE" in str(exc).upper() or "NO PROTOCOLS AVAILABLE" in str(exc).upper():
                untested.append(label)
        except OSError:
            pass  # the server dropped the handshake: refused
    return TlsFacts(verified, verify_error, protocol, not_after, days_left, names, cert.issuer.rfc4514_string(),
                    tuple(accepted), tuple(untested))


def _name_matches(domain: str, names: Iterable[str]) -> bool:
    for name in names:
        if name == domain or (name.startswith("*.") and domain.split(".", 1)[-1] == name[2:]):
            return True
    return False


def judge_tls(domain: str, facts: TlsFacts, min_days_left: int) -> list[Finding]:
    findings = []
    if not facts.verified:
        hint = " (incomplete chain or untrusted issuer)" if "local issuer" in (facts.verify_error or "") else ""
        findings.append(Finding(HIGH, "tls", domain, f"certificate does not verify: {facts.verify_error}{hint}"))
    if not _name_matches(domain, facts.names):
        findings.append(Finding(HIGH, "tls", domain, f"certificate is not valid for {domain} (names: {', '.join(facts.names) or 'none'})"))
    if facts.days_left is not None and facts.days_left < min_days_left:
        what = "has expired" if facts.days_left < 0 else f"expires in {facts.days_left} day(s)"
        findings.append(Finding(HIGH, "tls", domain, f"certificate {what} (threshold {min_days_left} days: renewal is not working)"))
    for label in facts.accepted_old:
        findings.append(Finding(HIGH, "tls", label, f"server accepts {label}; only TLS 1.2 and 1.3 must be offered"))
    for label in facts.untested:
        findings.append(Finding(INFO, "tls", label, f"{label} not tested: this machine's OpenSSL cannot offer it"))
    return findings


# --- HTTP: redirect and headers ------------------------------------------------------------------------

def check_redirect(target: Target, timeout: float = 5.0) -> list[Finding]:
    try:
        resp = fetch(target, "/", scheme="http", timeout=timeout)
    except OSError as exc:
        return [Finding(MEDIUM, "redirect", f"http://{target.domain}/", f"plain HTTP does not answer ({exc}); "
                        "visitors typing the bare domain get an error instead of a redirect")]
    location = resp.header("location") or ""
    if resp.status in (301, 302, 307, 308) and location.startswith(f"https://{target.domain}"):
        return []
    return [Finding(HIGH, "redirect", f"http://{target.domain}/",
                    f"plain HTTP answers {resp.status}" + (f" to {location}" if location else "") + ", not a redirect to HTTPS")]


def check_headers(target: Target, timeout: float = 5.0) -> list[Finding]:
    resp = fetch(target, "/", timeout=timeout, verify=False)  # the TLS verdict is judge_tls's business
    findings = []
    hsts = resp.header("strict-transport-security") or ""
    match = re.search(r"max-age=(\d+)", hsts)
    if not match:
        findings.append(Finding(MEDIUM, "headers", "Strict-Transport-Security", "missing: browsers may be downgraded to HTTP"))
    elif int(match.group(1)) < HSTS_MIN_AGE_S:
        findings.append(Finding(LOW, "headers", "Strict-Transport-Security", f"max-age {match.group(1)} is below 180 days"))
    if (resp.header("x-content-type-options") or "").lower() != "nosniff":
        findings.append(Finding(LOW, "headers", "X-Content-Type-Options", "missing or not 'nosniff'"))
    if not resp.header("x-frame-options") and "frame-ancestors" not in (resp.header("content-security-policy") or ""):
        findings.append(Finding(LOW, "headers", "X-Frame-Options", "neither X-Frame-Options nor CSP frame-ancestors: clickjacking"))
    if not resp.header("referrer-policy"):
        findings.append(Finding(LOW, "headers", "Referrer-Policy", "missing"))
    server = resp.header("server") or ""
    if re.search(r"/\d", server):
        findings.append(Finding(LOW, "headers", "Server", f"discloses the software version ({server}); set server_tokens off"))
    return findings


# --- SSH ----------------------------------------------------------------------------------------------

def ssh_auth_methods(address: str, port: int = 22, timeout: float = 5.0) -> list[str] | None:
    """The authentication methods the server offers an unknown user (None if SSH does not answer)."""
    import paramiko

    try:
        sock = socket.create_connection((address, port), timeout)
    except OSError:
        return None
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=timeout)
        try:
            transport.auth_none("technicia-security-probe")
        except paramiko.BadAuthenticationType as exc:
            return list(exc.allowed_types)
        return ["none"]  # logged in without credentials
    except (paramiko.SSHException, OSError):
        return None
    finally:
        transport.close()


def judge_ssh(address: str, methods: list[str] | None, port: int = 22) -> list[Finding]:
    subject = f"ssh {address}:{port}"
    if methods is None:
        return [Finding(INFO, "ssh", subject, "SSH did not answer; password authentication could not be checked")]
    if "none" in methods:
        return [Finding(HIGH, "ssh", subject, "SSH accepts logins without any credentials")]
    weak = [m for m in methods if m in ("password", "keyboard-interactive")]
    if weak:
        return [Finding(HIGH, "ssh", subject, f"SSH offers {', '.join(weak)} authentication; only publickey must be accepted")]
    return []


# --- .env on the server ----------------------------------------------------------------------------------

def env_file_command(path: str) -> str:
    return fact_script([("env_file", f"stat -c '%a %U %G' {q(path)}")])


def judge_env_file(path: str, output: str) -> list[Finding]:
    section = parse_sections(output, ["env_file"])["env_file"]
    if not section.ok or not section.lines:
        return [Finding(MEDIUM, "env-file", path, "the API-key file is missing on the server")]
    mode_text, owner, group = (section.lines[0].split() + ["?", "?"])[:3]
    mode = int(mode_text, 8)
    if mode & 0o004:
        return [Finding(HIGH, "env-file", path, f"the API-key file is world-readable (mode {mode_text}, {owner}:{group})")]
    if mode & 0o002 or mode & 0o020:
        return [Finding(HIGH, "env-file", path, f"the API-key file is writable by others (mode {mode_text})")]
    return []


# --- verdict --------------------------------------------------------------------------------------------

def failed(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == HIGH]


def summary(findings: list[Finding]) -> str:
    counts = {s: sum(1 for f in findings if f.severity == s) for s in SEVERITIES}
    head = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no findings"
    high = failed(findings)
    return head + (": " + "; ".join(f.message for f in high) if high else "")


def table_rows(states: list[PortState], findings: list[Finding]) -> list[dict]:
    """The ``security-<env>`` artifact: one row per scanned port, then one per finding that is not about a port."""
    by_port = {}
    for f in findings:
        if f.check == "ports":
            by_port[int(f.subject.split("/")[0])] = f
    rows = []
    for state in states:
        f = by_port.get(state.port)
        rows.append({**state.as_row(), "severity": f.severity if f else "", "finding": f.message if f else ""})
    for f in findings:
        if f.check != "ports":
            rows.append({"port": "", "service": f.check, "expected": "", "observed": f.subject,
                         "severity": f.severity, "finding": f.message})
    return rows
