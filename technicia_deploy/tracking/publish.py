"""What the deploy flow calls so that the tracking document follows the run live.

The flow-side half of the contract in docs/tracking.md:

* each step task returns ``step_completed(result)`` (its summary becomes the state message);
* after the services.clone step, ``record_commit(sha)`` tags the flow run ``sha:<12 hex>``;
* ``start_progress(environment)`` once, ``phase_ended(environment, phase_id, done=, total=)`` after each
  phase: the run's progress artifact is updated in place (one request, no history read);
* ``publish_on_end`` as the flow's on_completion / on_failure / on_crashed / on_cancellation hook: the
  run's one publication of the tracking document (a new version of each language's artifact).

A publication re-reads the run history: the document never holds state of its own.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Iterable

from technicia_deploy.steps import phase as catalogue_phase
from technicia_deploy.tracking.history import FINAL_STATES, FlowRunRecord, flow_run_record, read_history, task_run_record
from technicia_deploy.tracking.messages import step_message

DOCUMENT_KEY = "tracking-document"          # French, the team's language
DOCUMENT_KEY_EN = "tracking-document-en"
LANG_KEYS = {"fr": DOCUMENT_KEY, "en": DOCUMENT_KEY_EN}
SETTLE_SECONDS = 15.0  # how long to wait for the server to record the states the flow already knows

_log = logging.getLogger(__name__)
_progress_ids: dict[str, Any] = {}  # flow run id -> progress artifact id
_started_steps: dict[str, set[str]] = {}  # flow run id -> ids of the steps it started, in this process
_SHA = re.compile(r"^[0-9a-f]{7,40}$")


def progress_key(environment: str) -> str:
    return f"deploy-progress-{environment}"


def step_started(step_id: str) -> None:
    """Called by each step task as it starts: the end-of-run publication waits for these steps' final
    states to reach the server (task states are recorded asynchronously), with no per-phase request."""
    from prefect.runtime import flow_run

    if flow_run.id:
        _started_steps.setdefault(str(flow_run.id), set()).add(step_id)


def step_completed(result: dict[str, Any]):
    """The final state a step task returns: ``Completed(message="<outcome>: <summary>", data=result)``."""
    from prefect.states import Completed

    return Completed(message=step_message(result["outcome"], result["summary"]), data=result)


def _current_flow_run_id() -> str:
    from prefect.runtime import flow_run

    run_id = flow_run.id
    if not run_id:
        raise RuntimeError("not inside a flow run: the tracking document is published by the deploy flow")
    return str(run_id)


def tag_flow_run(environment: str, version: str, sha: str | None = None) -> None:
    """Give the current flow run its query tags (env:, release:, flow:deploy-environment, and sha: when the
    commit is known already), whoever started it: one read and at most one update."""
    from technicia_deploy.steps import env_tag, release_tag
    from technicia_deploy.tracking.history import DEPLOY_FLOW_TAG

    tags = [env_tag(environment), release_tag(version), DEPLOY_FLOW_TAG] + ([_sha_tag(sha)] if sha else [])
    _add_tags(tags, replace_prefixes=("env:", "release:", "flow:") + (("sha:",) if sha else ()))


def _sha_tag(sha: str) -> str:
    sha = sha.strip().lower()
    if not _SHA.match(sha):
        raise ValueError(f"{sha!r} is not a git commit SHA")
    return f"sha:{sha[:12]}"


def record_commit(sha: str) -> None:
    """Tag the current flow run ``sha:<first 12 hex>`` (the Environnements table shows it)."""
    _add_tags([_sha_tag(sha)], replace_prefixes=("sha:",))


def record_approval(approver: str, *, docs_confirmed: bool, quotas_confirmed: bool = False) -> None:
    """Tag the current (production) flow run with its approver and the approval's two confirmations."""
    tags = ([f"approver:{approver}"] + (["docs-confirmed"] if docs_confirmed else [])
            + (["quotas-confirmed"] if quotas_confirmed else []))
    _add_tags(tags, replace_prefixes=("approver:", "docs-confirmed", "quotas-confirmed"))


def add_tags(tags: list[str]) -> None:
    """Add ``tags`` to the current flow run (keeping the others)."""
    _add_tags(tags, replace_prefixes=tuple(tags))


