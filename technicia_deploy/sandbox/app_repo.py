"""The sample TechnicIA repository: its files per release, and a bare git repo with annotated tags.

Each release is one commit on ``main`` with one annotated tag. Authors, committers,
taggers and dates are fixed, so the commit and tag SHAs depend only on the
files, which depend only on the registry address baked into docker-compose.yml:
the same sandbox address gives the same SHAs every time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

TEMPLATE = Path(__file__).with_name("app_template") / "repo"

# Upstream images TechnicIA runs as they are; the sandbox mirrors stand-ins under these names.
N8N_TAG = "1.64.0"
QDRANT_TAG = "v1.12.1"

AUTHOR = ("TechnicIA Release Bot", "release@technicia.exemple.test")


@dataclass(frozen=True)
class Release:
    tag: str            # git tag, e.g. v1.1.0
    date: str           # commit / tag date (ISO 8601 with offset)
    healthy: bool       # False: the API starts but fails its health check
    change: str         # the changelog line

    @property
    def version(self) -> str:
        """The image tag and the version the API reports (the tag without its v)."""
        return self.tag.removeprefix("v")


RELEASES: tuple[Release, ...] = (
    Release("v1.0.0", "2025-01-15T10:00:00+01:00", True, "First MVP release: document upload, questions, answers."),
    Release("v1.1.0", "2025-02-03T14:30:00+01:00", True, "Answers cite their source documents; new page header."),
    Release("v1.2.0", "2025-02-20T09:15:00+01:00", False,
            "Embedding model switch (its schema migration fails: the API never becomes healthy)."),
)


def good_tags() -> list[str]:
    return [r.tag for r in RELEASES if r.healthy]


def broken_tag() -> str:
    return next(r.tag for r in RELEASES if not r.healthy)


def render(release: Release, registry: str) -> dict[str, tuple[str, int]]:
    """The repository's files at ``release``: path -> (content, mode)."""

    def fill(text: str) -> str:
        changelog = "\n".join(f"- **{r.tag}** ({r.date[:10]}): {r.change}"
                              for r in reversed(RELEASES[: RELEASES.index(release) + 1]))
        return (text.replace("@REGISTRY@", registry).replace("@VERSION@", release.version)
                .replace("@N8N_TAG@", N8N_TAG).replace("@QDRANT_TAG@", QDRANT_TAG)
                .replace("@CHANGELOG@", changelog))

    read = lambda name: (TEMPLATE / name).read_text()  # noqa: E731
    return {
        "docker-compose.yml": (fill(read("docker-compose.yml.in")), 0o644),
        "deploy.sh": (read("deploy.sh"), 0o755),
        ".env.example": (read("env.example"), 0o644),
        ".gitignore": (read("gitignore"), 0o644),
        "README.md": (fill(read("README.md.in")), 0o644),
        "VERSION": (release.version + "\n", 0o644),
    }


def _git_env(date: str) -> dict[str, str]:
    # No user or system git configuration leaks in (signing, hooks, default branch...).
    name, email = AUTHOR
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
        "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_AUTHOR_DATE": date,
        "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email, "GIT_COMMITTER_DATE": date,
    }


def _git(cwd: Path, *args: str, date: str = "2025-01-01T00:00:00+00:00") -> str:
    proc = subprocess.run(["git", "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false", *args],
                          cwd=cwd, env=_git_env(date), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"`git {' '.join(args[:2])}` failed in {cwd}: {proc.stderr.strip()}")
    return proc.stdout


def build_bare_repo(bare: Path, registry: str) -> dict[str, str]:
    """(Re)create the bare repository at ``bare``; returns tag -> commit SHA."""
    if shutil.which("git") is None:
        raise RuntimeError("the sample application repository needs git: `apt-get install git`")
    bare.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="technicia-repo-", dir=bare.parent))
    try:
        _git(work, "init", "-q", "-b", "main")
        for release in RELEASES:
            for name in list(p.name for p in work.iterdir() if p.name != ".git"):
                (work / name).unlink()
            for name, (content, mode) in render(release, registry).items():
                path = work / name
                path.write_text(content)
                path.chmod(mode)
            _git(work, "add", "-A", date=release.date)
            _git(work, "commit", "-q", "-m", f"Release {release.tag}\n\n{release.change}", date=release.date)
            _git(work, "tag", "-a", release.tag, "-m", f"TechnicIA {release.tag}", date=release.date)
        # Built aside then swapped in, so git daemon never serves a half-made repository.
        fresh = bare.with_name(bare.name + ".new")
        shutil.rmtree(fresh, ignore_errors=True)
        _git(bare.parent, "init", "-q", "--bare", "-b", "main", str(fresh))
        _git(work, "push", "-q", str(fresh), "main", "--tags")
        (fresh / "git-daemon-export-ok").touch()  # git daemon serves only repositories that opt in
        if bare.exists():
            shutil.rmtree(bare)
        fresh.rename(bare)
        return tag_commits(bare)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def tag_commits(bare: Path) -> dict[str, str]:
    """tag -> the commit SHA it points to (peeled), read from the bare repository."""
    out = _git(bare, "for-each-ref", "--format=%(refname:short) %(*objectname)", "refs/tags")
    return dict(line.split() for line in out.splitlines() if line.strip())
