"""Backups on the server: Qdrant collections through its snapshot API, n8n's data volume, each file with its size
and sha256; and the restore of a Qdrant snapshot through the same API.

One script takes the whole backup into a staging directory on the server (``BACKUP_ROOT/<stamp>``), then prints a
manifest, one line per file: ``file <name> <size> <sha256>`` and, per collection, ``points <collection> <count>``
(the count the restore drill must find again). Qdrant reports each snapshot's size: a download of another size is
a truncated copy and fails the script; so does an empty file. The snapshot is deleted from Qdrant once copied (it
would fill Qdrant's disk otherwise). The files are then copied off the server (tasks/backups.py) and the staging
directory removed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .shell import FactError, q

BACKUP_ROOT = "/var/backups/technicia"
QDRANT_URL = "http://127.0.0.1:6333"  # published on the server's loopback (never from outside: firewall)
N8N_ARCHIVE = "n8n-data.tar.gz"
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def staging_dir(stamp: str) -> str:
    if not re.fullmatch(r"[0-9TZ-]+", stamp):
        raise ValueError(f"bad backup stamp {stamp!r}")
    return f"{BACKUP_ROOT}/{stamp}"


def snapshot_file(collection: str) -> str:
    return f"qdrant-{collection}.snapshot"


def backup_script(stamp: str, owner: str, *, n8n_volume: str, qdrant_url: str = QDRANT_URL) -> str:
    """The whole backup, as root; ``owner`` (the deploy user) may then read the files to copy them off."""
    directory = staging_dir(stamp)
    api = q(qdrant_url)
    return "\n".join([
        "set -euo pipefail",
        f"d={q(directory)}",
        'rm -rf "$d" && install -d -m 700 "$d"',
        f"list=$(curl -fsS {api}/collections)",  # a Qdrant that does not answer fails the backup here
        "collections=$(printf '%s' \"$list\" | { grep -o '\"name\":\"[^\"]*\"' || true; } | cut -d'\"' -f4)",
        'for c in $collections; do',
        '  case "$c" in *[!A-Za-z0-9_.-]*|.*) echo "unsafe collection name: $c" >&2; exit 3 ;; esac',
        f'  count=$(curl -fsS -X POST -H "Content-Type: application/json" -d \'{{"exact":true}}\' {api}/collections/"$c"/points/count'
        " | grep -o '\"count\":[0-9]*' | cut -d: -f2)",
        f'  snap=$(curl -fsS -X POST {api}/collections/"$c"/snapshots)',
        "  name=$(printf '%s' \"$snap\" | grep -o '\"name\":\"[^\"]*\"' | cut -d'\"' -f4)",
        "  size=$(printf '%s' \"$snap\" | grep -o '\"size\":[0-9]*' | cut -d: -f2)",
        f'  curl -fsS -o "$d/qdrant-$c.snapshot" {api}/collections/"$c"/snapshots/"$name"',
        f'  curl -fsS -X DELETE {api}/collections/"$c"/snapshots/"$name" >/dev/null',
        '  got=$(stat -c %s "$d/qdrant-$c.snapshot")',
        '  [ "$got" = "$size" ] || { echo "snapshot of $c: $got bytes copied, Qdrant reported $size" >&2; exit 4; }',
        '  echo "points $c ${count:-0}"',
        "done",
        f"v=$(docker volume inspect -f '{{{{.Mountpoint}}}}' {q(n8n_volume)})",
        f'tar -C "$v" -czf "$d"/{N8N_ARCHIVE} .',
        'for f in "$d"/*; do',
        '  s=$(stat -c %s "$f")',
        '  [ "$s" -gt 0 ] || { echo "$(basename "$f") is empty" >&2; exit 5; }',
        '  echo "file $(basename "$f") $s $(sha256sum "$f" | cut -d" " -f1)"',
        "done",
        f'chown -R {q(owner)} "$d"',
    ])


def remove_staging_command(stamp: str) -> str:
    return f"rm -rf -- {q(staging_dir(stamp))}"


@dataclass(frozen=True)
class BackupFile:
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class ServerManifest:
    files: tuple[BackupFile, ...]
    points: dict[str, int]  # collection -> point count at backup time


def parse_manifest(output: str) -> ServerManifest:
    files, points = [], {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "file" and _NAME.fullmatch(parts[1]) and parts[2].isdigit():
            files.append(BackupFile(parts[1], int(parts[2]), parts[3]))
        elif len(parts) == 3 and parts[0] == "points" and parts[2].isdigit():
            points[parts[1]] = int(parts[2])
    if not files:
        raise FactError(f"the backup script listed no file: {output[-300:]!r}")
    return ServerManifest(tuple(files), points)


# -- restore (the drill) ------------------------------------------------------------------------------

def qdrant_snapshots_dir(volume: str) -> str:
    """Where the Qdrant container's /qdrant/snapshots volume lives on the server (for a snapshot to recover)."""
    return f"$(docker volume inspect -f '{{{{.Mountpoint}}}}' {q(volume)})"


def restore_qdrant_script(upload: str, collection: str, *, snapshots_volume: str, qdrant_url: str = QDRANT_URL) -> str:
    """Move the uploaded snapshot into Qdrant's snapshots volume, recover ``collection`` from it, print its count.

    The location Qdrant reads is its own path (/qdrant/snapshots/...), inside the container."""
    if not _NAME.fullmatch(collection):
        raise ValueError(f"bad collection name {collection!r}")
    api = q(qdrant_url)
    name = f"restore-{collection}.snapshot"
    location = f"file:///qdrant/snapshots/{collection}/{name}"
    body = q('{"location":"' + location + '"}')
    return "\n".join([
        "set -euo pipefail",
        f"dir={qdrant_snapshots_dir(snapshots_volume)}/{q(collection)}",
        'install -d "$dir"',
        f'mv -f {q(upload)} "$dir"/{q(name)}',
        f'chmod 644 "$dir"/{q(name)}',
        f"curl -fsS -X PUT -H 'Content-Type: application/json' -d {body} "
        f"{api}/collections/{q(collection)}/snapshots/recover >/dev/null",
        f'rm -f "$dir"/{q(name)}',
        f"curl -fsS -X POST -H 'Content-Type: application/json' -d '{{\"exact\":true}}' "
        f"{api}/collections/{q(collection)}/points/count | grep -o '\"count\":[0-9]*' | cut -d: -f2",
    ])
