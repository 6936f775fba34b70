"""Release builders: facts in -> exact commands out -> the post-state facts give nothing to do."""

from __future__ import annotations

import subprocess
import time

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


def test_deploy_command_fixes_the_compose_project_and_takes_the_deploy_lock():
    assert release.deploy_command(LAYOUT, "/opt/technicia/releases/v1-abc", "./deploy.sh") == (
        "cd /opt/technicia/releases/v1-abc && exec 9>>/opt/technicia/.deploy.lock && "
        "{ flock -w 600 9 || { echo 'another deploy command still holds /opt/technicia/.deploy.lock after 600 s' >&2; "
        "exit 75; }; } && COMPOSE_PROJECT_NAME=technicia bash -c ./deploy.sh")


def _deploy_in(tmp_path, command, lock_wait_s=600):
    """The deploy command for a layout under ``tmp_path``, with ``command`` as the application's deploy command."""
    layout = release.AppLayout(str(tmp_path), "unitproj", "deploy")
    (tmp_path / "rel").mkdir(exist_ok=True)
    return release.deploy_command(layout, str(tmp_path / "rel"), command, lock_wait_s=lock_wait_s)


def test_a_deploy_command_still_running_from_a_lost_connection_is_waited_for_not_raced(tmp_path):
    """Run twice at once (the copy of a lost SSH connection still running): the second starts when the first ends."""
    log = tmp_path / "log"
    command = f"echo start $COMPOSE_PROJECT_NAME >> {log}; sleep 0.5; echo end >> {log}"
    first = subprocess.Popen(["bash", "-c", _deploy_in(tmp_path, command)])
    time.sleep(0.2)
    second = subprocess.run(["bash", "-c", _deploy_in(tmp_path, command)], capture_output=True, text=True, timeout=30)
    assert first.wait(timeout=30) == 0 and second.returncode == 0
    assert log.read_text().split("\n")[:-1] == ["start unitproj", "end", "start unitproj", "end"]


def test_a_deploy_lock_held_too_long_is_refused_saying_so(tmp_path):
    holder = subprocess.Popen(["bash", "-c", _deploy_in(tmp_path, "sleep 3")])
    time.sleep(0.3)
    busy = subprocess.run(["bash", "-c", _deploy_in(tmp_path, "echo ran", lock_wait_s=1)],
                          capture_output=True, text=True, timeout=30)
    holder.wait(timeout=30)
    assert busy.returncode == release.DEPLOY_LOCK_BUSY and "ran" not in busy.stdout
    assert f"another deploy command still holds {tmp_path}/.deploy.lock after 1 s" in busy.stderr


def test_a_compound_deploy_command_sees_the_project_name_and_its_exit_status(tmp_path):
    done = subprocess.run(["bash", "-c", _deploy_in(tmp_path, "true && echo $COMPOSE_PROJECT_NAME && exit 3")],
                          capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout.strip()) == (3, "unitproj")


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


# -- rollback: facts in -> the release to go back to and the commands still needed -> then nothing -----------
OLD = "/opt/technicia/releases/v1.0.0-aaaaaaaaaaaa"
NEW = "/opt/technicia/releases/v1.2.0-bbbbbbbbbbbb"
OLDER = "/opt/technicia/releases/v0.9.0-cccccccccccc"


def service_facts(current, previous, running_from, health="healthy"):
    lines = [f"id{i} {svc} running {health} {running_from}" for i, svc in enumerate(("api", "frontend"))]
    return release.parse_service_facts(render_sections({
        "current": (current or "", 0 if current else 1),
        "previous": (previous or "", 0 if previous else 1),
        "containers": ("\n".join(lines) if running_from else "", 0),
    }))


def test_containers_say_which_release_they_run():
    facts = service_facts(OLD, None, NEW, health="unhealthy")
    assert {c.release_dir for c in facts.containers} == {NEW}
    assert not facts.serves(NEW) and not facts.serves(OLD)
    assert service_facts(OLD, None, OLD).serves(OLD)


def test_health_failed_before_the_switch_goes_back_to_current():
    facts = service_facts(OLD, OLDER, NEW, health="unhealthy")
    target = release.rollback_target(facts, NEW)
    assert target == OLD
    # current already names it: only the old release's deploy command is needed, the links stay.
    assert release.rollback_operations(facts, LAYOUT, target, "./deploy.sh") == [
        release.deploy_command(LAYOUT, OLD, "./deploy.sh")]


def test_tests_failed_after_the_switch_go_back_to_previous_and_forget_it():
    facts = service_facts(NEW, OLD, NEW)
    target = release.rollback_target(facts, NEW)
    assert target == OLD
    assert release.rollback_operations(facts, LAYOUT, target, "./deploy.sh") == [
        release.deploy_command(LAYOUT, OLD, "./deploy.sh"),
        "set -e\ncd /opt/technicia\n"
        f"ln -sfn {OLD} .current.tmp && mv -T .current.tmp current\nrm -f previous",
    ]
    # Once done, the facts give nothing more to do (a re-run after a dropped connection changes nothing).
    assert release.rollback_operations(service_facts(OLD, None, OLD), LAYOUT, OLD, "./deploy.sh") == []


def test_nothing_to_go_back_to():
    assert release.rollback_target(service_facts(None, None, NEW, health="unhealthy"), NEW) is None  # first deployment
    assert release.rollback_target(service_facts(OLD, None, OLD), None) is None  # on demand, no previous
    assert release.stop_services_command(LAYOUT) == (
        "ids=$(docker ps -q --filter label=com.docker.compose.project=technicia) && "
        'if [ -n "$ids" ]; then docker stop $ids >/dev/null; fi')


def test_on_demand_rollback_goes_from_current_to_previous():
    assert release.rollback_target(service_facts(NEW, OLD, NEW), None) == OLD


def test_release_described_by_version_and_sha():
    assert release.describe_release(OLD) == "v1.0.0 (aaaaaaaaaaaa)"
    assert release.describe_release(None) == "none"
