"""The server step's sshd change never locks the pipeline out (tasks.server.harden).

A fake server answers the hardening facts before and after the commands run: a drop-in change is kept only once
a fresh login works and needs nothing more; a fresh login that fails puts the previous drop-in back over the
connection that is still open.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from technicia_deploy.commands import hardening as h
from technicia_deploy.commands.shell import render_sections
from technicia_deploy.connection import ConnectionFailed, HostKeyMismatch
from tests.unit.commands.test_commands_hardening import EFFECTIVE_DEBIAN, EFFECTIVE_HARDENED, FRESH, KEY, file_section

ENV = SimpleNamespace(name="test")
WANTED = h.HardeningWanted(public_key=KEY)


class FakeServer:
    """One server seen through any number of connections: its facts are FRESH until a command ran, then hardened."""

    def __init__(self, before: dict, after: dict | None = None):
        self.before, self.after, self.ran, self.closed = before, after, [], []

    def facts(self) -> str:
        return render_sections(self.after if self.ran and self.after is not None else self.before)

    def connection(self, name: str):
        server = self

        class Conn:
            def read(self, command, sudo=False):
                assert command == h.fact_command("deploy") and sudo
                return SimpleNamespace(stdout=server.facts())

            def run(self, command, sudo=False):
                assert sudo
                server.ran.append((name, command))
                return SimpleNamespace(stdout=server.facts() if command == h.fact_command("deploy") else "")

            def close(self):
                server.closed.append(name)

        return Conn()


def _hardened_values(**overrides) -> dict:
    """The facts once every hardening command ran (the deploy user, its key and sudo, our drop-in in effect)."""
    values = dict(FRESH)
    values.update({
        "user": ("deploy:x:1001:1001::/home/deploy:/bin/bash\n", 0),
        "groups": ("deploy\n", 0),
        "sudoers": file_section(h.sudoers_file("deploy")),
        "ssh_dir": ("700 deploy\n", 0),
        "authorized_keys": (f"600 deploy\n{KEY}\n", 0),
        "sshd_dropin": file_section(h.sshd_dropin_file("no")),
        "sshd_effective": (EFFECTIVE_HARDENED, 0),
        "root_password": ("root L 11/20/2024 0 99999 7 -1\n", 0),
    })
    values.update(overrides)
    return values


def test_a_new_dropin_is_kept_once_a_fresh_login_works_and_needs_nothing():
    from tasks.server import harden

    server = FakeServer(FRESH, _hardened_values())
    commands = harden(server.connection("old"), ENV, WANTED, lambda: server.connection("fresh"))
    assert h.BACKUP_DROPIN in commands
    # The commit runs on the old connection after the fresh one got in, then the fresh one re-reads the facts.
    assert server.ran[-2:] == [("old", h.COMMIT_DROPIN), ("fresh", h.fact_command("deploy"))]
    assert server.closed == ["fresh"]  # the old connection is the caller's: never closed here


@pytest.mark.parametrize("failure", [ConnectionFailed("SSH authentication failed"),
                                     HostKeyMismatch("offered no host key of the declared type")])
def test_a_fresh_login_that_fails_restores_the_previous_dropin(failure):
    from tasks.server import harden

    server = FakeServer(FRESH, _hardened_values())

    def login():
        raise failure

    with pytest.raises(h.HardeningError, match="the previous /etc/ssh/sshd_config.d/10-technicia.conf was restored"):
        harden(server.connection("old"), ENV, WANTED, login)
    assert server.ran[-1] == ("old", h.ROLLBACK_DROPIN)
    assert ("old", h.COMMIT_DROPIN) not in server.ran


def test_no_sshd_change_means_no_fresh_login():
    from tasks.server import harden

    server = FakeServer(_hardened_values())

    def login():
        raise AssertionError("no sshd change: no fresh login needed")

    assert harden(server.connection("old"), ENV, WANTED, login) == []
    assert server.ran == []


def test_settings_undone_right_after_the_change_are_an_error():
    from tasks.server import harden

    # After the change sshd -T still shows Debian's defaults: a file read before ours sets them.
    server = FakeServer(FRESH, _hardened_values(sshd_effective=(EFFECTIVE_DEBIAN, 0)))
    with pytest.raises(h.HardeningError, match="x11forwarding is 'yes'"):
        harden(server.connection("old"), ENV, WANTED, lambda: server.connection("fresh"))
    assert ("old", h.COMMIT_DROPIN) in server.ran  # the login works: the change is not what locks anyone out
