"""Without a Docker engine, `sandbox up` says what is missing and how to get it."""

from __future__ import annotations

import pytest

from technicia_deploy.sandbox import docker_engine


def test_missing_docker_client_names_the_package(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(docker_engine.DockerUnavailable, match=r"apt-get install docker\.io.*make bootstrap"):
        docker_engine.require_engine()


def test_stopped_engine_says_to_start_dockerd(monkeypatch, tmp_path):
    fake = tmp_path / "docker"
    fake.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(docker_engine.DockerUnavailable, match=r"Cannot connect.*start it.*dockerd"):
        docker_engine.require_engine()
