"""The format of a step's summary in its task run's final state message.

Results may not be persisted, so a step's summary reaches the report through the
one field Prefect always stores and returns: the state message. A step task
returns ``Completed(message="<outcome>: <summary>", data=result)`` (built by
``tracking.publish.step_completed``); a failed step's message is Prefect's own
("Task run encountered an exception X: y").
"""

from __future__ import annotations

OUTCOMES = ("changed", "unchanged")
MAX_SUMMARY = 500  # a state message is a short text, not a log


def step_message(outcome: str, summary: str) -> str:
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
    summary = " ".join(str(summary).split())
    if len(summary) > MAX_SUMMARY:
        summary = summary[: MAX_SUMMARY - 1] + "…"
    return f"{outcome}: {summary}"


def parse_step_message(message: str) -> tuple[str | None, str]:
    """(outcome or None, summary) from a completed step's state message."""
    head, sep, rest = message.partition(": ")
    if sep and head in OUTCOMES:
        return head, rest
    return None, message
