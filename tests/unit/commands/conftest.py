"""Helpers for the command-builder tests: shell syntax checks and reading back inline payloads."""

from __future__ import annotations

import base64
import re
import subprocess

import pytest


def _bash_syntax(command: str) -> None:
    # The executor runs every command as `sudo bash -c CMD`: parse it the same way, run nothing.
    result = subprocess.run(["bash", "-n", "-c", command], capture_output=True, text=True)
    assert result.returncode == 0, f"bash -n failed: {result.stderr}\n--- command ---\n{command}"


def _payload(command: str) -> str:
    """The content a write command carries inline as base64."""
    match = re.search(r"printf %s '?([A-Za-z0-9+/=]+)'? \| base64 -d", command)
    assert match, f"no inline payload in {command!r}"
    return base64.b64decode(match.group(1)).decode()


@pytest.fixture
def bash_syntax():
    return _bash_syntax


@pytest.fixture
def payload():
    return _payload
