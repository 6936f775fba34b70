"""deploy.sh, the application's deploy command: which compose it drives, in which order, and its refusals.

The Docker CLI is replaced by recording stand-ins on PATH: what is under test is the
script's own logic (choice of compose flavour, .env check, idempotent commands).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from technicia_deploy.sandbox import app_repo

RECORDER = """#!/bin/sh
echo "$(basename "$0") $* project=$COMPOSE_PROJECT_NAME" >> "$RECORD"
{extra}
exit 0
"""


@pytest.fixture
def checkout(tmp_path) -> Path:
    directory = tmp_path / "technicia"
    directory.mkdir()
    for name, (content, mode) in app_repo.render(app_repo.RELEASES[1], "127.0.0.1:9").items():
        (directory / name).write_text(content)
        (directory / name).chmod(mode)
    return directory


def fake_bin(tmp_path: Path, v2: bool, v1: bool) -> Path:
    # Only the stand-ins and the few tools the script needs: a real docker / docker-compose
    # elsewhere on PATH must never be reached.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "cat", "dirname", "basename"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    docker_extra = "" if v2 else 'case "$1" in compose) exit 1 ;; esac'
    (bin_dir / "docker").write_text(RECORDER.replace("{extra}", docker_extra))
    (bin_dir / "docker").chmod(0o755)
    if v1:
        (bin_dir / "docker-compose").write_text(RECORDER.replace("{extra}", ""))
        (bin_dir / "docker-compose").chmod(0o755)
    return bin_dir


def run(checkout: Path, bin_dir: Path, record: Path) -> subprocess.CompletedProcess:
    env = {"PATH": str(bin_dir), "RECORD": str(record), "HOME": str(checkout)}
    # Run from elsewhere: the script must work on its own directory.
    return subprocess.run([str(bin_dir / "sh"), str(checkout / "deploy.sh")], cwd="/", env=env,
                          capture_output=True, text=True)


def test_v1_compose_pulls_then_converges(checkout, tmp_path):
    (checkout / ".env").write_text("ANTHROPIC_API_KEY=x\n")
    record = tmp_path / "record"
    proc = run(checkout, fake_bin(tmp_path, v2=False, v1=True), record)
    assert proc.returncode == 0, proc.stderr
    calls = [line for line in record.read_text().splitlines() if line.startswith("docker-compose")]
    assert calls == ["docker-compose pull --quiet project=technicia",
                     "docker-compose up -d --remove-orphans project=technicia"]
    assert "1.1.0 deployed" in proc.stdout


def test_v2_plugin_is_preferred_when_present(checkout, tmp_path):
    (checkout / ".env").write_text("ANTHROPIC_API_KEY=x\n")
    record = tmp_path / "record"
    proc = run(checkout, fake_bin(tmp_path, v2=True, v1=True), record)
    assert proc.returncode == 0, proc.stderr
    calls = record.read_text().splitlines()
    assert calls[-2:] == ["docker compose pull --quiet project=technicia",
                          "docker compose up -d --remove-orphans project=technicia"]
    assert not any(c.startswith("docker-compose") for c in calls)


def test_refuses_without_env_file(checkout, tmp_path):
    record = tmp_path / "record"
    proc = run(checkout, fake_bin(tmp_path, v2=False, v1=True), record)
    assert proc.returncode == 1
    assert ".env is missing" in proc.stderr
    assert "pull" not in (record.read_text() if record.exists() else "")


def test_refuses_without_any_compose(checkout, tmp_path):
    (checkout / ".env").write_text("ANTHROPIC_API_KEY=x\n")
    proc = run(checkout, fake_bin(tmp_path, v2=False, v1=False), tmp_path / "record")
    assert proc.returncode == 1
    assert "neither 'docker compose' (v2) nor 'docker-compose' (v1)" in proc.stderr


def test_is_posix_sh(checkout):
    # Debian's /bin/sh is dash: no bashisms may slip in.
    sh = shutil.which("dash") or shutil.which("sh")
    assert subprocess.run([sh, "-n", str(checkout / "deploy.sh")]).returncode == 0
    assert os.access(checkout / "deploy.sh", os.X_OK)
