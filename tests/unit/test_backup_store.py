"""The backup store: complete backups only once checked, empty/truncated files refused loudly, retention."""

from __future__ import annotations

import hashlib

import pytest

from technicia_deploy import backup_store as s


def write_backup(store, env, stamp, files: dict[str, bytes]):
    partial = s.partial_dir(store, env, stamp)
    partial.mkdir(parents=True)
    entries = []
    for name, data in files.items():
        (partial / name).write_bytes(data)
        entries.append(s.Entry(name, len(data), hashlib.sha256(data).hexdigest()))
    return partial, entries


def test_a_checked_backup_becomes_complete_and_latest(tmp_path):
    partial, entries = write_backup(tmp_path, "production", "20261201T030000Z", {"a.snapshot": b"x" * 10})
    s.verify(partial, entries)
    assert s.latest(tmp_path, "production") is None  # partial: not a backup yet
    final = s.complete(partial, s.manifest_of(entries, qdrant_points={"docs": 3}))
    assert s.latest(tmp_path, "production") == final
    assert s.read_manifest(final)["qdrant_points"] == {"docs": 3}
    assert s.entries_of(s.read_manifest(final)) == entries


def test_empty_truncated_or_altered_files_fail_loudly(tmp_path):
    partial, entries = write_backup(tmp_path, "test", "20261201T030000Z", {"a": b"abc", "b": b"", "c": b"123456"})
    (partial / "c").write_bytes(b"123")  # cut short on the way
    entries.append(s.Entry("d", 4, "00"))
    with pytest.raises(s.BackupInvalid) as failed:
        s.verify(partial, entries)
    assert str(failed.value) == (f"backup {partial}: b: empty file; c: 3 bytes, expected 6 (truncated copy); d: missing")
    (partial / "a").write_bytes(b"abd")
    with pytest.raises(s.BackupInvalid, match="a: sha256 differs"):
        s.verify(partial, entries[:1])


def test_retention_keeps_the_newest_and_drops_stale_partials(tmp_path):
    for day in range(1, 6):
        partial, entries = write_backup(tmp_path, "test", f"2026120{day}T030000Z", {"a": b"x"})
        s.complete(partial, s.manifest_of(entries))
    write_backup(tmp_path, "test", "20261130T030000Z", {"a": b"x"})  # a copy that died, older than the newest
    removed = s.apply_retention(tmp_path, "test", keep=3)
    assert sorted(removed) == ["20261130T030000Z.partial", "20261201T030000Z", "20261202T030000Z"]
    assert [p.name for p in s.backups(tmp_path, "test")] == ["20261205T030000Z", "20261204T030000Z", "20261203T030000Z"]
    with pytest.raises(ValueError):
        s.apply_retention(tmp_path, "test", keep=0)


def test_root_default_and_override(monkeypatch, tmp_path):
    monkeypatch.delenv(s.ROOT_VARIABLE, raising=False)
    assert str(s.root()) == "/var/backups/technicia-store"
    monkeypatch.setenv(s.ROOT_VARIABLE, str(tmp_path))
    assert s.root() == tmp_path and s.root("/elsewhere").as_posix() == "/elsewhere"
