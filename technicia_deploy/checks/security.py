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
import ipaddress
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
    family: str = "IPv4"  # the address family it was scanned over: IPv4 | IPv6

    def as_row(self) -> dict:
        return asdict(self)


IPV6_SUFFIX = " over IPv6"


def port_subject(port: int, service: str, family: str = "IPv4") -> str:
    """A port finding's subject: "5678/tcp (n8n)", "5678/tcp (n8n) over IPv6"."""
    return f"{port}/tcp ({service})" + (IPV6_SUFFIX if family == "IPv6" else "")


# --- ports -----------------------------------------------------------------------------------------

def expected_ports(firewall: Firewall, extra_internal: dict[int, str] | None = None,
                   exposed: Iterable["Exposed"] = ()) -> dict[int, tuple[str, str]]:
    """port -> (expected, service) for every TCP port to scan: the common ones, the declared ones, and every port
    the server itself says it exposes (so a new compose service published on 0.0.0.0 is scanned too)."""
    wanted: dict[int, tuple[str, str]] = {port: ("closed", name) for port, name in COMMON_PORTS.items()}
    for item in exposed:
        if item.public:
            wanted[item.port] = ("closed", item.source)
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


def judge_ports(wanted: dict[int, tuple[str, str]], observed: dict[int, str],
                family: str = "IPv4") -> tuple[list[PortState], list[Finding]]:
    """Each scanned port against what environments.yaml wants; ``family`` "IPv6" for the scan of the AAAA address
    (the same ports must hold there: ufw and Docker each have an IPv6 side of their own)."""
    states, findings = [], []
    over = IPV6_SUFFIX if family == "IPv6" else ""
    for port, (expected, service) in wanted.items():
        seen = observed.get(port, "filtered")
        states.append(PortState(port, service, expected, seen, family))
        subject = port_subject(port, service, family)
        if seen == "open" and expected == "internal":
            findings.append(Finding(HIGH, "ports", subject, f"port {port} ({service}) is reachable from outside{over}; "
                                    "it must be internal only (publish it on 127.0.0.1 or block it in DOCKER-USER)"))
        elif seen == "open" and expected == "closed":
            findings.append(Finding(HIGH, "ports", subject, f"port {port} ({service}) is open to the internet{over} "
                                    "and not declared public in environments.yaml"))
        elif seen != "open" and expected == "public":
            findings.append(Finding(MEDIUM, "ports", subject,
                                    f"declared public port {port} ({service}) does not answer{over} ({seen})"))
    return states, findings


# --- what the server exposes, read over SSH ------------------------------------------------------------

@dataclass(frozen=True)
class Exposed:
    """A TCP port the server offers: published by a container (Docker bypasses ufw) or a listening socket."""

    port: int
    address: str  # the address it is bound to ('0.0.0.0', '::', '127.0.0.1', ...)
    source: str  # "container NAME" | "NAME (process)"
    docker: bool

    @property
    def public(self) -> bool:
        """Bound to every interface or to a non-loopback address: reachable unless a firewall drops it."""
        if self.address in ("", "*", "0.0.0.0", "::"):
            return True
        try:
            return not ipaddress.ip_address(self.address).is_loopback
        except ValueError:
            return True


def exposure_command() -> str:
    """Docker's published ports and the listening TCP sockets (run with sudo: ss names processes only for root)."""
    return fact_script([
        ("docker", "docker ps --format '{{.Names}}\t{{.Ports}}'"),
        ("sockets", "ss -Htlnp"),
    ])


def _host_port(text: str) -> tuple[str, int] | None:
    host, _, port = text.rpartition(":")
    if not port.isdigit():
        return None
    return host.strip("[]").split("%")[0], int(port)


def parse_exposure(output: str) -> list[Exposed]:
    sections = parse_sections(output, ["docker", "sockets"])
    found: list[Exposed] = []
    published: set[int] = set()
    for line in sections["docker"].lines if sections["docker"].ok else []:
        name, _, ports = line.partition("\t")
        for entry in ports.split(","):
            # '0.0.0.0:9000->80/tcp', ':::9000->80/tcp', '0.0.0.0:9000-9001->9000-9001/tcp'; '80/tcp' is not published.
            left, arrow, right = entry.strip().partition("->")
            if not arrow or not right.endswith("/tcp"):
                continue
            host, _, span = left.rpartition(":")
            first, _, last = span.partition("-")
            if not first.isdigit() or (last and not last.isdigit()):
                continue
            for port in range(int(first), int(last or first) + 1):
                published.add(port)
                found.append(Exposed(port, host.strip("[]"), f"container {name.strip()}", True))
    for line in sections["sockets"].lines if sections["sockets"].ok else []:
        fields = line.split()
        if len(fields) < 5 or fields[0] != "LISTEN":
            continue
        local = _host_port(fields[3])
        if local is None or local[1] in published:  # docker-proxy's own socket: the container says more
            continue
        process = re.search(r'users:\(\("([^"]+)"', line)
        found.append(Exposed(local[1], local[0], f"{process.group(1)} (process)" if process else "listening socket", False))
    return found


