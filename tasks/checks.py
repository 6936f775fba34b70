"""Tests post-déploiement: functional, performance and security checks of a deployed environment.

The three run concurrently (the flow submits them together). Each publishes a
table artifact with a stable key, then passes or raises :class:`ChecksFailed`
naming what failed (the step's state message says which service / metric /
finding); no secret reaches an artifact or a message.

- ``functional-<env>``: one row per check (name, where, URL, status, time, verdict).
- ``performance-<env>``: one row per metric with its threshold, the previous run's
  value (read from this key's latest version before writing the new one) and the change.
- ``security-<env>``: one row per scanned port (port, service, expected, observed)
  then one per other finding, each with its severity.
"""

from __future__ import annotations

import json
from typing import Any

from technicia_deploy import envfile
from technicia_deploy.checks import functional as functional_checks
from technicia_deploy.checks import loadtest
from technicia_deploy.checks import security as security_checks
from technicia_deploy.checks.target import Target, resolve, resolve6

from tasks import runtime
from tasks.step import UNCHANGED, StepResult, tracked_step

GENERATOR_SATURATED = 0.9  # generator CPU / wall time above which its numbers understate the server


class ChecksFailed(RuntimeError):
    """A post-deployment test failed; the message names the services, metrics or findings."""


def artifact_key(kind: str, environment: str) -> str:
    return f"{kind}-{environment}"


def target(env: runtime.EnvironmentContext) -> Target:
    settings = env.settings
    return Target(settings.domain, resolve(settings.domain, settings.dns.nameservers),
                  extra_ca_pem=getattr(settings.tls, "issuer_ca", None))


def _publish(kind: str, environment: str, rows: list[dict[str, Any]], description: str) -> None:
    from prefect.artifacts import create_table_artifact

    create_table_artifact(key=artifact_key(kind, environment), table=rows, description=description)


# --- functional --------------------------------------------------------------------------------------

@tracked_step("checks.functional")
def functional(environment: str, project: str = "technicia") -> StepResult:
    """Every health endpoint: public ones through HTTPS on the domain, internal ones from the server; a health
    answer that reports the API's keys must report every one set."""
    outcomes, summary = functional_outcomes(runtime.environment(environment, project))
    return StepResult("checks.functional", UNCHANGED, summary, {"checks": [o.as_row() for o in outcomes]})


def functional_outcomes(env: runtime.EnvironmentContext) -> tuple[list, str]:
    """Run every declared health check, publish the ``functional-<env>`` table; ChecksFailed if one fails.

    The functional step and the rollback's verification (does the release gone back to serve?) share it.
    """
    checks = env.settings.health
    if not checks:
        raise ChecksFailed(f"{env.name}: no health checks declared (environments.yaml: environments.{env.name}.health)")
    site = target(env)
    # The keys the API must report set are the pipeline's side of the .env contract, not a copy of them.
    outcomes = [functional_checks.check_public(site, c, expected_keys=envfile.ENV_VARIABLES)
                for c in checks if not c.from_server]
    inside = [c for c in checks if c.from_server]
    if inside:
        output = runtime.connect(env).probe(functional_checks.server_probe_command(inside)).stdout
        outcomes += functional_checks.parse_server_probes(inside, output)
    order = {c.name: i for i, c in enumerate(checks)}
    outcomes.sort(key=lambda o: order[o.name])
    summary = functional_checks.summary(outcomes)
    _publish("functional", env.name, [o.as_row() for o in outcomes], f"Functional tests of {site.url()}: {summary}")
    if any(not o.ok for o in outcomes):
        raise ChecksFailed(f"{env.name}: {summary}")
    return outcomes, summary


# --- performance -------------------------------------------------------------------------------------

def previous_rows(environment: str) -> list[dict[str, Any]]:
    """The rows of the latest ``performance-<env>`` artifact (the previous load test's), [] if none."""
    from prefect.artifacts import Artifact

    latest = Artifact.get(artifact_key("performance", environment))
    if latest is None or latest.data is None:
        return []
    rows = json.loads(latest.data) if isinstance(latest.data, str) else latest.data
    return [row for row in rows if isinstance(row, dict) and "metric" in row]


def metrics_of(rows: list[dict[str, Any]]) -> dict[str, float]:
    return {row["metric"]: float(row["value"]) for row in rows}


