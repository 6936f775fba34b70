"""Release builders: facts in -> exact commands out -> the post-state facts give nothing to do."""

from __future__ import annotations

import subprocess

import pytest

from technicia_deploy.commands import release
from technicia_deploy.commands.shell import render_sections

LAYOUT = release.AppLayout("/opt/technicia", "technicia", "deploy")
SHA = "0123456789abcdef0123456789abcdef01234567"
REPO = "git://10.0.0.1:9418/technicia.git"


def checkout_facts(git=True, owner="deploy", release_sha=None) -> release.CheckoutFacts:
    output = render_sections({
        "git": ("/usr/bin/git", 0) if git else ("", 1),
        "appdir": (owner, 0) if owner else ("", 1),
        "release": (release_sha, 0) if release_sha else ("", 1),
    })
    return release.parse_checkout_facts(output)


def test_release_dir_is_version_and_short_sha():
    assert LAYOUT.release_dir("v1.0.0", SHA) == "/opt/technicia/releases/v1.0.0-0123456789ab"
    assert LAYOUT.release_name("feature/x y", SHA) == "feature_x_y-0123456789ab"


def test_fresh_server_needs_git_directory_and_checkout():
    ops = release.checkout_operations(checkout_facts(git=False, owner=None), LAYOUT, REPO, "v1.0.0", SHA)
    assert [as_root for _, as_root in ops] == [True, True, False]
    assert ops[0][0].endswith("install --no-install-recommends git ca-certificates")
    assert ops[1][0] == ("install -d -m 755 -o deploy -g deploy /opt/technicia && "
                         "chown -R deploy:deploy /opt/technicia")
    script = ops[2][0]
    assert "git --git-dir=/opt/technicia/repo.git fetch --quiet --force --tags git://10.0.0.1:9418/technicia.git " \
           "'+refs/heads/*:refs/heads/*'" in script
    assert f"git --git-dir=/opt/technicia/repo.git archive --format=tar {SHA} | tar -x -C \"$t\"" in script
    assert script.endswith("mv -T \"$t\" /opt/technicia/releases/v1.0.0-0123456789ab")
    subprocess.run(["bash", "-n", "-c", script], check=True)


def test_second_run_is_a_no_op():
    assert release.checkout_operations(checkout_facts(release_sha=SHA), LAYOUT, REPO, "v1.0.0", SHA) == []


def test_another_sha_in_the_release_dir_is_checked_out_again():
    ops = release.checkout_operations(checkout_facts(release_sha="f" * 40), LAYOUT, REPO, "v1.0.0", SHA)
    assert len(ops) == 1 and "archive" in ops[0][0]


def test_ls_remote_prefers_the_peeled_commit_of_an_annotated_tag():
    out = (f"{'a' * 40}\trefs/tags/v1.0.0\n{'b' * 40}\trefs/tags/v1.0.0^{{}}\n")
    assert release.parse_ls_remote(out, "v1.0.0") == "b" * 40
    assert release.parse_ls_remote(f"{'c' * 40}\trefs/heads/main\n", "main") == "c" * 40
    assert release.parse_ls_remote("", "v9") is None


def test_service_facts_and_health():
    output = render_sections({
        "current": ("/opt/technicia/releases/v1.0.0-0123456789ab", 0),
        "previous": ("", 1),
        "containers": ("c1 api running healthy\nc2 qdrant running starting\nc3 frontend running none", 0),
    })
    facts = release.parse_service_facts(output)
    assert facts.current == "/opt/technicia/releases/v1.0.0-0123456789ab"
    assert facts.previous is None
    assert [c.service for c in facts.containers] == ["api", "frontend", "qdrant"]
    assert [c.service for c in facts.unhealthy()] == ["qdrant"]


def test_deploy_command_fixes_the_compose_project():
    assert release.deploy_command(LAYOUT, "/opt/technicia/releases/v1-abc", "./deploy.sh") == \
        "cd /opt/technicia/releases/v1-abc && COMPOSE_PROJECT_NAME=technicia ./deploy.sh"


def test_switch_current_keeps_the_old_release_as_previous():
    script = release.switch_current(LAYOUT, "/opt/technicia/releases/b", "/opt/technicia/releases/a")
    assert script.splitlines() == [
        "set -e", "cd /opt/technicia",
        "ln -sfn /opt/technicia/releases/a .previous.tmp && mv -T .previous.tmp previous",
        "ln -sfn /opt/technicia/releases/b .current.tmp && mv -T .current.tmp current",
    ]
    assert "previous" not in release.switch_current(LAYOUT, "/opt/technicia/releases/b", None)


@pytest.mark.parametrize("script", [
    release.services_fact_command(LAYOUT),
    release.checkout_fact_command(LAYOUT, "/opt/technicia/releases/x"),
    release.prune_releases(LAYOUT),
])
def test_scripts_are_valid_bash(script):
    subprocess.run(["bash", "-n", "-c", script], check=True)
