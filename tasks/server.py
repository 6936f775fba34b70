"""Préparation du serveur: OS (OVH facts, optional rebuild, hardening), firewall, Docker."""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

from technicia_deploy.commands import docker as docker_cmds
from technicia_deploy.commands import firewall as firewall_cmds
from technicia_deploy.commands import hardening, system
from technicia_deploy.connection import ConnectionFailed, HostConnection, HostKeyMismatch, load_private_key

from tasks import runtime
from tasks.step import StepResult, outcome, tracked_step

SSH_BACK_DEADLINE_S = 600.0


def deploy_public_key(env: runtime.EnvironmentContext) -> str:
    key = load_private_key(env.ssh.private_key.get_secret_value())
    return f"{key.get_name()} {key.get_base64()} technicia-deploy"


def _wait_for_ssh(env: runtime.EnvironmentContext, user: str, deadline_s: float) -> None:
    """After a rebuild, poll until SSH answers with the pinned key (or give up at the deadline)."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            runtime.connect(env, user)
            return
        except HostKeyMismatch:
            raise
        except ConnectionFailed:
            if time.monotonic() > deadline:
                raise
            runtime.pool().drop(env.address(), env.ssh.port, user)
            time.sleep(2)


def _connect_for_hardening(env: runtime.EnvironmentContext):
    """The deploy user if it can log in already; else the admin user a fresh VPS is delivered with."""
    try:
        return runtime.connect(env), False
    except HostKeyMismatch:
        raise
    except ConnectionFailed as first:
        admin = env.ssh.admin_user
        if not admin or admin == env.deploy_user:
            raise
        try:
            return runtime.connect(env, admin), True
        except HostKeyMismatch:
            raise
        except ConnectionFailed:
            raise first from None


def fresh_login(env: runtime.EnvironmentContext) -> HostConnection:
    """A new SSH connection as the deploy user, outside the flow run's pool (so the old one stays open)."""
    return HostConnection(env.address(), env.ssh.port, env.deploy_user, env.ssh.host_key,
                          env.ssh.private_key.get_secret_value()).open()


def harden(conn: HostConnection, env: runtime.EnvironmentContext, wanted: hardening.HardeningWanted,
           login: Callable[[], HostConnection]) -> list[str]:
    """Converge the hardening over ``conn``; when sshd's drop-in changed, prove that ``login`` (a fresh connection)
    still gets in, and read the facts again through it: the change stays only if they need nothing more.

    ``conn`` is never closed here: if the fresh login fails, the previous drop-in is put back over it and sshd
    reloaded, so the pipeline keeps the access it had."""
    user = wanted.user
    parse = lambda out: hardening.parse_facts(user, out)  # noqa: E731
    _, commands = runtime.converge(conn, hardening.fact_command(user), parse,
                                   lambda facts: hardening.operations(facts, wanted))
    if not hardening.changes_sshd(commands):
        return commands
    try:
        fresh = login()
    except ConnectionFailed as exc:
        conn.run(hardening.ROLLBACK_DROPIN, sudo=True)
        raise hardening.HardeningError(
            f"{env.name}: after the new sshd settings, a fresh SSH login as {user} failed ({exc}); the previous "
            f"{hardening.SSHD_DROPIN} was restored and sshd reloaded over the still-open connection") from None
    try:
        conn.run(hardening.COMMIT_DROPIN, sudo=True)
        again = hardening.operations(parse(fresh.run(hardening.fact_command(user), sudo=True).stdout), wanted)
    finally:
        fresh.close()
    if again:
        raise hardening.HardeningError(f"{env.name}: hardening still needs {len(again)} command(s) right after "
                                       "applying them: another configuration undoes them")
    return commands


def publish_server_facts(environment: str, env: runtime.EnvironmentContext, ovh_view, server_view) -> None:
    """The 'Configuration du serveur' table: what OVH says beside what the server says (raw values)."""
    from prefect.artifacts import create_table_artifact

    rows = [
        {"parameter": "model", "ovh": ovh_view.model, "server": ""},
        {"parameter": "vcores", "ovh": ovh_view.vcores, "server": server_view.vcores},
        {"parameter": "ram_gb", "ovh": ovh_view.ram_gb, "server": server_view.ram_gb},
        {"parameter": "disk_gb", "ovh": ovh_view.disk_gb, "server": server_view.disk_gb},
        {"parameter": "os", "ovh": ovh_view.os or "", "server": server_view.os or ""},
        {"parameter": "zone", "ovh": ovh_view.datacentre, "server": ""},
        {"parameter": "ip", "ovh": env.address(), "server": ""},
        {"parameter": "domain", "ovh": "", "server": env.settings.domain},
    ]
    create_table_artifact(rows, key=f"server-{environment}", description=f"{environment}: server as OVH and the server report it")


