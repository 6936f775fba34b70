"""The sandbox's "internet": one Docker bridge network.

VPS container addresses on it are the servers' public IPs; its gateway is the
host, where the emulators that a VPS must reach (pebble, git, registry) listen.
The subnet is chosen once (fixed IPs need a user-defined subnet) among /24s
that neither Docker nor the host's routes already use, and kept in the state.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import subprocess

from technicia_deploy.sandbox.docker_engine import docker, exists
from technicia_deploy.sandbox.state import SandboxState

LABEL = "technicia.sandbox"
# Candidate /24s: 10.213.0.0/16 is rarely used by LANs or VPNs; the start is spread by the prefix.
POOL = ipaddress.ip_network("10.213.0.0/16")


def network_name(state: SandboxState) -> str:
    return f"{state.prefix}-net"


def choose_subnet(used: list[ipaddress.IPv4Network], seed: str) -> ipaddress.IPv4Network:
    """The first /24 of the pool, starting at a seed-derived offset, that overlaps nothing in ``used``."""
    candidates = list(POOL.subnets(new_prefix=24))
    start = int(hashlib.sha1(seed.encode()).hexdigest(), 16) % len(candidates)
    for i in range(len(candidates)):
        subnet = candidates[(start + i) % len(candidates)]
        if not any(subnet.overlaps(other) for other in used):
            return subnet
    raise RuntimeError(f"no free /24 left in {POOL} for the sandbox network")


def host_of(subnet: str, index: int) -> str:
    """The ``index``-th address of the subnet (1 = gateway)."""
    return str(ipaddress.ip_network(subnet)[index])


def _used_subnets() -> list[ipaddress.IPv4Network]:
    used: list[ipaddress.IPv4Network] = []
    ids = docker("network", "ls", "-q").split()
    if ids:
        for net in json.loads(docker("network", "inspect", *ids)):
            for cfg in (net.get("IPAM") or {}).get("Config") or []:
                if cfg.get("Subnet") and ":" not in cfg["Subnet"]:
                    used.append(ipaddress.ip_network(cfg["Subnet"], strict=False))
    routes = subprocess.run(["ip", "-4", "-o", "route"], capture_output=True, text=True)
    for line in routes.stdout.splitlines():
        dest = line.split()[0] if line.split() else ""
        if dest and dest != "default":
            try:
                used.append(ipaddress.ip_network(dest, strict=False))
            except ValueError:
                pass
    return used


def _inspect_subnet(name: str) -> tuple[str, str] | None:
    """(subnet, gateway) of an existing network, or None."""
    if not exists("network", name):
        return None
    configs = json.loads(docker("network", "inspect", name))[0]["IPAM"]["Config"] or []
    for cfg in configs:
        if cfg.get("Subnet") and cfg.get("Gateway"):
            return cfg["Subnet"], cfg["Gateway"]
    raise RuntimeError(f"docker network {name} exists without a fixed subnet; remove it (`docker network rm {name}`)")


def up(state: SandboxState) -> None:
    name = network_name(state)
    existing = _inspect_subnet(name)
    if existing:
        # Also when the state file was lost: the network's own subnet is the truth.
        subnet, gateway = existing
    else:
        recorded = state.data.get("network")
        subnet = recorded["subnet"] if recorded else str(choose_subnet(_used_subnets(), state.prefix))
        gateway = host_of(subnet, 1)
        docker("network", "create", "--driver", "bridge", "--subnet", subnet, "--gateway", gateway,
               # A named bridge interface: on the host it shows which sandbox owns it.
               "-o", f"com.docker.network.bridge.name={state.prefix}",
               "--label", f"{LABEL}={state.prefix}", name)
    state.data["network"] = {"name": name, "subnet": subnet, "gateway": gateway}
    state.save()


def down(state: SandboxState) -> None:
    docker("network", "rm", network_name(state), check=False)
    state.data.pop("network", None)
    state.save()


def status(state: SandboxState) -> list[str]:
    net = state.data.get("network")
    if not net:
        return ["network: not created"]
    alive = "up" if exists("network", net["name"]) else "MISSING"
    return [f"network: {net['name']} {net['subnet']} gateway {net['gateway']} ({alive})"]
