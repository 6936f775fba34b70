"""The backup store on the orchestrator host: one directory per environment, one per backup, each with its manifest.

Layout: ``<root>/<environment>/<stamp>/`` holding the files and ``manifest.json`` (every file's size and sha256,
each Qdrant collection's point count, when and from which server). A backup is written into ``<stamp>.partial``
and renamed only once every file was checked against the server's checksums: a directory without ``.partial`` is
complete, and only complete backups count for the retention and the restore drill.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

DEFAULT_ROOT = "/var/backups/technicia-store"
ROOT_VARIABLE = "TECHNICIA_BACKUP_DIR"  # overrides the default root (the orchestrator's own choice)
MANIFEST = "manifest.json"
PARTIAL = ".partial"


class BackupInvalid(RuntimeError):
    """A backup file is empty, truncated or not what the server produced: never a backup to rely on."""


def root(configured: str | None = None) -> Path:
    return Path(configured or os.environ.get(ROOT_VARIABLE) or DEFAULT_ROOT)


def environment_dir(store: Path, environment: str) -> Path:
    return store / environment


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Entry:
    name: str
    size: int
    sha256: str


def verify(directory: Path, entries: list[Entry]) -> None:
    """Every file present, non-empty, of the expected size and checksum; else BackupInvalid naming each one."""
    problems = []
    for entry in entries:
        path = directory / entry.name
        if not path.is_file():
            problems.append(f"{entry.name}: missing")
            continue
        size = path.stat().st_size
        if size == 0 or entry.size == 0:
            problems.append(f"{entry.name}: empty file")
        elif size != entry.size:
            problems.append(f"{entry.name}: {size} bytes, expected {entry.size} (truncated copy)")
        elif sha256_of(path) != entry.sha256:
            problems.append(f"{entry.name}: sha256 differs from the server's")
    if problems:
        raise BackupInvalid(f"backup {directory}: " + "; ".join(problems))


def partial_dir(store: Path, environment: str, stamp: str) -> Path:
    return environment_dir(store, environment) / f"{stamp}{PARTIAL}"


def complete(partial: Path, manifest: dict[str, Any]) -> Path:
    """Write the manifest and make the backup complete (an atomic rename)."""
    (partial / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    final = partial.with_name(partial.name[: -len(PARTIAL)])
    partial.rename(final)
    return final


def manifest_of(entries: list[Entry], **fields: Any) -> dict[str, Any]:
    return {**fields, "files": [asdict(e) for e in entries]}


def backups(store: Path, environment: str) -> list[Path]:
    """Complete backups of the environment, newest first (stamps sort by time)."""
    directory = environment_dir(store, environment)
    if not directory.is_dir():
        return []
    return sorted((p for p in directory.iterdir() if p.is_dir() and not p.name.endswith(PARTIAL)
                   and (p / MANIFEST).is_file()), key=lambda p: p.name, reverse=True)


def read_manifest(backup: Path) -> dict[str, Any]:
    return json.loads((backup / MANIFEST).read_text())


def entries_of(manifest: dict[str, Any]) -> list[Entry]:
    return [Entry(**f) for f in manifest["files"]]


def latest(store: Path, environment: str) -> Path | None:
    found = backups(store, environment)
    return found[0] if found else None


def apply_retention(store: Path, environment: str, keep: int) -> list[str]:
    """Remove the complete backups beyond the ``keep`` newest, and partial ones older than the newest complete
    one (a copy that died half-way); the names removed."""
    if keep < 1:
        raise ValueError("a retention must keep at least one backup")
    kept = backups(store, environment)
    removed = []
    for old in kept[keep:]:
        shutil.rmtree(old)
        removed.append(old.name)
    directory = environment_dir(store, environment)
    if kept and directory.is_dir():
        for partial in directory.glob(f"*{PARTIAL}"):
            if partial.name[: -len(PARTIAL)] < kept[0].name:
                shutil.rmtree(partial)
                removed.append(partial.name)
    return removed
