"""Choosing the sandbox subnet and its addresses."""

from __future__ import annotations

import ipaddress

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
