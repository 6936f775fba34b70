"""``sandbox up|down|status``: the whole local OVH world, in order, and its environments.yaml.

Order of ``up``: vps (network + the three VPSes), ovh (OVH API emulator + DNS),
acme (pebble), cloud (API emulators), app (sample application), receiver (where
alerts land: webhook + SMTP on the gateway, see ``receiver``). ovh comes before
acme, unlike the first sketch of the design, because pebble must be started with
``-dnsserver`` pointing at the sandbox DNS that ovh creates (pebble resolves the
names it validates; without it, ``*.exemple.test`` would not resolve).
``down`` goes in reverse, then sweeps any docker object still named with the
sandbox prefix. Every step is idempotent: ``up`` twice is harmless.

After the components, ``up`` writes ``<state dir>/environments.yaml`` (secrets as
``{file: ...}`` references only) and applies it to Prefect blocks, against
``$PREFECT_API_URL`` or, when unset, a ``prefect server`` daemon of its own.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Callable

import yaml

from technicia_deploy.sandbox import processes
from technicia_deploy.sandbox.docker_engine import docker, names_with_prefix, require_engine
from technicia_deploy.sandbox.state import SandboxState

COMPONENTS = ("vps", "ovh", "acme", "cloud", "app", "receiver")
PREFECT_DAEMON = "prefect-server"
ZONE = "exemple.test"
# Domains mirroring the seed (test-technicia.exemple.fr ...), in the sandbox zone.
SUBDOMAINS = {"test": "test-technicia", "staging": "staging-technicia", "production": "technicia"}
LABELS = {"test": "VPS-TEST-XYZ", "staging": "VPS-STAGING-XYZ", "production": "VPS-PROD-XYZ"}
# The seed's "Firewall Configuration" table.
FIREWALL = {
    "public": [
        {"port": 22, "service": "SSH", "comment": "Accès administrateur"},
        {"port": 80, "service": "HTTP", "comment": "Redirection vers HTTPS"},
        {"port": 443, "service": "HTTPS", "comment": "Frontend + API"},
    ],
    "internal": [
        {"port": 5678, "service": "n8n", "comment": "Administration des workflows (accès interne uniquement)"},
        {"port": 6333, "service": "Qdrant API", "comment": "Base vectorielle (accès interne uniquement)"},
    ],
    "ovh_network_firewall": False,
}
HEALTH = [
    {"name": "frontend", "url": "/"},
    {"name": "api", "url": "/api/health"},
    {"name": "n8n", "url": "http://127.0.0.1:5678/healthz", "from_server": True},
    {"name": "qdrant", "url": "http://127.0.0.1:6333/readyz", "from_server": True},
    # A real request through the stack (nginx -> API -> Qdrant), not only a health probe.
    {"name": "api-request", "url": "/api/ask?q=sandbox%20check"},
]
# Short enough for tests, long enough to measure a p95.
PERFORMANCE = {"concurrency": 4, "duration_s": 3, "path": "/", "min_rps": 20, "max_p95_ms": 500, "max_error_rate": 0.01}

Log = Callable[[str], None]


class SandboxIncomplete(RuntimeError):
    """A component the sandbox needs is not available (its module or its state)."""


def component(name: str) -> ModuleType | None:
    """The component's module, or None if it is not part of this installation (a partial checkout)."""
    try:
        return importlib.import_module(f"technicia_deploy.sandbox.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"technicia_deploy.sandbox.{name}":
            return None
        raise


def environments_file(state: SandboxState) -> Path:
    return state.path("environments.yaml")


def sandbox_config(data: dict) -> dict:
    """environments.yaml for the sandbox, from the components' state (pure: unit-tested against config.parse)."""
    missing = [key for key in ("vps", "keys", "ovh", "acme", "cloud", "app") if not data.get(key)]
    if missing:
        raise SandboxIncomplete(f"cannot write environments.yaml: no state for component(s) {', '.join(missing)}")
    ovh, acme, keys = data["ovh"], data["acme"], data["keys"]
    zone = ovh.get("zone", ZONE)
    environments = {}
    for env, vps in data["vps"].items():
        domain = f"{SUBDOMAINS[env]}.{zone}"
        spec = vps["spec"]
        environments[env] = {
            "url": f"https://{domain}",
            "domain": domain,
            "server": {
                "ovh_service_name": vps["service_name"],
                "label": LABELS[env],
                "model": spec["model"], "vcores": spec["vcores"], "ram_gb": spec["ram_gb"], "disk_gb": spec["disk_gb"],
                "os": spec["os"], "zone": spec["zone"],
                # No host: the pipeline asks the OVH API for the VPS address, as it would in production.
            },
            "ssh": {
                # A fresh VPS has only the image's admin user, with the deploy key authorized;
                # the pipeline's OS step creates the deploy user through it, then uses only that.
                "user": "deploy",
                "admin_user": vps["admin_user"],
                "port": 22,
                "host_key": vps["host_key"],
                "private_key": {"file": keys["deploy_private_key"]},
            },
            "dns": {"zone": zone, "ttl": 60, "nameservers": [ovh["dns"]]},
            "firewall": FIREWALL,
            "tls": {"acme_server": acme["directory"], "email": f"ops@{zone}", "min_days_left": 30, "ca_bundle": acme["ca_bundle"],
                    # pebble's issuing root: the checks and the monitoring verify the site's chain against it.
                    **({"issuer_ca": acme["issuer_roots"]} if acme.get("issuer_roots") else {})},
            "docker": {"source": "distro"},
            "health": HEALTH,
            "performance": PERFORMANCE,
            # The receiver component's webhook + SMTP destinations (secret files under the state dir).
            "alerts": (data.get("receiver") or {}).get("destinations", {}).get(env, []),
            "api_keys": data["cloud"]["environments"][env]["api_keys"],
            # A sandbox cannot wait the seed's 24 h between preparing production's DNS and promoting:
            # the DNS gate still checks the record and its age, and warns instead of blocking.
            **({"promotion": {"dns_age_policy": "warn"}} if env == "production" else {}),
        }
    return {
        "name": "technicia",
        "application": {"repository": data["app"]["repository"]},
        "ovh": {
            "endpoint": ovh.get("endpoint", "ovh-eu"),
            "api_url": ovh["api_url"],
            "application_key": {"file": ovh["application_key_file"]},
            "application_secret": {"file": ovh["application_secret_file"]},
            "consumer_key": {"file": ovh["consumer_key_file"]},
        },
        "environments": environments,
    }


def write_environments(state: SandboxState) -> Path:
    from technicia_deploy import config

    document = sandbox_config(state.data)
    path = environments_file(state)
    config.parse(document, path)  # a sandbox that writes an invalid file is a bug: fail here, naming the field
    header = "# Generated by `technicia-deploy sandbox up` for this sandbox; secrets are files under the state dir.\n"
    path.write_text(header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    return path


# --- Prefect -----------------------------------------------------------------------------------------

def _prefect_healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _recorded_port(previous: dict) -> int | None:
    """The port the sandbox's own server had, if it is free now."""
    import socket
    from urllib.parse import urlparse

    if not previous.get("managed") or not previous.get("url"):
        return None
    port = urlparse(previous["url"]).port
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server itself binds
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return None
    return port


ORCHESTRATORS = ("sqlite", "postgres")


def prefect_up(state: SandboxState, log: Log, orchestrator: str | None = None) -> str:
    """The Prefect API URL: $PREFECT_API_URL if set, else a server daemon of the sandbox's own.

    ``orchestrator``: ``sqlite`` (Prefect's embedded database) or ``postgres`` (the sandbox's PostgreSQL, the API
    protected by an auth string); None keeps what the sandbox's own server runs now (sqlite for a new sandbox).
    """
    external = os.environ.get("PREFECT_API_URL")
    previous = state.data.get("prefect") or {}
    if orchestrator is None:
        orchestrator = previous.get("orchestrator", "sqlite") if previous.get("managed") else "sqlite"
    if orchestrator not in ORCHESTRATORS:
        raise ValueError(f"unknown orchestrator {orchestrator!r}: one of {', '.join(ORCHESTRATORS)}")
    if external and not (previous.get("managed") and external == previous.get("url")):
        if orchestrator == "postgres":
            raise SandboxIncomplete("--orchestrator postgres starts the sandbox's own Prefect server on its own "
                                    "PostgreSQL: unset PREFECT_API_URL (it names another server)")
        state.data["prefect"] = {"url": external, "managed": False}
        state.save()
        return external
    if orchestrator == "postgres":
        return _prefect_postgres_up(state, log, previous)
    if previous.get("orchestrator") == "postgres":
        # From postgres back to the embedded database: another server, its workers without the auth string.
        previous = _leave_postgres(state, log, previous)
    # (PREFECT_API_URL naming the sandbox's own server, exported from `sandbox status`, is still the sandbox's.)
    if previous.get("managed") and processes.pid_of(state, PREFECT_DAEMON) and _prefect_healthy(previous["url"]):
        return previous["url"]
    processes.stop(state, PREFECT_DAEMON)
    # A restarted server keeps its address (its workers and the UI's open pages find it again) when it can.
    port = _recorded_port(previous) or processes.free_port()
    url = f"http://127.0.0.1:{port}/api"
    home = state.path("prefect")
    home.mkdir(parents=True, exist_ok=True)
    log(f"starting a Prefect server on 127.0.0.1:{port} (home {home})")
    env = {
        "PREFECT_HOME": str(home),
        "PREFECT_UI_API_URL": url,  # or the UI looks for the API on port 4200
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    processes.start(state, PREFECT_DAEMON,
                    [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                    env=env)
    deadline = time.monotonic() + 120
    while not _prefect_healthy(url):
        if not processes.pid_of(state, PREFECT_DAEMON) or time.monotonic() > deadline:
            raise RuntimeError(f"the Prefect server did not become healthy at {url}; see {state.logs / (PREFECT_DAEMON + '.log')}")
        time.sleep(0.2)
    state.data["prefect"] = {"url": url, "managed": True, "home": str(home)}
    state.save()
    return url


def _wait_healthy(state: SandboxState, url: str) -> None:
    deadline = time.monotonic() + 120
    while not _prefect_healthy(url):
        if not processes.pid_of(state, PREFECT_DAEMON) or time.monotonic() > deadline:
            raise RuntimeError(f"the Prefect server did not become healthy at {url}; see {state.logs / (PREFECT_DAEMON + '.log')}")
        time.sleep(0.2)


def _prefect_postgres_up(state: SandboxState, log: Log, previous: dict) -> str:
    """The orchestrator of docs/orchestrator.md, in the sandbox: the server on the sandbox's PostgreSQL, bound to
    127.0.0.1, its API refusing requests without the auth string (``keys/prefect-api-auth-string``)."""
    from technicia_deploy.sandbox import orchestration, postgres

    postgres.up(state, log)
    auth_file = orchestration.ensure_auth_string(state)
    if (previous.get("managed") and previous.get("orchestrator") == "postgres" and processes.pid_of(state, PREFECT_DAEMON)
            and _prefect_healthy(previous["url"])):
        return previous["url"]
    if previous.get("managed") and previous.get("orchestrator") != "postgres":
        # The embedded server's workers have no auth string: they restart with the new server.
        log(f"prefect: moving from {previous.get('orchestrator', 'sqlite')} to postgres")
        orchestration.stop_workers(state)
        state.data.pop("orchestration", None)
    processes.stop(state, PREFECT_DAEMON)
    port = _recorded_port(previous) or processes.free_port()
    url = f"http://127.0.0.1:{port}/api"
    home = state.path("prefect")
    home.mkdir(parents=True, exist_ok=True)
    log(f"starting a Prefect server on 127.0.0.1:{port} (home {home}; database PostgreSQL on "
        f"{state.data['postgres']['host']}:{state.data['postgres']['port']}; API auth string in {auth_file})")
    env = orchestration.server_env(str(home), url, postgres.connection_url(state), auth_file.read_text().strip())
    processes.start(state, PREFECT_DAEMON,
                    [sys.executable, "-m", "prefect", "server", "start", "--host", orchestration.SERVER_HOST,
                     "--port", str(port)], env=env)
    _wait_healthy(state, url)
    state.data["prefect"] = {"url": url, "managed": True, "home": str(home), "orchestrator": "postgres",
                             "auth_string_file": str(auth_file)}
    state.save()
    return url


def _leave_postgres(state: SandboxState, log: Log, previous: dict) -> dict:
    from technicia_deploy.sandbox import orchestration, postgres

    log("prefect: moving from postgres to sqlite (Prefect's embedded database)")
    orchestration.stop_workers(state)
    state.data.pop("orchestration", None)
    processes.stop(state, PREFECT_DAEMON)
    postgres.stop(state)
    return {"url": previous.get("url"), "managed": True}


def prefect_client_settings(state: SandboxState, api_url: str) -> dict:
    """Prefect settings for a client of ``api_url`` in this process (temporary_settings' updates)."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL

    from technicia_deploy.sandbox import orchestration

    updates = {PREFECT_API_URL: api_url}
    auth = orchestration.client_env(state).get("PREFECT_API_AUTH_STRING")
    if auth and (state.data.get("prefect") or {}).get("url") == api_url:
        updates[PREFECT_API_AUTH_STRING] = auth
    return updates


def apply_blocks(path: Path, api_url: str, state: SandboxState | None = None) -> list:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from technicia_deploy import block_sync

    updates = prefect_client_settings(state, api_url) if state is not None else {PREFECT_API_URL: api_url}
    with temporary_settings(updates=updates):
        return block_sync.apply(path)


# --- the commands ------------------------------------------------------------------------------------

def up(state: SandboxState, log: Log = lambda line: None, orchestrator: str | None = None) -> None:
    """``orchestrator``: see ``prefect_up`` (None: what the sandbox runs now, sqlite for a new one)."""
    require_engine()
    state.dir.mkdir(parents=True, exist_ok=True)
    skipped = []
    for name in COMPONENTS:
        module = component(name)
        if module is None:
            skipped.append(name)
            log(f"{name}: module technicia_deploy.sandbox.{name} is not available; skipped")
            continue
        started = time.monotonic()
        if name == "vps":
            module.up(state, log=log)
        else:
            module.up(state)
        log(f"{name}: up ({time.monotonic() - started:.1f}s)")
    if skipped:
        raise SandboxIncomplete(f"sandbox incomplete, component(s) missing: {', '.join(skipped)}; "
                                "environments.yaml not written")
    path = write_environments(state)
    log(f"wrote {path}")
    url = prefect_up(state, log, orchestrator)
    changes = apply_blocks(path, url, state)
    log(f"Prefect blocks at {url}: " + ", ".join(f"{c.name} {c.action}" for c in changes))
    if (state.data.get("prefect") or {}).get("managed"):
        # The sandbox's own server: make the UI usable (deployments to trigger, a worker to run them).
        from technicia_deploy.sandbox import orchestration

        orchestration.up(state, url, log)


def down(state: SandboxState, log: Log = lambda line: None) -> None:
    """Remove everything the sandbox made, tolerating half-made state; keys and the state dir stay."""
    errors = []
    for name in reversed(COMPONENTS):
        module = component(name)
        if module is None:
            continue
        try:
            module.down(state)
            log(f"{name}: down")
        except Exception as exc:  # keep tearing down the rest; report at the end
            errors.append(f"{name}: {exc}")
    if component("vps") is not None:
        from technicia_deploy.sandbox import network
        network.down(state)
    from technicia_deploy.sandbox import orchestration

    if orchestration.down(state):
        log("prefect worker: stopped")
    if processes.stop(state, PREFECT_DAEMON):
        log("prefect server: stopped")
    if state.data.get("postgres"):
        from technicia_deploy.sandbox import postgres

        if postgres.down(state):
            log("postgres: stopped (the cluster stays in the state directory)")
    state.data.pop("prefect", None)
    state.save()
    _sweep(state, log)
    environments_file(state).unlink(missing_ok=True)
    if errors:
        raise RuntimeError("sandbox down left errors: " + "; ".join(errors))


def _sweep(state: SandboxState, log: Log) -> None:
    """Remove any docker object still carrying this sandbox's prefix (a component that crashed half-way)."""
    try:
        require_engine()
    except RuntimeError:
        return
    for kind, remove in (("container", ["rm", "--force", "--volumes"]), ("volume", ["volume", "rm", "--force"]),
                         ("network", ["network", "rm"])):
        for name in names_with_prefix(kind, state.prefix):
            docker(*remove, name, check=False)
            log(f"removed leftover {kind} {name}")


def status(state: SandboxState) -> list[str]:
    lines = [f"sandbox {state.dir} (docker prefix {state.prefix})"]
    if not state.data:
        return lines + ["not up (`technicia-deploy sandbox up`)"]
    from technicia_deploy.sandbox import network
    try:
        lines += network.status(state)
    except (OSError, RuntimeError) as exc:  # no docker command / engine: say so, show the rest
        lines.append(f"network: status unavailable ({exc})")
    for name in COMPONENTS:
        module = component(name)
        if module is None:
            lines.append(f"{name}: not available in this installation")
            continue
        try:
            lines += module.status(state)
        except Exception as exc:
            lines.append(f"{name}: status unavailable ({exc})")
    prefect = state.data.get("prefect")
    if prefect:
        kind = "sandbox daemon" if prefect.get("managed") else "external"
        alive = "" if not prefect.get("managed") else (" (running)" if processes.pid_of(state, PREFECT_DAEMON) else " (STOPPED)")
        lines.append(f"prefect: {prefect['url']} ({kind}){alive}; UI {prefect['url'].removesuffix('/api')}")
        if prefect.get("managed"):
            lines += orchestrator_status(state)
    from technicia_deploy.sandbox import orchestration

    lines += orchestration.status(state)
    if environments_file(state).exists():
        lines.append(f"environments.yaml: {environments_file(state)}")
    return lines


def orchestrator_status(state: SandboxState) -> list[str]:
    """Which orchestrator the sandbox's own Prefect server runs on."""
    prefect = state.data.get("prefect") or {}
    if prefect.get("orchestrator") != "postgres":
        return [f"orchestrator: sqlite (Prefect's embedded database in {prefect.get('home')}; API without auth; "
                "`sandbox up --orchestrator postgres` for the production setup)"]
    from technicia_deploy.sandbox import postgres

    return [f"orchestrator: postgres (the server's database is the sandbox's PostgreSQL; API auth string in "
            f"{prefect.get('auth_string_file')}, mode 0600: clients set PREFECT_API_AUTH_STRING to it, the UI asks for it; "
            "technicia-deploy commands run here read it themselves)"] + postgres.status(state)


def orchestrator_up(state: SandboxState, log: Log = lambda line: None, orchestrator: str = "postgres") -> str:
    """Only the orchestrator (no VPS, no blocks, no deployments.yaml): the sandbox's Prefect server, the work pool
    and its workers. For tests and benchmarks of the orchestrator itself; ``orchestrator_down`` stops it."""
    from technicia_deploy.sandbox import orchestration

    state.dir.mkdir(parents=True, exist_ok=True)
    url = prefect_up(state, log, orchestrator)
    orchestration.ensure_pool(state, url)
    orchestration.workers_up(state, url, log)
    return url


def orchestrator_down(state: SandboxState, log: Log = lambda line: None) -> None:
    from technicia_deploy.sandbox import orchestration, postgres

    if orchestration.down(state):
        log("prefect workers: stopped")
    if processes.stop(state, PREFECT_DAEMON):
        log("prefect server: stopped")
    if state.data.get("postgres") and postgres.down(state):
        log("postgres: stopped")
    state.data.pop("prefect", None)
    state.save()
