"""Connection faults injected into real deployments of the sandbox's test environment (issue 11, part A).

Every fault is injected from inside the VPS, at the moment the process it must interrupt is seen running: a
poller (a short Python script run in the VPS with ``docker exec``) scans /proc for it, under a deadline, then
acts at once. The environment must end on the release the run deployed, every container of the compose project
running the image that release's compose file names and ``current`` pointing at it, never a mix of two releases;
and the run's history must show what happened (the retry, the connection lost, the crashed run).

In order, each case moving the environment to the other good release of the sample application (so that the
checkout, the .env and ``deploy.sh`` really run), on one deployed environment shared by the module:

1. the deploy user's sshd session killed while ``git fetch`` runs (services.clone), while the ``.env`` is written
   (services.api_keys) and while ``deploy.sh`` brings the services up (services.deploy), all three in one run;
2. the VPS container restarted (``docker restart``) while ``deploy.sh`` pulls the release's images;
3. the pipeline process (``technicia-deploy deploy``) killed with SIGKILL while services.deploy runs: the next run
   of the environment takes the lock once the dead holder's lease expires, marks the dead run Crashed naming its
   step, and converges.

Cost: four deployments that change the release (~30 s each) plus the dead holder's lease (~60-80 s). The module
leaves the test environment healthy on a good release: the other one than it found (v1.0.0 after
test_deploy_environment, which leaves v1.1.0).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from technicia_deploy import environment_lock
from technicia_deploy.connection import REBOOT_WAIT_S
from tests.e2e.helpers import step_states, vps_exec

pytestmark = pytest.mark.e2e

ENV = "test"
DIRECTORY = "/opt/technicia"  # application.directory of the sandbox's environments
PROJECT = "technicia"  # the compose project name (AppLayout.project)
CLI = str(Path(sys.executable).parent / "technicia-deploy")
REOPENED = "(SSH connection lost and re-opened 1 time(s) during this step)"
# How long a killed run may stay Running: its lease expires within LEASE_S of the kill (renewed every 3/4 of it), the
# server's repossessor frees it within 15 s, and the waiting run asks again within 39 s (Prefect's 30 s cap on a
# Retry-After, plus 30 % jitter); 10 s of slack.
CRASHED_WITHIN_S = environment_lock.LEASE_S + 15 + 39 + 10

# The poller, run by python3 inside the VPS. argv: deadline (s), the user whose sshd sessions it kills, a marker
# (only so the test can stop it), then one "action:regex" per stage, waited for in order. For each stage it scans
# /proc until a process's command line matches, then at once (the process is still running):
#   kill-sessions: SIGKILL every `sshd: <user>` process (the deploy user's SSH connection dies under the command);
#   freeze: SIGSTOP the matched process (it cannot finish: the test restarts the VPS under it).
# One JSON line per stage: what it matched, what it did. Exit 3 if a stage's process never showed up.
POLLER = r'''
import json, os, re, signal, sys, time

deadline = time.monotonic() + float(sys.argv[1])
session = "sshd: " + sys.argv[2]
stages = [(arg.split(":", 1)[0], re.compile(arg.split(":", 1)[1], re.S)) for arg in sys.argv[4:]]
me = os.getpid()


def scan(pattern, sessions):
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open("/proc/%s/cmdline" % name, "rb") as f:
                cmd = f.read().rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cmd.startswith(session):
            sessions[int(name)] = cmd
        elif pattern.search(cmd):
            return int(name), cmd
    return None


print(json.dumps({"ready": True}), flush=True)
for action, pattern in stages:
    sessions, hit = {}, None
    while hit is None:
        hit = scan(pattern, sessions)
        if hit is None:
            if time.monotonic() > deadline:
                print(json.dumps({"stage": pattern.pattern, "found": None}), flush=True)
                sys.exit(3)
            time.sleep(0.002)
    pid, cmd = hit
    done = []
    if action == "kill-sessions":
        for spid, scmd in sessions.items():
            try:
                os.kill(spid, signal.SIGKILL)
                done.append(scmd)
            except ProcessLookupError:
                pass
    elif action == "freeze":
        os.kill(pid, signal.SIGSTOP)
        done.append("stopped")
    print(json.dumps({"stage": pattern.pattern, "found": cmd[:400], "done": done, "at": time.time()}), flush=True)
'''

GIT_FETCH = r"^git --git-dir=\S+ fetch "  # the checkout script's fetch into the bare cache
ENV_WRITE = r"^(sudo -n )?bash -c set -e\nf=\S+/\.env\n"  # files.write_file_from_stdin for the release's .env
COMPOSE_UP = r"docker[- ]compose up -d --remove-orphans"  # deploy.sh bringing the services to the release
COMPOSE_PULL = r"docker[- ]compose pull"  # deploy.sh pulling the release's images


class Poller:
    """The poller running in ``container``: started before the fault's run, read after it."""

    def __init__(self, container: str, user: str, stages: list[str], deadline_s: float = 300):
        self.container, self.marker = container, f"e2e-fault-poller-{uuid.uuid4().hex[:8]}"
        self.proc = subprocess.Popen(
            ["docker", "exec", container, "python3", "-c", POLLER, str(deadline_s), user, self.marker, *stages],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = self.proc.stdout.readline()
        assert '"ready"' in first, f"the poller did not start in {container}: {first!r} {self.proc.stderr.read()}"

    def reports(self, timeout: float = 30) -> list[dict]:
        """One report per stage reached, in order (the poller has finished or is stopped first)."""
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            out, _ = self.proc.communicate(timeout=30)
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def stop(self) -> None:
        """Stop it inside the VPS (killing `docker exec` would leave it running there); `[e]` keeps pkill's own
        shell out of the match."""
        vps_exec(self.container, f"pkill -f '[{self.marker[0]}]{self.marker[1:]}' || true", check=False)


# -- reading the server and the run history ----------------------------------------------------------
@dataclass(frozen=True)
class Environment:
    container: str
    user: str  # the deploy user, whose sshd sessions the faults kill
    commits: dict[str, str]  # good version -> commit

    def release_dir(self, version: str) -> str:
        return f"{DIRECTORY}/releases/{version}-{self.commits[version][:12]}"

    def current(self) -> str:
        return vps_exec(self.container, f"readlink {DIRECTORY}/current || true").strip()

    def version_of(self, release_dir: str) -> str | None:
        return next((v for v in self.commits if self.release_dir(v) == release_dir), None)

    def other(self, version: str) -> str:
        return next(v for v in self.commits if v != version)


def containers_of_the_project(container: str) -> list[tuple[str, str, str, str]]:
    """(service, image, state, health) of every container of the compose project, stopped ones included."""
    fmt = ('{{index .Config.Labels "com.docker.compose.service"}} {{.Config.Image}} {{.State.Status}} '
           '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}')
    out = vps_exec(container, f"ids=$(docker ps -aq --filter label=com.docker.compose.project={PROJECT}) && "
                              f"if [ -n \"$ids\" ]; then docker inspect --format '{fmt}' $ids; fi")
    return sorted(tuple(line.split()) for line in out.splitlines() if line.strip())


def assert_runs_one_release(env: Environment, release_dir: str) -> None:
    """``current`` names ``release_dir``; every container of the compose project runs, healthy, the image that
    release's compose file names for its service, one per service; the API says the release's version."""
    current = env.current()
    assert current == release_dir, f"current -> {current or 'nothing'}, expected {release_dir}"
    compose = yaml.safe_load(vps_exec(env.container, f"cat {release_dir}/docker-compose.yml"))
    declared = {service: spec["image"] for service, spec in compose["services"].items()}
    found = containers_of_the_project(env.container)
    assert sorted(service for service, *_ in found) == sorted(declared), f"containers {found}, declared {declared}"
    mixed = [(service, image) for service, image, *_ in found if image != declared[service]]
    assert not mixed, f"containers not on {release_dir}'s images (a mix of releases): {mixed}; declared {declared}"
    unhealthy = [c for c in found if c[2:] != ("running", "healthy")]
    assert not unhealthy, unhealthy
    health = json.loads(vps_exec(env.container, "curl -fsS --max-time 5 http://127.0.0.1:8000/api/health"))
    assert health["version"].lstrip("v") == env.version_of(release_dir).lstrip("v"), health


def task_runs(flow_run_id) -> dict:
    """{task run name: task run} of a flow run."""
    from prefect import get_client
    from prefect.client.schemas import filters as F

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=F.FlowRunFilter(id=F.FlowRunFilterId(any_=[flow_run_id])))
    return {run.name: run for run in runs}


