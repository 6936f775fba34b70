"""The certificates maintenance's tasks: the served certificate from outside, its renewal, the renewal's rehearsal.

Tasks receive names (environment, project) and read the environment's blocks and connection through
tasks.runtime, like the deployment steps; what they return holds no secret (names, dates, fingerprints).
"""

from __future__ import annotations

import time
from typing import Any

from prefect import task

from technicia_deploy.checks import certificate as served_certificate
from technicia_deploy.commands import certbot

from tasks import runtime
from tasks.step import is_transient

# nginx picks the new certificate up on the deploy hook's reload; give it this long to be served.
SERVED_WAIT_S = 30.0


class CertificateProblem(RuntimeError):
    """The served certificate is wrong (chain, names, days left) after the maintenance did what it could."""


class RenewalBroken(RuntimeError):
    """A renewal would fail now (the dry run against the ACME server failed, or the renewal timer is off)."""


def wanted(env: runtime.EnvironmentContext) -> certbot.CertificateWanted:
    """The certificate the deployment's https.certificate step obtains (same names, server, webroot)."""
    return certbot.CertificateWanted(domain=env.settings.domain, tls=env.settings.tls)


def _target(env: runtime.EnvironmentContext):
    from tasks.checks import target

    return target(env)


def facts_of(served: served_certificate.Served) -> dict[str, Any]:
    """What the run's result and artifact keep of a served certificate."""
    tls = served.tls
    return {"fingerprint": served.fingerprint, "days_left": tls.days_left, "expires": served.expires,
            "verified": tls.verified, "verify_error": tls.verify_error, "names": list(tls.names), "issuer": tls.issuer,
            "description": served.describe()}


@task(name="certificates.served", retries=2, retry_delay_seconds=3, retry_condition_fn=is_transient,
      persist_result=False)
def served(environment: str, project: str = "technicia") -> served_certificate.Served:
    """The certificate the environment's domain serves, as a visitor gets it."""
    env = runtime.environment(environment, project)
    return served_certificate.served(_target(env))


@task(name="certificates.renew", retries=0, persist_result=False)
def renew(environment: str, project: str = "technicia", replaced: str = "",
          wait_s: float = SERVED_WAIT_S) -> served_certificate.Served:
    """A new certificate from the ACME server (certbot on the server, webroot), then wait until it is served.

    ``replaced``: the fingerprint served before; the task fails unless another certificate, the server's new
    live one, is served within ``wait_s``."""
    env = runtime.environment(environment, project)
    conn = runtime.connect(env)
    conn.run(certbot.renew_command(wanted(env)), sudo=True, timeout=300)
    live = certbot.parse_facts(conn.read(certbot.fact_command(env.settings.domain), sudo=True).stdout)
    target = _target(env)
    deadline = time.monotonic() + wait_s
    while True:
        now_served = served_certificate.served(target)
        same_expiry = (live.not_after is not None and now_served.tls.not_after is not None
                       and abs((now_served.tls.not_after - live.not_after).total_seconds()) < 1)
        if now_served.fingerprint != replaced and same_expiry:
            return now_served
        if time.monotonic() >= deadline:
            raise CertificateProblem(
                f"{environment}: certbot renewed the certificate (live one expires {live.not_after}) but "
                f"{env.settings.domain} still serves {'the old one' if now_served.fingerprint == replaced else 'another one'} "
                f"after {wait_s:.0f} s ({now_served.describe()}): check nginx's ssl_certificate and reload it")
        time.sleep(1)


@task(name="certificates.renewal_dry_run", retries=0, persist_result=False)
def renewal_dry_run(environment: str, project: str = "technicia") -> dict[str, Any]:
    """``certbot renew --dry-run`` against the declared ACME server, and the renewal timer's state: would the
    certificate renew by itself now? Fails saying what the ACME server reported when it would not."""
    env = runtime.environment(environment, project)
    conn = runtime.connect(env)
    cert = wanted(env)
    facts = certbot.parse_facts(conn.read(certbot.fact_command(env.settings.domain), sudo=True).stdout)
    result = conn.run(certbot.renew_dry_run_command(cert), sudo=True, check=False, timeout=300)
    verdict = certbot.parse_dry_run(result.exit_code, f"{result.stdout}\n{result.stderr}")
    broken = []
    if not verdict.ok:
        broken.append(f"`certbot renew --dry-run` against {cert.tls.acme_server} failed: {verdict.detail}")
    if not (facts.timer_enabled and facts.timer_active):
        broken.append(f"{certbot.TIMER} is {'enabled' if facts.timer_enabled else 'disabled'} and "
                      f"{'active' if facts.timer_active else 'inactive'}: nothing renews the certificate by itself")
    if broken:
        raise RenewalBroken(f"{environment}: renewal of {env.settings.domain} would fail: " + "; ".join(broken))
    return {"acme_server": cert.tls.acme_server, "detail": verdict.detail, "timer": "active"}