def judge_exposure(exposed: Iterable[Exposed], wanted: dict[int, tuple[str, str]],
                   observed: dict[int, str]) -> list[Finding]:
    """What the server exposes on every interface but environments.yaml does not declare.

    A port that answers from outside is already a high finding of :func:`judge_ports`; one that does not answer
    is still high when a container publishes it (only the DOCKER-USER rule keeps it in: Docker bypasses ufw), and low
    for a plain listening socket (ufw's deny keeps it in)."""
    findings, seen = [], set()
    for item in exposed:
        expected = wanted.get(item.port, ("closed", ""))[0]
        if not item.public or item.port in seen or expected in ("public", "internal") or observed.get(item.port) == "open":
            continue
        seen.add(item.port)
        subject = f"{item.port}/tcp ({item.source})"
        if item.docker:
            findings.append(Finding(HIGH, "ports", subject, f"port {item.port} is published on {item.address or '*'} by "
                                    f"{item.source} and declared nowhere in environments.yaml; only the firewall's "
                                    "DOCKER-USER rule keeps it from the internet: publish it on 127.0.0.1 or declare it"))
        else:
            findings.append(Finding(LOW, "ports", subject, f"port {item.port} ({item.source}) listens on "
                                    f"{item.address or '*'}, undeclared; ufw keeps it from the internet"))
    return findings


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


# --- TLS against Mozilla's "intermediate" profile (sslyze) ----------------------------------------------------

# sslyze's issue keys (mozilla_tls_profile.tls_config_checker) -> severity. A TLS 1.2 suite outside the profile is
# judged suite by suite below (CBC = high); anything not listed here is medium.
PROFILE_SEVERITY = {
    "tls_versions": HIGH, "certificate_path_validation": HIGH,
    "tls_vulnerability_heartbleed": HIGH, "tls_vulnerability_ccs_injection": HIGH, "tls_vulnerability_robot": HIGH,
    "tls_vulnerability_compression": HIGH, "tls_vulnerability_renegotiation": HIGH,
    "tls_vulnerability_fallback_scsv": MEDIUM, "ciphersuites": MEDIUM, "ecdh_param_size": MEDIUM, "dh_param_size": MEDIUM,
    "tls_vulnerability_extended_master_secret": LOW, "tls_curves": LOW,
    # Mozilla wants at most 366 days; a CA's policy, not the server's (pebble issues for 5 years).
    "maximum_certificate_lifespan": LOW,
}


@dataclass(frozen=True)
class TlsProfileScan:
    """What sslyze found: Mozilla's issues by key, and the TLS 1.2 suites the server accepted (IANA names)."""

    issues: dict[str, str]
    tls12_suites: tuple[str, ...]
    allowed_tls12_suites: frozenset[str]
    error: str | None = None  # the scan could not complete


