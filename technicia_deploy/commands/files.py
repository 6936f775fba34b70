"""Files on the server: write atomically, with mode and owner, only when they differ.

Fact: ``stat -L -c '%a %U %G'`` + ``sha256sum`` of each path (the content
itself never travels back). Operation: compare with the wanted content's
sha256 and metadata; rewrite only on a content difference, ``chown``/``chmod``
only on a metadata difference.

The content is carried in the command as base64 (any bytes survive quoting),
written to a temporary file in the target's directory, given its mode and
owner, optionally validated, then renamed over the target (atomic: readers
never see half a file). Secret content (.env) must not appear on a command
line (``ps``, logs, Prefect): :func:`write_file_from_stdin` reads it from the
command's standard input, which the executor supplies.
"""

from __future__ import annotations

import base64
import hashlib
import posixpath
import re
from dataclasses import dataclass
from typing import Sequence

from .shell import FactError, Section, fact_script, parse_sections, q


@dataclass(frozen=True)
class FileFact:
    path: str
    exists: bool
    sha256: str | None = None
    mode: int | None = None
    owner: str | None = None
    group: str | None = None

    @classmethod
    def absent(cls, path: str) -> "FileFact":
        return cls(path, False)


@dataclass(frozen=True)
class WantedFile:
    """A file as it must be. ``content`` may be a secret: it only ever leaves as a hash or via stdin."""

    path: str
    content: bytes | str
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"

    @property
    def data(self) -> bytes:
        return self.content.encode() if isinstance(self.content, str) else self.content

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def __repr__(self) -> str:  # never print the content (it may be a secret)
        return f"WantedFile(path={self.path!r}, sha256={self.sha256[:12]}..., mode={self.mode:o}, owner={self.owner}:{self.group})"


def file_fact_body(path: str) -> str:
    """Section body: 'MODE OWNER GROUP' then the sha256, or 'absent'."""
    p = q(path)
    return f"if [ -f {p} ]; then stat -L -c '%a %U %G' {p} && sha256sum < {p} | cut -d' ' -f1; else echo absent; fi"


def parse_file_section(path: str, section: Section) -> FileFact:
    lines = section.lines
    if lines == ["absent"]:
        return FileFact.absent(path)
    if len(lines) != 2 or not section.ok:
        raise FactError(f"file fact for {path}: unexpected output {section.text!r} (status {section.rc})")
    meta = lines[0].split()
    digest = lines[1].strip()
    if len(meta) != 3 or not re.fullmatch(r"[0-7]{1,4}", meta[0]) or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise FactError(f"file fact for {path}: unexpected output {section.text!r}")
    return FileFact(path, True, digest, int(meta[0], 8), meta[1], meta[2])


def files_fact_command(paths: Sequence[str]) -> str:
    """One round trip for the facts of several files (sections file.0, file.1, ...)."""
    return fact_script([(f"file.{i}", file_fact_body(path)) for i, path in enumerate(paths)])


def parse_files_facts(paths: Sequence[str], output: str) -> dict[str, FileFact]:
    names = [f"file.{i}" for i in range(len(paths))]
    sections = parse_sections(output, names)
    return {path: parse_file_section(path, sections[name]) for path, name in zip(paths, names, strict=True)}


def _write_script(
    fill: str,
    wanted_path: str,
    mode: int,
    owner: str,
    group: str,
    *,
    check: str | None,
    check_installed: str | None,
    then: str | None,
    expect_sha256: str | None,
) -> str:
    directory, name = posixpath.split(wanted_path)
    if not directory.startswith("/") or not name:
        raise ValueError(f"{wanted_path!r} is not an absolute file path")
    f = q(wanted_path)
    lines = ["set -e", f"f={f}"]
    if expect_sha256:
        # The content was computed from what the fact read: refuse to clobber a concurrent edit.
        lines.append(
            f"echo {q(expect_sha256 + '  ' + wanted_path)} | sha256sum -c --status - "
            f'|| {{ echo "$f changed since its facts were read; re-run the step" >&2; exit 1; }}'
        )
    # The temporary file lives in the target's directory (rename stays atomic) and
    # its dot-name keeps it out of *.conf includes and sudoers.d while it exists.
    lines.append(f"t=$(mktemp {q(posixpath.join(directory, '.' + name + '.XXXXXX'))})")
    if check_installed:
        lines.append(
            f'b=; if [ -e "$f" ]; then b=$(mktemp {q(posixpath.join(directory, "." + name + ".prev.XXXXXX"))}); '
            'cp -p "$f" "$b"; fi'
        )
        lines.append("trap 'rm -f -- \"$t\" ${b:+\"$b\"}' EXIT")
    else:
        lines.append("trap 'rm -f -- \"$t\"' EXIT")
    lines.append(fill)
    lines.append(f'chown {q(owner)}:{q(group)} "$t"')
    lines.append(f'chmod {mode:o} "$t"')
    if check:
        lines.append(check.replace("{tmp}", '"$t"'))
    lines.append('mv -f "$t" "$f"')
    if check_installed:
        lines.append(
            f"if ! {check_installed}; then "
            'if [ -n "$b" ]; then mv -f "$b" "$f"; else rm -f "$f"; fi; '
            f'echo "check failed, previous $f restored: "{q(check_installed)} >&2; exit 1; fi'
        )
    if then:
        lines.append(then)
    return "\n".join(lines)


