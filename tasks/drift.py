"""The drift check's task: read each area's facts the way its owning step does, and list what differs (read only:
nothing here changes the server). technicia_deploy/drift.py names the differences."""

from __future__ import annotations

from typing import Any

from prefect import task

from technicia_deploy import drift
from technicia_deploy.checks import security
from technicia_deploy.commands import certbot, firewall as firewall_cmds, monitoring as mon, nginx, release
from technicia_deploy.commands.shell import fact_script, parse_sections, q

from tasks import runtime
from tasks.step import is_transient


def env_file_fact(path: str) -> str:
    """The .env's variable names (only the part before '=': never a value) and its mode."""
    return fact_script([
        ("names", f"sed -n 's/^\\([A-Za-z_][A-Za-z0-9_]*\\)=.*/\\1/p' {q(path)}"),
        ("mode", f"stat -c %a {q(path)}"),
    ])


def _firewall(env, conn) -> list[drift.Difference]:
    facts = firewall_cmds.parse_facts(conn.read(firewall_cmds.fact_command(), sudo=True).stdout)
    return drift.firewall_differences(facts, env.settings.firewall, env.ssh.port)


def _ports(env, conn) -> list[drift.Difference]:
    from tasks.checks import target

    exposed = security.parse_exposure(conn.read(security.exposure_command(), sudo=True).stdout)
    app = env.application
    wanted = security.expected_ports(env.settings.firewall, {app.frontend_port: "front end (container)",
                                                             app.api_port: "API (container)"}, exposed)
    seen = security.scan(target(env).address, wanted)
    _, findings = security.judge_ports(wanted, seen)
    findings += security.judge_exposure(exposed, wanted, seen)
    return [drift.Difference("ports", f.subject, f.message, "server.firewall") for f in findings
            if f.severity in (security.HIGH, security.MEDIUM)]


def _release(env, conn) -> list[drift.Difference]:
    from tasks.services import layout

    facts = release.parse_service_facts(conn.read(release.services_fact_command(layout(env)), sudo=True).stdout)
    if facts.current is None:
        return [drift.Difference("release", "current", "no current release", "services.deploy")]
    found = []
    if not facts.healthy():
        names = ", ".join(f"{c.service} ({c.state}/{c.health})" for c in facts.unhealthy()) or "no container running"
        found.append(drift.Difference("release", release.describe_release(facts.current), f"not healthy: {names}",
                                      "services.deploy"))
    return found


def _env_file(env, conn) -> list[drift.Difference]:
    from technicia_deploy.envfile import ENV_VARIABLES
    from tasks.services import layout

    path = f"{layout(env).current}/{env.application.env_file}"
    s = parse_sections(conn.read(env_file_fact(path), sudo=True).stdout, ("names", "mode"))
    names = [line.strip() for line in s["names"].lines] if s["mode"].ok else None
    mode = s["mode"].lines[0].strip() if s["mode"].ok and s["mode"].lines else None
    return drift.env_file_differences(path, names, mode, ENV_VARIABLES)


def _nginx(env, conn) -> list[drift.Difference]:
    from tasks.https import site

    wanted = site(env)
    facts = nginx.parse_facts(conn.read(nginx.fact_command(wanted), sudo=True).stdout)
    return drift.pending("nginx", nginx.SITE_AVAILABLE, "https.certificate", nginx.operations(facts, wanted),
                         "site differs from the one the pipeline renders")


def _certificate(env, conn) -> list[drift.Difference]:
    wanted = certbot.CertificateWanted(domain=env.settings.domain, tls=env.settings.tls)
    facts = certbot.parse_facts(conn.read(certbot.fact_command(env.settings.domain), sudo=True).stdout)
    found = [drift.Difference("certificate", env.settings.domain, reason, "https.certificate")
             for reason in certbot.reasons_to_obtain(facts, wanted)]
    if not (facts.timer_enabled and facts.timer_active):
        found.append(drift.Difference("certificate", certbot.TIMER, "renewal timer off", "https.certbot"))
    return found


def _dns(env, conn) -> list[drift.Difference]:
    from technicia_deploy import dns_check

    settings = env.settings
    address = env.address()
    found = []
    for server in dns_check.authoritative_servers(settings.dns.zone, settings.dns.nameservers):
        answered = dns_check.answers(server, settings.domain, "A")
        if answered != {address}:
            found.append(drift.Difference("dns", settings.domain, f"{server} answers {sorted(answered) or 'nothing'}, "
                                          f"declared {address}", "https.dns"))
    return found


def _monitoring(env, conn) -> list[drift.Difference]:
    from tasks.monitoring import DEFAULT_PERIOD_S, settings_for

    facts = mon.parse_facts(conn.read(mon.fact_command(env.project), sudo=True).stdout)
    if not facts.services:
        return [drift.Difference("monitoring", mon.UNIT, "no service of the compose project runs", "monitoring.script")]
    return drift.pending("monitoring", f"{mon.UNIT}.timer", "monitoring.script",
                         mon.operations(facts, settings_for(env, facts.services, DEFAULT_PERIOD_S)),
                         "script, configuration or timer differ")


AREAS = {"firewall": _firewall, "ports": _ports, "release": _release, "env-file": _env_file, "nginx": _nginx,
         "certificate": _certificate, "dns": _dns, "monitoring": _monitoring}


@task(name="drift.observe", retries=2, retry_delay_seconds=3, retry_condition_fn=is_transient, persist_result=False)
def observe(environment: str, project: str = "technicia") -> dict[str, Any]:
    """Every area's differences; an area that cannot be read is a difference too (named with its error)."""
    env = runtime.environment(environment, project)
    conn = runtime.connect(env)
    differences: list[drift.Difference] = []
    for area, read in AREAS.items():
        try:
            differences += read(env, conn)
        except Exception as exc:  # noqa: BLE001 - reported by name, the other areas still checked
            differences.append(drift.Difference(area, "facts", f"could not be read ({type(exc).__name__}: "
                                                f"{str(exc).splitlines()[0][:200] if str(exc) else ''})", "-"))
    return {"differences": differences, "areas": list(AREAS)}
