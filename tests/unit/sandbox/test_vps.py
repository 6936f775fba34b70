"""The pure parts of a VPS container's set-up."""

from __future__ import annotations

import io
import tarfile

import pytest

from technicia_deploy.sandbox import vps
from technicia_deploy.sandbox.state import SandboxState


def test_resolver_skips_loopback_stubs():
    assert vps.host_resolver("nameserver 127.0.0.53\nsearch x\nnameserver 10.1.2.3\n") == "10.1.2.3"
    with pytest.raises(RuntimeError, match="real resolver"):
        vps.host_resolver("nameserver 127.0.0.53\n")


def test_first_boot_files_have_the_ownership_sshd_demands():
    blob = vps.first_boot_files(b"PRIVATE", "ssh-ed25519 AAAAhost root@vps", ["ssh-ed25519 AAAAuser me"])
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        key = members["etc/ssh/ssh_host_ed25519_key"]
        assert (key.uid, key.mode) == (0, 0o600)
        keys = members["home/debian/.ssh/authorized_keys"]
        assert (keys.uid, keys.gid, keys.mode) == (vps.ADMIN_UID, vps.ADMIN_UID, 0o600)
        assert members["home/debian/.ssh"].mode == 0o700
        assert tar.extractfile(keys).read() == b"ssh-ed25519 AAAAuser me\n"
        # Only leaf entries: extracting at / must not reset /etc or /home permissions.
        assert "etc" not in members and "home" not in members


def test_names_are_per_sandbox_and_ovh_shaped(tmp_path):
    one, two = SandboxState(tmp_path / "a"), SandboxState(tmp_path / "b")
    assert vps.service_name(one, "test") != vps.service_name(two, "test")
    assert vps.service_name(one, "test") != vps.service_name(one, "staging")
    assert vps.service_name(one, "test").endswith(".vps.ovh.net")
    assert vps.container_name(one, "production").startswith(one.prefix)
    assert all(v.startswith(one.prefix) for v in vps.volume_names(one, "test"))


def test_run_flags_are_the_ones_that_work_without_privileged():
    assert "--privileged" not in vps.RUN_FLAGS
    flags = " ".join(vps.RUN_FLAGS)
    assert "--cap-drop SYS_RESOURCE" in flags and "--stop-signal SIGRTMIN+3" in flags
    assert "--restart unless-stopped" in flags


def test_extra_vps_address_is_the_first_free_one_from_index_20():
    subnet = "10.213.7.0/24"
    assert vps.free_address(subnet, []) == "10.213.7.20"
    # Docker reports container addresses with their prefix length.
    assert vps.free_address(subnet, ["10.213.7.1", "10.213.7.20/24", "10.213.7.21/24", ""]) == "10.213.7.22"
    assert vps.free_address(subnet, ["10.213.7.10", "10.213.7.11", "10.213.7.12"], first=10) == "10.213.7.13"
    with pytest.raises(RuntimeError, match="no free address"):
        vps.free_address("10.0.0.0/29", [f"10.0.0.{i}" for i in range(1, 7)], first=1)  # .7 is the broadcast


def test_extra_vps_names_are_dns_safe_and_never_an_environment():
    assert vps.check_extra_name("bench-ansible") == "bench-ansible"
    for bad in ("staging", "test", "Bench", "bench_ansible", "-x", "x-", "", "a" * 25, "1bench"):
        with pytest.raises(ValueError):
            vps.check_extra_name(bad)
