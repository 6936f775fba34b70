"""Configuration HTTPS: DNS record + propagation, nginx + certbot, the certificate."""

from __future__ import annotations

import re
from typing import Any

from technicia_deploy import dns_check
from technicia_deploy.commands import nginx

from tasks import runtime
from tasks.step import StepResult, outcome, tracked_step

DNS_DEADLINE_S = 300.0


def _subdomain(domain: str, zone: str) -> str:
    return "" if domain == zone else domain[: -len(zone) - 1]


def site(env: runtime.EnvironmentContext) -> nginx.NginxSite:
    settings = env.settings
    return nginx.NginxSite(settings.domain, env.application.frontend_port, env.application.api_port,
                           content_security_policy=settings.http.content_security_policy,
                           permissions_policy=settings.http.permissions_policy,
                           ocsp_stapling=settings.tls.ocsp_stapling)


@tracked_step("https.dns")
def dns(environment: str, project: str = "technicia", deadline_s: float = DNS_DEADLINE_S) -> StepResult:
    """The domain's A record points at the VPS (OVH API), and every authoritative server says so; so does its AAAA
    record when OVH lists an IPv6 for the VPS (OVH VPSes have one), and a stale AAAA is removed when it lists none.

    The wait is bounded by ``deadline_s``: past it the step fails naming each server that still answers
    something else (not retried: a record that has not propagated in minutes needs a look, not a loop).
    OVH calls retried after a transient error, and the wait for propagation, are said in the summary.
    """
    from technicia_deploy.ovh import retries_recorded, retry_note

    env = runtime.environment(environment, project)
    settings = env.settings
    subdomain = _subdomain(settings.domain, settings.dns.zone)
    issuer = settings.tls.caa_issuer_domain()
    caa = env.ovh().caa_target(issuer) if issuer else None
    with retries_recorded() as retried:
        address = env.address()
        change = env.ovh().ensure_record(settings.dns.zone, subdomain, "A", address, settings.dns.ttl)
        # Visitors whose resolver prefers IPv6 go to the AAAA: it must be this server's, or absent.
        ipv6 = env.ovh().vps_ipv6(settings.server.ovh_service_name)
        aaaa_change = (env.ovh().ensure_record(settings.dns.zone, subdomain, "AAAA", ipv6, settings.dns.ttl) if ipv6
                       else env.ovh().ensure_no_record(settings.dns.zone, subdomain, "AAAA"))
        # Only the environment's ACME CA may issue for its name (CAA is read at the name first, then up the tree).
        caa_change = (env.ovh().ensure_record(settings.dns.zone, subdomain, "CAA", caa, settings.dns.ttl)
                      if caa else "unchanged")
    servers = dns_check.authoritative_servers(settings.dns.zone, settings.dns.nameservers)
    propagation = dns_check.wait_propagated(servers, settings.domain, address, "A", deadline_s=deadline_s)
    if ipv6:
        dns_check.wait_propagated(servers, settings.domain, ipv6, "AAAA", deadline_s=deadline_s)
    if caa:
        dns_check.wait_propagated(servers, settings.domain, caa, "CAA", deadline_s=deadline_s)
    remember_record(environment, project, settings.domain, address, written=change == "changed")
    waited = (f" after waiting {propagation.waited_s:g}s for propagation ({propagation.polls} rounds)"
              if propagation.waited else "")
    note = retry_note(retried)
    aaaa_note = (f"; AAAA {ipv6}" + (" written" if aaaa_change == "changed" else "") if ipv6
                 else ("; stale AAAA removed (OVH lists no IPv6 for the VPS)" if aaaa_change == "changed" else ""))
    caa_note = (f"; CAA {caa}" + (" written" if caa_change == "changed" else "") if caa
                else f"; no CAA record (tls.caa_issuer not set for {settings.tls.acme_server})")
    return StepResult("https.dns", outcome("changed" in (change, aaaa_change, caa_change)),
                      f"{settings.domain} A {address} ({'record written, ' if change == 'changed' else ''}"
                      f"answered by {len(servers)} authoritative server(s){waited}){aaaa_note}{caa_note}"
                      + (f"; {note}" if note else ""),
                      {"domain": settings.domain, "address": address, "ipv6": ipv6, "caa": caa,
                       "nameservers": [str(s) for s in servers],
                       "propagation_wait_s": propagation.waited_s, "propagation_polls": propagation.polls,
                       "ovh_retries": [r.as_dict() for r in retried]})


def record_variable(project: str, environment: str) -> str:
    """The Prefect Variable that remembers since when the environment's record points at its server."""
    return re.sub(r"[^a-z0-9_]", "_", f"technicia_dns_record_{project}_{environment}".lower())


