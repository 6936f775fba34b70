"""One run at a time per environment, however the run was started (UI, CLI, promotion, schedule).

The lock is a Prefect global concurrency limit of 1 per environment (``<project>-env-<env>``),
taken inside the flow itself, so a deployment's run, a subflow of a promotion and a flow the
CLI runs in-process all queue on the same slot (a deployment's own ``concurrency_limit`` covers
only that deployment's runs). The slot is a lease the holder renews while it runs: a crashed
holder's slot is freed when its lease runs out (``LEASE_S``, plus the server's repossessor loop),
never held forever. Different environments have different limits and never wait for each other.

A run that has to wait says which run holds the environment (the running runs of the locking
flows, tagged ``env:<env>``); one that waits longer than its bound is refused with the same name.

The history never lies: a pipeline process that dies leaves its run Running forever (an in-process
run has nothing else to notice it). Once a run holds the lock, any *other* Running run of a locking
flow on the environment that has started steps in its current attempt held the lock before and lost
its lease, so its process is gone: the new holder marks it, and its unfinished task runs, Crashed
("process lost; found by run X at ..."), and logs what it left behind (its last step and that step's
state). The same holds for a run already marked Crashed (by Prefect's zombie detection) whose task
runs were left Running. A run merely waiting for the lock has started no step and is left alone.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterator

from technicia_deploy.steps import env_tag, step_id_of

# The flows that change an environment's server and therefore take its lock.
LOCKING_FLOWS = ("deploy-environment", "rollback-environment")
# Maintenance flows take the lock too (flows/_maintenance.py) but never change which release runs: a run waiting
# for the lock names them as holders, and nothing else here (nor promotion.completed_in_promotion) counts them.
MAINTENANCE_FLOWS = ("maintenance-certificates", "maintenance-housekeeping", "maintenance-backup",
                     "maintenance-restore-drill", "maintenance-drift")
LEASE_S = 60  # the server's minimum; renewed in the background while the holder is alive
DEFAULT_WAIT_S = 1800.0
REAP_SCAN = 20  # how many Running/Crashed runs of the environment a new holder looks at

_log = logging.getLogger(__name__)


class EnvironmentLocked(RuntimeError):
    """The environment stayed held by another run for longer than this run may wait."""


@dataclass(frozen=True)
class Holder:
    id: str
    name: str
    flow: str
    operator: str | None

    def describe(self) -> str:
        who = f", started by {self.operator}" if self.operator else ""
        return f"run {self.name!r} ({self.flow}, id {self.id}{who})"


def lock_name(project: str, environment: str) -> str:
    return f"{project}-env-{environment}"


def _ensure_limit(client: Any, name: str) -> None:
    """Create the environment's limit (1 slot) the first time; another run creating it at once is fine."""
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    try:
        client.read_global_concurrency_limit_by_name(name)
    except ObjectNotFound:
        try:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
        except ObjectAlreadyExists:
            pass


def holders(client: Any, environment: str, exclude: set[str]) -> list[Holder]:
    """Running runs of the locking and maintenance flows on ``environment``, oldest first (the first one holds
    the lock)."""
    from prefect.client.schemas import filters as F
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    runs = client.read_flow_runs(
        flow_filter=F.FlowFilter(name=F.FlowFilterName(any_=[*LOCKING_FLOWS, *MAINTENANCE_FLOWS])),
        flow_run_filter=F.FlowRunFilter(tags=F.FlowRunFilterTags(all_=[env_tag(environment)]),
                                        state=F.FlowRunFilterState(type=F.FlowRunFilterStateType(any_=[StateType.RUNNING]))),
        sort=FlowRunSort.START_TIME_ASC, limit=10,
    )
    flows = {}
    found = []
    for run in runs:
        if str(run.id) in exclude:
            continue
        if run.flow_id not in flows:
            flows[run.flow_id] = client.read_flow(run.flow_id).name
        found.append(Holder(str(run.id), run.name, flows[run.flow_id], (run.parameters or {}).get("operator")))
    return found