def run_logs(flow_run_id) -> list[str]:
    from prefect import get_client
    from prefect.client.schemas import filters as F
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=F.LogFilter(flow_run_id=F.LogFilterFlowRunId(any_=[flow_run_id])))
    return [log.message for log in logs]


def run_deploy(version: str, operator: str = "e2e-faults"):
    from flows.deploy_environment import deploy_environment

    return deploy_environment(environment=ENV, version=version, operator=operator, return_state=True)


def latest_run_completed() -> bool:
    """The environment's latest deploy/rollback run ended Completed (nothing half done before this module)."""
    from prefect import get_client
    from prefect.client.schemas import filters as F
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=F.FlowFilter(name=F.FlowFilterName(any_=["deploy-environment", "rollback-environment"])),
            flow_run_filter=F.FlowRunFilter(tags=F.FlowRunFilterTags(all_=[f"env:{ENV}"])),
            sort=FlowRunSort.START_TIME_DESC, limit=1)
    return bool(runs) and runs[0].state is not None and runs[0].state.is_completed()


# -- the shared environment ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def environment(sandbox) -> Environment:
    """The test environment deployed and healthy on a good release: the one an earlier module left (checked on
    the server and in the history), else v1.0.0 deployed now."""
    from technicia_deploy.sandbox import app_repo

    config = yaml.safe_load(sandbox.path("environments.yaml").read_text())["environments"][ENV]
    commits = {tag: sandbox.data["app"]["commits"][tag] for tag in app_repo.good_tags()}
    env = Environment(sandbox.data["vps"][ENV]["container"], config["ssh"]["user"], commits)
    assert len(commits) >= 2, "the faults move the environment between two good releases"
    version = env.version_of(env.current())
    try:
        assert version and latest_run_completed()
        assert_runs_one_release(env, env.release_dir(version))
    except (AssertionError, KeyError, json.JSONDecodeError):
        state = run_deploy(app_repo.good_tags()[0], operator="e2e-faults-setup")
        assert state.is_completed(), state.message
        assert_runs_one_release(env, env.release_dir(app_repo.good_tags()[0]))
    return env