@tracked_step("server.os")
def os_installation(environment: str, rebuild: bool = False, project: str = "technicia") -> StepResult:
    """Compare the VPS with its declared spec (OVH API); rebuild only when asked; harden SSH and sudo."""
    from technicia_deploy.ovh import retries_recorded, retry_note

    env = runtime.environment(environment, project)
    spec = env.settings.server
    api = env.ovh()
    changed = False
    notes = []
    with retries_recorded() as retried:
        details = api.vps_details(spec.ovh_service_name)
        if rebuild:
            image = api.find_image(spec.ovh_service_name, spec.os)
            api.rebuild_and_wait(spec.ovh_service_name, image, deploy_public_key(env))
            runtime.pool().close()
            _wait_for_ssh(env, env.ssh.admin_user or env.deploy_user, SSH_BACK_DEADLINE_S)
            changed = True
            notes.append(f"rebuilt with {spec.os}")
        env.address()  # the VPS's address, from OVH unless declared (its retries are this step's too)
    differences = details.differences(spec)
    if retried:
        notes.append(retry_note(retried))

    conn, via_admin = _connect_for_hardening(env)
    pinned = env.ssh.host_key.split()[0]
    as_root = via_admin and env.ssh.admin_user == "root"
    # The pipeline never logs in as root once the deploy user exists; a VPS delivered with root only keeps root
    # logins by key until then (this very run), and loses them below, over the deploy user's connection.
    wanted = hardening.HardeningWanted(public_key=deploy_public_key(env), user=env.deploy_user,
                                       permit_root_login="prohibit-password" if as_root else "no",
                                       pinned_host_key_type=pinned)
    commands = harden(conn, env, wanted, lambda: fresh_login(env))
    if via_admin:
        # From here on every task uses the deploy user.
        conn = runtime.connect(env)
    if as_root:
        commands += harden(conn, env, dataclasses.replace(wanted, permit_root_login="no"), lambda: fresh_login(env))
    observed = system.parse_facts(conn.read(system.fact_command()).stdout)
    publish_server_facts(environment, env, details, observed)
    changed = changed or bool(commands)
    if commands:
        notes.append(f"hardening: {len(commands)} change(s)")
    spec_note = "matches the declared spec" if not differences else "DIFFERS: " + "; ".join(differences)
    summary = f"{details.model} {details.vcores} vCores/{details.ram_gb} GB/{details.disk_gb} GB, {details.datacentre}, " \
              f"{details.os or 'OS unknown'}, {details.state}: {spec_note}" + (f"; {', '.join(notes)}" if notes else "")
    return StepResult("server.os", outcome(changed), summary, {
        "observed": {"model": details.model, "vcores": details.vcores, "ram_gb": details.ram_gb,
                     "disk_gb": details.disk_gb, "zone": details.datacentre, "os": details.os, "state": details.state},
        "differences": differences,
        "server_reports": {"vcores": observed.vcores, "ram_gb": observed.ram_gb, "disk_gb": observed.disk_gb, "os": observed.os},
        "commands": len(commands),
        "ovh_retries": [r.as_dict() for r in retried],
    })


@tracked_step("server.firewall")
def firewall(environment: str, project: str = "technicia") -> StepResult:
    """ufw: deny incoming, the public ports open, internal ports closed from outside despite Docker."""
    env = runtime.environment(environment, project)
    wanted = env.settings.firewall
    conn = runtime.connect(env)
    _, commands = runtime.converge(conn, firewall_cmds.fact_command(), firewall_cmds.parse_facts,
                                   lambda facts: firewall_cmds.operations(facts, wanted, ssh_port=env.ssh.port))
    ovh_outcome, retried = "unchanged", []
    if wanted.ovh_network_firewall:
        from technicia_deploy.ovh import network_firewall_rules, retries_recorded

        rules = network_firewall_rules([(r.port, r.protocol) for r in wanted.public])
        with retries_recorded() as retried:
            ovh_outcome = env.ovh().ensure_firewall(env.address(), rules)
    from technicia_deploy.ovh import retry_note

    public = ", ".join(f"{r.port}/{r.protocol}" for r in wanted.public)
    internal = ", ".join(f"{r.port}/{r.protocol}" for r in wanted.internal) or "none"
    changed = bool(commands) or ovh_outcome == "changed"
    return StepResult("server.firewall", outcome(changed),
                      f"public {public}; internal only {internal}" + (f"; {len(commands)} rule change(s)" if commands else "")
                      + ("; OVH network firewall updated" if ovh_outcome == "changed" else "")
                      + (f"; {retry_note(retried)}" if retried else ""),
                      {"public": [r.port for r in wanted.public], "internal": [r.port for r in wanted.internal],
                       "commands": len(commands), "ovh_retries": [r.as_dict() for r in retried]})


@tracked_step("server.docker")
def docker_installation(environment: str, project: str = "technicia") -> StepResult:
    """Docker engine + compose installed, running, at the required version; deploy user in the docker group."""
    env = runtime.environment(environment, project)
    wanted = env.settings.docker
    conn = runtime.connect(env)
    user = env.deploy_user
    facts, commands = runtime.converge(conn, docker_cmds.fact_command(user), docker_cmds.parse_facts,
                                       lambda found: docker_cmds.operations(found, wanted, user=user))
    if commands:  # versions and compose flavour as installed now
        facts = docker_cmds.parse_facts(conn.run(docker_cmds.fact_command(user), sudo=True).stdout)
    if not docker_cmds.installed_version_ok(facts, wanted):
        raise RuntimeError(f"{environment}: Docker {facts.docker_version or 'missing'} is below the required "
                           f"{wanted.min_version} (docker.source: {wanted.source})")
    compose = docker_cmds.compose_command(facts)
    return StepResult("server.docker", outcome(bool(commands)),
                      f"Docker {facts.docker_version}, {compose} {facts.compose_v2_version or facts.compose_v1_version}"
                      + (f"; {len(commands)} change(s)" if commands else ""),
                      {"docker": facts.docker_version, "compose": compose, "commands": len(commands)})


def reads(env: runtime.EnvironmentContext) -> list:
    """The fact commands this phase's steps read over the deploy user's connection (the deploy flow fetches them
    ahead, in one round trip): the same builders, with the same arguments, as the steps' own reads above."""
    from technicia_deploy.commands.batch import Read

    user = env.deploy_user
    return [Read(hardening.fact_command(user), sudo=True), Read(system.fact_command()),
            Read(firewall_cmds.fact_command(), sudo=True), Read(docker_cmds.fact_command(user), sudo=True)]
