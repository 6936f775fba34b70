"""Configuration HTTPS: DNS record + propagation, nginx + certbot, the certificate."""

from __future__ import annotations

from technicia_deploy import dns_check
from technicia_deploy.commands import nginx

from tasks import runtime
from tasks.step import StepResult, outcome, tracked_step

DNS_DEADLINE_S = 300.0


def _subdomain(domain: str, zone: str) -> str:
    return "" if domain == zone else domain[: -len(zone) - 1]


def site(env: runtime.EnvironmentContext) -> nginx.NginxSite:
    return nginx.NginxSite(env.settings.domain, env.application.frontend_port, env.application.api_port)


@tracked_step("https.dns")
def dns(environment: str, project: str = "technicia", deadline_s: float = DNS_DEADLINE_S) -> StepResult:
    """The domain's A record points at the VPS (OVH API), and every authoritative server says so."""
    env = runtime.environment(environment, project)
    settings = env.settings
    address = env.address()
    change = env.ovh().ensure_record(settings.dns.zone, _subdomain(settings.domain, settings.dns.zone), "A",
                                     address, settings.dns.ttl)
    servers = dns_check.authoritative_servers(settings.dns.zone, settings.dns.nameservers)
    dns_check.wait_propagated(servers, settings.domain, address, "A", deadline_s=deadline_s)
    return StepResult("https.dns", change,
                      f"{settings.domain} A {address} ({'record written, ' if change == 'changed' else ''}"
                      f"answered by {len(servers)} authoritative server(s))",
                      {"domain": settings.domain, "address": address, "nameservers": [str(s) for s in servers]})
