"""The application's contract, end to end on the sandbox's staging environment.

A release whose ``.env.example`` declares a variable the pipeline does not write is refused at
``services.api_keys``: the step names the variable and the file, its ``.env`` is never written, the flow
stops before ``services.deploy``, and the containers of the release staging runs are the same ones, never
restarted. The release is a tag this test pushes to the sandbox's bare repository (next to the sample
releases, on v1.0.0's files), removed again at the end.

Cost: one refused run (server steps are no-ops on a deployed staging, then clone and the key smoke calls).
When no earlier test of the session has deployed staging, the fixture deploys v1.0.0 first: the staging
deployment the session's other tests (test_deploy_environment) would otherwise make themselves.
"""

from __future__ import annotations


import pytest

from tests.e2e.helpers import step_states, vps_exec

pytestmark = pytest.mark.e2e

GOOD = "v1.0.0"
TAG = "e2e-contract-mismatch"  # not a v* tag: nothing takes it for a release of the sample application
EXTRA = "TECHNICIA_E2E_UNPROVIDED_KEY"
DIRECTORY = "/opt/technicia"


def run_deploy(version: str):
    from flows.deploy_environment import deploy_environment

    return deploy_environment(environment="staging", version=version, operator="e2e", return_state=True)


def containers(container: str) -> list[str]:
    """The VPS's running containers, each as 'id started-at' (a restart keeps the id, not the start time)."""
    ids = sorted(vps_exec(container, "docker ps -q 2>/dev/null || true").split())
    if not ids:
        return []
    return sorted(vps_exec(container, "docker inspect -f '{{.Id}} {{.State.StartedAt}}' " + " ".join(ids)).splitlines())


@pytest.fixture(scope="module")
def staging(sandbox):
    """Staging's VPS container, running a release (v1.0.0 deployed first unless one already runs)."""
    container = sandbox.data["vps"]["staging"]["container"]
    if not containers(container) or not vps_exec(container, f"readlink {DIRECTORY}/current || true").strip():
        state = run_deploy(GOOD)
        assert state.is_completed(), state.message
    assert containers(container)
    return container


@pytest.fixture
def release_expecting_an_unknown_variable(sandbox, tmp_path):
    """(tag, commit): v1.0.0's files plus one variable in .env.example, tagged in the sandbox's repository."""
    from technicia_deploy.sandbox import app_repo

    bare = sandbox.path("app", "git", "technicia.git")  # what git daemon serves as data["app"]["repository"]
    assert (bare / "HEAD").is_file(), f"no sample repository at {bare} (serving {sandbox.data['app']['repository']})"
    work = tmp_path / "work"
    app_repo._git(tmp_path, "clone", "-q", str(bare), str(work))
    app_repo._git(work, "checkout", "-q", "--detach", GOOD)
    with (work / ".env.example").open("a") as example:
        example.write(f"# Added by {__name__}: no block of the pipeline provides it.\n{EXTRA}=\n")
    app_repo._git(work, "commit", "-q", "-a", "-m", "e2e: the application expects one more variable")
    app_repo._git(work, "tag", "-a", TAG, "-m", "e2e contract mismatch")
    sha = app_repo._git(work, "rev-parse", "HEAD").strip()
    # Pushed to the bare repository's path (git daemon itself is read-only), served at once over git://.
    app_repo._git(work, "push", "-q", str(bare), f"refs/tags/{TAG}")
    try:
        yield TAG, sha
    finally:
        app_repo._git(bare, "tag", "-d", TAG)


def test_release_expecting_a_variable_the_pipeline_does_not_set_is_refused_before_any_restart(
        sandbox, staging, release_expecting_an_unknown_variable):
    tag, sha = release_expecting_an_unknown_variable
    release_dir = f"{DIRECTORY}/releases/{tag}-{sha[:12]}"
    before = containers(staging)
    current = vps_exec(staging, f"readlink {DIRECTORY}/current").strip()
    try:
        state = run_deploy(tag)

        assert state.is_failed(), state.message
        steps = step_states(state)
        assert steps["services.clone"][0] == "COMPLETED" and sha[:12] in steps["services.clone"][1], steps
        kind, message = steps["services.api_keys"]
        assert kind == "FAILED", steps
        assert f"{release_dir}/.env.example" in message and EXTRA in message, message
        assert "which the pipeline does not provide" in message and ".env not written" in message, message
        assert "services.deploy" not in steps, steps  # nothing ran after the refusal
        assert EXTRA in (state.message or "")

        # The server: the same containers (ids and start times), the same current release, no .env for the refused one.
        assert containers(staging) == before
        assert vps_exec(staging, f"readlink {DIRECTORY}/current").strip() == current
        assert vps_exec(staging, f"grep -c '^{EXTRA}=' {release_dir}/.env.example").strip() == "1"
        assert vps_exec(staging, f"test -e {release_dir}/.env && echo written || echo absent").strip() == "absent"
    finally:
        # The refused release's checkout goes too: later tests see staging's releases as they were.
        vps_exec(staging, f"rm -rf {release_dir}")
