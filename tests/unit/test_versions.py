"""A version resolves to one commit through a real git remote; an unknown one fails before anything runs."""

from __future__ import annotations

import subprocess

import pytest

from technicia_deploy import versions


def git(*args, cwd):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                               "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin", "HOME": str(cwd)}).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    git("init", "-q", "-b", "main", cwd=tmp_path)
    (tmp_path / "f").write_text("1")
    git("add", "f", cwd=tmp_path)
    git("commit", "-qm", "one", cwd=tmp_path)
    git("tag", "-a", "v1.0.0", "-m", "first", cwd=tmp_path)
    return tmp_path


def test_annotated_tag_resolves_to_its_commit(repo):
    assert versions.resolve(str(repo), "v1.0.0") == git("rev-parse", "HEAD", cwd=repo)
    assert versions.resolve(str(repo), "main") == git("rev-parse", "HEAD", cwd=repo)


def test_unknown_version_names_version_and_repository_and_offers_the_newest_tags(repo):
    for tag in ("v1.9.0", "v1.10.0", "v1.2.0"):
        git("tag", tag, cwd=repo)
    with pytest.raises(versions.UnknownVersion, match=r"version 'v9.9.9' does not exist in .*no such tag or branch") as info:
        versions.resolve(str(repo), "v9.9.9")
    assert str(info.value).endswith("; its newest tags: v1.10.0, v1.9.0, v1.2.0, v1.0.0")


def test_tags_are_listed_newest_version_first_and_bounded():
    from technicia_deploy.commands.release import ls_remote_tags_command, parse_tags

    assert ls_remote_tags_command("git://h/r.git") == ["git", "ls-remote", "--tags", "--refs", "--", "git://h/r.git"]
    sha = "a" * 40
    tags = ("v1.0.0", "v2.0.0-rc1", "nightly", "v1.10.0", "v1.9.3", "v2.0.0")
    output = "".join(f"{sha}\trefs/tags/{t}\n" for t in tags) + f"{sha}\trefs/heads/main\n"
    assert parse_tags(output) == ["v2.0.0", "v2.0.0-rc1", "v1.10.0", "v1.9.3", "v1.0.0", "nightly"]
    assert parse_tags(output, newest=2) == ["v2.0.0", "v2.0.0-rc1"]


def test_unreachable_repository_is_reported(tmp_path):
    with pytest.raises(versions.UnknownVersion, match="cannot resolve 'v1.0.0'"):
        versions.resolve(str(tmp_path / "missing"), "v1.0.0")
