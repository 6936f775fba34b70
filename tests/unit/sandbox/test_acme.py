"""Pebble's configuration."""

from __future__ import annotations

from pathlib import Path

from technicia_deploy.sandbox import acme


def test_pebble_listens_on_the_gateway_and_validates_on_real_ports():
    config = acme.pebble_config("10.213.1.1", 14000, 15000, Path("/c.pem"), Path("/k.pem"))["pebble"]
    assert config["listenAddress"] == "10.213.1.1:14000"
    assert config["managementListenAddress"] == "10.213.1.1:15000"
    assert (config["httpPort"], config["tlsPort"]) == (80, 443)


def test_pebble_uses_the_sandbox_dns_when_there_is_one():
    assert acme.pebble_argv(Path("/p.json"), "127.0.0.1:5353")[-2:] == ["-dnsserver", "127.0.0.1:5353"]
    assert "-dnsserver" not in acme.pebble_argv(Path("/p.json"), None)
    assert acme.pebble_environment() == {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}