@dataclass(frozen=True)
class DeadRun:
    """A run whose process was lost, as the lock's new holder found it."""

    id: str
    name: str
    flow: str
    operator: str | None
    last_step: str | None  # the step it started last (of a run found Crashed: its last unfinished step)
    last_step_state: str | None  # that step's state when found
    steps_started: int  # in its current attempt (of a run found Crashed: its unfinished steps)
    task_runs_crashed: int
    already_crashed: bool  # Prefect (zombie detection) had marked the run Crashed; only its task runs were left

    def left_behind(self) -> str:
        who = f", started by {self.operator}" if self.operator else ""
        if self.already_crashed:
            last = (f"it was already Crashed but left step {self.last_step} {self.last_step_state}" if self.last_step
                    else "it was already Crashed but left task runs unfinished")
            return (f"run {self.name!r} ({self.flow}, id {self.id}{who}) had lost its process: {last}; "
                    f"{self.task_runs_crashed} unfinished task run(s) marked Crashed")
        return (f"run {self.name!r} ({self.flow}, id {self.id}{who}) had lost its process: its last step "
                f"{self.last_step} was {self.last_step_state} ({self.steps_started} step(s) started); marked Crashed "
                f"with {self.task_runs_crashed} unfinished task run(s)")


def _in_current_attempt(task_run: Any, run: Any) -> bool:
    """The task run belongs to the run's current attempt (not to one before a retry of the flow run)."""
    if task_run.flow_run_run_count:  # set by Prefect's engine for the task runs it creates
        return task_run.flow_run_run_count >= (run.run_count or 0)
    entered = run.state.timestamp if run.state else None
    started = task_run.start_time or task_run.expected_start_time or task_run.created
    return entered is None or started is None or started >= entered


def _started_at(task_run: Any) -> datetime:
    return (task_run.start_time or task_run.expected_start_time or task_run.created
            or datetime.min.replace(tzinfo=timezone.utc))


