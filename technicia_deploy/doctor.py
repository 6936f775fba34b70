"""``technicia-deploy doctor``: does every declared credential and endpoint work, before anything is deployed?

One row per check (:class:`Row`), each failure with its fix. The checks reuse the pipeline's own clients
(``ovh.OvhApi``, ``connection.HostConnection``, ``cloud.check_api_keys``, ``alerts.send_one``), so what passes
here is what the deployment will use. Independent checks run at once; each has a bounded timeout. A check
that needs another one's result (the VPS address for SSH, the OVH credential for its rules) waits for it and
is ``skipped`` when that one failed: the failing row already says what to fix first.

Secrets never reach a row: every detail and fix is scrubbed of each secret the target holds.
"""

from __future__ import annotations

import io
import re
import ssl
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal

OK, FAILED, SKIPPED = "ok", "FAILED", "skipped"
Status = Literal["ok", "FAILED", "skipped"]
ALL = "all"  # the environment column of project-wide checks (one OVH application, one Prefect server)
DEFAULT_TIMEOUT_S = 10.0
APPLY = "then `technicia-deploy blocks apply environments.yaml`"
DEPLOY_FILE = Path(__file__).resolve().parents[1] / "deployments.yaml"


@dataclass(frozen=True)
class Row:
    check: str
    environment: str
    status: Status
    detail: str
    fix: str = ""

    @property
    def failed(self) -> bool:
        return self.status == FAILED


@dataclass
class Target:
    """One environment as the pipeline would deploy it: settings and credential blocks (SecretStr fields)."""

    name: str
    settings: Any  # config.Environment
    ovh: Any  # blocks.OvhCredentials
    ssh: Any  # blocks.SshAccess
    api_keys: Any  # blocks.CloudApiKeys
    alert_urls: dict[str, str] = field(default_factory=dict)

    def secrets(self) -> list[str]:
        values = [self.ovh.application_key, self.ovh.application_secret, self.ovh.consumer_key, self.ssh.private_key,
                  self.api_keys.google_service_account_json, self.api_keys.voyageai_api_key,
                  self.api_keys.anthropic_api_key]
        plain = [v.get_secret_value() for v in values]
        return plain + list(self.alert_urls.values())