def remember_record(environment: str, project: str, domain: str, address: str, *, written: bool) -> dict:
    """Keep the time the record was written (or, for a record the pipeline found in place, first seen).

    OVH's API does not say when a record was created; the promotion's DNS gate needs its age.
    """
    from datetime import datetime, timezone

    from prefect.variables import Variable

    name = record_variable(project, environment)
    known = Variable.get(name, default=None)
    if not written and isinstance(known, dict) and known.get("domain") == domain and known.get("address") == address:
        return known
    value = {"domain": domain, "address": address, "since": datetime.now(timezone.utc).isoformat(),
             "how": "written" if written else "first seen"}
    Variable.set(name, value, overwrite=True)
    return value


def recorded_since(environment: str, project: str, domain: str, address: str) -> tuple[Any, str | None]:
    """(since when, how) the record has pointed at ``address``, or (None, None) if never recorded."""
    from datetime import datetime

    from prefect.variables import Variable

    known = Variable.get(record_variable(project, environment), default=None)
    if isinstance(known, dict) and known.get("domain") == domain and known.get("address") == address:
        return datetime.fromisoformat(known["since"]), known.get("how")
    return None, None


def _certificate_wanted(env: runtime.EnvironmentContext):
    from technicia_deploy.commands import certbot

    return certbot.CertificateWanted(domain=env.settings.domain, tls=env.settings.tls)


@tracked_step("https.certbot")
def certbot_installation(environment: str, project: str = "technicia") -> StepResult:
    """nginx serving the ACME challenge path, certbot installed, the ACME CA trusted, the renewal timer on."""
    from technicia_deploy.commands import certbot

    env = runtime.environment(environment, project)
    conn = runtime.connect(env)
    wanted_site, wanted_cert = site(env), _certificate_wanted(env)
    _, nginx_cmds = runtime.converge(conn, nginx.fact_command(wanted_site), nginx.parse_facts,
                                     lambda facts: nginx.operations(facts, wanted_site))

    def without_obtaining(facts) -> list[str]:
        # Obtaining is the next step's business (it is tracked on its own).
        obtain = {certbot.obtain_command(wanted_cert, replace_existing=r) for r in (True, False)}
        return [c for c in certbot.operations(facts, wanted_cert) if c not in obtain]

    facts, certbot_cmds = runtime.converge(conn, certbot.fact_command(env.settings.domain), certbot.parse_facts,
                                           without_obtaining)
    commands = nginx_cmds + certbot_cmds
    return StepResult("https.certbot", outcome(bool(commands)),
                      f"nginx front for {env.settings.domain} and certbot in place, renewal timer on"
                      + (f"; {len(commands)} change(s)" if commands else ""),
                      {"commands": len(commands)})


@tracked_step("https.certificate")
def certificate(environment: str, project: str = "technicia") -> StepResult:
    """A certificate for the domain from the ACME server unless a valid one with enough days left exists; then HTTPS on."""
    from technicia_deploy.commands import certbot

    env = runtime.environment(environment, project)
    conn = runtime.connect(env)
    wanted_cert, wanted_site = _certificate_wanted(env), site(env)
    facts = certbot.parse_facts(conn.read(certbot.fact_command(env.settings.domain), sudo=True).stdout)
    reasons = certbot.reasons_to_obtain(facts, wanted_cert)
    if reasons:
        conn.run(certbot.obtain_command(wanted_cert, replace_existing=facts.present), sudo=True, timeout=300)
        facts = certbot.parse_facts(conn.read(certbot.fact_command(env.settings.domain), sudo=True).stdout)
    # With the certificate present, nginx's site switches to HTTPS + redirect.
    _, nginx_cmds = runtime.converge(conn, nginx.fact_command(wanted_site), nginx.parse_facts,
                                     lambda f: nginx.operations(f, wanted_site))
    changed = bool(reasons) or bool(nginx_cmds)
    expiry = facts.not_after.strftime("%Y-%m-%d") if facts.not_after else "?"
    summary = (f"certificate obtained ({'; '.join(reasons)})" if reasons else "valid certificate kept") + \
              f", expires {expiry}, names {', '.join(facts.sans)}" + ("; HTTPS enabled in nginx" if nginx_cmds else "")
    return StepResult("https.certificate", outcome(changed), summary,
                      {"not_after": facts.not_after.isoformat() if facts.not_after else None, "sans": list(facts.sans),
                       "acme_server": facts.acme_server, "reasons": reasons})


def reads(env: runtime.EnvironmentContext) -> list:
    """The fact commands this phase's steps read (the deploy flow fetches them ahead, in one round trip): the
    same builders, with the same arguments, as the steps' own reads above."""
    from technicia_deploy.commands import certbot
    from technicia_deploy.commands.batch import Read

    return [Read(nginx.fact_command(site(env)), sudo=True),
            Read(certbot.fact_command(env.settings.domain), sudo=True)]
