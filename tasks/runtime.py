"""What the tasks of one flow run share: the environment's blocks and one SSH connection per host.

Tasks receive only names (environment, project) as parameters; secrets are
read from blocks here, inside the worker, and never become parameters or
results. Everything is cached per flow run and released by :func:`release`.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from technicia_deploy.connection import ConnectionPool, HostConnection

if TYPE_CHECKING:
    from technicia_deploy.commands.batch import Read

log = logging.getLogger(__name__)

_lock = threading.Lock()
_pools: dict[str, ConnectionPool] = {}
_contexts: dict[tuple[str, str, str], "EnvironmentContext"] = {}
# Per flow run: the connections its tasks were handed, each with its reconnection count when first handed out.
_connections: dict[str, dict[int, tuple[HostConnection, int]]] = {}


def _flow_run_key() -> str:
    from prefect.runtime import flow_run

    return str(flow_run.id or "local")


@dataclass
class EnvironmentContext:
    """One environment's configuration and credentials, loaded once per flow run."""

    name: str
    project: str
    block: Any  # blocks.TechniciaEnvironment
    settings: Any  # config.Environment
    application: Any  # config.Application
    ssh: Any  # blocks.SshAccess
    _address: str | None = None
    _loaded: dict[str, Any] = field(default_factory=dict)

    @property
    def deploy_user(self) -> str:
        return self.ssh.user

    def _once(self, name: str, load: Callable[[], Any]) -> Any:
        """A block the environment names, loaded from the server once per flow run (each load is a request)."""
        with _lock:
            if name in self._loaded:
                return self._loaded[name]
        value = load()
        with _lock:
            return self._loaded.setdefault(name, value)

    def ovh_credentials(self):
        return self._once("ovh", self.block.ovh)

    def api_keys(self):
        return self._once("api_keys", self.block.api_keys)

    def alerts(self):
        return self._once("alerts", self.block.alerts)

    def ovh(self):
        """The OVH API client (one per flow run: each new client asks OVH for its clock first)."""
        from technicia_deploy.ovh import OvhApi

        return self._once("ovh_api", lambda: OvhApi.from_block(self.ovh_credentials()))

    def address(self) -> str:
        """The server's address: declared, or the VPS's IPv4 as OVH reports it (looked up once)."""
        if self._address is None:
            self._address = self.ssh.host or self.settings.server.host or self.ovh().vps_ipv4(self.settings.server.ovh_service_name)
        return self._address


def environment(name: str, project: str = "technicia") -> EnvironmentContext:
    from blocks import TechniciaEnvironment, environment_block_name
    from prefect.exceptions import ObjectNotFound

    key = (_flow_run_key(), project, name)
    with _lock:
        if key in _contexts:
            return _contexts[key]
    block_name = environment_block_name(project, name)
    try:
        block = TechniciaEnvironment.load(block_name)
    except (ValueError, ObjectNotFound):
        raise LookupError(
            f"environment {name!r}: no Prefect block {block_name!r}; run `technicia-deploy blocks apply environments.yaml`"
        ) from None
    context = EnvironmentContext(name, project, block, block.environment(), block.app(), block.ssh())
    with _lock:
        return _contexts.setdefault(key, context)


def pool() -> ConnectionPool:
    key = _flow_run_key()
    with _lock:
        return _pools.setdefault(key, ConnectionPool())


def connect(env: EnvironmentContext, user: str | None = None) -> HostConnection:
    """The flow run's connection to the environment's server, as the deploy user unless told otherwise."""
    conn = pool().get(env.address(), env.ssh.port, user or env.deploy_user, env.ssh.host_key,
                      env.ssh.private_key.get_secret_value())
    with _lock:
        _connections.setdefault(_flow_run_key(), {}).setdefault(id(conn), (conn, conn.reconnects))
    return conn


def reconnections() -> int:
    """How many times this flow run's SSH connections were re-opened after being lost, so far: a step compares
    it before and after, so that a connection lost under it shows in its summary (tasks.step)."""
    with _lock:
        handed = list(_connections.get(_flow_run_key(), {}).values())
    return sum(conn.reconnects - first for conn, first in handed)


def ssh_stats() -> dict[str, int]:
    """What this flow run's SSH connections did so far: hosts, commands sent, facts fetched ahead, reads answered
    without a round trip, reconnections (the run's summary; on a run that changes nothing, a handful of commands)."""
    with _lock:
        handed = [conn for conn, _ in _connections.get(_flow_run_key(), {}).values()]
    return {"connections": len(handed), "commands": sum(c.commands_run for c in handed),
            "facts_fetched_ahead": sum(c.prefetched for c in handed),
            "reads_without_round_trip": sum(c.reads_reused for c in handed),
            "reconnections": sum(c.reconnects for c in handed)}


def release() -> None:
    """Close this flow run's connections and forget its cached blocks."""
    key = _flow_run_key()
    with _lock:
        conn_pool = _pools.pop(key, None)
        _connections.pop(key, None)
        for ctx_key in [k for k in _contexts if k[0] == key]:
            del _contexts[ctx_key]
    if conn_pool:
        conn_pool.close()


def read(conn: HostConnection, fact: "Read"):
    """A step's fact read (kept until a command changes the server; maybe fetched ahead by :func:`prefetch`)."""
    return conn.read(fact.command, sudo=fact.sudo)


def prefetch(env: EnvironmentContext, reads: "list[Read]") -> int:
    """Fetch ``reads`` ahead, side by side in one round trip, so the steps' own reads cost nothing; returns how
    many were fetched. Never fails the run: a server not reachable yet (a fresh VPS has no deploy user) or a
    lost connection leaves each step to read and report by itself."""
    if not reads:
        return 0
    try:
        return connect(env).prefetch(reads)
    except Exception as exc:  # noqa: BLE001 - see above
        log.debug("%s: facts not fetched ahead (%s): each step reads its own", env.name, exc)
        return 0


def converge(conn: HostConnection, fact_command: str, parse: Callable[[str], Any],
             operate: Callable[[Any], list[str]], *, sudo: bool = True) -> tuple[Any, list[str]]:
    """Read facts, compute what is still needed, run it. Returns (facts, commands run)."""
    facts = parse(conn.read(fact_command, sudo=sudo).stdout)
    commands = operate(facts)
    for command in commands:
        conn.run(command, sudo=True)
    return facts, commands
