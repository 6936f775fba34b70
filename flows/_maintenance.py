"""How a maintenance flow runs (technicia_deploy/maintenance.py has the conventions as data).

Every maintenance flow calls :func:`run` with the work of one environment. In a run created as that
environment's maintenance run (tagged ``maintenance`` + ``env:<env>`` + ``flow:<flow>`` when it was created: a
deployment made per environment, or the subflow below), the work runs there: under the environment's lock when it
touches the server (never during a deployment of the same environment), its outcome published as a markdown
artifact, and the run's final state message is the one line saying what it did. Any other run (``all``, or a run
started in-process) creates one such subflow per environment, in promotion order, under those tags, so a failure
alerts the environment's destinations (the ``env:<env>`` automation of tasks/monitoring.py), and ends saying
what each environment's run did.
"""

from __future__ import annotations

from typing import Any, Callable

from prefect import get_run_logger, tags

from technicia_deploy import environment_lock
from technicia_deploy import maintenance as conventions


class MaintenanceFailed(RuntimeError):
    """At least one environment's maintenance run failed; the message names each one and why."""


def _current_run() -> tuple[str, list[str], dict[str, Any]]:
    from prefect.runtime import flow_run

    return str(flow_run.id), list(flow_run.tags or ()), dict(flow_run.parameters or {})


def _first_line(message: str | None) -> str:
    text = conventions.failure_text(message)
    return text.splitlines()[0] if text else "failed"


def run(flow_fn: Any, kind: str, title: str, environment: str, project: str,
        work: Callable[[Any], conventions.Outcome], *, touches_server: bool,
        lock_wait_s: float = environment_lock.DEFAULT_WAIT_S):
    """The body of a maintenance flow; returns the run's final state (Completed, with the description).

    ``flow_fn``: the flow itself (called as a subflow per environment); ``kind``: the artifact's key part;
    ``work``: given the environment's context (tasks.runtime.EnvironmentContext), does the work and says
    what it did; ``touches_server``: take the environment's lock around it.
    """
    from prefect.states import Completed

    flow_name = flow_fn.name
    run_id, run_tags, parameters = _current_run()
    targets = conventions.environments_for(environment)
    if len(targets) == 1 and conventions.is_tagged_for(run_tags, flow_name, environment):
        outcome = _one_environment(kind, title, environment, project, work, run_id,
                                   touches_server=touches_server, lock_wait_s=lock_wait_s)
        return Completed(message=outcome.message, data=outcome.as_dict())

    # Tags added now reach the run history (the tracking document), not the alert events: the
    # per-environment subflows below are what alerts.
    from technicia_deploy.tracking import publish

    publish.add_tags([conventions.MAINTENANCE_TAG, conventions.flow_tag(flow_name)])
    messages: dict[str, str] = {}
    failed: list[str] = []
    results: dict[str, Any] = {}
    for name in targets:
        with tags(*conventions.run_tags(flow_name, name)):
            state = flow_fn(**{**parameters, "environment": name}, return_state=True)
        if state.is_completed():
            messages[name] = state.message or "completed"
            results[name] = state.result(raise_on_failure=False)
        else:
            messages[name] = f"{state.name}: {_first_line(state.message)}"
            failed.append(name)
    summary = conventions.combined_message(messages)
    _publish_document()
    if failed:
        raise MaintenanceFailed(f"{', '.join(failed)} failed; {summary}")
    return Completed(message=summary, data=results)


def _one_environment(kind: str, title: str, environment: str, project: str,
                     work: Callable[[Any], conventions.Outcome], run_id: str, *, touches_server: bool,
                     lock_wait_s: float) -> conventions.Outcome:
    from flows.deploy_environment import preflight
    from tasks import runtime
    from tasks.step import untagged

    logger = get_run_logger()
    try:
        env = preflight(environment, project)
        with untagged():  # the run carries the tags; its task runs need none (tasks/step.py)
            if touches_server:
                with environment_lock.hold(environment, project, run_id, wait_s=lock_wait_s, logger=logger):
                    outcome = work(env)
            else:
                outcome = work(env)
    finally:
        runtime.release()
    logger.info("%s: %s", environment, outcome.message)
    publish_outcome(kind, title, outcome)
    from prefect.runtime import flow_run

    if not flow_run.parent_flow_run_id:  # started alone (a per-environment deployment): nobody else publishes
        _publish_document()
    return outcome


def _publish_document() -> None:
    """The tracking document again, its maintenance table now showing these runs (never fails the maintenance)."""
    from prefect import get_client

    from technicia_deploy.tracking import publish

    try:
        with get_client(sync_client=True) as client:
            publish.publish_document(client)
    except Exception as exc:  # noqa: BLE001
        get_run_logger().warning("tracking document not published: %s", exc)


def publish_outcome(kind: str, title: str, outcome: conventions.Outcome) -> None:
    """The outcome as the run's markdown artifact; a publication problem never fails the maintenance."""
    from prefect.artifacts import create_markdown_artifact

    try:
        create_markdown_artifact(key=conventions.artifact_key(kind, outcome.environment),
                                 markdown=conventions.artifact_markdown(title, outcome),
                                 description=outcome.message)
    except Exception as exc:  # noqa: BLE001
        get_run_logger().warning("artifact %s not published: %s", conventions.artifact_key(kind, outcome.environment), exc)
