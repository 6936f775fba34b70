"""The ``deploy-environment`` flow: one environment, from whatever state it is in, to one version.

Its task runs are the deployment log: one task per catalogue step, in catalogue
order, each tagged with its step id, the environment and the release. What a
step found and did is its final state's message ("changed: ..." /
"unchanged: ..."); the tracking document is rendered from these.
"""

from __future__ import annotations

from typing import Any, Callable

from prefect import flow, get_run_logger, tags

from technicia_deploy import steps
from technicia_deploy.config import ENVIRONMENTS

FLOW_NAME = "deploy-environment"


def _plan(environment: str, version: str, sha: str, project: str, rebuild_server: bool) -> dict[str, Callable[[], Any]]:
    """The catalogue steps this build implements, each bound to its arguments."""
    from tasks import checks, https, monitoring, server, services

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
        "checks.performance": lambda: checks.performance.submit(**common),
        "checks.security": lambda: checks.security.submit(**common),
        "monitoring.script": lambda: monitoring.script(**common),
        "monitoring.alerts": lambda: monitoring.alerts(**common),
        "monitoring.alert_test": lambda: monitoring.alert_test(**common),
    }


# Phases whose steps are independent and start together; their plan entries submit and return futures.
CONCURRENT_PHASES = {"checks"}


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
    loaders = {block.ovh_block: block.ovh, block.ssh_block: lambda: env.ssh, block.api_keys_block: block.api_keys}
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


def _publish_phase(environment: str, phase_id: str, ran: list[str]) -> None:
    """Update the tracking document and progress after a phase; a report problem never fails a deployment."""
    from technicia_deploy.tracking import publish

    try:
        publish.phase_ended(environment, phase_id, ran=ran)
    except Exception as exc:  # noqa: BLE001
        get_run_logger().warning("tracking document not updated after %s: %s", phase_id, exc)


def _publish_on_end(flow, flow_run, state) -> None:
    from technicia_deploy.tracking.publish import publish_on_end

    publish_on_end(flow, flow_run, state)


@flow(name=FLOW_NAME, flow_run_name="deploy-{environment}-{version}", log_prints=False,
      on_completion=[_publish_on_end], on_failure=[_publish_on_end], on_crashed=[_publish_on_end],
      on_cancellation=[_publish_on_end])
def deploy_environment(environment: str, version: str, operator: str = "unknown", rebuild_server: bool = False,
                       project: str = "technicia") -> dict[str, Any]:
    """Deploy ``version`` of TechnicIA to ``environment`` (test, staging or production).

    rebuild_server: reinstall the VPS through OVH first. Destroys the server's data; never implicit.
    """
    from technicia_deploy import versions
    from technicia_deploy.tracking import publish
    from tasks import runtime

    logger = get_run_logger()
    # Tagged first, so that even a run refused by the preflight shows in the run history by environment.
    publish.tag_flow_run(environment, version)
    try:
        env = preflight(environment, project)
        sha = versions.resolve(env.application.repository, version)
        publish.record_commit(sha)
        logger.info("deploying %s (%s) to %s for %s", version, sha[:12], environment, operator)
        publish.start_progress(environment)
        plan = _plan(environment, version, sha, project, rebuild_server)
        results: dict[str, Any] = {}
        with tags(steps.env_tag(environment), steps.release_tag(version)):
            for phase in steps.PHASES:
                ran = [step.id for step in phase.steps if step.id in plan]
                if not ran:
                    continue
                if phase.id in CONCURRENT_PHASES:
                    results.update(_run_together({step_id: plan[step_id] for step_id in ran}))
                else:
                    for step_id in ran:
                        results[step_id] = plan[step_id]()
                _publish_phase(environment, phase.id, ran)
        return {"environment": environment, "version": version, "sha": sha, "steps": results}
    finally:
        runtime.release()