def move(env: Environment) -> tuple[str, str, str]:
    """(version the environment runs, the other good version, the other's release dir)."""
    now = env.version_of(env.current())
    assert now, f"{ENV} runs {env.current()!r}, not a good release"
    target = env.other(now)
    return now, target, env.release_dir(target)


# -- 1. the deploy user's sshd session killed under the three service steps ---------------------------------
@pytest.fixture(scope="module")
def killed_sessions(environment):
    """One deployment to the other release, its checkout removed first so that it is fetched and checked out
    again and its .env written: the session killed during `git fetch`, the .env write and `deploy.sh`'s `up`."""
    env = environment
    previous, version, release_dir = move(env)
    previous_dir = env.release_dir(previous)
    assert env.current() != release_dir
    vps_exec(env.container, f"rm -rf {release_dir}")  # not current: the run fetches and checks it out again
    poller = Poller(env.container, env.user, [f"kill-sessions:{GIT_FETCH}", f"kill-sessions:{ENV_WRITE}",
                                              f"kill-sessions:{COMPOSE_UP}"])
    try:
        state = run_deploy(version)
    finally:
        poller.stop()
    reports = poller.reports()
    return {"state": state, "reports": reports, "version": version, "release_dir": release_dir,
            "previous_dir": previous_dir, "steps": step_states(state), "task_runs": task_runs(state.state_details.flow_run_id)}


def _stage(killed: dict, pattern: str) -> dict:
    report = next((r for r in killed["reports"] if r["stage"] == pattern), None)
    assert report and report["found"], f"the poller never saw /{pattern}/ run: {killed['reports']}"
    assert any(cmd.startswith("sshd: ") for cmd in report["done"]), report  # the session was killed under it
    return report


def test_run_with_killed_sessions_ends_whole_on_the_new_release(environment, killed_sessions):
    state = killed_sessions["state"]
    # Never mixed: on the new release if the run completed, else still on the previous one.
    expected = killed_sessions["release_dir"] if state.is_completed() else killed_sessions["previous_dir"]
    assert_runs_one_release(environment, expected)
    # Three single faults, each within its step's retry budget: the run completes.
    assert state.is_completed(), f"{state.message}; steps: {killed_sessions['steps']}"
    assert [r["stage"] for r in killed_sessions["reports"]] == [GIT_FETCH, ENV_WRITE, COMPOSE_UP]
    assert {step: kind for step, (kind, _) in killed_sessions["steps"].items()} == \
        {step: "COMPLETED" for step in killed_sessions["steps"]}


