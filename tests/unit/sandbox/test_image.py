"""The VPS image recipe: where the mirror comes from and when the cache key changes."""

from __future__ import annotations

import pytest

from technicia_deploy.sandbox import image

DEB822 = """Types: deb
# a comment
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""


def test_mirror_comes_from_the_hosts_deb822_sources(tmp_path):
    (tmp_path / "debian.sources").write_text(DEB822)
    sources = image.host_apt_sources(tmp_path, tmp_path / "missing.list")
    assert image.debian_mirror(sources) == "http://mirror.example/debian"
    text = image.vps_apt_sources(sources)
    assert "URIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates" in text
    assert "URIs: http://mirror.example/debian-security\nSuites: bookworm-security" in text


def test_mirror_comes_from_a_one_line_sources_list(tmp_path):
    listing = tmp_path / "sources.list"
    listing.write_text("# deb http://old.example/debian buster main\ndeb [arch=amd64] http://other.example/debian/ bookworm main\n")
    sources = image.host_apt_sources(tmp_path / "no-dir", listing)
    assert image.debian_mirror(sources) == "http://other.example/debian"


def test_disabled_and_source_only_entries_are_ignored(tmp_path):
    (tmp_path / "a.sources").write_text("Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n\n"
                                        "Types: deb\nEnabled: no\nURIs: http://off.example/debian\nSuites: bookworm\n")
    with pytest.raises(image.ImageError, match="no apt source for Debian bookworm"):
        image.debian_mirror(image.host_apt_sources(tmp_path, tmp_path / "none"))


def test_cache_key_follows_every_build_input(monkeypatch):
    base = image.build_key("http://m/debian", "sources")
    assert base == image.build_key("http://m/debian", "sources")
    assert base != image.build_key("http://other/debian", "sources")
    assert base != image.build_key("http://m/debian", "other sources")
    monkeypatch.setattr(image, "PACKAGES", image.PACKAGES + ("git",))
    assert base != image.build_key("http://m/debian", "sources")


def test_image_has_what_the_pipeline_relies_on():
    for package in ("systemd", "openssh-server", "sudo", "python3", "iptables", "ca-certificates", "curl", "gnupg",
                    "procps", "iproute2"):
        assert package in image.PACKAGES
    assert "NOPASSWD:ALL" in image.CHROOT_SETUP and "useradd" in image.CHROOT_SETUP
    # The host keys are generated per VPS, never baked into the shared image.
    assert "rm -f /etc/ssh/ssh_host_*" in image.CHROOT_SETUP
    assert image.INIT_WRAPPER.rstrip().endswith('exec /sbin/init "$@"')
