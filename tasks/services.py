"""Déploiement des services: checkout, API keys (.env), deploy command + health."""

from __future__ import annotations

import time

from technicia_deploy import envfile
from technicia_deploy.commands import env_contract, files, release
from technicia_deploy.commands.batch import Read
from technicia_deploy.connection import CommandFailed

from tasks import runtime
from tasks.step import StepResult, outcome, tracked_step

HEALTH_DEADLINE_S = 180.0
HEALTH_POLL_S = 1.0


class ReleaseUnhealthy(RuntimeError):
    """The release's containers did not all become healthy: the flow rolls the environment back."""


class ContractMismatch(RuntimeError):
    """The release's .env.example and the pipeline's .env name different variables: nothing is written."""


def layout(env: runtime.EnvironmentContext) -> release.AppLayout:
    return release.AppLayout(env.application.directory, env.project, env.deploy_user)


def env_file_path(env: runtime.EnvironmentContext, release_dir: str) -> str:
    return f"{release_dir}/{env.application.env_file}"


# -- the facts each step reads (the flow fetches a phase's reads ahead, in one round trip) --

def _checkout_read(env: runtime.EnvironmentContext, version: str, sha: str) -> Read:
    app = layout(env)
    return Read(release.checkout_fact_command(app, app.release_dir(version, sha)))


def _env_read(env: runtime.EnvironmentContext, version: str, sha: str) -> Read:
    path = env_file_path(env, layout(env).release_dir(version, sha))
    return Read(env_contract.env_facts_command(path, env_contract.example_path(path)), sudo=True)


def _services_read(env: runtime.EnvironmentContext) -> Read:
    return Read(release.services_fact_command(layout(env)), sudo=True)


def reads(env: runtime.EnvironmentContext, version: str, sha: str) -> list[Read]:
    """The fact commands this phase's steps read first, in step order."""
    return [_checkout_read(env, version, sha), _env_read(env, version, sha), _services_read(env)]


@tracked_step("services.clone")
def checkout(environment: str, version: str, sha: str, project: str = "technicia") -> StepResult:
    """The repository checked out on the server at exactly ``sha`` (resolved from ``version`` before the run)."""
    env = runtime.environment(environment, project)
    conn = runtime.connect(env)
    app = layout(env)
    release_dir = app.release_dir(version, sha)
    facts = release.parse_checkout_facts(runtime.read(conn, _checkout_read(env, version, sha)).stdout)
    ops = release.checkout_operations(facts, app, env.application.repository, version, sha)
    for command, as_root in ops:
        try:
            conn.run(command, sudo=as_root)
        except CommandFailed as exc:
            if exc.exit_code == 3:
                raise RuntimeError(f"{environment}: {version} resolved to {sha[:12]} but the server's fetch of "
                                   f"{env.application.repository} has no such commit") from None
            raise
    summary = (f"{version} ({sha[:12]}) checked out in {release_dir}" if ops
               else f"{version} ({sha[:12]}) already checked out in {release_dir}")
    return StepResult("services.clone", outcome(bool(ops)), summary,
                      {"version": version, "sha": sha, "release_dir": release_dir})


@tracked_step("services.api_keys")
def api_keys(environment: str, version: str, sha: str, project: str = "technicia") -> StepResult:
    """The release's .env written from the environment's blocks (0600, deploy user, atomic) if it differs,
    once its variable names match the release's .env.example (the application's contract)."""
    env = runtime.environment(environment, project)
    keys = env.api_keys()
    smoke_summary = _smoke(environment, project, keys, env.settings.api_keys.smoke_max_age_minutes * 60)
    conn = runtime.connect(env)
    release_dir = layout(env).release_dir(version, sha)
    path = env_file_path(env, release_dir)
    text = envfile.render(keys)
    example = env_contract.example_path(path)
    # One round trip: the .env's fact and the release's .env.example, the application's side of the contract.
    facts = env_contract.parse_env_facts(path, example, runtime.read(conn, _env_read(env, version, sha)).stdout)
    contract = env_contract.contract(facts, envfile.ENV_VARIABLES)
    problem = contract.problem()
    if problem:
        raise ContractMismatch(f"{environment}: {version} ({sha[:12]}): {problem}")
    fact = facts.env_file
    wanted = files.WantedFile(path, text, mode=0o600, owner=env.deploy_user, group=env.deploy_user)
    commands = files.ensure_file_from_stdin(fact, wanted)
    for command in commands:
        # Only a content rewrite needs the text; a metadata fix must not be fed it.
        stdin = text if "cat > " in command else None
        conn.run(command, sudo=True, stdin=stdin)
    written = "written" if commands else "already up to date"
    return StepResult("services.api_keys", outcome(bool(commands)),
                      f".env {written} ({len(envfile.ENV_VARIABLES)} variables, sha256 {envfile.digest(text)[:12]}; "
                      f"{contract.summary()}); {smoke_summary}",
                      {"path": path, "sha256_prefix": envfile.digest(text)[:12],
                       "contract": example if contract.found else None})


