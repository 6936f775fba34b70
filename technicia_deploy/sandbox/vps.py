"""The three VPSes (test, staging, production) as systemd containers on the sandbox network.

Each looks like a fresh OVH Debian VPS: systemd as PID 1, sshd, a ``debian``
admin user with passwordless sudo and the sandbox deploy key authorized, a
root password set and sshd at Debian's defaults (so hardening has something
real to change). Its ed25519 host key is generated under the state dir before
the container exists, so environments.yaml can pin it, and survives rebuilds.
Docker and containerd data live on volumes: overlay on overlay does not work.

A benchmark can add an extra VPS from the same image (``start_extra``/``remove_extra``): never an environment.
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import json
import re
import secrets
import shutil
import socket
import tarfile
import time
from pathlib import Path
from typing import Iterable

from technicia_deploy.sandbox import image, network, pki
from technicia_deploy.sandbox.docker_engine import docker, exists, require_engine
from technicia_deploy.sandbox.network import LABEL
from technicia_deploy.sandbox.state import SandboxState

ENVIRONMENTS = ("test", "staging", "production")
ADMIN_USER = "debian"
ADMIN_UID = 1000  # the first user created in the image (see image.CHROOT_SETUP)
# Address index on the sandbox network: .1 is the host, the VPSes follow.
IP_INDEX = {"test": 10, "staging": 11, "production": 12}
# The offers from the seed's tracking document (production) and environments.example.yaml.
SPECS = {
    "test": {"model": "VPS-SSD-2", "vcores": 2, "ram_gb": 4, "disk_gb": 80},
    "staging": {"model": "VPS-SSD-2", "vcores": 2, "ram_gb": 4, "disk_gb": 80},
    "production": {"model": "VPS-SSD-4", "vcores": 4, "ram_gb": 8, "disk_gb": 160},
}
OS_NAME = "Debian 12 (bookworm)"
ZONE = "GRA11"
SSH_DEADLINE_S = 60.0

# The flags that give a systemd VPS container with Docker inside on a daemon that refuses --privileged.
RUN_FLAGS = (
    # A private cgroup namespace: with cgroup v1 and the host's namespace, systemd looks for
    # /docker/<id>/... below mount points that already are that cgroup, and cannot start.
    "--cgroupns", "private",
    "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
    "--security-opt", "seccomp=unconfined", "--security-opt", "systempaths=unconfined",
    "--security-opt", "apparmor=unconfined", "--device-cgroup-rule", "a *:* rwm",
    "--stop-signal", "SIGRTMIN+3",
    "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp:exec",
    "--env", "container=docker",
    # A VPS comes back after a host (here: Docker engine) restart.
    "--restart", "unless-stopped",
)
SSHD_HOSTKEY_CONF = "# sandbox: the VPS's pinned host key (generated outside, before first boot)\nHostKey /etc/ssh/ssh_host_ed25519_key\n"


def service_name(state: SandboxState, env: str) -> str:
    """An OVH-shaped VPS service name, stable for a sandbox directory."""
    return f"vps-{hashlib.sha1(f'{state.prefix}/{env}'.encode()).hexdigest()[:8]}.vps.ovh.net"


def container_name(state: SandboxState, env: str) -> str:
    return f"{state.prefix}-vps-{env}"


def volume_names(state: SandboxState, env: str) -> dict[str, str]:
    base = container_name(state, env)
    return {f"{base}-docker": "/var/lib/docker", f"{base}-containerd": "/var/lib/containerd"}


def host_key_path(state: SandboxState, env: str) -> Path:
    return state.path("keys", "hosts", env, "ssh_host_ed25519_key")


def deploy_key_path(state: SandboxState) -> Path:
    return state.path("keys", "deploy_ed25519")


def host_resolver(resolv_conf: str) -> str:
    """The first nameserver of resolv.conf a container can reach (a loopback stub is not reachable from it)."""
    for line in resolv_conf.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver" and not parts[1].startswith("127.") and parts[1] != "::1":
            return parts[1]
    raise RuntimeError("no non-loopback nameserver in /etc/resolv.conf: the VPSes need the host's real resolver")


def _resolver() -> str:
    for candidate in (Path("/etc/resolv.conf"), Path("/run/systemd/resolve/resolv.conf")):
        try:
            return host_resolver(candidate.read_text())
        except (OSError, RuntimeError):
            continue
    return host_resolver(Path("/etc/resolv.conf").read_text())


def first_boot_files(host_private: bytes, host_public: str, authorized_keys: list[str]) -> bytes:
    """A tar (extracted at / with ownership kept) holding the host key, its sshd drop-in and the admin's keys."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add(path: str, data: bytes | None, mode: int, uid: int = 0) -> None:
            info = tarfile.TarInfo(path)
            info.mode, info.uid, info.gid, info.mtime = mode, uid, uid, int(time.time())
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))

        add("etc/ssh/ssh_host_ed25519_key", host_private, 0o600)
        add("etc/ssh/ssh_host_ed25519_key.pub", (host_public + "\n").encode(), 0o644)
        add("etc/ssh/sshd_config.d/10-sandbox-hostkey.conf", SSHD_HOSTKEY_CONF.encode(), 0o644)
        add(f"home/{ADMIN_USER}/.ssh", None, 0o700, ADMIN_UID)
        add(f"home/{ADMIN_USER}/.ssh/authorized_keys", "".join(k.strip() + "\n" for k in authorized_keys).encode(),
            0o600, ADMIN_UID)
    return buf.getvalue()


