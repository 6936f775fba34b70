"""Resolve a requested version to one commit, before any server is touched."""

from __future__ import annotations

import subprocess

from technicia_deploy.commands.release import SHA_RE, ls_remote_command, ls_remote_tags_command, parse_ls_remote, parse_tags

GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin:/usr/local/bin"}


class UnknownVersion(LookupError):
    pass


def resolve(repository: str, version: str, timeout: float = 60.0) -> str:
    """The commit SHA that tag or branch ``version`` names in ``repository`` (a full SHA is taken as is)."""
    if SHA_RE.fullmatch(version):
        return version
    try:
        done = subprocess.run(ls_remote_command(repository, version), capture_output=True, text=True,
                              timeout=timeout, env=GIT_ENV)
    except subprocess.TimeoutExpired:
        raise UnknownVersion(f"cannot resolve {version!r}: {repository} did not answer within {timeout:.0f}s") from None
    if done.returncode != 0:
        reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"git exited {done.returncode}"
        raise UnknownVersion(f"cannot resolve {version!r}: {repository}: {reason}")
    sha = parse_ls_remote(done.stdout, version)
    if sha is None:
        known = _known_tags(repository, timeout)
        raise UnknownVersion(f"version {version!r} does not exist in {repository} (no such tag or branch)"
                             + (f"; its newest tags: {', '.join(known)}" if known else ""))
    return sha


def _known_tags(repository: str, timeout: float) -> list[str]:
    """The repository's newest tags, for the error of a version it does not have ([] if they cannot be listed)."""
    try:
        done = subprocess.run(ls_remote_tags_command(repository), capture_output=True, text=True, timeout=timeout,
                              env=GIT_ENV)
    except subprocess.TimeoutExpired:
        return []
    return parse_tags(done.stdout) if done.returncode == 0 else []


def check_sha(sha: str) -> str:
    """A full commit SHA handed over by a promotion (which resolved the version once), else ValueError."""
    sha = sha.strip().lower()
    if not SHA_RE.fullmatch(sha):
        raise ValueError(f"sha {sha!r} is not a full 40-hex commit SHA")
    return sha