def previous_metrics(environment: str) -> dict[str, float]:
    """The metrics of the latest ``performance-<env>`` artifact (the previous run's), {} if none."""
    return metrics_of(previous_rows(environment))


def passed_load_test(rows: list[dict[str, Any]]) -> bool:
    """Whether these rows are a load test that met every threshold."""
    return bool(rows) and all(row.get("verdict") != "FAILED" for row in rows)


def performance_rows(result: loadtest.LoadResult, perf, previous: dict[str, float]) -> tuple[list[dict], list[str]]:
    """(artifact rows, threshold violations)."""
    limits = {"requests_per_s": (">=", perf.min_rps), "p95_ms": ("<=", perf.max_p95_ms),
              "error_rate": ("<=", perf.max_error_rate)}
    rows, violations = [], []
    for metric, value in result.metrics().items():
        op, limit = limits.get(metric, (None, None))
        ok = limit is None or (value >= limit if op == ">=" else value <= limit)
        before = previous.get(metric)
        change = (f"{(value - before) / before:+.0%}" if before else "") if before is not None else ""
        rows.append({"metric": metric, "value": round(value, 4), "threshold": f"{op} {limit}" if op else "",
                     "previous": before if before is not None else "", "change": change,
                     "verdict": "" if op is None else ("ok" if ok else "FAILED")})
        if not ok:
            violations.append(f"{metric} {value:.4g} (threshold {op} {limit})")
    return rows, violations


@tracked_step("checks.performance")
def performance(environment: str, project: str = "technicia", load_test: bool = True) -> StepResult:
    """A closed-loop load test of the environment's URL with its thresholds; compared with the previous run.

    ``load_test=False`` (the flow's choice on a run that changed nothing): the previous load test stands
    if it passed, since the server serves what it measured; one that failed or never ran is run now.
    """
    env = runtime.environment(environment, project)
    perf = env.settings.performance
    before_rows = previous_rows(environment)
    previous = metrics_of(before_rows)
    if not load_test and passed_load_test(before_rows):
        p95 = previous.get("p95_ms")
        return StepResult("checks.performance", UNCHANGED,
                          "load test not re-run: nothing changed since the last one, which passed"
                          + (f" (p95 {p95:.1f} ms, {previous.get('requests_per_s', 0):.1f} req/s)" if p95 is not None else "")
                          + "; `--load-test` runs it anyway",
                          {"metrics": previous, "skipped": "nothing changed"})
    site = target(env)
    result = loadtest.run(site, perf.path, perf.concurrency, perf.duration_s)
    rows, violations = performance_rows(result, perf, previous)
    note = ""
    if result.generator_busy > GENERATOR_SATURATED:
        note = f"; load generator saturated ({result.generator_busy:.0%} CPU): the server may do better than measured"
    summary = (f"{result.requests_per_s:.1f} req/s, p50 {result.p50_ms:.1f} ms, p95 {result.p95_ms:.1f} ms, "
               f"p99 {result.p99_ms:.1f} ms, errors {result.error_rate:.2%} over {result.requests} requests "
               f"({perf.concurrency} connections, {perf.duration_s:g}s)")
    if previous:
        before = previous.get("p95_ms")
        summary += f"; previous p95 {before:.1f} ms" if before is not None else ""
    _publish("performance", environment, rows,
             f"Load test of {site.url(perf.path)}: {summary}{note}" + (f"; FAILED: {'; '.join(violations)}" if violations else ""))
    if violations:
        raise ChecksFailed(f"{environment}: performance below thresholds: {'; '.join(violations)} ({summary})")
    details = {"metrics": result.metrics(), "previous": previous, "statuses": {str(k): v for k, v in result.statuses.items()},
               "errors": result.error_kinds, "generator_busy": round(result.generator_busy, 3)}
    return StepResult("checks.performance", UNCHANGED, summary + note, details)


# --- security -----------------------------------------------------------------------------------------