def test_session_killed_during_git_fetch_reruns_the_checkout(environment, killed_sessions):
    report = _stage(killed_sessions, GIT_FETCH)
    assert " fetch --quiet --force --tags " in report["found"]
    kind, message = killed_sessions["steps"]["services.clone"]
    version, release_dir = killed_sessions["version"], killed_sessions["release_dir"]
    sha = environment.commits[version]
    assert kind == "COMPLETED" and message.startswith(f"changed: {version} ({sha[:12]}) checked out in {release_dir}")
    assert message.endswith(REOPENED), message  # the history shows the loss the connection survived
    # The checkout on the server is whole: the marker names the commit, the tree is the commit's, no temp dir left.
    marker = vps_exec(environment.container, f"cat {release_dir}/.technicia-release").strip()
    assert marker == sha
    files = vps_exec(environment.container, f"cd {release_dir} && ls -A | grep -vxF -e .env -e .technicia-release")
    tree = vps_exec(environment.container, f"runuser -u {environment.user} -- "
                                           f"git --git-dir={DIRECTORY}/repo.git ls-tree --name-only {sha}")
    assert sorted(files.split()) == sorted(tree.split())
    assert vps_exec(environment.container, f"ls -A {DIRECTORY}/releases | grep '^.tmp-' || true").strip() == ""


def test_session_killed_while_the_env_is_written_rewrites_it_whole(environment, killed_sessions):
    report = _stage(killed_sessions, ENV_WRITE)
    release_dir = killed_sessions["release_dir"]
    assert f"f={release_dir}/.env\n" in report["found"]
    kind, message = killed_sessions["steps"]["services.api_keys"]
    assert kind == "COMPLETED" and message.startswith("changed: .env written (8 variables, sha256 "), message
    assert REOPENED in message, message
    # The .env on the server is the one the step wrote (its digest), 0600 and the deploy user's, no temp file left.
    digest = message.split("sha256 ", 1)[1][:12]
    on_server = vps_exec(environment.container, f"sha256sum < {release_dir}/.env").split()[0]
    assert on_server[:12] == digest
    assert vps_exec(environment.container, f"stat -c '%a %U' {release_dir}/.env").strip() == f"600 {environment.user}"
    leftovers = vps_exec(environment.container,
                         f"ls -A {release_dir} | grep '^[.]env[.]' | grep -vxF .env.example || true")
    assert leftovers.strip() == "", leftovers


def test_session_killed_during_deploy_script_is_retried_from_the_facts(environment, killed_sessions):
    report = _stage(killed_sessions, COMPOSE_UP)
    assert "up -d --remove-orphans" in report["found"]
    version = killed_sessions["version"]
    kind, message = killed_sessions["steps"]["services.deploy"]
    assert kind == "COMPLETED" and message.startswith(f"changed: {version} deployed on attempt 2, 4 services healthy")
    deploy = killed_sessions["task_runs"]["services.deploy"]
    assert deploy.run_count == 2
    # The first attempt's end, in the run's log (its AwaitingRetry state carries no message).
    logs = run_logs(killed_sessions["state"].state_details.flow_run_id)
    assert any("ConnectionLost" in m and "[services.deploy attempt 1 of 3: retrying]" in m for m in logs), logs


# -- 2. the VPS restarted while deploy.sh pulls the images ---------------------------------------------------
def test_vps_restarted_while_images_are_pulled_is_waited_for_and_the_step_completes(environment):
    env = environment
    previous, version, release_dir = move(env)
    # The release's own images removed from the server (not in use: the other release runs), so deploy.sh pulls.
    compose = yaml.safe_load(vps_exec(env.container, f"cat {release_dir}/docker-compose.yml"))
    own = [spec["image"] for spec in compose["services"].values() if spec["image"].endswith(":" + version.lstrip("v"))]
    assert len(own) == 2, own  # front end and API are per release
    vps_exec(env.container, "docker rmi " + " ".join(own))
    def started_at() -> str:
        return subprocess.run(["docker", "inspect", "-f", "{{.State.StartedAt}}", env.container],
                              capture_output=True, text=True, check=True).stdout.strip()

    boot = started_at()
    poller = Poller(env.container, env.user, [f"freeze:{COMPOSE_PULL}"])
    restart: dict = {}

    def restart_when_pulling():
        restart["reports"] = poller.reports(timeout=300)
        if restart["reports"] and restart["reports"][-1].get("found"):
            begin = time.monotonic()
            restart["done"] = subprocess.run(["docker", "restart", env.container], capture_output=True, text=True)
            restart["seconds"], restart["ended"] = time.monotonic() - begin, datetime.now(timezone.utc)

    restarter = threading.Thread(target=restart_when_pulling)
    restarter.start()
    try:
        state = run_deploy(version)
    finally:
        if restarter.is_alive() and "reports" not in restart:
            poller.stop()
        restarter.join(timeout=120)
    assert restart.get("reports") and restart["reports"][0]["found"], f"deploy.sh never pulled: {restart}"
    assert "pull" in restart["reports"][0]["found"]
    assert restart["done"].returncode == 0, restart["done"].stderr
    assert restart["seconds"] < REBOOT_WAIT_S  # within what a step waits for a rebooting server
    assert started_at() != boot  # the VPS really went down and up under the step

    steps = step_states(state)
    expected = release_dir if state.is_completed() else env.release_dir(previous)
    assert_runs_one_release(env, expected)  # never mixed
    assert state.is_completed(), f"{state.message}; steps: {steps}"
    kind, message = steps["services.deploy"]
    assert message.startswith(f"changed: {version} deployed on attempt 2, 4 services healthy"), message
    assert message.endswith(REOPENED), message
    deploy = task_runs(state.state_details.flow_run_id)["services.deploy"]
    assert deploy.run_count == 2 and deploy.end_time > restart["ended"]  # it waited for the server to come back
    logs = run_logs(state.state_details.flow_run_id)
    assert any("[services.deploy attempt 1 of 3: retrying]" in m for m in logs), logs
    for image in own:  # pulled again by the retry
        assert vps_exec(env.container, f"docker image inspect -f ok {image}").strip() == "ok"