def wait_for_sshd(host: str, port: int = 22, timeout: float = SSH_DEADLINE_S, name: str = "") -> None:
    """Poll until an SSH server banner comes back (a listening port alone may still be systemd's socket setup)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1) as conn:
                conn.settimeout(2)
                if conn.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"sshd of {name or host} did not answer on {host}:{port} within {timeout:.0f}s "
                               f"(see `docker logs {name}`)" if name else f"sshd did not answer on {host}:{port}")
        time.sleep(0.1)


def ipv6_of(net: dict, ip: str) -> str | None:
    """The VPS's fixed IPv6 on a dual-stack sandbox network (same host digits as its IPv4), None if IPv4-only."""
    if not net.get("subnet6"):
        return None
    return network.host6_of(net["subnet6"], int(ip.rsplit(".", 1)[1]))


def _create(state: SandboxState, env: str, image_name: str, authorized_keys: list[str], ip: str | None = None,
            role_label: str = "technicia.environment") -> None:
    name = container_name(state, env)
    net = state.data["network"]
    ip = ip or network.host_of(net["subnet"], IP_INDEX[env])
    ip6 = ipv6_of(net, ip)
    host_public = pki.ssh_keypair(host_key_path(state, env), f"root@{service_name(state, env).split('.')[0]}")
    argv = ["create", "--name", name, "--hostname", service_name(state, env).split(".")[0],
            "--network", net["name"], "--ip", ip, *(["--ip6", ip6] if ip6 else []), "--dns", _resolver(),
            "--label", f"{LABEL}={state.prefix}", "--label", f"{role_label}={env}", *RUN_FLAGS]
    for volume, target in volume_names(state, env).items():
        docker("volume", "create", "--label", f"{LABEL}={state.prefix}", volume)
        argv += ["--volume", f"{volume}:{target}"]
    docker(*argv, image_name)
    try:
        files = first_boot_files(host_key_path(state, env).read_bytes(), host_public, authorized_keys)
        docker("cp", "--archive", "-", f"{name}:/", input=files)
        docker("start", name)
        _first_boot(state, env)
    except BaseException:
        # A half-made VPS (no keys, no password) must not be mistaken for a ready one by the next `up`.
        _remove(state, env)
        raise


