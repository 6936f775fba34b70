"""Choosing the sandbox subnet and its addresses."""

from __future__ import annotations

import ipaddress

import pytest

from technicia_deploy.sandbox import network


def test_subnet_is_stable_for_a_prefix_and_inside_the_pool():
    first = network.choose_subnet([], "tsbx-abcdef")
    assert first == network.choose_subnet([], "tsbx-abcdef")
    assert first.subnet_of(network.POOL) and first.prefixlen == 24


def test_subnet_avoids_docker_networks_and_host_routes():
    wanted = network.choose_subnet([], "tsbx-abcdef")
    taken = [wanted, ipaddress.ip_network("10.0.0.0/8").subnets(new_prefix=16).__next__()]
    chosen = network.choose_subnet(taken, "tsbx-abcdef")
    assert not any(chosen.overlaps(t) for t in taken)


def test_a_covering_route_leaves_no_subnet():
    import pytest

    with pytest.raises(RuntimeError, match="no free /24"):
        network.choose_subnet([ipaddress.ip_network("10.0.0.0/8")], "x")


def test_gateway_and_vps_addresses():
    assert network.host_of("10.213.7.0/24", 1) == "10.213.7.1"
    assert network.host_of("10.213.7.0/24", 12) == "10.213.7.12"


def test_ipv6_subnet_is_a_stable_ula_64_that_avoids_used_ones():
    first = network.choose_subnet6([], "tsbx-abcdef")
    assert first == network.choose_subnet6([], "tsbx-abcdef")
    assert first.subnet_of(network.POOL6) and first.prefixlen == 64 and first.is_private
    assert network.choose_subnet6([], "tsbx-123456") != first  # spread by the prefix, like the /24s
    taken = [first, ipaddress.ip_network("fd00::/64")]  # fd00::/64: this machine's own eth0 has one
    chosen = network.choose_subnet6(taken, "tsbx-abcdef")
    assert not any(chosen.overlaps(t) for t in taken)
    with pytest.raises(RuntimeError, match="no free /64"):
        network.choose_subnet6([ipaddress.ip_network("fd00::/8")], "x")


def test_a_vps_ipv6_has_the_digits_of_its_ipv4():
    assert network.host6_of("fd7e:c0de:7ec4:12::/64", 1) == "fd7e:c0de:7ec4:12::1"
    assert network.host6_of("fd7e:c0de:7ec4:12::/64", 12) == "fd7e:c0de:7ec4:12::12"
    assert network.host6_of("fd7e:c0de:7ec4:12::/64", 254) == "fd7e:c0de:7ec4:12::254"


def test_an_ipv4_only_state_gives_no_ipv6():
    from technicia_deploy.sandbox import vps

    dual = {"subnet": "10.213.7.0/24", "subnet6": "fd7e:c0de:7ec4:12::/64"}
    assert vps.ipv6_of(dual, "10.213.7.20") == "fd7e:c0de:7ec4:12::20"
    assert vps.ipv6_of({"subnet": "10.213.7.0/24"}, "10.213.7.10") is None  # a sandbox made before IPv6


def _fake_docker(monkeypatch, existing: list[dict] | None):
    """network.up against a recorded docker: `network inspect` answers ``existing`` IPAM configs (None: no network)."""
    import json

    created: list[tuple] = []

    def docker(*args, check=True, input=None):
        if args[:2] == ("network", "inspect"):
            return json.dumps([{"IPAM": {"Config": existing}}])
        if args[:2] == ("network", "create"):
            created.append(args)
            return ""
        if args[:2] == ("network", "ls"):
            return ""
        raise AssertionError(args)

    monkeypatch.setattr(network, "docker", docker)
    monkeypatch.setattr(network, "exists", lambda kind, name: existing is not None)
    return created


def test_a_new_network_is_dual_stack_and_recorded(monkeypatch, tmp_path):
    from technicia_deploy.sandbox.state import SandboxState

    created = _fake_docker(monkeypatch, None)
    state = SandboxState(tmp_path)
    network.up(state)
    [argv] = created
    net = state.data["network"]
    assert net["subnet6"] == str(network.choose_subnet6(network._used_subnets(6), state.prefix))
    assert ("--ipv6", "--subnet", net["subnet6"], "--gateway", net["gateway6"]) == argv[argv.index("--ipv6"):argv.index("--ipv6") + 5]
    assert net["gateway6"].endswith("::1")


def test_an_existing_ipv4_only_network_stays_ipv4_only(monkeypatch, tmp_path):
    from technicia_deploy.sandbox.state import SandboxState

    created = _fake_docker(monkeypatch, [{"Subnet": "10.213.7.0/24", "Gateway": "10.213.7.1"}])
    state = SandboxState(tmp_path, {"network": {"name": "n", "subnet": "10.213.7.0/24", "gateway": "10.213.7.1"}})
    network.up(state)
    assert created == [] and "subnet6" not in state.data["network"]
    # ... and a recorded IPv4-only network that has to be made again is made as it was.
    created = _fake_docker(monkeypatch, None)
    network.up(state)
    assert "--ipv6" not in created[0] and "subnet6" not in state.data["network"]


def test_an_existing_dual_stack_network_is_read_back_in_either_order(monkeypatch, tmp_path):
    from technicia_deploy.sandbox.state import SandboxState

    _fake_docker(monkeypatch, [{"Subnet": "fd7e:c0de:7ec4:12::/64", "Gateway": "fd7e:c0de:7ec4:12::1"},
                               {"Subnet": "10.213.7.0/24", "Gateway": "10.213.7.1"}])
    state = SandboxState(tmp_path)  # the state file was lost: the network is the truth
    network.up(state)
    assert state.data["network"] == {"name": network.network_name(state), "subnet": "10.213.7.0/24",
                                     "gateway": "10.213.7.1", "subnet6": "fd7e:c0de:7ec4:12::/64",
                                     "gateway6": "fd7e:c0de:7ec4:12::1"}