def scan_tls_profile(target: Target, timeout: float = 10.0) -> TlsProfileScan:
    """sslyze's scan of ``target`` (SNI = the domain, at the resolved address), checked against Mozilla intermediate."""
    import tempfile
    from pathlib import Path

    from sslyze import (CertificateInfoExtraArgument, ScanCommandsExtraArguments, Scanner, ServerNetworkConfiguration,
                        ServerNetworkLocation, ServerScanRequest, ServerScanStatusEnum)
    from sslyze.mozilla_tls_profile.tls_config_checker import (SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
                                                               MozillaTlsConfiguration, ServerNotCompliantWithTlsConfiguration,
                                                               ServerScanResultIncomplete, TlsConfigurationEnum,
                                                               check_server_against_tls_configuration)

    profile = MozillaTlsConfiguration.get(TlsConfigurationEnum.MOZILLA_INTERMEDIATE)
    allowed = frozenset(profile.ciphers.iana)
    with tempfile.TemporaryDirectory(prefix="technicia-sslyze-") as scratch:
        extra = ScanCommandsExtraArguments()
        if target.extra_ca_pem:  # the environment's own issuer (the sandbox's pebble) is the trust anchor
            ca_file = Path(scratch) / "issuer.pem"
            ca_file.write_text(target.extra_ca_pem)
            extra = ScanCommandsExtraArguments(certificate_info=CertificateInfoExtraArgument(custom_ca_file=ca_file))
        request = ServerScanRequest(
            server_location=ServerNetworkLocation(hostname=target.domain, port=target.https_port, ip_address=target.address),
            network_configuration=ServerNetworkConfiguration(tls_server_name_indication=target.domain,
                                                             network_timeout=int(timeout), network_max_retries=1),
            scan_commands=set(SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER), scan_commands_extra_arguments=extra)
        scanner = Scanner()
        scanner.queue_scans([request])
        [result] = list(scanner.get_results())
    if result.scan_status != ServerScanStatusEnum.COMPLETED:
        trace = result.connectivity_error_trace
        return TlsProfileScan({}, (), allowed, error=str(trace).strip().splitlines()[-1] if trace else result.scan_status.name)
    tls12 = result.scan_result.tls_1_2_cipher_suites.result
    suites = tuple(sorted(s.cipher_suite.name for s in tls12.accepted_cipher_suites)) if tls12 else ()
    try:
        check_server_against_tls_configuration(result, profile)
    except ServerNotCompliantWithTlsConfiguration as exc:
        return TlsProfileScan(dict(exc.issues), suites, allowed)
    except ServerScanResultIncomplete as exc:
        return TlsProfileScan({}, suites, allowed, error=str(exc))
    return TlsProfileScan({}, suites, allowed)


def judge_tls_profile(domain: str, scan: TlsProfileScan) -> list[Finding]:
    """Each departure from Mozilla intermediate, with its severity: a CBC (or other non-AEAD) suite is high."""
    if scan.error:
        return [Finding(MEDIUM, "tls-profile", domain, f"the TLS profile scan did not complete ({scan.error})")]
    findings = []
    for suite in scan.tls12_suites:
        if suite in scan.allowed_tls12_suites:
            continue
        weak = "_CBC_" in suite or not any(aead in suite for aead in ("_GCM_", "_CHACHA20_POLY1305"))
        findings.append(Finding(HIGH if weak else MEDIUM, "tls-profile", suite,
                                f"TLS 1.2 suite {suite} is offered: " + ("CBC/non-AEAD, " if weak else "")
                                + "not in Mozilla's intermediate profile"))
    for key, message in sorted(scan.issues.items()):
        if key == "ciphers":
            continue  # judged suite by suite above
        findings.append(Finding(PROFILE_SEVERITY.get(key, MEDIUM), "tls-profile", key, f"Mozilla intermediate: {message}"))
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
    if not resp.header("content-security-policy"):
        findings.append(Finding(MEDIUM, "headers", "Content-Security-Policy", "missing: injected scripts run unrestricted"))
    if not resp.header("permissions-policy"):
        findings.append(Finding(LOW, "headers", "Permissions-Policy", "missing: browser features are not restricted"))
    server = resp.header("server") or ""
    if re.search(r"/\d", server):
        findings.append(Finding(LOW, "headers", "Server", f"discloses the software version ({server}); set server_tokens off"))
    return findings


def check_catch_all(target: Target, timeout: float = 5.0) -> list[Finding]:
    """Requests for the bare IP or another Host get nothing (nginx's catch-all answers 444: it closes the
    connection), and a TLS handshake for another name is refused (no certificate shown)."""
    import http.client

    findings = []
    for host in (target.address, "unknown-host.invalid"):
        conn = http.client.HTTPConnection(target.address, target.http_port, timeout=timeout)
        try:
            conn.request("GET", "/", headers={"Host": host, "User-Agent": "technicia-deploy-checks"})
            status = conn.getresponse().status
        except (http.client.RemoteDisconnected, ConnectionResetError):
            continue
        except OSError:
            continue  # plain HTTP does not answer at all: check_redirect's finding
        finally:
            conn.close()
        findings.append(Finding(MEDIUM, "catch-all", f"Host: {host}",
                                f"plain HTTP for Host {host} answers {status}: no catch-all default_server "
                                "(the bare IP or any name pointed at the server gets the site)"))
    for sni in (None, "unknown-host.invalid"):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        try:
            sock = socket.create_connection((target.address, target.https_port), timeout)
        except OSError:
            continue
        try:
            context.wrap_socket(sock, server_hostname=sni).close()
        except (ssl.SSLError, OSError):
            continue
        finally:
            sock.close()
        findings.append(Finding(MEDIUM, "catch-all", f"SNI {sni or '(none)'}",
                                f"a TLS handshake {'without SNI' if sni is None else f'for {sni}'} succeeds: the "
                                "certificate is shown to scanners of the bare IP (ssl_reject_handshake on)"))
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


