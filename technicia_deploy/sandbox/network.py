"""The sandbox's "internet": one Docker bridge network.

VPS container addresses on it are the servers' public IPs; its gateway is the
host, where the emulators that a VPS must reach (pebble, git, registry) listen.
The subnet is chosen once (fixed IPs need a user-defined subnet) among /24s
that neither Docker nor the host's routes already use, and kept in the state.

The network is dual-stack, as OVH VPSes are: an IPv6 ULA /64 chosen the same way
(among the /64s of one /48, avoiding Docker's and the host's IPv6 subnets) and kept
in the state beside the IPv4 /24. A state recorded before IPv6 (a subnet without
``subnet6``) keeps its IPv4-only network: its containers were made for it.
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
# Candidate IPv6 /64s: one unique-local /48 (RFC 4193, fd00::/8), its 65536 /64s spread by the prefix like the /24s.
POOL6 = ipaddress.ip_network("fd7e:c0de:7ec4::/48")


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


def choose_subnet6(used: list[ipaddress.IPv6Network], seed: str) -> ipaddress.IPv6Network:
    """The first /64 of POOL6, from a seed-derived offset, that overlaps nothing in ``used`` (as :func:`choose_subnet`)."""
    count = 1 << (64 - POOL6.prefixlen)
    start = int(hashlib.sha1(seed.encode()).hexdigest(), 16) % count
    base = int(POOL6.network_address)
    for i in range(count):
        subnet = ipaddress.IPv6Network(((base + (((start + i) % count) << 64)), 64))
        if not any(subnet.overlaps(other) for other in used):
            return subnet
    raise RuntimeError(f"no free /64 left in {POOL6} for the sandbox network")


def host_of(subnet: str, index: int) -> str:
    """The ``index``-th address of the subnet (1 = gateway)."""
    return str(ipaddress.ip_network(subnet)[index])


def host6_of(subnet6: str, index: int) -> str:
    """The IPv6 address of the host whose IPv4 is ``index`` in the /24: the same digits, read as hex (.12 -> ::12),
    so that a VPS's two addresses are recognisably the same machine; 1 (the gateway) is ::1."""
    return str(ipaddress.ip_network(subnet6)[int(str(index), 16)])


def _used_subnets(family: int = 4) -> list:
    """The subnets of one family (4 or 6) that Docker's networks and the host's routes already use."""
    used: list = []
    ids = docker("network", "ls", "-q").split()
    if ids:
        for net in json.loads(docker("network", "inspect", *ids)):
            for cfg in (net.get("IPAM") or {}).get("Config") or []:
                if cfg.get("Subnet") and (":" in cfg["Subnet"]) == (family == 6):
                    used.append(ipaddress.ip_network(cfg["Subnet"], strict=False))
    routes = subprocess.run(["ip", f"-{family}", "-o", "route"], capture_output=True, text=True)
    for line in routes.stdout.splitlines():
        dest = line.split()[0] if line.split() else ""
        if dest and dest != "default":
            try:
                used.append(ipaddress.ip_network(dest, strict=False))
            except ValueError:
                pass
    return used


def _inspect_subnet(name: str) -> tuple[str, str, str | None, str | None] | None:
    """(subnet, gateway, IPv6 subnet or None, IPv6 gateway or None) of an existing network, or None."""
    if not exists("network", name):
        return None
    configs = json.loads(docker("network", "inspect", name))[0]["IPAM"]["Config"] or []
    v4 = [(c["Subnet"], c["Gateway"]) for c in configs if c.get("Subnet") and c.get("Gateway") and ":" not in c["Subnet"]]
    v6 = [(c["Subnet"], c.get("Gateway") or host_of(c["Subnet"], 1)) for c in configs
          if c.get("Subnet") and ":" in c["Subnet"]]
    if not v4:
        raise RuntimeError(f"docker network {name} exists without a fixed subnet; remove it (`docker network rm {name}`)")
    return (*v4[0], *(v6[0] if v6 else (None, None)))


def up(state: SandboxState) -> None:
    name = network_name(state)
    existing = _inspect_subnet(name)
    if existing:
        # Also when the state file was lost: the network's own subnets are the truth.
        subnet, gateway, subnet6, gateway6 = existing
    else:
        recorded = state.data.get("network")
        subnet = recorded["subnet"] if recorded else str(choose_subnet(_used_subnets(4), state.prefix))
        gateway = host_of(subnet, 1)
        # A state from before IPv6 (subnet recorded, no subnet6) stays IPv4-only; a new one is dual-stack.
        subnet6 = (recorded.get("subnet6") if recorded
                   else str(choose_subnet6(_used_subnets(6), state.prefix)))
        gateway6 = host_of(subnet6, 1) if subnet6 else None
        ipv6 = ["--ipv6", "--subnet", subnet6, "--gateway", gateway6] if subnet6 else []
        docker("network", "create", "--driver", "bridge", "--subnet", subnet, "--gateway", gateway, *ipv6,
               # A named bridge interface: on the host it shows which sandbox owns it.
               "-o", f"com.docker.network.bridge.name={state.prefix}",
               "--label", f"{LABEL}={state.prefix}", name)
    state.data["network"] = {"name": name, "subnet": subnet, "gateway": gateway,
                             **({"subnet6": subnet6, "gateway6": gateway6} if subnet6 else {})}
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
    v6 = f", {net['subnet6']} gateway {net['gateway6']}" if net.get("subnet6") else " (IPv4 only)"
    return [f"network: {net['name']} {net['subnet']} gateway {net['gateway']}{v6} ({alive})"]