def write_file(
    wanted: WantedFile,
    *,
    check: str | None = None,
    check_installed: str | None = None,
    then: str | None = None,
    expect_sha256: str | None = None,
) -> str:
    """Command writing ``wanted`` atomically, content inline as base64.

    ``check``: a command validating the temporary file (``{tmp}`` is its path),
    e.g. ``visudo -cf {tmp}``; on failure nothing is installed.
    ``check_installed``: a command validating the installed file in place
    (``nginx -t``); on failure the previous file is put back.
    ``then``: run after a successful install (``systemctl reload nginx``).
    """
    encoded = base64.b64encode(wanted.data).decode()
    fill = f"printf %s {q(encoded)} | base64 -d > \"$t\""
    return _write_script(
        fill, wanted.path, wanted.mode, wanted.owner, wanted.group,
        check=check, check_installed=check_installed, then=then, expect_sha256=expect_sha256,
    )


def write_file_from_stdin(
    path: str,
    *,
    mode: int = 0o600,
    owner: str = "root",
    group: str = "root",
    check: str | None = None,
    then: str | None = None,
    content_sha256: str | None = None,
) -> str:
    """Command writing its standard input to ``path`` atomically. The command contains no content:
    the executor must send the bytes on stdin (and use passwordless sudo, never ``sudo -S``).

    ``content_sha256``: the digest of what the executor sends. A connection cut while the bytes travel
    ends ``cat`` early with a truncated file; checked before the rename, it is never installed.
    """
    if content_sha256:
        whole = (f"printf '%s  %s\\n' {q(content_sha256)} {{tmp}} | sha256sum -c --status - "
                 f"|| {{ echo {q(path)}': content not received whole (connection cut?); not installed' >&2; exit 1; }}")
        check = whole if check is None else f"{whole}\n{check}"
    return _write_script(
        'cat > "$t"', path, mode, owner, group,
        check=check, check_installed=None, then=then, expect_sha256=None,
    )


def fix_metadata(wanted: WantedFile) -> str:
    p = q(wanted.path)
    return f"chown {q(wanted.owner)}:{q(wanted.group)} {p} && chmod {wanted.mode:o} {p}"


def metadata_differs(fact: FileFact, wanted: WantedFile) -> bool:
    return (fact.mode, fact.owner, fact.group) != (wanted.mode, wanted.owner, wanted.group)


def ensure_file(
    fact: FileFact,
    wanted: WantedFile,
    *,
    check: str | None = None,
    check_installed: str | None = None,
    then: str | None = None,
) -> list[str]:
    """Commands still needed for the file ``wanted`` given its ``fact`` ([] when already right)."""
    if not fact.exists or fact.sha256 != wanted.sha256:
        return [write_file(wanted, check=check, check_installed=check_installed, then=then)]
    if metadata_differs(fact, wanted):
        return [fix_metadata(wanted)]
    return []


def ensure_file_from_stdin(fact: FileFact, wanted: WantedFile, *, then: str | None = None) -> list[str]:
    """Like :func:`ensure_file` for secret content: the returned command reads the content from stdin."""
    if not fact.exists or fact.sha256 != wanted.sha256:
        return [write_file_from_stdin(wanted.path, mode=wanted.mode, owner=wanted.owner, group=wanted.group, then=then,
                                      content_sha256=wanted.sha256)]
    if metadata_differs(fact, wanted):
        return [fix_metadata(wanted)]
    return []
