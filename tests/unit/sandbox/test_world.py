"""The sandbox's generated environments.yaml and the orchestration order."""

from __future__ import annotations

import pytest

from technicia_deploy import config
from technicia_deploy.sandbox import world

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyHostKeyHostKeyHostKeyHostKeyHost"


def components_state(tmp_path) -> dict:
    """What the components record in state.data, in the shapes of the shared contract."""
    vps = {
        env: {"service_name": f"vps-{i}.vps.ovh.net", "container": f"c-{env}", "ip": f"10.213.1.{10 + i}",
              "host_key": HOST_KEY, "admin_user": "debian",
              "spec": {"model": "VPS-SSD-2", "vcores": 2, "ram_gb": 4, "disk_gb": 80, "os": "Debian 12", "zone": "GRA11"}}
        for i, env in enumerate(("test", "staging", "production"))
    }
    api_keys = {
        "google": {"project_id": "p", "service_account_json": {"file": str(tmp_path / "sa.json")},
                   "documentai_location": "eu", "documentai_processor_id": "abc",
                   "documentai_endpoint": "http://127.0.0.1:9", "vision_endpoint": "http://127.0.0.1:9"},
        "voyageai": {"api_key": {"file": str(tmp_path / "v.key")}, "model": "voyage-3.5-lite", "base_url": "http://127.0.0.1:9/v1"},
        "anthropic": {"api_key": {"file": str(tmp_path / "a.key")}, "model": "claude-sonnet-4-6", "base_url": "http://127.0.0.1:9"},
    }
    return {
        "network": {"name": "n", "subnet": "10.213.1.0/24", "gateway": "10.213.1.1"},
        "vps": vps,
        "keys": {"deploy_private_key": str(tmp_path / "deploy"), "deploy_public_key": "ssh-ed25519 AAAA x"},
        "acme": {"directory": "https://10.213.1.1:14000/dir", "ca_bundle": str(tmp_path / "ca.pem"),
                 "issuer_roots": str(tmp_path / "roots.pem")},
        "ovh": {"api_url": "http://127.0.0.1:8/1.0", "dns": "127.0.0.1:53535", "zone": "exemple.test",
                "application_key_file": str(tmp_path / "ak"), "application_secret_file": str(tmp_path / "as"),
                "consumer_key_file": str(tmp_path / "ck")},
        "cloud": {"url": "http://127.0.0.1:9", "environments": {e: {"api_keys": api_keys} for e in vps}},
        "app": {"repository": "git://10.213.1.1:9418/technicia.git"},
    }


def test_generated_configuration_is_valid_and_points_at_the_sandbox(tmp_path):
    project = config.parse(world.sandbox_config(components_state(tmp_path)))
    test = project.environment("test")
    assert test.domain == "test-technicia.exemple.test" and test.url == "https://test-technicia.exemple.test"
    assert project.environment("production").domain == "technicia.exemple.test"
    assert test.ssh.host_key == HOST_KEY
    assert (test.ssh.user, test.ssh.admin_user) == ("deploy", "debian")
    assert test.ssh.private_key.file == str(tmp_path / "deploy")
    assert test.tls.acme_server == "https://10.213.1.1:14000/dir" and test.tls.ca_bundle == str(tmp_path / "ca.pem")
    assert test.dns.nameservers == ["127.0.0.1:53535"]
    assert project.ovh.api_url == "http://127.0.0.1:8/1.0"
    assert project.application.repository == "git://10.213.1.1:9418/technicia.git"
    assert [r.port for r in test.firewall.public] == [22, 80, 443]
    assert [r.port for r in test.firewall.internal] == [5678, 6333]


def test_every_secret_is_a_file_reference(tmp_path):
    project = config.parse(world.sandbox_config(components_state(tmp_path)))
    refs = config.secret_refs(project)
    assert refs and all(ref.file and ref.env is None for _, ref in refs)


def test_a_missing_component_is_named(tmp_path):
    data = components_state(tmp_path)
    del data["acme"], data["app"]
    with pytest.raises(world.SandboxIncomplete, match="acme, app"):
        world.sandbox_config(data)


def test_ovh_comes_before_acme_so_pebble_gets_the_sandbox_dns():
    order = list(world.COMPONENTS)
    assert order[0] == "vps" and order.index("ovh") < order.index("acme")
