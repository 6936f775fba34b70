"""The sandbox's OVH API through the product client (real python-ovh): real VPS facts, a real rebuild."""

from __future__ import annotations

import base64
from pathlib import Path

import paramiko
import pytest

from technicia_deploy.ovh import OvhApi

pytestmark = pytest.mark.e2e

ENVIRONMENTS = ("test", "staging", "production")


def ovh_api(sandbox) -> OvhApi:
    known = sandbox.data["ovh"]

    def read(field: str) -> str:
        return Path(known[field]).read_text().strip()

    return OvhApi(
        api_url=known["api_url"],
        application_key=read("application_key_file"),
        application_secret=read("application_secret_file"),
        consumer_key=read("consumer_key_file"),
        timeout_s=10,
    )


def ssh(address: str, host_key_line: str, key_path: str) -> paramiko.SSHClient:
    """SSH as the admin user, trusting only the pinned host key."""
    client = paramiko.SSHClient()
    kind, blob = host_key_line.split()[:2]
    client.get_host_keys().add(address, kind, paramiko.PKey.from_type_string(kind, base64.b64decode(blob)))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        address, username="debian", key_filename=key_path, look_for_keys=False, allow_agent=False, timeout=10
    )
    return client


def run(client: paramiko.SSHClient, command: str) -> int:
    _, stdout, _ = client.exec_command(command, timeout=30)
    return stdout.channel.recv_exit_status()


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_python_ovh_reads_the_real_vps(sandbox, env):
    server = sandbox.data["vps"][env]
    spec = server["spec"]
    api = ovh_api(sandbox)
    details = api.vps_details(server["service_name"])
    expected = type("Spec", (), {k: spec[k] for k in ("model", "vcores", "ram_gb", "disk_gb", "zone")})
    assert details.differences(expected) == []
    assert (details.state, details.os) == ("running", spec["os"])
    assert api.vps_ipv4(server["service_name"]) == server["ip"]


def test_rebuild_task_runs_to_done_and_the_vps_answers_ssh_again(sandbox):
    env = "staging"
    server = dict(sandbox.data["vps"][env])
    deploy_key = sandbox.data["keys"]["deploy_private_key"]
    with ssh(server["ip"], server["host_key"], deploy_key) as client:
        assert run(client, "sudo -n touch /root/left-by-previous-install") == 0

    api = ovh_api(sandbox)
    image = api.find_image(server["service_name"], server["spec"]["os"])
    # The deploy key again: the session's other tests expect it authorized.
    task = api.rebuild_and_wait(
        server["service_name"], image, sandbox.data["keys"]["deploy_public_key"], timeout_s=300, poll_s=1
    )
    assert task["state"] == "done" and task["type"] == "reinstallVm"
    assert api.vps_details(server["service_name"]).state == "running"

    # Same address, same host key (pinned: a changed key would be refused), a fresh system.
    with ssh(server["ip"], server["host_key"], deploy_key) as client:
        assert run(client, "sudo -n test -e /root/left-by-previous-install") == 1
