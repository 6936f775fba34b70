"""The sandbox VPSes as the pipeline meets them: SSH with a pinned host key, a fresh OVH-like Debian."""

from __future__ import annotations

import base64

import paramiko
import pytest

from technicia_deploy.sandbox import pki, vps

pytestmark = pytest.mark.e2e


def connect(address: str, host_key_line: str, key_path: str, user: str = "debian") -> paramiko.SSHClient:
    """An SSH connection that trusts only ``host_key_line`` for ``address`` (RejectPolicy: nothing is learnt)."""
    client = paramiko.SSHClient()
    kind, blob = host_key_line.split()[:2]
    client.get_host_keys().add(address, kind, paramiko.PKey.from_type_string(kind, base64.b64decode(blob)))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(address, username=user, key_filename=key_path, look_for_keys=False, allow_agent=False, timeout=10)
    return client


def run(client: paramiko.SSHClient, command: str) -> tuple[int, str]:
    _, stdout, stderr = client.exec_command(command, timeout=30)
    out = stdout.read().decode() + stderr.read().decode()
    return stdout.channel.recv_exit_status(), out.strip()


@pytest.mark.parametrize("env", vps.ENVIRONMENTS)
def test_vps_accepts_the_deploy_key_with_its_declared_host_key(sandbox, env):
    server = sandbox.data["vps"][env]
    with connect(server["ip"], server["host_key"], sandbox.data["keys"]["deploy_private_key"]) as client:
        assert run(client, "id -un") == (0, "debian")
        assert run(client, "sudo -n id -u") == (0, "0")  # passwordless sudo, as on OVH's Debian image
        assert run(client, "systemctl is-system-running --wait")[1] == "running"
        # /var/lib/docker is a volume: a Docker engine installed on the VPS can use overlay2.
        assert run(client, "findmnt -n -o FSTYPE --target /var/lib/docker")[1] not in ("", "overlay")


def test_a_wrong_pinned_host_key_is_refused(sandbox, tmp_path):
    server = sandbox.data["vps"]["test"]
    impostor = pki.ssh_keypair(tmp_path / "impostor", "impostor")
    with pytest.raises(paramiko.BadHostKeyException):
        connect(server["ip"], impostor, sandbox.data["keys"]["deploy_private_key"])


def test_an_undeclared_host_is_refused(sandbox):
    server = sandbox.data["vps"]["test"]
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        client.connect(server["ip"], username="debian", key_filename=sandbox.data["keys"]["deploy_private_key"],
                       look_for_keys=False, allow_agent=False, timeout=10)
    client.close()


def test_fresh_vps_has_what_hardening_must_change(sandbox):
    """Debian's sshd defaults and a root password: the pipeline's hardening step has real work to do."""
    server = sandbox.data["vps"]["production"]
    with connect(server["ip"], server["host_key"], sandbox.data["keys"]["deploy_private_key"]) as client:
        code, effective = run(client, "sudo -n sshd -T")
        assert code == 0
        assert "passwordauthentication yes" in effective
        assert "permitrootlogin without-password" in effective  # Debian's prohibit-password
        code, root_hash = run(client, "sudo -n getent shadow root | cut -d: -f2")
        assert code == 0 and root_hash.startswith("$")
        # The host's resolver, not Docker's 127.0.0.11 (a nested dockerd would drop it and fall back to 8.8.8.8).
        assert "127.0.0.11" not in run(client, "cat /etc/resolv.conf")[1]


def test_rebuild_gives_a_fresh_vps_with_the_same_address_and_host_key(sandbox, tmp_path):
    env = "staging"
    before = dict(sandbox.data["vps"][env])
    deploy_key = sandbox.data["keys"]["deploy_private_key"]
    with connect(before["ip"], before["host_key"], deploy_key) as client:
        assert run(client, "sudo -n touch /root/left-by-previous-install")[0] == 0
    new_public = pki.ssh_keypair(tmp_path / "rebuild_key", "rebuild")
    try:
        vps.rebuild(sandbox, env, new_public)
        after = sandbox.data["vps"][env]
        assert (after["ip"], after["host_key"]) == (before["ip"], before["host_key"])
        with connect(after["ip"], after["host_key"], str(tmp_path / "rebuild_key")) as client:
            assert run(client, "sudo -n test -e /root/left-by-previous-install")[0] == 1
        # Only the key given to the rebuild is authorized now.
        with pytest.raises(paramiko.AuthenticationException):
            connect(after["ip"], after["host_key"], deploy_key)
    finally:
        # Leave the session's sandbox as other tests expect it: the deploy key authorized.
        vps.rebuild(sandbox, env, sandbox.data["keys"]["deploy_public_key"])
    with connect(before["ip"], before["host_key"], deploy_key) as client:
        assert run(client, "true")[0] == 0

