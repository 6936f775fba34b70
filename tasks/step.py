"""How a catalogue step becomes a Prefect task.

Each step is a task named by its catalogue id and tagged ``step:<id>`` (plus
the flow's ``env:``/``release:`` tags), so the run history answers "what
happened to step X in environment Y" with one tag query. A step returns a
:class:`StepResult`; the task's final state carries ``"<outcome>: <summary>"``
as its message (what the tracking document shows, built by
``tracking.publish.step_completed``) and the result as data.
"""

from __future__ import annotations

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


def is_transient(task, task_run, state) -> bool:
    """Retry only faults that can pass by themselves (a plain def: Prefect ignores partials)."""
    from technicia_deploy.connection import HostKeyMismatch, Unreachable

    try:
        state.result()
    except HostKeyMismatch:
        return False
    except Unreachable:
        return True
    except Exception as exc:  # noqa: BLE001 - classification only
        return bool(getattr(exc, "transient", False))
    return False


def tracked_step(step_id: str, *, retries: int = 2, retry_delay_seconds: float = 3) -> Callable:
    """Make ``fn`` (returning a StepResult) the Prefect task for catalogue step ``step_id``."""
    catalogue.step(step_id)  # a typo fails at import, not in the middle of a deployment

    def decorate(fn: Callable[..., StepResult]):
        from prefect import task

        from technicia_deploy.tracking.publish import step_completed

        @functools.wraps(fn)
        def run(*args, **kwargs):
            # The tracking document's contract builds the state (message format, length cap).
            return step_completed(fn(*args, **kwargs).as_dict())

        return task(
            name=step_id,
            task_run_name=step_id,
            tags=[catalogue.step_tag(step_id)],
            retries=retries,
            retry_delay_seconds=retry_delay_seconds,
            retry_condition_fn=is_transient,
            persist_result=False,
            log_prints=False,
        )(run)

    return decorate