def _exec(name: str, argv: list[str], input: bytes | None = None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            docker("exec", "-i", name, *argv, input=input)
            return
        except RuntimeError:
            # Right after `docker start` an exec can race the container's init.
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _first_boot(state: SandboxState, env: str) -> None:
    """What OVH's installer does on first boot: a resolver and a random root password."""
    name = container_name(state, env)
    # On a user-defined network Docker writes its embedded resolver (127.0.0.11) into resolv.conf;
    # a dockerd inside the VPS drops loopback resolvers and its containers would fall back to 8.8.8.8.
    # A real VPS names a real resolver: the host's. (Docker leaves a resolv.conf edited this way alone.)
    _exec(name, ["sh", "-c", "cat > /etc/resolv.conf"], input=f"nameserver {_resolver()}\n".encode())
    # A random root password, as OVH sets one: kept under the state dir, given on stdin (never argv).
    password = secrets.token_urlsafe(18)
    pki.write_private(state.path("keys", f"root-password-{env}"), password.encode())
    _exec(name, ["chpasswd"], input=f"root:{password}\n".encode())
    # A real VPS trusts the public CAs that sign Let's Encrypt's API and a registry's certificate;
    # in the sandbox those are signed by the sandbox CA, so the VPS trusts it from birth (before
    # any dockerd starts: dockerd reads the trust store once).
    ca_cert, _ = pki.ensure_ca(state.path("pki"), f"TechnicIA sandbox CA {state.prefix}")
    _exec(name, ["sh", "-c", "cat > /usr/local/share/ca-certificates/technicia-sandbox-ca.crt && update-ca-certificates"],
          input=ca_cert.read_bytes())


def _record(state: SandboxState, env: str) -> None:
    ip = network.host_of(state.data["network"]["subnet"], IP_INDEX[env])
    ip6 = ipv6_of(state.data["network"], ip)
    state.data.setdefault("vps", {})[env] = {
        "service_name": service_name(state, env),
        "container": container_name(state, env),
        "ip": ip,
        # The OVH emulator lists it in GET /vps/{serviceName}/ips, as OVH lists a VPS's IPv6.
        **({"ipv6": ip6} if ip6 else {}),
        "host_key": " ".join(host_key_path(state, env).with_suffix(".pub").read_text().split()[:2]),
        "admin_user": ADMIN_USER,
        "spec": {**SPECS[env], "os": OS_NAME, "zone": ZONE},
    }


def _ensure_deploy_key(state: SandboxState) -> str:
    public = pki.ssh_keypair(deploy_key_path(state), f"technicia-sandbox-deploy@{state.prefix}")
    state.data["keys"] = {"deploy_private_key": str(deploy_key_path(state)), "deploy_public_key": public}
    return public


def up(state: SandboxState, log=lambda line: None) -> None:
    require_engine()
    image_name = image.ensure_image(log)
    network.up(state)
    public = _ensure_deploy_key(state)
    for env in ENVIRONMENTS:
        name = container_name(state, env)
        if not exists("container", name):
            log(f"creating VPS {env} ({name})")
            _create(state, env, image_name, [public])
        elif docker("inspect", "-f", "{{.State.Running}}", name).strip() != "true":
            docker("start", name)
        _record(state, env)
    state.data["vps_image"] = image_name
    state.save()
    for env in ENVIRONMENTS:
        _wait_reachable(state.data["vps"][env], container_name(state, env))


def _wait_reachable(vps: dict, name: str) -> None:
    """sshd answers on the VPS's IPv4 and, on a dual-stack network, on its IPv6 too: the host reaches the VPS the
    way the pipeline and an attacker's scan will (over both families)."""
    wait_for_sshd(vps["ip"], name=name)
    if vps.get("ipv6"):
        wait_for_sshd(vps["ipv6"], name=name, timeout=10.0)


def rebuild(state: SandboxState, env: str, public_ssh_key: str) -> None:
    """Reinstall the VPS: a fresh container and fresh volumes, same IP and host key, only ``public_ssh_key`` authorized."""
    if env not in ENVIRONMENTS:
        raise ValueError(f"unknown environment {env!r}; known: {', '.join(ENVIRONMENTS)}")
    image_name = state.data.get("vps_image") or image.ensure_image()
    _remove(state, env)
    _create(state, env, image_name, [public_ssh_key])
    _record(state, env)
    state.save()
    _wait_reachable(state.data["vps"][env], container_name(state, env))


def _remove(state: SandboxState, env: str) -> None:
    docker("rm", "--force", "--volumes", container_name(state, env), check=False)
    for volume in volume_names(state, env):
        docker("volume", "rm", "--force", volume, check=False)


def down(state: SandboxState) -> None:
    for env in ENVIRONMENTS:
        _remove(state, env)
        state.path("keys", f"root-password-{env}").unlink(missing_ok=True)
    state.data.pop("vps", None)
    state.save()


# --- extra VPSes (benchmarks, experiments) ---------------------------------------------------------
# Not environments: nothing records them in the state, environments.yaml never names them, and the
# pipeline never deploys them. `remove_extra` removes one; `sandbox down` sweeps any left by its prefix.
EXTRA_FIRST_INDEX = 20  # their addresses start here: clear of the host (.1) and the environments (IP_INDEX)
EXTRA_LABEL = "technicia.extra-vps"
_EXTRA_NAME = re.compile(r"[a-z][a-z0-9-]{0,23}")


def check_extra_name(name: str) -> str:
    """An extra VPS's name: short, lower-case, DNS-safe, and not an environment's."""
    if not _EXTRA_NAME.fullmatch(name) or name.endswith("-"):
        raise ValueError(f"extra VPS name {name!r}: 1-24 lower-case letters, digits or '-', starting with a letter")
    if name in ENVIRONMENTS:
        raise ValueError(f"extra VPS name {name!r} is an environment's: the environments' VPSes are made by `sandbox up`")
    return name


def free_address(subnet: str, taken: Iterable[str], first: int = EXTRA_FIRST_INDEX) -> str:
    """The first address of ``subnet`` from index ``first`` on that is not in ``taken`` (nor the broadcast)."""
    net = ipaddress.ip_network(subnet)
    used = {ipaddress.ip_address(a.split("/")[0]) for a in taken if a}
    for index in range(first, net.num_addresses - 1):
        candidate = net[index]
        if candidate not in used:
            return str(candidate)
    raise RuntimeError(f"no free address left in {subnet} from index {first} on")


def _network_addresses(network_name: str) -> list[str]:
    """The addresses held on the sandbox network now (its containers)."""
    found = json.loads(docker("network", "inspect", network_name))[0].get("Containers") or {}
    return [c.get("IPv4Address", "") for c in found.values()]


def start_extra(state: SandboxState, name: str, log=lambda line: None) -> dict:
    """Start one more VPS from the environments' image on the sandbox network: a fresh container (an old
    one of that name is replaced), its own host key, the ``debian`` admin user with the sandbox deploy key.
    Returns what a client needs: container, ip, host_key, admin_user, private_key (the deploy key's path)."""
    check_extra_name(name)
    require_engine()
    net = state.data.get("network")
    if not net or not state.data.get("keys"):
        raise RuntimeError("no sandbox network or deploy key in the state: run `technicia-deploy sandbox up` first")
    image_name = state.data.get("vps_image") or image.ensure_image(log)
    _remove(state, name)
    reserved = [net["gateway"], *(network.host_of(net["subnet"], i) for i in IP_INDEX.values())]
    ip = free_address(net["subnet"], [*reserved, *_network_addresses(net["name"])])
    log(f"starting extra VPS {name} ({container_name(state, name)}) at {ip}")
    _create(state, name, image_name, [state.data["keys"]["deploy_public_key"]], ip=ip, role_label=EXTRA_LABEL)
    wait_for_sshd(ip, name=container_name(state, name))
    return {"name": name, "container": container_name(state, name), "ip": ip, "ipv6": ipv6_of(net, ip),
            "admin_user": ADMIN_USER,
            "host_key": " ".join(host_key_path(state, name).with_suffix(".pub").read_text().split()[:2]),
            "private_key": state.data["keys"]["deploy_private_key"]}


def extra_info(state: SandboxState, name: str) -> dict | None:
    """What ``start_extra`` returned, for an extra VPS still running; None when there is none."""
    check_extra_name(name)
    container = container_name(state, name)
    pub = host_key_path(state, name).with_suffix(".pub")
    if not pub.is_file() or docker("inspect", "-f", "{{.State.Running}}", container, check=False).strip() != "true":
        return None
    net = state.data["network"]["name"]
    ip = docker("inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{net}").IPAddress}}}}', container).strip()
    return {"name": name, "container": container, "ip": ip, "ipv6": ipv6_of(state.data["network"], ip),
            "admin_user": ADMIN_USER,
            "host_key": " ".join(pub.read_text().split()[:2]), "private_key": state.data["keys"]["deploy_private_key"]}


def remove_extra(state: SandboxState, name: str) -> None:
    """Remove an extra VPS: its container, volumes, host key and root password."""
    check_extra_name(name)
    _remove(state, name)
    state.path("keys", f"root-password-{name}").unlink(missing_ok=True)
    shutil.rmtree(host_key_path(state, name).parent, ignore_errors=True)


def status(state: SandboxState) -> list[str]:
    lines = []
    for env, vps in (state.data.get("vps") or {}).items():
        running = docker("inspect", "-f", "{{.State.Status}}", vps["container"], check=False).strip() or "MISSING"
        ipv6 = f" {vps['ipv6']}" if vps.get("ipv6") else ""
        lines.append(f"vps {env}: {vps['ip']}{ipv6} {vps['service_name']} container {vps['container']} ({running}); "
                     f"ssh {vps['admin_user']}@{vps['ip']}")
    return lines or ["vps: none"]
