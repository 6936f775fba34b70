"""certbot: a certificate for the domain, obtained with ``certonly --webroot``, renewed by its timer.

Facts (one round trip): certbot installed, the live certificate's expiry and
SANs (``openssl x509 -enddate -ext subjectAltName``), the ACME server and
authenticator recorded in its renewal file, the extra CA file, the state of
certbot.timer and the server's clock (expiry is judged by the server's time).

A certificate is (re)obtained only when there is none, it expires in fewer
than ``tls.min_days_left`` days, its SANs differ from the wanted names, or it
came from another ACME server or authenticator (e.g. a former
``certbot --nginx``). The deploy hook reloads nginx on every issuance,
including the timer's renewals.

A private ACME server (the sandbox's pebble) is trusted through
``tls.ca_bundle``: the PEM is installed in the system store
(update-ca-certificates) and certbot is pointed at that store with
REQUESTS_CA_BUNDLE.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from ..config import Tls
from .files import FileFact, WantedFile, ensure_file, file_fact_body, parse_file_section
from .nginx import DEFAULT_WEBROOT, LIVE_DIR
from .shell import FactError, apt_install, dpkg_installed_section, fact_script, parse_sections, q

RENEWAL_DIR = "/etc/letsencrypt/renewal"
EXTRA_CA_PATH = "/usr/local/share/ca-certificates/technicia-acme.crt"
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
DEPLOY_HOOK = "systemctl reload nginx"
TIMER = "certbot.timer"
SECTIONS = ("certbot", "cert", "renewal", "extra_ca", "timer", "now")


class CertbotError(RuntimeError):
    pass


@dataclass(frozen=True)
class CertificateWanted:
    domain: str
    tls: Tls
    webroot: str = DEFAULT_WEBROOT
    names: tuple[str, ...] = ()  # SANs; default: (domain,)

    @property
    def sans(self) -> tuple[str, ...]:
        return self.names or (self.domain,)


@dataclass(frozen=True)
class CertFacts:
    certbot_installed: bool
    not_after: datetime | None  # None: no certificate
    sans: tuple[str, ...]
    acme_server: str | None  # from the renewal file
    authenticator: str | None
    extra_ca: FileFact
    timer_enabled: bool
    timer_active: bool
    now: datetime | None  # the server's clock

    @property
    def present(self) -> bool:
        return self.not_after is not None


def cert_path(domain: str) -> str:
    return f"{LIVE_DIR}/{domain}/cert.pem"


def fact_command(domain: str, *, live_dir: str = LIVE_DIR, renewal_dir: str = RENEWAL_DIR) -> str:
    cert = q(f"{live_dir}/{domain}/cert.pem")
    return fact_script([
        ("certbot", dpkg_installed_section("certbot")),
        ("cert", f"openssl x509 -noout -enddate -ext subjectAltName -in {cert}"),
        ("renewal", f"grep -E '^(server|authenticator) *=' {q(f'{renewal_dir}/{domain}.conf')}"),
        ("extra_ca", file_fact_body(EXTRA_CA_PATH)),
        ("timer", f'echo "enabled=$(systemctl is-enabled {TIMER})"; echo "active=$(systemctl is-active {TIMER})"'),
        ("now", "date -u +%s"),
    ])


def parse_certificate(text: str) -> tuple[datetime, tuple[str, ...]]:
    """(expiry, DNS SANs) from ``openssl x509 -noout -enddate -ext subjectAltName`` output."""
    not_after = None
    sans: list[str] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("notAfter="):
            value = " ".join(line.partition("=")[2].split())
            try:
                not_after = datetime.strptime(value, "%b %d %H:%M:%S %Y %Z").replace(tzinfo=timezone.utc)
            except ValueError:
                raise FactError(f"certificate expiry {value!r} is not in openssl's format") from None
        elif "Subject Alternative Name" in line and i + 1 < len(lines):
            for entry in lines[i + 1].split(","):
                kind, _, name = entry.strip().partition(":")
                if kind == "DNS":
                    sans.append(name.strip().lower())
    if not_after is None:
        raise FactError(f"no notAfter in the certificate fact: {text!r}")
    return not_after, tuple(sans)


def parse_facts(output: str) -> CertFacts:
    s = parse_sections(output, SECTIONS)
    not_after, sans = parse_certificate(s["cert"].text) if s["cert"].ok else (None, ())
    renewal = {}
    for line in s["renewal"].lines:
        key, _, value = line.partition("=")
        renewal[key.strip()] = value.strip()
    timer = dict(line.strip().partition("=")[::2] for line in s["timer"].lines)
    now = None
    if s["now"].ok and s["now"].lines and s["now"].lines[0].strip().isdigit():
        now = datetime.fromtimestamp(int(s["now"].lines[0]), timezone.utc)
    return CertFacts(
        certbot_installed=s["certbot"].ok,
        not_after=not_after,
        sans=sans,
        acme_server=renewal.get("server"),
        authenticator=renewal.get("authenticator"),
        extra_ca=parse_file_section(EXTRA_CA_PATH, s["extra_ca"]),
        timer_enabled=timer.get("enabled") == "enabled",
        timer_active=timer.get("active") == "active",
        now=now,
    )


def reasons_to_obtain(facts: CertFacts, wanted: CertificateWanted, now: datetime | None = None) -> list[str]:
    """Why a certificate must be (re)obtained; [] when the current one is good."""
    if not facts.present:
        return [f"no certificate for {wanted.domain}"]
    now = now or facts.now
    if now is None:
        raise CertbotError("the server's clock was not read: cannot judge the certificate's expiry")
    reasons = []
    days_left = (facts.not_after - now).total_seconds() / 86400
    if days_left < wanted.tls.min_days_left:
        reasons.append(f"expires in {days_left:.1f} days (< {wanted.tls.min_days_left})")
    if sorted(facts.sans) != sorted(n.lower() for n in wanted.sans):
        reasons.append(f"names {', '.join(facts.sans) or 'none'} differ from {', '.join(wanted.sans)}")
    if facts.acme_server != wanted.tls.acme_server:
        reasons.append(f"issued by ACME server {facts.acme_server}, wanted {wanted.tls.acme_server}")
    if facts.authenticator != "webroot":
        reasons.append(f"authenticator {facts.authenticator} (renewals need webroot)")
    return reasons


def obtain_command(wanted: CertificateWanted, *, replace_existing: bool) -> str:
    env = f"REQUESTS_CA_BUNDLE={SYSTEM_CA_BUNDLE} " if wanted.tls.ca_bundle else ""
    names = " ".join(f"-d {q(name)}" for name in wanted.sans)
    return (
        f"{env}certbot certonly --webroot -w {q(wanted.webroot)} --cert-name {q(wanted.domain)} {names} "
        f"--server {q(wanted.tls.acme_server)} --email {q(wanted.tls.email)} --agree-tos --non-interactive "
        f"--no-eff-email --deploy-hook {q(DEPLOY_HOOK)}"
        + (" --force-renewal" if replace_existing else "")
    )


def extra_ca_file(pem: str) -> WantedFile:
    if "-----BEGIN CERTIFICATE-----" not in pem:
        raise CertbotError("tls.ca_bundle must be a PEM certificate ('-----BEGIN CERTIFICATE-----')")
    return WantedFile(EXTRA_CA_PATH, pem.strip() + "\n", 0o644)


def operations(facts: CertFacts, wanted: CertificateWanted, now: datetime | None = None) -> list[str]:
    cmds: list[str] = []
    if not facts.certbot_installed:
        cmds.append(apt_install(["certbot"]))
    if wanted.tls.ca_bundle:
        cmds += ensure_file(facts.extra_ca, extra_ca_file(wanted.tls.ca_bundle), then="update-ca-certificates")
    if reasons_to_obtain(facts, wanted, now):
        cmds.append(obtain_command(wanted, replace_existing=facts.present))
    if not (facts.timer_enabled and facts.timer_active):
        cmds.append(f"systemctl enable --now {TIMER}")
    return cmds


# -- maintenance: renewal and its rehearsal ---------------------------------------------------------

def renew_command(wanted: CertificateWanted) -> str:
    """A new certificate now, whatever the old one's days left (the maintenance flow decided it is time):
    the same request as the first issuance, so names, ACME server and webroot stay what the pipeline declares."""
    return obtain_command(wanted, replace_existing=True)


def renew_dry_run_command(wanted: CertificateWanted) -> str:
    """``certbot renew --dry-run`` of the domain's certificate against the declared ACME server: the whole
    renewal (account, order, HTTP-01 challenge through nginx's webroot) without replacing anything.
    ``--server`` is given because certbot sends a dry run of a Let's Encrypt certificate to Let's Encrypt's
    staging server, and must send the sandbox's to pebble; no deploy hook runs in a dry run."""
    env = f"REQUESTS_CA_BUNDLE={SYSTEM_CA_BUNDLE} " if wanted.tls.ca_bundle else ""
    return (f"{env}certbot renew --dry-run --cert-name {q(wanted.domain)} --server {q(wanted.tls.acme_server)} "
            "--no-random-sleep-on-renew --non-interactive")


@dataclass(frozen=True)
class DryRun:
    ok: bool
    detail: str  # what the ACME server reported (challenge type and detail), or the last line certbot wrote


DRY_RUN_OK = "simulated renewals succeeded"


def parse_dry_run(exit_code: int, output: str) -> DryRun:
    """The verdict of ``renew_dry_run_command`` from its exit status and output (stdout + stderr)."""
    lines = [" ".join(line.split()) for line in output.splitlines() if line.strip()]
    if exit_code == 0 and any(DRY_RUN_OK in line for line in lines):
        return DryRun(True, next(line for line in lines if DRY_RUN_OK in line))
    reported = [line for line in lines if line.startswith(("Domain:", "Type:", "Detail:"))]
    if reported:
        return DryRun(False, "; ".join(reported))
    failed = [line for line in lines if line.startswith("Failed to renew") or "error:" in line.lower()]
    return DryRun(False, failed[-1] if failed else (lines[-1] if lines else f"certbot exited {exit_code}, no output"))
