"""The app component's own logic: prerequisites, registry configuration, the images it builds."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from technicia_deploy.sandbox import app, app_repo
from technicia_deploy.sandbox.state import SandboxState


def test_up_without_the_network_component_names_it(tmp_path):
    state = SandboxState(tmp_path)
    with pytest.raises(RuntimeError, match="needs the network component"):
        app.up(state)


def test_down_and_status_tolerate_nothing_made(tmp_path):
    state = SandboxState(tmp_path)
    assert app.status(state) == ["app: not created"]
    app.down(state)
    assert "app" not in state.data


def test_registry_listens_on_the_gateway_with_tls(tmp_path):
    config = app.registry_config("10.213.7.1:5443", tmp_path / "data", tmp_path / "c.pem", tmp_path / "k.pem")
    assert config["http"]["addr"] == "10.213.7.1:5443"
    assert config["http"]["tls"] == {"certificate": str(tmp_path / "c.pem"), "key": str(tmp_path / "k.pem")}
    assert config["storage"]["filesystem"]["rootdirectory"] == str(tmp_path / "data")


def test_images_cover_every_release_once():
    specs = app.image_specs()
    refs = [s.ref("r:1") for s in specs]
    assert len(refs) == len(set(refs)) == 2 * len(app_repo.RELEASES) + 2
    api = {s.tag: dict(s.build_args) for s in specs if s.service == "api"}
    assert api["1.2.0"]["API_HEALTHY"] == "no"
    assert api["1.0.0"]["API_HEALTHY"] == api["1.1.0"]["API_HEALTHY"] == "yes"
    for spec in specs:
        assert (app.IMAGES / spec.service / "Dockerfile").is_file()


@pytest.mark.parametrize("service", ["frontend", "api", "n8n", "qdrant"])
def test_dockerfiles_build_from_scratch_with_a_healthcheck(service):
    text = (app.IMAGES / service / "Dockerfile").read_text()
    assert "FROM scratch" in text and "HEALTHCHECK" in text
    assert '"-T"' not in text  # static busybox 1.35 wget segfaults with -T


def test_static_elf_detection():
    assert app.is_static_elf(Path(sys.executable).resolve()) is False  # CPython is dynamically linked
    busybox = shutil.which("busybox")
    if busybox:
        assert app.is_static_elf(Path(busybox).resolve()) is True


def test_static_elf_detection_refuses_non_elf(tmp_path):
    script = tmp_path / "x"
    script.write_text("#!/bin/sh\n")
    assert app.is_static_elf(script) is False


def test_images_digest_follows_the_template_files(tmp_path, monkeypatch):
    # An existing registry's tags are trusted only for the inputs they were built from: a changed routes.sh
    # (say, the API's key names) must rebuild the images, not keep serving the old ones.
    busybox = tmp_path / "busybox"
    busybox.write_bytes(b"\x7fELF static")
    images = tmp_path / "images"
    shutil.copytree(app.IMAGES, images)
    monkeypatch.setattr(app, "IMAGES", images)
    before = app.images_digest(busybox)
    assert app.images_digest(busybox) == before
    routes = images / "api" / "routes.sh"
    routes.write_text(routes.read_text().replace("DOCUMENTAI_PROCESSOR_ID", "DOCUMENTAI_PROCESSOR"))
    assert app.images_digest(busybox) != before
    routes.write_text((app_repo.TEMPLATE.parent / "images" / "api" / "routes.sh").read_text())
    assert app.images_digest(busybox) == before
    busybox.write_bytes(b"\x7fELF other build")
    assert app.images_digest(busybox) != before
