"""Atomic file writes, run for real in a temporary directory: write, no-op, metadata, checks, stdin."""

from __future__ import annotations

import grp
import os
import pwd
import stat
import subprocess

import pytest

from technicia_deploy.commands.files import (
    FileFact,
    WantedFile,
    ensure_file,
    ensure_file_from_stdin,
    files_fact_command,
    parse_files_facts,
    write_file,
)

OWNER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name


def sh(command: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], input=stdin, capture_output=True)


def fact(path: str) -> FileFact:
    result = sh(files_fact_command([path]))
    assert result.returncode == 0
    return parse_files_facts([path], result.stdout.decode())[path]


def wanted(path, content, mode=0o640) -> WantedFile:
    return WantedFile(str(path), content, mode, OWNER, GROUP)


def test_exact_command_for_a_simple_file():
    assert write_file(WantedFile("/etc/x.conf", "a\n", 0o644)) == "\n".join([
        "set -e",
        "f=/etc/x.conf",
        "t=$(mktemp /etc/.x.conf.XXXXXX)",
        "trap 'rm -f -- \"$t\"' EXIT",
        "printf %s YQo= | base64 -d > \"$t\"",
        "chown root:root \"$t\"",
        "chmod 644 \"$t\"",
        "mv -f \"$t\" \"$f\"",
    ])


def test_write_then_second_run_is_a_no_op(tmp_path, bash_syntax):
    path = tmp_path / "dir with space" / "it's.conf"
    path.parent.mkdir()
    content = "quotes ' \" $HOME `x` \\ and bytes \x00\xff\n"
    want = wanted(path, content.encode("latin-1"))
    assert fact(str(path)) == FileFact.absent(str(path))

    commands = ensure_file(fact(str(path)), want)
    assert len(commands) == 1
    bash_syntax(commands[0])
    assert sh(commands[0]).returncode == 0

    assert path.read_bytes() == content.encode("latin-1")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert ensure_file(fact(str(path)), want) == []
    assert sorted(os.listdir(path.parent)) == ["it's.conf"]  # no temporary file left


def test_metadata_only_difference_is_fixed_without_rewriting(tmp_path):
    path = tmp_path / "f"
    path.write_text("same\n")
    path.chmod(0o666)
    commands = ensure_file(fact(str(path)), wanted(path, "same\n", 0o600))
    assert commands == [f"chown {OWNER}:{GROUP} {path} && chmod 600 {path}"]
    assert sh(commands[0]).returncode == 0
    assert ensure_file(fact(str(path)), wanted(path, "same\n", 0o600)) == []


def test_failed_check_installs_nothing(tmp_path):
    path = tmp_path / "sudoers-like"
    path.write_text("old\n")
    [command] = ensure_file(fact(str(path)), wanted(path, "new\n"), check="grep -q valid {tmp}")
    assert sh(command).returncode != 0
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["sudoers-like"]


def test_failed_check_after_install_restores_the_previous_file(tmp_path):
    path = tmp_path / "site.conf"
    path.write_text("old\n")
    [command] = ensure_file(
        fact(str(path)), wanted(path, "broken\n"), check_installed='! grep -q broken "$f"', then="echo reloaded"
    )
    result = sh(command)
    assert result.returncode != 0 and b"reloaded" not in result.stdout
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["site.conf"]


def test_failed_check_after_install_of_a_new_file_removes_it(tmp_path):
    path = tmp_path / "new.conf"
    [command] = ensure_file(FileFact.absent(str(path)), wanted(path, "broken\n"), check_installed="false")
    assert sh(command).returncode != 0
    assert os.listdir(tmp_path) == []


def test_then_runs_after_a_successful_install(tmp_path):
    path = tmp_path / "a.conf"
    [command] = ensure_file(FileFact.absent(str(path)), wanted(path, "x\n"), check_installed="true", then="echo reloaded")
    result = sh(command)
    assert result.returncode == 0 and result.stdout == b"reloaded\n"


def test_concurrent_edit_is_refused(tmp_path):
    path = tmp_path / "after.rules"
    path.write_text("read by the fact\n")
    read = fact(str(path))
    path.write_text("edited meanwhile\n")
    command = write_file(wanted(path, "ours\n"), expect_sha256=read.sha256)
    result = sh(command)
    assert result.returncode != 0 and b"changed since" in result.stderr
    assert path.read_text() == "edited meanwhile\n"


def test_secret_content_travels_on_stdin_only(tmp_path):
    path = tmp_path / ".env"
    secret = "ANTHROPIC_API_KEY=sk-ant-very-secret-value\n"
    want = wanted(path, secret, 0o600)
    [command] = ensure_file_from_stdin(fact(str(path)), want)
    assert "very-secret" not in command and "c2stYW50" not in command  # neither plain nor base64
    assert "very-secret" not in repr(want)
    assert sh(command, stdin=secret.encode()).returncode == 0
    assert path.read_text() == secret and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_file_from_stdin(fact(str(path)), want) == []
    changed = wanted(path, "ANTHROPIC_API_KEY=rotated\n", 0o600)
    assert len(ensure_file_from_stdin(fact(str(path)), changed)) == 1


def test_relative_path_is_refused():
    with pytest.raises(ValueError, match="absolute"):
        write_file(WantedFile("etc/x", "a"))


def test_content_cut_short_on_its_way_is_never_installed(tmp_path):
    """A connection cut while the secret travels ends `cat` early: the partial file must not replace the .env."""
    path = tmp_path / ".env"
    path.write_text("OLD=1\n")
    path.chmod(0o600)
    secret = "ANTHROPIC_API_KEY=sk-ant-very-secret-value\nVOYAGE_API_KEY=pa-another\n"
    [command] = ensure_file_from_stdin(fact(str(path)), wanted(path, secret, 0o600))
    result = sh(command, stdin=secret[:20].encode())
    assert result.returncode != 0 and b"not received whole" in result.stderr
    assert path.read_text() == "OLD=1\n" and list(tmp_path.iterdir()) == [path]  # no temporary file left
    assert sh(command, stdin=secret.encode()).returncode == 0 and path.read_text() == secret
