"""`technicia-deploy doctor` against the sandbox: all green, then one fault at a time, each row saying what is wrong
and how to fix it, exit status 1. Every fault is undone before the next test (blocks put back, the VPS's host
key restored, the Anthropic key registered again, pebble resumed)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.e2e.helpers import block_changed, vps_exec

PROJECT_DIR = Path(__file__).resolve().parents[2]
OVH_BLOCK = "technicia-ovh"


def doctor(*args: str) -> tuple[int, list[dict], str]:
    """The CLI, as an operator runs it, on the sandbox's Prefect server; returns (status, rows, raw output)."""
    done = subprocess.run([sys.executable, "-m", "technicia_deploy.cli", "doctor", *args, "--timeout", "5", "--json"],
                          cwd=PROJECT_DIR, env=os.environ.copy(), capture_output=True, text=True, timeout=180)
    assert done.stdout.strip().startswith("["), done.stdout + done.stderr
    return done.returncode, json.loads(done.stdout), done.stdout + done.stderr


def by_check(rows: list[dict]) -> dict[tuple[str, str], dict]:
    return {(r["check"], r["environment"]): r for r in rows}


def failed(rows: list[dict]) -> list[tuple[str, str]]:
    return [(r["check"], r["environment"]) for r in rows if r["status"] == "FAILED"]