def _smoke(environment: str, project: str, keys, max_age_s: float) -> str:
    """Run the smoke calls before the keys ship (unless the same keys passed them within ``max_age_s``);
    a failing key stops the deployment here."""
    from tasks.api_keys import require_working_keys

    return require_working_keys(environment, project, keys=keys, max_age_s=max_age_s)


# (flow run, release dir) whose deploy command an attempt of services.deploy started: a retry that then
# finds the release healthy knows that this run deployed it (its earlier attempt lost the connection after).
_DEPLOY_STARTED: set[tuple[str, str]] = set()
DEPLOY_RETRIES = 2  # transient faults only (a lost connection, an unreachable server): tasks.step.is_transient


@tracked_step("services.deploy", retries=DEPLOY_RETRIES)
def deploy(environment: str, version: str, sha: str, project: str = "technicia",
           health_deadline_s: float = HEALTH_DEADLINE_S) -> StepResult:
    """Run the application's deploy command unless the release already runs healthy; then wait for health.

    Safe to run again after a lost connection (the step retries transient faults, DEPLOY_RETRIES times; a
    release that is not healthy is never retried but rolled back): every attempt starts from the server's
    facts; the deploy command is not re-run blindly on a new connection (``rerun_on_drop=False``: the retry
    reads the facts first) and holds the server's deploy lock, so a copy still running from the lost
    connection ends before another starts; ``current`` moves only once the release is healthy, and the
    switch and the prune are idempotent.
    """
    from prefect.runtime import flow_run

    from tasks.step import current_attempt

    env = runtime.environment(environment, project)
    conn = runtime.connect(env)
    app = layout(env)
    release_dir = app.release_dir(version, sha)
    started_key = (str(flow_run.id or "local"), release_dir)
    attempt = current_attempt()

    def facts() -> release.ServiceFacts:  # polled after the deploy command: always read from the server
        return release.parse_service_facts(conn.run(release.services_fact_command(app), sudo=True).stdout)

    before = release.parse_service_facts(runtime.read(conn, _services_read(env)).stdout)
    if before.current == release_dir and before.containers and not before.unhealthy():
        details = {"services": [c.service for c in before.containers], "release_dir": release_dir,
                   "previous": before.previous}
        if started_key in _DEPLOY_STARTED:
            # An earlier attempt ran the deploy command and lost the connection after the switch: finish its work.
            _DEPLOY_STARTED.discard(started_key)
            conn.run(release.prune_releases(app), as_user=env.deploy_user)
            return StepResult("services.deploy", "changed",
                              f"{version} deployed, {len(before.containers)} services healthy (found so on attempt "
                              f"{attempt}, after the connection was lost)"
                              + (f" (previous: {before.previous.rsplit('/', 1)[-1]})" if before.previous else ""),
                              {**details, "attempt": attempt})
        return StepResult("services.deploy", "unchanged",
                          f"{version} already running, {len(before.containers)} services healthy", details)

    _DEPLOY_STARTED.add(started_key)
    conn.run(release.deploy_command(app, release_dir, env.application.deploy_command), as_user=env.deploy_user,
             timeout=900, rerun_on_drop=False)
    after = _wait_healthy(facts, health_deadline_s)
    if after.unhealthy() or not after.containers:
        _DEPLOY_STARTED.discard(started_key)
        names = ", ".join(f"{c.service} ({c.state}/{c.health})" for c in after.unhealthy()) or "no container"
        raise ReleaseUnhealthy(f"{environment}: {version} deployed but not healthy: {names}; "
                               f"current still names {release.describe_release(before.current)}")
    conn.run(release.switch_current(app, release_dir, before.current), as_user=env.deploy_user)
    conn.run(release.prune_releases(app), as_user=env.deploy_user)
    _DEPLOY_STARTED.discard(started_key)
    retried = f" on attempt {attempt}" if attempt > 1 else ""
    return StepResult("services.deploy", "changed",
                      f"{version} deployed{retried}, {len(after.containers)} services healthy"
                      + (f" (previous: {before.current.rsplit('/', 1)[-1]})" if before.current and before.current != release_dir else ""),
                      {"services": [c.service for c in after.containers], "release_dir": release_dir,
                       "previous": before.current if before.current != release_dir else before.previous,
                       **({"attempt": attempt} if attempt > 1 else {})})


def _wait_healthy(read, deadline_s: float) -> release.ServiceFacts:
    """Poll the containers until all are running and healthy, one has failed for good, or the deadline passes
    (then return what is seen).

    "unhealthy" is Docker's verdict after the service's own healthcheck retries, and "exited"/"dead" a container
    that stopped: waiting longer changes nothing, so the rollback starts at once instead of at the deadline.
    """
    deadline = time.monotonic() + deadline_s
    while True:
        current = read()
        failed = [c for c in current.containers if c.health == "unhealthy" or c.state in ("exited", "dead")]
        if (current.containers and not current.unhealthy()) or failed or time.monotonic() > deadline:
            return current
        time.sleep(HEALTH_POLL_S)