@tracked_step("checks.security")
def security(environment: str, project: str = "technicia") -> StepResult:
    """Ports (declared, common, and whatever the server says it exposes), TLS against Mozilla intermediate (sslyze),
    redirect, headers, the catch-all virtual host, SSH auth methods and algorithms (ssh-audit) as seen from outside;
    the .env mode from inside."""
    env = runtime.environment(environment, project)
    settings = env.settings
    site = target(env)
    app = env.application
    conn = runtime.connect(env)
    (exposure_read, env_file_read), env_path = _security_reads(env), _env_path(env)
    exposed = security_checks.parse_exposure(runtime.read(conn, exposure_read).stdout)
    env_file_output = runtime.read(conn, env_file_read).stdout
    wanted = security_checks.expected_ports(settings.firewall, {app.frontend_port: "front end (container)",
                                                               app.api_port: "API (container)"}, exposed)

    def tls_and_headers() -> list:
        try:
            return (security_checks.judge_tls(settings.domain, security_checks.inspect_tls(site), settings.tls.min_days_left)
                    + security_checks.check_headers(site))
        except OSError as exc:
            return [security_checks.Finding("high", "tls", settings.domain, f"HTTPS does not answer ({exc})")]

    # The probes look at different things from outside and wait on the network (the port scan on its
    # timeouts, sslyze and ssh-audit on handshakes): side by side, the step takes as long as the slowest.
    probes = {
        "ports": lambda: security_checks.scan(site.address, wanted),
        "tls": tls_and_headers,
        "tls_profile": lambda: security_checks.scan_tls_profile(site),
        "redirect": lambda: security_checks.check_redirect(site),
        "catch_all": lambda: security_checks.check_catch_all(site),
        "ssh_methods": lambda: security_checks.ssh_auth_methods(site.address, settings.ssh.port),
        "ssh_audit": lambda: security_checks.ssh_audit(site.address, settings.ssh.port),
    }
    # The AAAA address too, when the domain has one: ufw and Docker each have an IPv6 side of their own.
    address6 = resolve6(settings.domain, settings.dns.nameservers)
    if address6:
        probes["ports_ipv6"] = lambda: security_checks.scan(address6, wanted)
    seen = _side_by_side(probes)
    states, findings = security_checks.judge_ports(wanted, seen["ports"])
    if address6:
        states6, findings6 = security_checks.judge_ports(wanted, seen["ports_ipv6"], family="IPv6")
        states, findings = states + states6, findings + findings6
    findings += security_checks.judge_exposure(exposed, wanted, seen["ports"])
    findings += seen["tls"]
    findings += security_checks.judge_tls_profile(settings.domain, seen["tls_profile"])
    findings += seen["redirect"]
    findings += seen["catch_all"]
    findings += security_checks.judge_ssh(site.address, seen["ssh_methods"], settings.ssh.port)
    findings += security_checks.judge_ssh_algorithms(site.address, seen["ssh_audit"], settings.ssh.port)
    findings += security_checks.judge_env_file(env_path, env_file_output)
    summary = security_checks.summary(findings)
    _publish("security", environment, security_checks.table_rows(states, findings),
             f"Security tests of {settings.domain} ({site.address}{', ' + address6 if address6 else ''}) "
             f"from outside: {summary}")
    if security_checks.failed(findings):
        raise ChecksFailed(f"{environment}: high security finding(s): " +
                           "; ".join(f.message for f in security_checks.failed(findings)))
    return StepResult("checks.security", UNCHANGED, summary,
                      {"findings": [f.__dict__ for f in findings],
                       "open_ports": [s.port for s in states if s.observed == "open" and s.family == "IPv4"],
                       "open_ports_ipv6": [s.port for s in states if s.observed == "open" and s.family == "IPv6"],
                       "exposed": sorted({e.port for e in exposed if e.public})})


def _side_by_side(probes: dict[str, Any]) -> dict[str, Any]:
    """Run every probe at once; their results by name (the first probe that raised raises here)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(probes), thread_name_prefix="security-probe") as pool:
        futures = {name: pool.submit(probe) for name, probe in probes.items()}
        return {name: future.result() for name, future in futures.items()}


def _env_path(env: runtime.EnvironmentContext) -> str:
    from tasks.services import layout

    return f"{layout(env).current}/{env.application.env_file}"


def _security_reads(env: runtime.EnvironmentContext) -> list:
    from technicia_deploy.commands.batch import Read

    return [Read(security_checks.exposure_command(), sudo=True),
            Read(security_checks.env_file_command(_env_path(env)), sudo=True)]


def reads(env: runtime.EnvironmentContext) -> list:
    """The fact commands this phase's steps read (the deploy flow fetches them ahead, in one round trip). The
    functional test's probes from the server are not among them: they are tests, run when the test runs."""
    return _security_reads(env)
