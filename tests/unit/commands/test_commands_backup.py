"""Backup builders: the server script's exact steps, its manifest parsed, the restore through Qdrant's snapshot API."""

from __future__ import annotations

import pytest

from technicia_deploy.commands import backup as b
from technicia_deploy.commands.shell import FactError

STAMP = "20261202T171500Z"


def test_backup_script(bash_syntax):
    script = b.backup_script(STAMP, "deploy", n8n_volume="technicia_n8n_data")
    bash_syntax(script)
    lines = script.splitlines()
    assert lines[:4] == ["set -euo pipefail", "d=/var/backups/technicia/20261202T171500Z",
                         'rm -rf "$d" && install -d -m 700 "$d"', "list=$(curl -fsS http://127.0.0.1:6333/collections)"]
    assert '  snap=$(curl -fsS -X POST http://127.0.0.1:6333/collections/"$c"/snapshots)' in lines
    assert '  curl -fsS -o "$d/qdrant-$c.snapshot" http://127.0.0.1:6333/collections/"$c"/snapshots/"$name"' in lines
    # A download of another size than Qdrant reported is a truncated copy; an empty file is never a backup.
    assert '  [ "$got" = "$size" ] || { echo "snapshot of $c: $got bytes copied, Qdrant reported $size" >&2; exit 4; }' in lines
    assert '  [ "$s" -gt 0 ] || { echo "$(basename "$f") is empty" >&2; exit 5; }' in lines
    assert "v=$(docker volume inspect -f '{{.Mountpoint}}' technicia_n8n_data)" in lines
    assert lines[-1] == 'chown -R deploy "$d"'
    with pytest.raises(ValueError):
        b.backup_script("../x", "deploy", n8n_volume="v")


def test_manifest():
    manifest = b.parse_manifest("points technicia_docs 5\nfile n8n-data.tar.gz 120 ab12\n"
                                "file qdrant-technicia_docs.snapshot 10240 cd34\nnoise\n")
    assert manifest.points == {"technicia_docs": 5}
    assert manifest.files == (b.BackupFile("n8n-data.tar.gz", 120, "ab12"),
                              b.BackupFile("qdrant-technicia_docs.snapshot", 10240, "cd34"))
    with pytest.raises(FactError, match="listed no file"):
        b.parse_manifest("points technicia_docs 5\n")


def test_restore_script(bash_syntax):
    script = b.restore_qdrant_script("/tmp/up.snapshot", "technicia_docs", snapshots_volume="technicia_qdrant_snapshots")
    bash_syntax(script)
    assert script.splitlines()[1:5] == [
        "dir=$(docker volume inspect -f '{{.Mountpoint}}' technicia_qdrant_snapshots)/technicia_docs",
        'install -d "$dir"', 'mv -f /tmp/up.snapshot "$dir"/restore-technicia_docs.snapshot',
        'chmod 644 "$dir"/restore-technicia_docs.snapshot']
    assert ("curl -fsS -X PUT -H 'Content-Type: application/json' -d "
            "'{\"location\":\"file:///qdrant/snapshots/technicia_docs/restore-technicia_docs.snapshot\"}' "
            "http://127.0.0.1:6333/collections/technicia_docs/snapshots/recover >/dev/null") in script
    with pytest.raises(ValueError):
        b.restore_qdrant_script("/tmp/x", "a b", snapshots_volume="v")