def _add_tags(new: list[str], replace_prefixes: tuple[str, ...]) -> None:
    from prefect import get_client

    run_id = _current_flow_run_id()
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        kept = [t for t in run.tags if not t.startswith(replace_prefixes)]
        if set(kept + new) != set(run.tags):
            client.update_flow_run(run_id, tags=kept + new)


def wait_for_steps(client: Any, flow_run_id: str, step_ids: Iterable[str] = (), timeout: float = SETTLE_SECONDS) -> None:
    """Poll until the server shows ``step_ids`` (and every other step of the run) in a final state.

    Prefect records task states asynchronously: right after a phase the last state may not
    have reached the server yet. Past the deadline the document is published as it is.
    """
    from prefect.client.schemas import filters as F

    wanted = set(step_ids)
    deadline = time.monotonic() + timeout
    while True:
        records = [r for r in (task_run_record(t) for t in client.read_task_runs(
            flow_run_filter=F.FlowRunFilter(id=F.FlowRunFilterId(any_=[flow_run_id])), limit=200,
        )) if r is not None]
        final = {r.step_id for r in records if r.state_type in FINAL_STATES}
        if wanted <= final and all(r.state_type in FINAL_STATES for r in records):
            return
        if time.monotonic() >= deadline:
            _log.warning("tracking: states of flow run %s not settled after %.0f s; publishing as is", flow_run_id, timeout)
            return
        time.sleep(0.2)


def publish_document(client: Any, *, overrides: Iterable[FlowRunRecord] = (), langs: Iterable[str] = ("fr", "en")):
    """Re-read the history, render it and add a version to the ``tracking-document`` artifact(s)."""
    from prefect.artifacts import create_markdown_artifact

    from technicia_deploy.tracking.render import render

    history = read_history(client, overrides=overrides)
    for lang in langs:
        create_markdown_artifact(render(history, lang), key=LANG_KEYS[lang], description=f"TechnicIA deployment tracking ({lang})")
    return history


def start_progress(environment: str) -> None:
    """Create this run's progress artifact at 0 % (call once, at the start of the deploy flow)."""
    from prefect.artifacts import create_progress_artifact

    _progress_ids[_current_flow_run_id()] = create_progress_artifact(
        0.0, key=progress_key(environment), description=f"Deployment of {environment}: share of catalogue steps completed",
    )


def _update_progress(flow_run_id: str, percent: float) -> None:
    from prefect.artifacts import update_progress_artifact

    artifact_id = _progress_ids.get(flow_run_id)
    if artifact_id is not None:
        update_progress_artifact(artifact_id, percent)


def phase_ended(environment: str, phase_id: str, *, done: int, total: int) -> None:
    """After each phase: the run's progress artifact shows ``done`` of the ``total`` steps it plans.

    The document itself is published once, when the run ends (:func:`publish_on_end`): a version per
    phase made a run's Artifacts tab a pile of near-identical snapshots and cost a history read each.
    """
    catalogue_phase(phase_id)  # a typo fails here, not silently
    _update_progress(_current_flow_run_id(), 100.0 * done / total if total else 100.0)
    _log.debug("tracking: %s: %d of %d steps done after phase %s", environment, done, total, phase_id)


def publish_on_end(flow: Any, flow_run: Any, state: Any) -> None:
    """Flow hook (on_completion/on_failure/on_crashed/on_cancellation): the final document.

    The hook runs before the server necessarily has the final state, so the run's own
    record is overridden with the state the hook was given.
    """
    from prefect import get_client

    record = flow_run_record(flow_run)
    record = replace(
        record,
        state_type=state.type.value, state_name=state.name, message=state.message or "",
        end=record.end or datetime.now(timezone.utc),
    )
    try:
        with get_client(sync_client=True) as client:
            wait_for_steps(client, str(flow_run.id), _started_steps.pop(str(flow_run.id), ()))
            publish_document(client, overrides=[record])
        if state.is_completed():
            _update_progress(str(flow_run.id), 100.0)
    except Exception:  # a report failure must never change the deployment's outcome
        _log.exception("tracking: the final tracking document could not be published")