# -- 3. the pipeline process killed mid-deploy ---------------------------------------------------------------
def _deploy_run_started_after(since: datetime):
    from prefect import get_client
    from prefect.client.schemas import filters as F

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=F.FlowFilter(name=F.FlowFilterName(any_=["deploy-environment"])),
            flow_run_filter=F.FlowRunFilter(tags=F.FlowRunFilterTags(all_=[f"env:{ENV}"]),
                                            start_time=F.FlowRunFilterStartTime(after_=since)))
    return runs[0] if runs else None


def test_killed_pipeline_is_marked_crashed_and_the_next_run_converges(environment, tmp_path):
    from prefect import get_client

    env = environment
    _, version, release_dir = move(env)
    since = datetime.now(timezone.utc)
    with open(tmp_path / "killed-cli.log", "w") as out:
        cli = subprocess.Popen([CLI, "deploy", ENV, "--version", version, "--operator", "e2e-killed"],
                               env=os.environ.copy(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            dead = _deploy_run_started_after(since)
            deploying = task_runs(dead.id).get("services.deploy") if dead else None
            if deploying is not None and deploying.state_type.value == "RUNNING":
                break
            assert cli.poll() is None, f"the CLI ended first: {(tmp_path / 'killed-cli.log').read_text()}"
            assert time.monotonic() < deadline, "services.deploy never ran"
            time.sleep(0.2)
    finally:
        if cli.poll() is None:
            os.killpg(cli.pid, signal.SIGKILL)  # the pipeline process dies: no hook, no final state
        cli.wait(timeout=30)
    killed_at = datetime.now(timezone.utc)
    assert cli.returncode == -signal.SIGKILL

    # The next run of the environment: waits for the dead holder's lease, marks it Crashed, then converges.
    state = run_deploy(version, operator="e2e-after-crash")
    with get_client(sync_client=True) as client:
        found = client.read_flow_run(dead.id)
        nxt = client.read_flow_run(state.state_details.flow_run_id)
    assert state.is_completed(), state.message
    assert_runs_one_release(env, release_dir)

    assert found.state.type.value == "CRASHED", f"{found.name} still {found.state.name}: {found.state.message}"
    assert found.state.message.startswith(f"process lost; found by run {nxt.name!r} (id {nxt.id}) at ")
    assert found.state.message.endswith("; its last step services.deploy was Running"), found.state.message
    # Within a bounded time: the dead holder's lease (plus the server's repossessor loop), not "some day".
    waited = (found.state.timestamp - killed_at).total_seconds()
    assert waited < CRASHED_WITHIN_S, f"marked Crashed {waited:.0f} s after the kill"
    dead_tasks = task_runs(dead.id)
    assert dead_tasks["services.deploy"].state_type.value == "CRASHED"
    assert all(t.state_type.value in ("COMPLETED", "CRASHED") for t in dead_tasks.values()), \
        {n: t.state_type.value for n, t in dead_tasks.items()}

    # The next run's history names the crashed run and the step it was in.
    logs = run_logs(nxt.id)
    assert any(f"{ENV} is held by run {found.name!r} (deploy-environment, id {found.id}, started by e2e-killed)" in m
               for m in logs), logs
    assert any(f"run {found.name!r} (deploy-environment, id {found.id}, started by e2e-killed) had lost its process: "
               "its last step services.deploy was Running" in m for m in logs), logs
    steps = step_states(state)
    assert steps["services.deploy"][0] == "COMPLETED" and steps["services.deploy"][1].startswith("changed: "), steps
