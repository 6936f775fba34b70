"""Waiting for a DNS change to propagate (technicia_deploy.dns_check), against the OVH emulator's DNS server
made slow on purpose (its ``dns-delay`` test control): bounded, and saying how long it waited."""

from __future__ import annotations

import time

import pytest

from technicia_deploy import dns_check
from tests.unit.sandbox.test_ovh_emulator import client, start_emulator


@pytest.fixture
def emulator(tmp_path):
    emu = start_emulator(tmp_path / "ovh")
    yield emu
    emu.stop()


def _point(emu, target: str) -> None:
    api = client(emu)
    zone = "/domain/zone/exemple.test"
    ids = api.get(f"{zone}/record", fieldType="A", subDomain="app")
    if ids:
        api.put(f"{zone}/record/{ids[0]}", target=target)
    else:
        api.post(f"{zone}/record", fieldType="A", subDomain="app", target=target, ttl=60)
    api.post(f"{zone}/refresh")


def test_an_answer_already_there_is_not_waited_for(emulator):
    _point(emulator, "10.99.0.11")
    servers = [dns_check.Nameserver("127.0.0.1", emulator.dns_port)]
    seen = dns_check.wait_propagated(servers, "app.exemple.test", "10.99.0.11", poll_s=0.05)
    assert (seen.polls, seen.waited, seen.seen) == (1, False, {f"127.0.0.1:{emulator.dns_port}": {"10.99.0.11"}})


def test_a_slow_server_is_waited_for_and_the_wait_is_said(emulator):
    _point(emulator, "10.99.0.11")
    emulator.set_dns_delay(0.5)
    _point(emulator, "10.99.0.13")
    servers = [dns_check.Nameserver("127.0.0.1", emulator.dns_port)]
    seen = dns_check.wait_propagated(servers, "app.exemple.test", "10.99.0.13", deadline_s=10, poll_s=0.05)
    assert seen.waited and seen.polls > 1 and 0.4 <= seen.waited_s < 10


def test_the_wait_is_bounded_and_names_what_each_server_answers(emulator):
    _point(emulator, "10.99.0.11")
    emulator.set_dns_delay(60)
    _point(emulator, "10.99.0.13")
    servers = [dns_check.Nameserver("127.0.0.1", emulator.dns_port)]
    started = time.monotonic()
    with pytest.raises(TimeoutError) as caught:
        dns_check.wait_propagated(servers, "app.exemple.test", "10.99.0.13", deadline_s=0.3, poll_s=0.05)
    assert time.monotonic() - started < 5
    assert f"127.0.0.1:{emulator.dns_port} answers ['10.99.0.11']" in str(caught.value)
    assert "not yet 10.99.0.13 after 0s" in str(caught.value)