def test_doctor_is_all_green_on_the_sandbox(sandbox):
    done = subprocess.run([sys.executable, "-m", "technicia_deploy.cli", "doctor"], cwd=PROJECT_DIR,
                          env=os.environ.copy(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1].endswith("all ok")
    status, rows, _ = doctor()
    assert status == 0 and failed(rows) == []
    checks = {r["check"] for r in rows}
    assert {"Prefect server", "work pool technicia", "OVH credential", "OVH access rules", "VPS", "SSH", "DNS zone",
            "ACME directory", "Google Document AI key", "Google Vision key", "VoyageAI key", "Anthropic key"} <= checks
    assert any(c.startswith("alert destination ") for c in checks)
    assert {r["environment"] for r in rows} == {"all", "test", "staging", "production"}


def test_wrong_ovh_application_secret(sandbox):
    from blocks import OvhCredentials

    wrong = "w" * 32
    with block_changed(OvhCredentials, OVH_BLOCK, application_secret=SecretStr(wrong)):
        status, rows, raw = doctor("test")
    assert status == 1
    row = by_check(rows)[("OVH credential", "all")]
    assert row["status"] == "FAILED" and "invalid credential" in row["detail"] and "Invalid signature" in row["detail"]
    assert "ovh.application_secret" in row["fix"] and "blocks apply" in row["fix"]
    assert by_check(rows)[("OVH access rules", "test")]["status"] == "skipped"
    assert wrong not in raw
    assert doctor("test")[0] == 0  # put back


def test_consumer_key_lacking_one_route(sandbox):
    from blocks import OvhCredentials
    from technicia_deploy.sandbox import ovh as sandbox_ovh

    rules = json.loads(subprocess.run([sys.executable, "-m", "technicia_deploy.cli", "ovh", "access-rules"],
                                      cwd=PROJECT_DIR, capture_output=True, text=True, check=True).stdout)
    lacking = [r for r in rules if r != {"method": "POST", "path": "/domain/zone/*/refresh"}]
    assert len(lacking) == len(rules) - 1
    narrow_key = "n" * 32  # a second consumer key of the same application, as OVH's POST /auth/credential makes
    sandbox_ovh.admin(sandbox, "POST", "credentials", {"consumerKey": narrow_key, "rules": lacking})
    try:
        with block_changed(OvhCredentials, OVH_BLOCK, consumer_key=SecretStr(narrow_key)):
            status, rows, raw = doctor("test")
    finally:
        sandbox_ovh.admin(sandbox, "POST", "credentials", {"consumerKey": narrow_key, "rules": lacking, "status": "expired"})
    assert status == 1
    assert failed(rows) == [("OVH access rules", "test")]
    row = by_check(rows)[("OVH access rules", "test")]
    assert "lacks 1 route(s): POST /domain/zone/{zoneName}/refresh" in row["detail"]
    assert "technicia-deploy ovh access-rules test" in row["fix"]
    assert narrow_key not in raw


@contextmanager
def host_key_changed(container: str):
    """The VPS gets a new SSH host key (as a rebuild would give it); the original is put back afterwards."""
    keys = "/etc/ssh/ssh_host_ed25519_key"
    vps_exec(container, f"cp -p {keys} /root/h16-hostkey && cp -p {keys}.pub /root/h16-hostkey.pub && rm -f {keys} "
                        f"{keys}.pub && ssh-keygen -q -t ed25519 -N '' -f {keys} && systemctl restart ssh")
    try:
        yield
    finally:
        vps_exec(container, f"mv -f /root/h16-hostkey {keys} && mv -f /root/h16-hostkey.pub {keys}.pub && "
                            "systemctl restart ssh")


def wait_for_port(host: str, port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_changed_host_key(sandbox):
    vps = sandbox.data["vps"]["test"]
    with host_key_changed(vps["container"]):
        wait_for_port(vps["ip"], 22)
        status, rows, _ = doctor("test")
    wait_for_port(vps["ip"], 22)
    assert status == 1
    assert failed(rows) == [("SSH", "test")]
    row = by_check(rows)[("SSH", "test")]
    assert "presented host key SHA256:" in row["detail"] and "refusing to connect" in row["detail"]
    assert "out of band" in row["fix"] and "ssh.host_key" in row["fix"] and "compare" in row["fix"]
    assert doctor("test")[0] == 0


@contextmanager
def anthropic_key_revoked(sandbox, environment: str):
    """The cloud emulator forgets the environment's Anthropic key (revoked in the console), then knows it again."""
    from technicia_deploy.sandbox.cloud_emulator.server import admin_request

    config_file = Path(sandbox.data["cloud"]["config"])
    original = config_file.read_text()
    config = json.loads(original)
    config["anthropic"]["keys"] = {h: env for h, env in config["anthropic"]["keys"].items() if env != environment}
    config_file.write_text(json.dumps(config))
    admin_request(sandbox.data["cloud"]["url"], "POST", "/_admin/reload")
    try:
        yield
    finally:
        config_file.write_text(original)
        admin_request(sandbox.data["cloud"]["url"], "POST", "/_admin/reload")


def test_revoked_anthropic_key(sandbox):
    with anthropic_key_revoked(sandbox, "test"):
        status, rows, _ = doctor("test")
    assert status == 1
    assert failed(rows) == [("Anthropic key", "test")]
    row = by_check(rows)[("Anthropic key", "test")]
    assert row["detail"].startswith("invalid_credential") and "sha256:" in row["detail"]
    assert "Anthropic console" in row["fix"] and "anthropic.api_key" in row["fix"]
    assert doctor("test")[0] == 0


@contextmanager
def pebble_frozen(sandbox):
    """The ACME server stops answering (its process is stopped: connections hang, as behind a dead route)."""
    from technicia_deploy.sandbox import processes

    pid = processes.pid_of(sandbox, "pebble")
    assert pid, "pebble is not running"
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def test_unreachable_acme_server(sandbox):
    started = time.monotonic()
    with pebble_frozen(sandbox):
        status, rows, _ = doctor("test")
    assert time.monotonic() - started < 60  # bounded: the check's own timeout, not pebble's silence
    assert status == 1
    assert failed(rows) == [("ACME directory", "test")]
    row = by_check(rows)[("ACME directory", "test")]
    assert sandbox.data["acme"]["directory"] in row["detail"] and "Timeout" in row["detail"]
    assert "tls.acme_server" in row["fix"]
    assert doctor("test")[0] == 0
