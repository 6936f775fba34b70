"""One SSH connection per host, pinned host key, and a dropped connection re-opened under a running command."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from technicia_deploy.connection import HostConnection

pytestmark = pytest.mark.e2e


@pytest.fixture
def vps_connection(sandbox):
    vps = sandbox.data["vps"]["production"]
    key = Path(sandbox.data["keys"]["deploy_private_key"]).read_text()
    with HostConnection(vps["ip"], 22, vps["admin_user"], vps["host_key"], key) as conn:
        yield conn, vps


def test_commands_share_one_connection(vps_connection):
    conn, _ = vps_connection
    transport = conn._conn.client.get_transport()
    outputs = [conn.run("echo $$").stdout for _ in range(5)]
    assert len(set(outputs)) == 5  # five commands, five shells...
    assert conn._conn.client.get_transport() is transport  # ...one SSH connection


def test_a_dropped_connection_is_reopened_and_the_command_runs(vps_connection):
    conn, vps = vps_connection
    before = conn._conn.client.get_transport()
    assert conn.run("hostname").ok
    # The server side kills every SSH session of the user: the client's transport dies under it.
    subprocess.run(["docker", "exec", vps["container"], "pkill", "-KILL", "-u", vps["admin_user"], "sshd"], check=False)
    result = conn.run("echo still-here", sudo=True)
    assert result.stdout.strip() == "still-here"
    assert conn._conn.client.get_transport() is not before


def test_stdin_reaches_the_command_whole_and_the_exit_status_is_kept(vps_connection):
    conn, _ = vps_connection
    text = "".join(f"KEY_{i}={'x' * 60}\n" for i in range(300))  # ~20 KB, ten times a real .env
    result = conn.run("sha256sum", stdin=text, sudo=True)
    import hashlib

    assert result.stdout.split()[0] == hashlib.sha256(text.encode()).hexdigest()
    failed = conn.run("cat >/dev/null; echo oops >&2; exit 3", stdin="secret-ish\n", check=False)
    assert (failed.exit_code, failed.stderr.strip()) == (3, "oops")


def test_prefetched_facts_are_read_without_a_round_trip_until_a_command_changes_the_server(vps_connection):
    from technicia_deploy.commands.batch import Read

    conn, _ = vps_connection
    reads = [Read("cat /etc/os-release"), Read("id -u", sudo=True), Read("echo nope >&2; exit 4")]
    alone = {r: conn.read(r.command, sudo=r.sudo).stdout for r in reads[:2]}
    conn.run("true")  # forget those reads

    before = conn.commands_run
    assert conn.prefetch(reads) == 3
    assert conn.commands_run == before + 1  # three facts, one command
    assert {r: conn.read(r.command, sudo=r.sudo).stdout for r in reads[:2]} == alone  # same answers, as root where asked
    assert alone[reads[1]].strip() == "0"
    assert conn.commands_run == before + 1  # served from the prefetch
    assert conn.prefetch(reads[:2]) == 0  # already kept: nothing fetched

    # A failing fact is not kept: its own read runs it and reports the failure as it always did.
    from technicia_deploy.connection import CommandFailed

    with pytest.raises(CommandFailed):
        conn.read(reads[2].command)
    # A command that may change the server forgets what was fetched.
    conn.run("true")
    conn.read(reads[0].command)
    assert conn.commands_run == before + 4
