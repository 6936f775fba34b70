"""Where the emulator's keys and data live under a sandbox state directory (shared by daemon and component)."""

from __future__ import annotations

import os
from pathlib import Path

from technicia_deploy.sandbox.ovh_emulator.auth import AppKeys

KEY_FILES = {
    "application_key": "application_key",
    "application_secret": "application_secret",
    "consumer_key": "consumer_key",
}


def data_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "ovh"


def key_file(state_dir: Path, field: str) -> Path:
    return data_dir(state_dir) / KEY_FILES[field]


def admin_token_file(state_dir: Path) -> Path:
    return data_dir(state_dir) / "admin_token"


def read_keys(state_dir: Path) -> AppKeys:
    return AppKeys(**{field: key_file(state_dir, field).read_text().strip() for field in KEY_FILES})


def write_secret(path: Path, value: str) -> None:
    """Create a 0600 file holding one secret (never world-readable, even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
