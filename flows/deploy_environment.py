"""The ``deploy-environment`` flow: one environment, from whatever state it is in, to one version.

Its task runs are the deployment log: one task per catalogue step, in catalogue
order, each named by its step id (the flow run is tagged with the environment and the release). What a
step found and did is its final state's message ("changed: ..." /
"unchanged: ..."); the tracking document is rendered from these.
"""

from __future__ import annotations

from typing import Any, Callable

from prefect import flow, get_run_logger

from technicia_deploy import environment_lock, steps
from technicia_deploy.config import ENVIRONMENTS

FLOW_NAME = "deploy-environment"


def changed_steps(results: dict[str, Any]) -> list[str]:
    """The steps whose result says they changed something on the server (a step's call returns its final
    state, whose data is the result)."""
    from tasks.step import result_of

    changed = []
    # A copy first: the phases of a group (checks, monitoring) add their results from their own threads.
    for step_id, returned in dict(results).items():
        result = result_of(returned)
        if isinstance(result, dict) and result.get("outcome") == "changed":
            changed.append(step_id)
    return changed


def _plan(environment: str, version: str, sha: str, project: str, rebuild_server: bool,
          load_test: bool | None, alert_test: bool | None, results: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    """The catalogue steps this build implements, each bound to its arguments.

    ``results``: the run's step results so far, filled in as the steps end. The load test and the test
    alert, left to their default (None), run only when an earlier step changed something.
    """
    from tasks import checks, https, monitoring, server, services

    def wanted(asked: bool | None) -> Callable[[], bool]:
        return lambda: bool(changed_steps(results)) if asked is None else asked

    run_load_test, send_test_alert = wanted(load_test), wanted(alert_test)

    common = {"environment": environment, "project": project}
    release = {**common, "version": version, "sha": sha}
    return {
        "server.os": lambda: server.os_installation(rebuild=rebuild_server, **common),
        "server.firewall": lambda: server.firewall(**common),
        "server.docker": lambda: server.docker_installation(**common),
        "services.clone": lambda: services.checkout(**release),
        "services.api_keys": lambda: services.api_keys(**release),
        "services.deploy": lambda: services.deploy(**release),
        "https.dns": lambda: https.dns(**common),
        "https.certbot": lambda: https.certbot_installation(**common),
        "https.certificate": lambda: https.certificate(**common),
        # The post-deployment tests run together: these return futures (see CONCURRENT_PHASES).
        "checks.functional": lambda: checks.functional.submit(**common),
        "checks.performance": lambda: checks.performance.submit(**common, load_test=run_load_test()),
        "checks.security": lambda: checks.security.submit(**common),
        "monitoring.script": lambda: monitoring.script(**common),
        "monitoring.alerts": lambda: monitoring.alerts(**common),
        "monitoring.alert_test": lambda: monitoring.alert_test(**common, send=send_test_alert()),
    }


def _phase_reads(environment: str, project: str, version: str, sha: str) -> dict[str, Callable[[], list]]:
    """Per phase, the fact commands its steps will read first (each task module declares its own)."""
    from tasks import checks, https, monitoring, runtime, server, services

    def env():
        return runtime.environment(environment, project)

    return {
        "server": lambda: server.reads(env()),
        "services": lambda: services.reads(env(), version, sha),
        "https": lambda: https.reads(env()),
        "checks": lambda: checks.reads(env()),
        "monitoring": lambda: monitoring.reads(env()),
    }


def _prefetch(environment: str, project: str, reads: dict[str, Callable[[], list]], phases: list[str]) -> None:
    """Fetch the facts of ``phases`` ahead in one round trip (see HostConnection.prefetch): on a run that
    changes nothing, every step then reads from it; a step that changes the server makes the later ones read
    again by themselves. Never fails the run."""
    from tasks import runtime

    wanted = [fact for phase_id in phases if phase_id in reads for fact in reads[phase_id]()]
    fetched = runtime.prefetch(runtime.environment(environment, project), wanted)
    if fetched:
        get_run_logger().debug("fetched %d fact(s) of %s ahead in one command", fetched, ", ".join(phases))


# Phases whose steps are independent and start together; their plan entries submit and return futures.
CONCURRENT_PHASES = {"checks"}

# Phases that run at the same time as an earlier one (phase -> the phase it runs alongside): the monitoring
# set-up reads and changes nothing the post-deployment tests look at, so a run waits for the slower of the
# two, not for their sum. Each keeps its own order inside (monitoring's steps still run one after another).
ALONGSIDE = {"monitoring": "checks"}


def phase_groups(plan: dict[str, Any]) -> list[list[tuple[str, list[str]]]]:
    """The plan's phases in catalogue order as groups that run at the same time: [[(phase id, its step ids)]]."""
    groups: list[list[tuple[str, list[str]]]] = []
    where: dict[str, list[tuple[str, list[str]]]] = {}
    for phase in steps.PHASES:
        ran = [step.id for step in phase.steps if step.id in plan]
        if not ran:
            continue
        partner = ALONGSIDE.get(phase.id)
        group = where.get(partner) if partner else None
        if group is None:
            group = []
            groups.append(group)
        group.append((phase.id, ran))
        where[phase.id] = group
    return groups


def _run_together(submitters: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """Start every step at once, wait for all of them, then fail naming each step that failed (not just the first)."""
    from prefect.futures import wait

    futures = {step_id: submit() for step_id, submit in submitters.items()}
    wait(list(futures.values()))
    results, failed = {}, []
    for step_id, future in futures.items():
        if future.state.is_completed():
            results[step_id] = future.result()  # the step's result, as a sequential step's call returns
        else:
            failed.append(f"{step_id}: {future.state.message}")
    if failed:
        raise RuntimeError("; ".join(failed))
    return results


def preflight(environment: str, project: str):
    """Everything that can be checked without touching a server: environment, blocks, secrets."""
    from tasks import runtime

    if environment not in ENVIRONMENTS:
        raise ValueError(f"unknown environment {environment!r}; expected one of {', '.join(ENVIRONMENTS)}")
    env = runtime.environment(environment, project)
    block = env.block
    # The SSH block came with the environment; the others are loaded here, once, to fail before any server is touched.
    loaders = {block.ovh_block: env.ovh_credentials, block.ssh_block: lambda: env.ssh, block.api_keys_block: env.api_keys}
    for name, load in loaders.items():
        try:
            loaded = load()
        except Exception as exc:  # noqa: BLE001 - reported with the block's name
            raise LookupError(f"environment {environment!r}: block {name!r} cannot be loaded ({type(exc).__name__}); "
                              "run `technicia-deploy blocks apply environments.yaml`") from None
        for field, value in loaded:
            if hasattr(value, "get_secret_value") and not str(value.get_secret_value()).strip():
                raise LookupError(f"environment {environment!r}: secret {field!r} of block {name!r} is empty")
    return env


def _publish_phase(environment: str, phase_id: str, done: int, total: int) -> None:
    """Update the run's progress after a phase; a report problem never fails a deployment."""
    from technicia_deploy.tracking import publish

    try:
        publish.phase_ended(environment, phase_id, done=done, total=total)
    except Exception as exc:  # noqa: BLE001
        get_run_logger().warning("progress not updated after %s: %s", phase_id, exc)


def _publish_on_end(flow, flow_run, state) -> None:
    from technicia_deploy.tracking.publish import publish_on_end

    publish_on_end(flow, flow_run, state)


class DeploymentRefused(RuntimeError):
    """This run may not deploy this environment (see technicia_deploy.promotion); nothing was touched."""


class ReleaseRolledBack(RuntimeError):
    """The release failed its health wait or its post-deployment tests; the environment went back."""


# A failure of these (after the release's containers were started) sends the environment back to the
# release before it. Earlier failures leave the old release's containers untouched: nothing to undo.
ROLLBACK_AFTER = ("services.deploy", "checks")


def _guard(environment: str, sha: str) -> None:
    """Refuse, before any server is touched, a run that may not deploy ``environment``; tag what it is part of."""
    from prefect import get_client

    from technicia_deploy import promotion
    from technicia_deploy.tracking import publish

    with get_client(sync_client=True) as client:
        caller = promotion.current_caller(client)
    why = promotion.deploy_refusal(environment, sha, caller)
    if why:
        raise DeploymentRefused(f"{environment}: {why}")
    if caller.parent_flow == promotion.PROMOTE_FLOW:
        from prefect.runtime import flow_run

        publish.add_tags([promotion.promotion_tag(str(flow_run.parent_flow_run_id))])
    if caller.approval is not None and environment == promotion.PROMOTED_ENVIRONMENT:
        publish.record_approval(caller.approval.approver, docs_confirmed=caller.approval.documentation_finalised,
                                quotas_confirmed=caller.approval.quotas_verified)


def _roll_back(environment: str, project: str, version: str, sha: str, failed: str, error: Exception) -> Exception:
    """Send the environment back to its previous release; the exception the run ends with says where it is."""
    from tasks.rollback import rollback
    from tasks.step import result_of

    cause = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
    get_run_logger().warning("%s failed (%s): rolling %s back", failed, cause, environment)
    try:
        result = result_of(rollback(environment=environment, project=project, failed_version=version, failed_sha=sha))
    except Exception as exc:  # noqa: BLE001 - the run must say the environment is not back
        return RuntimeError(f"{failed} failed ({cause}); the rollback FAILED too ({exc}): check {environment} by hand, "
                            "then `technicia-deploy rollback` or redeploy")
    return ReleaseRolledBack(f"{failed} failed ({cause}); {result['summary']}")


def _run_phase(plan: dict[str, Callable[[], Any]], phase_id: str, ran: list[str], results: dict[str, Any]) -> None:
    """One phase's steps, their results into ``results``; an error carries the step it failed at (``at``)."""
    at = phase_id
    try:
        if phase_id in CONCURRENT_PHASES:
            results.update(_run_together({step_id: plan[step_id] for step_id in ran}))
        else:
            for step_id in ran:
                at = step_id
                results[step_id] = plan[step_id]()
    except Exception as exc:
        exc.failed_at = at  # type: ignore[attr-defined]
        raise


def _run_group(plan: dict[str, Callable[[], Any]], group: list[tuple[str, list[str]]],
               results: dict[str, Any]) -> list[Exception]:
    """The group's phases at the same time (each in its own thread, in the flow run's context); their errors."""
    import contextvars
    from concurrent.futures import ThreadPoolExecutor

    if len(group) == 1:
        phase_id, ran = group[0]
        try:
            _run_phase(plan, phase_id, ran, results)
        except Exception as exc:  # noqa: BLE001 - the caller decides (rollback or not)
            return [exc]
        return []
    with ThreadPoolExecutor(max_workers=len(group), thread_name_prefix="phase") as pool:
        futures = [pool.submit(contextvars.copy_context().run, _run_phase, plan, phase_id, ran, results)
                   for phase_id, ran in group]
        return [exc for future in futures if (exc := future.exception()) is not None]


def _run_phases(plan: dict[str, Callable[[], Any]], results: dict[str, Any], environment: str, project: str,
                version: str, sha: str, reads: dict[str, Callable[[], list]] | None = None) -> dict:
    """The plan's steps in catalogue order, their results into ``results``; a failure at or after the
    deploy step rolls the environment back. ``reads``: each phase's fact commands, fetched ahead."""
    done = 0
    groups = phase_groups(plan)
    for index, group in enumerate(groups):
        if reads:  # this group's facts and the later ones': all of a run that changes nothing, in one command
            _prefetch(environment, project, reads, [phase_id for later in groups[index:] for phase_id, _ in later])
        errors = _run_group(plan, group, results)
        rollback_for = next((e for e in errors if getattr(e, "failed_at", None) in ROLLBACK_AFTER), None)
        if rollback_for is not None:
            for other in errors:
                if other is not rollback_for:
                    get_run_logger().error("%s failed too: %s", getattr(other, "failed_at", "?"), other)
            raise _roll_back(environment, project, version, sha, rollback_for.failed_at, rollback_for) from rollback_for
        if errors:
            raise errors[0]
        for phase_id, ran in group:
            done += len(ran)
            _publish_phase(environment, phase_id, done, len(plan))
    return results


@flow(name=FLOW_NAME, flow_run_name="deploy-{environment}-{version}", log_prints=False,
      on_completion=[_publish_on_end], on_failure=[_publish_on_end], on_crashed=[_publish_on_end],
      on_cancellation=[_publish_on_end])
def deploy_environment(environment: str, version: str, operator: str = "unknown", rebuild_server: bool = False,
                       project: str = "technicia", sha: str | None = None,
                       lock_wait_s: float = environment_lock.DEFAULT_WAIT_S,
                       load_test: bool | None = None, alert_test: bool | None = None) -> dict[str, Any]:
    """Deploy one version of TechnicIA to one environment, from whatever state its server is in.

    Each per-environment deployment deploys its own environment only. Production is deployed only by an
    approved promote-release run. A release that fails its health wait or its post-deployment tests is
    rolled back to the previous release automatically.

    Args:
        environment: test, staging or production; must be this deployment's own environment.
        version: git tag or branch of the application repository to deploy (e.g. v1.0.0).
        operator: who started the deployment (shown as Responsable in the tracking document).
        rebuild_server: DESTRUCTIVE: reinstall the VPS through the OVH API first, erasing all its data.
        project: project name used in the Prefect block names (default technicia).
        sha: the commit the version must be (set by promote-release, which resolves the version once); empty:
            resolve the version now.
        lock_wait_s: how long to wait for another run of this environment to finish before refusing.
        load_test: run the load test (true), keep the last passing one (false), or (empty) run it only when
            this run changed something on the server.
        alert_test: send a test alert through every destination (true), keep the last one that reached them
            within a day (false), or (empty) send one only when this run changed something on the server.
    """
    from technicia_deploy import versions
    from technicia_deploy.tracking import publish
    from tasks import runtime
    from tasks.step import untagged

    logger = get_run_logger()
    # Tagged first, so that even a run refused by the preflight shows in the run history by environment.
    try:
        given = versions.check_sha(sha) if sha else None
    except ValueError:
        publish.tag_flow_run(environment, version)
        raise
    publish.tag_flow_run(environment, version, sha=given)
    try:
        env = preflight(environment, project)
        sha = given or versions.resolve(env.application.repository, version)
        if given is None:
            publish.record_commit(sha)
        _guard(environment, sha)
        from prefect.runtime import flow_run

        with environment_lock.hold(environment, project, str(flow_run.id), wait_s=lock_wait_s, logger=logger):
            logger.info("deploying %s (%s) to %s for %s", version, sha[:12], environment, operator)
            publish.start_progress(environment)
            results: dict[str, Any] = {}
            plan = _plan(environment, version, sha, project, rebuild_server, load_test, alert_test, results)
            with untagged():  # the flow run carries env:/release:; its step task runs need no tags
                _run_phases(plan, results, environment, project, version, sha,
                            reads=_phase_reads(environment, project, version, sha))
            ssh = runtime.ssh_stats()
            logger.info("SSH: %(connections)d connection(s), %(commands)d command(s); %(facts_fetched_ahead)d fact(s) "
                        "fetched ahead, %(reads_without_round_trip)d read(s) answered without a round trip", ssh)
        return {"environment": environment, "version": version, "sha": sha, "steps": results, "ssh": ssh}
    finally:
        runtime.release()
