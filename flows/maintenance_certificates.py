"""The ``maintenance-certificates`` flow: each environment's certificate checked from outside, renewed under the
threshold, and its renewal rehearsed, so a broken renewal setup is found weeks before the certificate expires.

Per environment (flows/_maintenance.py: its own run, tagged, under the environment's lock):

1. the served certificate, as a visitor gets it: days left, chain, names (``certificates.served``);
2. renewed when it has fewer days left than the threshold (``tls.min_days_left``, or ``renew_below_days``) or
   does not name the domain: certbot on the server, then the new certificate must be the one served
   (``certificates.renew``);
3. ``certbot renew --dry-run`` against the configured ACME server and the renewal timer's state
   (``certificates.renewal_dry_run``): a challenge path nginx no longer serves, an ACME server that refuses the
   account, a timer switched off, all fail the run (and alert) while the certificate is still valid;
4. the served certificate judged again: not verified, wrong names or too few days left fail the run.

Idempotent: a run that renewed nothing says ``unchanged``; a second run after a renewal renews nothing.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from technicia_deploy import environment_lock
from technicia_deploy.maintenance import Outcome

FLOW_NAME = "maintenance-certificates"
KIND = "certificates"
TITLE = "Certificates"


def certificates_of(env: Any, renew_below_days: int | None = None, dry_run: bool = True) -> Outcome:
    """One environment's certificate maintenance (``env``: tasks.runtime.EnvironmentContext)."""
    from technicia_deploy.checks import certificate as judge
    from tasks import certificates

    domain, min_days = env.settings.domain, env.settings.tls.min_days_left
    threshold = renew_below_days if renew_below_days is not None else min_days
    before = certificates.served(env.name, env.project)
    rows = [{"check": "served before", "result": before.describe()}]
    reasons = judge.reasons_to_renew(domain, before, threshold)
    after = before
    if reasons:
        after = certificates.renew(env.name, env.project, replaced=before.fingerprint)
        rows.append({"check": "renewed", "result": f"{'; '.join(reasons)}: new certificate served, {after.describe()}"})
    rehearsal = certificates.renewal_dry_run(env.name, env.project) if dry_run else None
    if rehearsal:
        rows.append({"check": "renewal dry run", "result": f"ok against {rehearsal['acme_server']}; certbot.timer active"})
    problems = judge.problems(domain, after, min_days)
    if problems:
        from tasks.certificates import CertificateProblem

        raise CertificateProblem(f"{env.name}: {domain}: " + "; ".join(problems))
    done = (f"renewed ({'; '.join(reasons)}): {domain} now serves the new certificate, {after.describe()}"
            if reasons else f"{domain} serves a certificate with {after.describe()}")
    rehearsed = (f"; renewal dry run ok against {rehearsal['acme_server']}, certbot.timer active" if rehearsal
                 else "; renewal dry run not asked")
    return Outcome(env.name, done + rehearsed, changed=bool(reasons),
                   details={"before": certificates.facts_of(before), "after": certificates.facts_of(after),
                            "renewed": bool(reasons), "reasons": reasons,
                            "threshold_days": threshold, "dry_run": rehearsal},
                   rows=rows)


@flow(name=FLOW_NAME, flow_run_name="certificates-{environment}", log_prints=False)
def maintenance_certificates(environment: str = "all", project: str = "technicia",
                             renew_below_days: int | None = None, dry_run: bool = True,
                             lock_wait_s: float = environment_lock.DEFAULT_WAIT_S):
    """Check each environment's served certificate (days left, chain, names), renew it under the threshold, and
    rehearse its renewal (`certbot renew --dry-run` against the configured ACME server).

    Args:
        environment: test, staging, production, or all (one run per environment, in that order).
        project: project name used in the Prefect block names (default technicia).
        renew_below_days: renew when fewer days are left than this; empty: the environment's tls.min_days_left.
        dry_run: rehearse the renewal against the ACME server (finds a broken renewal setup before expiry).
        lock_wait_s: how long to wait for a deployment of the environment to finish before giving up.
    """
    from flows import _maintenance

    return _maintenance.run(maintenance_certificates, KIND, TITLE, environment, project,
                            lambda env: certificates_of(env, renew_below_days, dry_run),
                            touches_server=True, lock_wait_s=lock_wait_s)