# --- pure parts --------------------------------------------------------------------------------------------


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` without any secret, nor any line of a multi-line one (a PEM key, a service-account JSON), nor
    the credentials inside an alert URL (password, query values, long path segments such as webhook tokens:
    its host stays readable, alerts.py already keeps its own details free of the rest)."""
    from urllib.parse import parse_qsl, urlsplit

    pieces: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        pieces.add(secret)
        pieces.update(line.strip() for line in secret.splitlines() if len(line.strip()) >= 8)
        if "://" in secret:
            try:
                split = urlsplit(secret)
            except ValueError:
                continue
            pieces.update(p for p in (split.password, *(v for _, v in parse_qsl(split.query))) if p)
            pieces.update(seg for seg in split.path.split("/") if len(seg) >= 16)
    for piece in sorted((p for p in pieces if len(p) >= 6), key=len, reverse=True):
        text = text.replace(piece, "***")
    return text


def rules_row(environment: str, rules: list[dict[str, Any]], values: dict[str, str]) -> Row:
    """Whether the consumer key's access rules grant every route of ``ovh.ROUTES`` for this environment."""
    from technicia_deploy.ovh import ROUTES, uncovered_routes

    missing = uncovered_routes(rules, values)
    if not missing:
        return Row("OVH access rules", environment, OK, f"the consumer key grants all {len(ROUTES)} routes the pipeline calls")
    return Row("OVH access rules", environment, FAILED,
               f"the consumer key lacks {len(missing)} route(s): {', '.join(map(str, missing))}",
               f"create a consumer key with the rules of `technicia-deploy ovh access-rules {environment}` "
               f"(POST /auth/credential), validate it, set ovh.consumer_key to it, {APPLY}")


def vps_problems(details: Any, spec: Any) -> list[str]:
    """What differs from the declared server (``ovh.VpsDetails.differences``, plus the OS and the state)."""
    found = details.differences(spec)
    if details.os and details.os.strip().lower() != spec.os.strip().lower():
        found.append(f"OS is {details.os}, expected {spec.os}")
    if details.state != "running":
        found.append(f"state is {details.state}, expected running")
    return found


def render(rows: list[Row], width: int | None = None) -> str:
    """The table, as text (rich), one row per check; cells are plain text, never rich markup."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD, show_lines=False, expand=False)
    for name in ("check", "environment", "status", "detail", "fix"):
        table.add_column(name.upper(), overflow="fold")
    for row in rows:
        style = {"ok": "green", "FAILED": "bold red", "skipped": "yellow"}[row.status]
        table.add_row(Text(row.check), Text(row.environment), Text(row.status, style=style), Text(row.detail),
                      Text(row.fix or "-"))
    out = io.StringIO()
    Console(file=out, width=width or 200, color_system=None, soft_wrap=False).print(table)
    failed = sum(r.failed for r in rows)
    summary = f"{len(rows)} checks: {failed} FAILED" if failed else f"{len(rows)} checks: all ok"
    table_text = "\n".join(line.rstrip() for line in out.getvalue().strip("\n").splitlines())
    return table_text + "\n" + summary


def rows_as_dicts(rows: list[Row]) -> list[dict[str, str]]:
    return [asdict(r) for r in rows]


def work_pools(deploy_file: Path = DEPLOY_FILE) -> list[str]:
    """The work pools deployments.yaml sends runs to."""
    import yaml

    data = yaml.safe_load(deploy_file.read_text()) or {}
    pools = []
    for deployment in data.get("deployments") or []:
        name = ((deployment.get("work_pool") or {}).get("name"))
        if name and name not in pools:
            pools.append(name)
    return pools


def _subdomain(domain: str, zone: str) -> str:
    return "" if domain == zone else domain[: -len(zone) - 1]


def _ovh_values(target: Target) -> dict[str, str]:
    """The path parameters an environment's rules may be scoped to."""
    return {"serviceName": target.settings.server.ovh_service_name, "zoneName": target.settings.dns.zone}


# --- the checks --------------------------------------------------------------------------------------------


def _ovh_api(target: Target, timeout_s: float):
    from technicia_deploy.ovh import OvhApi

    return OvhApi.from_block(target.ovh, timeout_s=timeout_s, retries=1, backoff_s=0.5)


def check_ovh_credential(target: Target, timeout_s: float) -> tuple[Row, dict[str, Any] | None]:
    from technicia_deploy.ovh import OvhError, OvhErrorKind

    try:
        credential = _ovh_api(target, timeout_s).check_credentials()
    except OvhError as error:
        fix = {
            OvhErrorKind.INVALID_CREDENTIAL: "check ovh.application_key, ovh.application_secret and ovh.consumer_key "
            "against the OVH application (a wrong secret shows as an invalid signature; an expired or revoked "
            f"consumer key as an invalid credential); create a new consumer key if needed, {APPLY}",
            OvhErrorKind.PERMISSION: "the consumer key may not even read its own credential: create one with "
            f"`technicia-deploy ovh access-rules`, {APPLY}",
            OvhErrorKind.TRANSIENT: "the OVH API did not answer: check ovh.endpoint / ovh.api_url and outbound "
            "HTTPS, then run doctor again",
        }.get(error.kind, "see the detail; check ovh.endpoint and ovh.api_url")
        return Row("OVH credential", ALL, FAILED, str(error), fix), None
    return Row("OVH credential", ALL, OK, f"consumer key validated (credential {credential.get('credentialId')}, "
               f"application {credential.get('applicationId')}, {len(credential.get('rules') or [])} access rule(s))"), credential


def check_vps(target: Target, timeout_s: float) -> tuple[Row, str | None]:
    """The VPS against its declared spec, and the address SSH will use (declared, else OVH's IPv4)."""
    from technicia_deploy.ovh import OvhError, OvhErrorKind

    spec = target.settings.server
    api = _ovh_api(target, timeout_s)
    try:
        details = api.vps_details(spec.ovh_service_name)
        address = target.ssh.host or spec.host or api.vps_ipv4(spec.ovh_service_name)
    except OvhError as error:
        fix = {
            OvhErrorKind.NOT_FOUND: f"check environments.{target.name}.server.ovh_service_name: it must be a VPS of "
            "this OVH account (OVH manager > Bare Metal Cloud > VPS)",
            OvhErrorKind.PERMISSION: "grant the consumer key the VPS routes (see the OVH access rules row)",
        }.get(error.kind, "see the OVH credential row; run doctor again once the OVH API answers")
        return Row("VPS", target.name, FAILED, str(error), fix), None
    summary = (f"{spec.ovh_service_name}: {details.model} {details.vcores} vCores/{details.ram_gb} GB/{details.disk_gb} GB, "
               f"{details.datacentre}, {details.os or 'OS unknown'}, {details.state}, address {address}")
    problems = vps_problems(details, spec)
    if problems:
        return Row("VPS", target.name, FAILED, f"{summary}; DIFFERS: {'; '.join(problems)}",
                   f"order/resize the VPS to the declared spec, or correct environments.{target.name}.server to what "
                   f"was ordered; a VPS not running: start it or wait for its installation"), address
    return Row("VPS", target.name, OK, summary + ": matches the declared spec"), address


def check_ssh(target: Target, address: str, timeout_s: float) -> Row:
    from technicia_deploy.connection import ConnectionFailed, HostConnection, HostKeyMismatch, Unreachable, fingerprint

    ssh = target.ssh
    users = [ssh.user] + ([ssh.admin_user] if ssh.admin_user and ssh.admin_user != ssh.user else [])
    refused: list[str] = []
    for user in users:
        try:
            conn = HostConnection(address, ssh.port, user, ssh.host_key, ssh.private_key.get_secret_value(),
                                  connect_timeout=timeout_s, attempts=1, reboot_wait_s=0)
            conn.open().close()
        except HostKeyMismatch as error:
            return Row("SSH", target.name, FAILED, str(error),
                       f"do not trust the new key yet: read the server's own fingerprint out of band (OVH KVM console: "
                       f"`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`) and compare it with the one presented; "
                       f"only if they match (the VPS was rebuilt) set environments.{target.name}.ssh.host_key to the "
                       f"new key, {APPLY}; if they differ, something is intercepting the connection")
        except Unreachable as error:
            return Row("SSH", target.name, FAILED, str(error),
                       f"check that the VPS is running, the address ({address}), ssh.port ({ssh.port}) and any "
                       "firewall between here and the VPS")
        except ConnectionFailed as error:
            refused.append(str(error))
            continue
        first = " (the deploy user does not exist yet: the OS step creates it)" if user != ssh.user else ""
        return Row("SSH", target.name, OK,
                   f"{user}@{address}:{ssh.port} with the pinned host key {fingerprint(ssh.host_key)}{first}")
    return Row("SSH", target.name, FAILED, "; ".join(refused),
               f"authorize the deploy public key for {' or '.join(users)} on the VPS (a fresh VPS: the key given "
               f"at installation), or correct environments.{target.name}.ssh.private_key, {APPLY}")


def check_dns(target: Target, timeout_s: float) -> Row:
    from technicia_deploy.ovh import OvhError, OvhErrorKind

    dns = target.settings.dns
    sub = _subdomain(target.settings.domain, dns.zone)
    try:
        records = _ovh_api(target, timeout_s).records(dns.zone, sub, "A")
    except OvhError as error:
        fix = {
            OvhErrorKind.NOT_FOUND: f"environments.{target.name}.dns.zone ({dns.zone}) must be a DNS zone managed by "
            "this OVH account (OVH manager > Web Cloud > Domain names)",
            OvhErrorKind.PERMISSION: "grant the consumer key the DNS routes (see the OVH access rules row)",
        }.get(error.kind, "see the OVH credential row")
        return Row("DNS zone", target.name, FAILED, str(error), fix)
    targets = ", ".join(r["target"] for r in records) or "none yet (the HTTPS step creates it)"
    return Row("DNS zone", target.name, OK, f"zone {dns.zone} readable through the OVH API; A record of "
               f"{target.settings.domain}: {targets}")


def check_acme(target: Target, timeout_s: float) -> Row:
    import httpx

    tls = target.settings.tls
    context = ssl.create_default_context()
    if tls.ca_bundle and "-----BEGIN" in tls.ca_bundle:
        context.load_verify_locations(cadata=tls.ca_bundle)  # a private ACME server (the sandbox's pebble)
    fix = (f"check environments.{target.name}.tls.acme_server ({tls.acme_server}) and that this machine and the VPS "
           "reach it over HTTPS (outbound 443, proxy); a private ACME server also needs tls.ca_bundle")
    try:
        answer = httpx.get(tls.acme_server, verify=context, timeout=timeout_s, follow_redirects=True)
        directory = answer.json() if answer.status_code == 200 else {}
    except httpx.HTTPError as error:
        return Row("ACME directory", target.name, FAILED,
                   f"GET {tls.acme_server}: {type(error).__name__}: {error or 'no answer'} (timeout {timeout_s:g} s)", fix)
    except ValueError:
        directory = {}
    if answer.status_code != 200 or "newOrder" not in directory:
        return Row("ACME directory", target.name, FAILED,
                   f"GET {tls.acme_server}: HTTP {answer.status_code}, not an ACME directory (no newOrder)", fix)
    return Row("ACME directory", target.name, OK, f"GET {tls.acme_server}: ACME directory (HTTP 200)")


def check_cloud(target: Target, timeout_s: float) -> list[Row]:
    from technicia_deploy.cloud import SERVICE_LABELS, check_api_keys

    rows = []
    for result in check_api_keys(target.name, target.api_keys, timeout=timeout_s):
        label = f"{SERVICE_LABELS[result.service]} key"
        if result.ok:
            rows.append(Row(label, target.name, OK, f"smoke call passed ({result.fingerprint}, {result.latency_ms:.0f} ms)"))
        else:
            rows.append(Row(label, target.name, FAILED, f"{result.status}: {result.detail} ({result.fingerprint})",
                            result.fix))
    return rows


def check_alerts(target: Target) -> list[Row]:
    from technicia_deploy.alerts import send_one

    if not target.alert_urls:
        return [Row("alert destinations", target.name, FAILED, "no alert destination declared: a failed check or "
                    "deployment would reach nobody", f"add environments.{target.name}.alerts, {APPLY}")]
    rows = []
    for name, url in target.alert_urls.items():
        delivery = send_one(name, url, f"TechnicIA doctor: test message ({target.name})",
                            "A test message from `technicia-deploy doctor`: this destination receives the "
                            f"{target.name} environment's alerts. Nothing to do.", notify_type="info")
        rows.append(Row(f"alert destination {name}", target.name, OK if delivery.ok else FAILED, delivery.detail,
                        "" if delivery.ok else f"check environments.{target.name}.alerts ({name}): the apprise URL, "
                        f"its credentials and that the destination accepts messages from this machine, {APPLY}"))
    return rows


def check_prefect(api_url: str | None, pools: list[str], timeout_s: float) -> list[Row]:
    """The server answers (with the auth string, when the server wants one) and each pool has a live worker."""
    if not api_url:
        return [Row("Prefect server", ALL, FAILED, "no Prefect server configured",
                    "set PREFECT_API_URL (and PREFECT_API_AUTH_STRING when the server has one), or run "
                    "`technicia-deploy sandbox up` here")]
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    rows = []
    try:
        with get_client(sync_client=True, httpx_settings={"timeout": timeout_s}) as client:
            unhealthy = client.api_healthcheck()
            if unhealthy is None:
                client.read_work_pools(limit=1)  # the health route may be open: this one needs the auth string
        problem = f"{type(unhealthy).__name__}: {unhealthy}" if unhealthy is not None else None
    except Exception as error:  # noqa: BLE001 - any failure to talk to the server is this row's verdict
        problem = f"{type(error).__name__}: {error}"
    if problem:
        if re.search(r"\b401\b|Unauthorized", problem) is not None:
            from prefect.settings import PREFECT_API_AUTH_STRING

            value = PREFECT_API_AUTH_STRING.value()
            given = bool(value.get_secret_value() if hasattr(value, "get_secret_value") else value)
            reason = ("the server refused this client's PREFECT_API_AUTH_STRING (not the server's auth string)" if given
                      else "the server wants an auth string and this client has none (PREFECT_API_AUTH_STRING unset)")
            return [Row("Prefect server", ALL, FAILED, f"{api_url}: 401 Unauthorized: {reason}",
                        "set PREFECT_API_AUTH_STRING to the server's PREFECT_SERVER_API_AUTH_STRING (docs/orchestrator.md; "
                        "the sandbox's is in <sandbox dir>/keys/prefect-api-auth-string, which technicia-deploy "
                        "commands run in that directory read themselves)")]
        return [Row("Prefect server", ALL, FAILED, f"{api_url}: {problem}"[:400],
                    "start the Prefect server (docs/operations.md) and check PREFECT_API_URL")]
    rows.append(Row("Prefect server", ALL, OK, f"{api_url} answers"))
    for pool in pools:
        try:
            with get_client(sync_client=True, httpx_settings={"timeout": timeout_s}) as client:
                client.read_work_pool(pool)
                workers = client.read_workers_for_work_pool(pool)
        except ObjectNotFound:
            rows.append(Row(f"work pool {pool}", ALL, FAILED, f"no work pool {pool!r} on the server",
                            "`prefect --no-prompt deploy --all --prefect-file deployments.yaml` creates it; then start "
                            f"a worker: `prefect worker start --pool {pool}`"))
            continue
        online = [w for w in workers if str(getattr(w.status, "value", w.status)).upper() == "ONLINE"]
        if online:
            rows.append(Row(f"work pool {pool}", ALL, OK, f"{len(online)} live worker(s): {', '.join(w.name for w in online)}"))
        else:
            rows.append(Row(f"work pool {pool}", ALL, FAILED,
                            f"no live worker ({len(workers)} known, none with a recent heartbeat): deployments "
                            "triggered from the UI would wait forever",
                            f"start a worker: `prefect worker start --pool {pool}` (docs/operations.md: workers)"))
    return rows


# --- running them ------------------------------------------------------------------------------------------


def _guarded(check: str, environment: str, run: Callable[[], Any], secrets: list[str]) -> Any:
    """``run()``; an unexpected exception becomes a FAILED row (scrubbed), not a traceback that hides the rest."""
    try:
        return run()
    except Exception as error:  # noqa: BLE001 - one broken check must not stop the others
        return Row(check, environment, FAILED, scrub(f"{type(error).__name__}: {error}", secrets)[:400],
                   "unexpected failure of the check itself: see the detail")


def _skipped(check: str, environment: str, because: str) -> Row:
    return Row(check, environment, SKIPPED, f"not checked: {because} failed", f"fix the {because} row first")


def run(targets: list[Target], api_url: str | None, pools: list[str], *, timeout_s: float = DEFAULT_TIMEOUT_S,
        load_problems: list[Row] = ()) -> list[Row]:
    """Every check of every target, concurrently; rows in a stable order (project-wide first, then per environment)."""
    secrets = [s for t in targets for s in t.secrets()]
    pool = ThreadPoolExecutor(max_workers=max(8, 6 * len(targets) + 2), thread_name_prefix="doctor")
    try:
        prefect: Future = pool.submit(_guarded, "Prefect server", ALL, lambda: check_prefect(api_url, pools, timeout_s), secrets)
        credential: Future | None = None
        if targets:
            first = targets[0]  # one OVH application for the project: every environment's block names the same
            credential = pool.submit(_guarded, "OVH credential", ALL, lambda: check_ovh_credential(first, timeout_s), secrets)
        per_env: list[tuple[Target, dict[str, Future]]] = []
        for target in targets:
            def vps_then_ssh(target: Target = target) -> list[Row]:
                found = _guarded("VPS", target.name, lambda: check_vps(target, timeout_s), secrets)
                if isinstance(found, Row):
                    return [found, _skipped("SSH", target.name, "VPS")]
                vps_row, address = found
                if address is None:
                    return [vps_row, _skipped("SSH", target.name, "VPS")]
                return [vps_row, _guarded("SSH", target.name, lambda: check_ssh(target, address, timeout_s), secrets)]

            futures = {
                "vps": pool.submit(vps_then_ssh),
                "dns": pool.submit(_guarded, "DNS zone", target.name, lambda t=target: check_dns(t, timeout_s), secrets),
                "acme": pool.submit(_guarded, "ACME directory", target.name, lambda t=target: check_acme(t, timeout_s), secrets),
                "cloud": pool.submit(_guarded, "cloud keys", target.name, lambda t=target: check_cloud(t, timeout_s), secrets),
                "alerts": pool.submit(_guarded, "alert destinations", target.name, lambda t=target: check_alerts(t), secrets),
            }
            per_env.append((target, futures))

        rows: list[Row] = list(load_problems)
        rows += _as_rows(prefect.result())
        cred: dict[str, Any] | None = None
        if credential is not None:
            found = credential.result()
            cred_row, cred = found if isinstance(found, tuple) else (found, None)
            rows.append(cred_row)
        for target, futures in per_env:
            if cred is not None:
                rows.append(rules_row(target.name, cred.get("rules") or [], _ovh_values(target)))
            else:
                rows.append(_skipped("OVH access rules", target.name, "OVH credential"))
            for key in ("vps", "dns", "acme", "cloud", "alerts"):
                rows += _as_rows(futures[key].result())
        return [Row(r.check, r.environment, r.status, scrub(r.detail, secrets), scrub(r.fix, secrets)) for r in rows]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _as_rows(found: Any) -> list[Row]:
    if isinstance(found, Row):
        return [found]
    if isinstance(found, tuple):
        return [found[0]]
    return list(found)


# --- where the targets come from ---------------------------------------------------------------------------


def targets_from_blocks(environments: list[str], project: str = "technicia") -> tuple[list[Target], list[Row]]:
    """The environments as stored in the Prefect blocks (what a deployment reads)."""
    from prefect.exceptions import ObjectNotFound

    from blocks import TechniciaEnvironment, environment_block_name

    targets, problems = [], []
    for name in environments:
        block_name = environment_block_name(project, name)
        try:
            block = TechniciaEnvironment.load(block_name)
            targets.append(Target(name, block.environment(), block.ovh(), block.ssh(), block.api_keys(),
                                  block.alerts().urls()))
        except (ValueError, ObjectNotFound) as error:
            problems.append(Row("configuration", name, FAILED, f"cannot load Prefect block {block_name!r} or the blocks it "
                                f"names ({type(error).__name__})", f"run `technicia-deploy blocks apply environments.yaml`, "
                                "or check a file before applying it with `doctor --config environments.yaml`"))
    return targets, problems


def targets_from_file(path: str, environments: list[str]) -> list[Target]:
    """The environments as environments.yaml describes them, secrets resolved here (nothing is saved)."""
    from technicia_deploy import config
    from technicia_deploy.block_sync import wanted_blocks

    project = config.load(path)
    secrets = config.resolve_secrets(project, path)
    project = config.embed_files(project, path)
    blocks = dict(wanted_blocks(project, secrets))
    ovh = blocks[f"{project.name}-ovh"]
    targets = []
    for name in environments:
        base = f"{project.name}-{name}"
        targets.append(Target(name, project.environment(name), ovh, blocks[f"{base}-ssh"], blocks[f"{base}-api-keys"],
                              blocks[f"{base}-alerts"].urls()))
    return targets

