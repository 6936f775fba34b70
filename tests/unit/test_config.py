"""environments.yaml: the example mirrors the seed; every invalid case names file, field and reason."""

from __future__ import annotations

import copy

import pytest

from technicia_deploy import config as cfg

from tests.unit.config_data import EXAMPLE


def test_example_mirrors_the_seed():
    project = cfg.load(EXAMPLE)
    assert list(project.environments) == ["test", "staging", "production"]
    urls = {name: env.url for name, env in project.environments.items()}
    assert urls == {
        "test": "https://test-technicia.exemple.fr",
        "staging": "https://staging-technicia.exemple.fr",
        "production": "https://technicia.exemple.fr",
    }
    assert {n: e.server.label for n, e in project.environments.items()} == {
        "test": "VPS-TEST-XYZ", "staging": "VPS-STAGING-XYZ", "production": "VPS-PROD-XYZ",
    }
    prod = project.environments["production"].server
    assert (prod.model, prod.vcores, prod.ram_gb, prod.disk_gb, prod.os, prod.zone) == (
        "VPS-SSD-4", 4, 8, 160, "Ubuntu Server 22.04 LTS", "GRA11",
    )
    fw = project.environments["production"].firewall
    assert [(r.port, r.protocol, r.service) for r in fw.public] == [(22, "tcp", "SSH"), (80, "tcp", "HTTP"), (443, "tcp", "HTTPS")]
    assert [(r.port, r.service) for r in fw.internal] == [(5678, "n8n"), (6333, "Qdrant API")]


def _error(data, write_config) -> cfg.ConfigError:
    path = write_config(data)
    with pytest.raises(cfg.ConfigError) as info:
        cfg.load(path)
    assert str(path) in str(info.value)
    return info.value


def test_unknown_key_is_named(example_data, write_config):
    example_data["environments"]["staging"]["server"]["ram"] = 8
    err = _error(example_data, write_config)
    assert err.problems == [("environments.staging.server.ram", "unknown key")]


def test_wrong_type_is_named(example_data, write_config):
    example_data["environments"]["production"]["server"]["vcores"] = "four"
    err = _error(example_data, write_config)
    assert len(err.problems) == 1
    path, reason = err.problems[0]
    assert path == "environments.production.server.vcores"
    assert "integer" in reason


def test_missing_environment_is_named(example_data, write_config):
    del example_data["environments"]["staging"]
    err = _error(example_data, write_config)
    assert err.problems == [("environments", "missing environment(s): staging")]


def test_unknown_environment_name_is_refused(example_data, write_config):
    example_data["environments"]["prod"] = copy.deepcopy(example_data["environments"]["production"])
    err = _error(example_data, write_config)
    assert [p for p, _ in err.problems] == ["environments.prod"]


def test_port_both_public_and_internal(example_data, write_config):
    example_data["environments"]["test"]["firewall"]["internal"].append({"port": 443, "service": "oops"})
    err = _error(example_data, write_config)
    assert err.problems == [("environments.test.firewall", "port 443/tcp is both public and internal")]


def test_invalid_yaml_names_the_line(write_config, tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: technicia\nenvironments: [\n")
    with pytest.raises(cfg.ConfigError) as info:
        cfg.load(path)
    assert "line" in info.value.problems[0][0]


def test_missing_file(tmp_path):
    with pytest.raises(cfg.ConfigError, match="cannot be read"):
        cfg.load(tmp_path / "nope.yaml")


def test_unresolvable_secrets_are_all_named_without_values(example_data, write_config, secret_home, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY_STAGING")
    (secret_home / ".ssh/technicia_production_ed25519").unlink()
    path = write_config(example_data)
    project = cfg.load(path)
    with pytest.raises(cfg.ConfigError) as info:
        cfg.resolve_secrets(project, path)
    problems = dict(info.value.problems)
    assert problems["environments.staging.api_keys.anthropic.api_key"] == "environment variable ANTHROPIC_API_KEY_STAGING is not set"
    assert problems["environments.production.ssh.private_key"].startswith("file ")
    assert len(problems) == 2


def test_secret_reference_needs_exactly_one_source(example_data, write_config):
    example_data["ovh"]["consumer_key"] = {"env": "A", "file": "b"}
    err = _error(example_data, write_config)
    assert err.problems == [("ovh.consumer_key", "a secret reference needs exactly one of 'env' or 'file'")]


def test_secret_written_inline_is_refused(example_data, write_config):
    # A literal secret in the file is exactly what must not happen.
    example_data["ovh"]["application_secret"] = "s3cr3t"
    err = _error(example_data, write_config)
    assert [p for p, _ in err.problems] == ["ovh.application_secret"]
    assert "s3cr3t" not in str(err)


def test_resolved_secrets_cover_every_reference(example_data, write_config, secret_home):
    path = write_config(example_data)
    values = cfg.resolve_secrets(cfg.load(path), path)
    assert values["ovh.consumer_key"] == "canary-ovh-ck-2c44"
    assert values["environments.test.ssh.private_key"].startswith("canary-ssh-private-key-test")
    assert len(values) == 3 + 3 * 5


@pytest.mark.parametrize("acme_server,declared,expected", [
    ("https://acme-v02.api.letsencrypt.org/directory", None, "letsencrypt.org"),
    ("https://acme-staging-v02.api.letsencrypt.org/directory", None, "letsencrypt.org"),
    ("https://10.0.0.1:14000/dir", None, None),  # a private ACME server (the sandbox's pebble): nothing to guess
    ("https://acme.example-ca.test/dir", "example-ca.test", "example-ca.test"),
])
def test_caa_issuer_is_declared_or_known_for_lets_encrypt(acme_server, declared, expected):
    from technicia_deploy.config import Tls

    tls = Tls(acme_server=acme_server, email="ops@exemple.fr", caa_issuer=declared)
    assert tls.caa_issuer_domain() == expected