# --- SSH algorithms (ssh-audit) --------------------------------------------------------------------------

SSH_AUDIT_KINDS = {"kex": "key exchange", "key": "host key", "enc": "cipher", "mac": "MAC"}
# paramiko, the pipeline's client, has no post-quantum key exchange: curve25519 must stay, and ssh-audit warns that
# it is not post-quantum. A lesser concern than its other warnings (CBC, encrypt-and-MAC, small keys).
NOT_POST_QUANTUM = "does not provide protection against post-quantum attacks"


def ssh_audit(address: str, port: int = 22, timeout: float = 5.0) -> dict | None:
    """ssh-audit's JSON report on the server's SSH algorithms (None if SSH did not answer).

    Run as ``python -m ssh_audit -j``: its documented machine-readable output (its Python API prints as it goes)."""
    import json
    import subprocess
    import sys

    try:
        done = subprocess.run([sys.executable, "-m", "ssh_audit", "-j", "-t", str(max(int(timeout), 1)), "-p", str(port),
                               address], capture_output=True, text=True, timeout=timeout * 6 + 10)
    except subprocess.TimeoutExpired:
        return None
    try:
        report = json.loads(done.stdout)
    except ValueError:
        return None  # no JSON: it could not connect (exit status 1)
    return report if isinstance(report, dict) else None


def judge_ssh_algorithms(address: str, report: dict | None, port: int = 22) -> list[Finding]:
    """ssh-audit's verdicts: a failed algorithm is high, a warning medium (low for 'not post-quantum'), a CVE that
    ssh-audit infers from the version banner low (distributions backport fixes without changing the version)."""
    subject = f"ssh {address}:{port}"
    if report is None:
        return [Finding(INFO, "ssh-algorithms", subject, "ssh-audit could not audit SSH (no answer)")]
    findings = []
    for kind, what in SSH_AUDIT_KINDS.items():
        for entry in report.get(kind) or []:
            name, notes = entry.get("algorithm", "?"), entry.get("notes") or {}
            for note in notes.get("fail") or []:
                findings.append(Finding(HIGH, "ssh-algorithms", f"{kind} {name}", f"SSH {what} {name} fails ssh-audit: {note}"))
            for note in notes.get("warn") or []:
                findings.append(Finding(LOW if note == NOT_POST_QUANTUM else MEDIUM, "ssh-algorithms", f"{kind} {name}",
                                        f"SSH {what} {name}: ssh-audit warns: {note}"))
    for cve in report.get("cves") or []:
        findings.append(Finding(LOW, "ssh-algorithms", cve.get("name", "CVE"),
                                f"ssh-audit lists {cve.get('name')} for this version banner ({cve.get('description', '')}); "
                                "check the distribution's patch level"))
    return findings


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


def summary(findings: list[Finding], named: int = 6) -> str:
    """Counts by severity, every high finding's message, then what the medium and low ones are about."""
    counts = {s: sum(1 for f in findings if f.severity == s) for s in SEVERITIES}
    head = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no findings"
    high = failed(findings)
    text = head + (": " + "; ".join(f.message for f in high) if high else "")
    for severity in (MEDIUM, LOW):
        subjects = list(dict.fromkeys(f.subject for f in findings if f.severity == severity))
        if subjects:
            more = f" (+{len(subjects) - named})" if len(subjects) > named else ""
            text += f"; {severity}: {', '.join(subjects[:named])}{more}"
    return text


def table_rows(states: list[PortState], findings: list[Finding]) -> list[dict]:
    """The ``security-<env>`` artifact: one row per scanned port, then one per finding that is not about a port."""
    by_port = {}
    for f in findings:
        if f.check == "ports":
            family = "IPv6" if f.subject.endswith(IPV6_SUFFIX) else "IPv4"
            by_port[(int(f.subject.split("/")[0]), family)] = f
    rows = []
    for state in states:
        f = by_port.get((state.port, state.family))
        row = {**state.as_row(), "severity": f.severity if f else "", "finding": f.message if f else ""}
        if state.family == "IPv6":
            # "5678 (IPv6)": readers that key the table by port number (the tracking document's firewall section,
            # a test looking for port 9000's row) keep finding the IPv4 row, as before IPv6 was scanned.
            row["port"] = f"{state.port} (IPv6)"
        rows.append(row)
    for f in findings:
        if f.check != "ports":
            rows.append({"port": "", "service": f.check, "expected": "", "observed": f.subject,
                         "severity": f.severity, "finding": f.message})
    return rows
