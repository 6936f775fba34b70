"""Problems: every failed step becomes one, resolved by a later success of the same step.

A problem is an episode of one (environment, step): it opens at the first failed
run, counts the failures that follow, and is resolved by the first successful
run of that step in that environment after them. Its ID comes from the task run
that opened it (``P-`` + the first 8 hex digits of its id), so it never changes
when more history arrives, and a hand-written note stays attached to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from technicia_deploy.steps import ROLLBACK
from technicia_deploy.tracking.history import FAILED_STATES, FlowRunRecord, ProblemNote, TaskRunRecord

_ID = re.compile(r"^P-[0-9a-f]{8}$")
# The rollback step's summary starts "rolled back to <version> (<sha12>)" (tasks/rollback.py).
_ROLLED_BACK = re.compile(r"rolled back to (\S+ \([0-9a-f]{12}\))")
_EARLIEST = datetime.min.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Problem:
    id: str
    environment: str
    step_id: str
    error: str  # the first failure's message
    failures: int
    identified_at: datetime | None
    resolved_at: datetime | None = None
    resolved_by_release: str | None = None
    resolved_by_run: str | None = None
    notes: tuple[ProblemNote, ...] = ()
    rolled_back_to: str | None = None  # "v1.0.0 (0123456789ab)": the run went back to this release after the failure

    @property
    def resolved(self) -> bool:
        return self.resolved_at is not None


def problem_id(task_run_id: str) -> str:
    return "P-" + task_run_id.replace("-", "")[-8:].lower()


def normalise_id(text: str) -> str:
    """'p-1A2b3c4d' -> 'P-1a2b3c4d'; ValueError if it is not a problem ID."""
    candidate = text.strip()
    candidate = "P-" + candidate[2:].lower() if candidate[:2].upper() == "P-" else candidate
    if not _ID.match(candidate):
        raise ValueError(f"{text!r} is not a problem ID (expected P- followed by 8 hex digits, as in the report)")
    return candidate


def error_text(message: str) -> str:
    """The exception part of Prefect's failure message ('Task run encountered an exception X: y' -> 'X: y')."""
    for prefix in ("Task run encountered an exception ", "Task run encountered an exception: "):
        if message.startswith(prefix):
            return message[len(prefix):]
    return message


def find_problems(
    task_runs: tuple[TaskRunRecord, ...],
    flow_runs: dict[str, FlowRunRecord],
    notes: tuple[ProblemNote, ...] = (),
) -> list[Problem]:
    """Problems, newest first. Pure: the run history in, the rows out."""
    by_pair: dict[tuple[str, str], list[TaskRunRecord]] = {}
    for task in task_runs:
        if task.environment and task.state_type in FAILED_STATES | {"COMPLETED"}:
            by_pair.setdefault((task.environment, task.step_id), []).append(task)
    rollbacks = rollbacks_by_run(task_runs)
    notes_by_id: dict[str, list[ProblemNote]] = {}
    for note in notes:
        notes_by_id.setdefault(note.problem_id, []).append(note)

    problems: list[Problem] = []
    for (env, step_id), runs in by_pair.items():
        if not any(r.state_type in FAILED_STATES for r in runs):
            continue
        runs.sort(key=lambda r: (r.when or _EARLIEST, r.end or _EARLIEST))
        opened: TaskRunRecord | None = None
        failures = 0
        for run in runs:
            if run.state_type in FAILED_STATES:
                if opened is None:
                    opened, failures = run, 0
                failures += 1
            elif opened is not None:  # a success closes the episode
                problems.append(_problem(env, step_id, opened, failures, run, flow_runs, notes_by_id, rollbacks))
                opened = None
        if opened is not None:
            problems.append(_problem(env, step_id, opened, failures, None, flow_runs, notes_by_id, rollbacks))
    problems.sort(key=lambda p: (p.identified_at or _EARLIEST, p.id), reverse=True)
    return problems


def rollbacks_by_run(task_runs: tuple[TaskRunRecord, ...]) -> dict[str, str]:
    """{flow run id: release gone back to} for every completed rollback step."""
    found = {}
    for task in task_runs:
        if task.step_id == ROLLBACK.id and task.state_type == "COMPLETED" and task.flow_run_id:
            match = _ROLLED_BACK.search(task.message)
            if match:
                found[task.flow_run_id] = match.group(1)
    return found


def _problem(env, step_id, opened, failures, success, flow_runs, notes_by_id, rollbacks=None) -> Problem:
    pid = problem_id(opened.id)
    resolving_run = flow_runs.get(success.flow_run_id) if success and success.flow_run_id else None
    return Problem(
        id=pid,
        environment=env,
        step_id=step_id,
        error=error_text(opened.message),
        failures=failures,
        identified_at=opened.end or opened.when,
        resolved_at=(success.end or success.when) if success else None,
        resolved_by_release=resolving_run.release if resolving_run else None,
        resolved_by_run=resolving_run.name if resolving_run else None,
        notes=tuple(notes_by_id.get(pid, ())),
        rolled_back_to=(rollbacks or {}).get(opened.flow_run_id or ""),
    )