def reap_dead_runs(client: Any, environment: str, project: str, holder_id: str, holder_name: str,
                   now: datetime | None = None) -> list[DeadRun]:
    """Called by the lock's holder: mark Crashed the runs of ``environment`` whose process is gone (see the
    module's docstring) and their unfinished task runs; what each left behind, oldest first."""
    from prefect.client.schemas import filters as F
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.states import Crashed

    now = now or datetime.now(timezone.utc)

    def runs_in(state: StateType, limit: int) -> list[Any]:
        return [r for r in client.read_flow_runs(
            flow_filter=F.FlowFilter(name=F.FlowFilterName(any_=list(LOCKING_FLOWS))),
            flow_run_filter=F.FlowRunFilter(tags=F.FlowRunFilterTags(all_=[env_tag(environment)]),
                                            state=F.FlowRunFilterState(type=F.FlowRunFilterStateType(any_=[state]))),
            sort=FlowRunSort.START_TIME_DESC, limit=limit,
        ) if str(r.id) != holder_id and (r.parameters or {}).get("project", "technicia") == project]

    running = runs_in(StateType.RUNNING, REAP_SCAN)
    crashed = runs_in(StateType.CRASHED, REAP_SCAN // 2)  # the latest ones: older ones were seen by earlier holders
    runs = running + crashed
    if not runs:
        return []
    unfinished = [StateType.RUNNING, StateType.PENDING, StateType.SCHEDULED, StateType.PAUSED]
    task_runs: list[Any] = []
    if running:
        task_runs += client.read_task_runs(flow_run_filter=F.FlowRunFilter(id=F.FlowRunFilterId(
            any_=[r.id for r in running])), limit=200)
    if crashed:
        task_runs += client.read_task_runs(
            flow_run_filter=F.FlowRunFilter(id=F.FlowRunFilterId(any_=[r.id for r in crashed])),
            task_run_filter=F.TaskRunFilter(state=F.TaskRunFilterState(type=F.TaskRunFilterStateType(any_=unfinished))),
            limit=200)
    found_by = f"process lost; found by run {holder_name!r} (id {holder_id}) at {now.isoformat(timespec='seconds')}"
    flows: dict[Any, str] = {}
    dead: list[DeadRun] = []
    for run in sorted(runs, key=lambda r: r.start_time or now):
        mine = [t for t in task_runs if t.flow_run_id == run.id]
        if run.state_type == StateType.RUNNING:
            steps = [t for t in mine if step_id_of(t) and _in_current_attempt(t, run)]
            if not steps:
                continue  # waiting for the lock (or not started yet): alive as far as anyone can tell
        else:
            steps = [t for t in mine if step_id_of(t)]
        left = [t for t in mine if t.state_type in unfinished]
        if run.state_type == StateType.CRASHED and not left:
            continue
        last = max(steps, key=_started_at) if steps else None
        last_state = (last.state.name if last and last.state else None)
        for task_run in left:
            client.set_task_run_state(task_run.id, Crashed(message=f"{found_by} (its flow run {run.name!r} "
                                                                   f"had lost its process)"), force=True)
        if run.state_type == StateType.RUNNING:
            step_note = f"; its last step {step_id_of(last)} was {last_state}" if last else ""
            client.set_flow_run_state(run.id, Crashed(message=f"{found_by}{step_note}"), force=True)
        if run.flow_id not in flows:
            flows[run.flow_id] = client.read_flow(run.flow_id).name
        dead.append(DeadRun(str(run.id), run.name, flows[run.flow_id], (run.parameters or {}).get("operator"),
                            step_id_of(last) if last else None, last_state, len(steps), len(left),
                            already_crashed=run.state_type == StateType.CRASHED))
    return dead


def _reap(environment: str, project: str, flow_run_id: str, log: logging.Logger | logging.LoggerAdapter) -> None:
    """Right after the lock is taken: mark the runs whose process was lost, and say what they left behind.
    A failure here is logged, never the deployment's failure."""
    from prefect import get_client

    try:
        with get_client(sync_client=True) as client:
            try:
                name = client.read_flow_run(flow_run_id).name
            except Exception:  # noqa: BLE001 - the holder id is enough to name it
                name = flow_run_id
            dead = reap_dead_runs(client, environment, project, flow_run_id, name)
    except Exception as exc:  # noqa: BLE001
        log.warning("%s: could not check for runs whose process was lost (%s: %s)", environment,
                    type(exc).__name__, exc)
        return
    for run in dead:
        log.warning("%s: %s. This run starts from the server's state (every step reads it first).",
                    environment, run.left_behind())


@contextmanager
def hold(environment: str, project: str, flow_run_id: str, *, wait_s: float = DEFAULT_WAIT_S,
         logger: logging.Logger | logging.LoggerAdapter | None = None) -> Iterator[None]:
    """Hold ``environment``'s lock for the block; wait up to ``wait_s`` for it, naming the holder."""
    from prefect import get_client
    from prefect.concurrency.sync import concurrency
    from prefect.types._concurrency import ConcurrencyLeaseHolder

    log = logger or _log
    name = lock_name(project, environment)
    with get_client(sync_client=True) as client:
        _ensure_limit(client, name)
        limit = client.read_global_concurrency_limit_by_name(name)
        busy = holders(client, environment, exclude={flow_run_id}) if limit.active_slots >= limit.limit else []
    if busy:
        log.info("%s is held by %s: waiting up to %.0f s for it", environment, busy[0].describe(), wait_s)
    acquired = False
    try:
        with concurrency(name, occupy=1, timeout_seconds=wait_s, strict=True, lease_duration=LEASE_S,
                         holder=ConcurrencyLeaseHolder(type="flow_run", id=flow_run_id)):
            acquired = True
            log.info("%s locked for this run (lock %s)", environment, name)
            _reap(environment, project, flow_run_id, log)
            yield
    except TimeoutError:
        if acquired:  # a timeout inside the locked work (a DNS wait, ...) is that work's own failure
            raise
        with get_client(sync_client=True) as client:
            busy = holders(client, environment, exclude={flow_run_id})
        held_by = busy[0].describe() if busy else "a run that is no longer running (its lease has not expired yet)"
        raise EnvironmentLocked(f"{environment} is held by {held_by}; refused after waiting {wait_s:.0f} s "
                                "(nothing on the server was changed by this run)") from None
