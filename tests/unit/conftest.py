"""Shared fixtures for unit tests: a valid configuration on disk with canary secrets."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.unit.config_data import CANARY, CANARY_FILES, EXAMPLE, VALID_HOST_KEY


@pytest.fixture
def example_data() -> dict:
    data = yaml.safe_load(EXAMPLE.read_text())
    for env in data["environments"].values():
        env["ssh"]["host_key"] = VALID_HOST_KEY
    return data


@pytest.fixture
def secret_home(tmp_path, monkeypatch) -> Path:
    """HOME with the example's secret files, and the example's secret variables set."""
    home = tmp_path / "home"
    for rel, content in CANARY_FILES.items():
        path = home / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    monkeypatch.setenv("HOME", str(home))
    for name, value in CANARY.items():
        monkeypatch.setenv(name, value)
    return home


@pytest.fixture
def write_config(tmp_path):
    def write(data: dict, name: str = "environments.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
        return path

    return write
