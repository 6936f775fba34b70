"""How a catalogue step becomes a Prefect task.

Each step is a task named by its catalogue id; its flow run carries the
``env:``/``release:`` tags, so the run history answers "what happened to step X
in environment Y" with one query (flow runs by tag, task runs by name). A step
returns a :class:`StepResult`; the task's final state carries
``"<outcome>: <summary>"`` as its message (what the tracking document shows,
built by ``tracking.publish.step_completed``) and the result as data.

Step task runs carry no tags at all (:func:`untagged`): Prefect asks its server
for a concurrency slot for every tagged task run (one more round trip per step,
and on SQLite a source of 503 "database is locked" retries), and nothing here
limits steps by tag.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from technicia_deploy import steps as catalogue

CHANGED, UNCHANGED = "changed", "unchanged"


@dataclass
class StepResult:
    step: str
    outcome: str  # changed | unchanged
    summary: str
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def result_of(returned: Any) -> dict[str, Any]:
    """A step's result as data: a step task returns its final State (so that its message is the summary)."""
    return returned.result() if hasattr(returned, "result") and hasattr(returned, "type") else returned


def outcome(changed: bool) -> str:
    return CHANGED if changed else UNCHANGED


def is_transient_error(exc: BaseException) -> bool:
    """A fault that can pass by itself: the server unreachable or the connection lost under a command
    (``connection.Unreachable``, ``ConnectionLost``), or an error that says so (``transient = True``). OVH 5xx
    are not among them: the OVH client retries those itself, with backoff, before it raises. Never a command's own
    exit status, a host key mismatch or a refused login."""
    from technicia_deploy.connection import HostKeyMismatch, Unreachable

    if isinstance(exc, HostKeyMismatch):
        return False
    if isinstance(exc, Unreachable):
        return True
    return bool(getattr(exc, "transient", False))


def is_transient(task, task_run, state) -> bool:
    """Retry only faults that can pass by themselves (a plain def: Prefect ignores partials)."""
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - classification only
        return is_transient_error(exc)
    return False


def current_attempt() -> int:
    """This task run's attempt, 1 for the first run (1 outside a task run)."""
    from prefect.runtime import task_run

    try:
        return max(int(task_run.run_count or 1), 1)
    except Exception:  # noqa: BLE001 - outside a task run
        return 1


def note_attempts(exc: BaseException, step_id: str, attempt: int, retries: int) -> None:
    """Say in a transient fault's message which attempt of the step it ended and what happens next:
    the last attempt's message (the step's final error) says how many times the step was retried."""
    if attempt <= retries:
        note = f"[{step_id} attempt {attempt} of {retries + 1}: retrying]"
    elif retries:
        note = f"[{step_id} gave up after {attempt} attempts: retried {attempt - 1} time(s)]"
    else:
        note = f"[{step_id} is not retried automatically]"
    exc.args = (f"{exc} {note}",)
    exc.step_attempts = attempt


def note_reconnections(result: StepResult, reopened: int) -> None:
    """Say in the step's summary that its SSH connection was lost and re-opened under it (the connection re-ran
    the command it cut, or the step's retry re-read the server's facts): otherwise the history would not show it."""
    if reopened > 0:
        result.summary += f" (SSH connection lost and re-opened {reopened} time(s) during this step)"
        result.details["ssh_reconnections"] = reopened


@contextlib.contextmanager
def untagged():
    """Task runs created inside get no tags, not even those of an enclosing ``prefect.tags`` (the flow run
    keeps its own): see the module docstring for why. Flows call their steps inside it."""
    from prefect.context import TagsContext

    with TagsContext(current_tags=set()):
        yield


def tracked_step(step_id: str, *, retries: int = 2, retry_delay_seconds: float = 3) -> Callable:
    """Make ``fn`` (returning a StepResult) the Prefect task for catalogue step ``step_id``."""
    catalogue.step(step_id)  # a typo fails at import, not in the middle of a deployment

    def decorate(fn: Callable[..., StepResult]):
        from prefect import task

        from technicia_deploy.tracking.publish import step_completed, step_started

        @functools.wraps(fn)
        def run(*args, **kwargs):
            from tasks import runtime

            step_started(step_id)
            reopened = runtime.reconnections()
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                if is_transient_error(exc):
                    note_attempts(exc, step_id, current_attempt(), retries)
                raise
            note_reconnections(result, runtime.reconnections() - reopened)
            # The tracking document's contract builds the state (message format, length cap).
            return step_completed(result.as_dict())

        return task(
            name=step_id,
            task_run_name=step_id,
            retries=retries,
            retry_delay_seconds=retry_delay_seconds,
            retry_condition_fn=is_transient,
            persist_result=False,
            log_prints=False,
        )(run)

    return decorate
