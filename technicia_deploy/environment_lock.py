"""One run at a time per environment, however the run was started (UI, CLI, promotion, schedule).

The lock is a Prefect global concurrency limit of 1 per environment (``<project>-env-<env>``),
taken inside the flow itself, so a deployment's run, a subflow of a promotion and a flow the
CLI runs in-process all queue on the same slot (a deployment's own ``concurrency_limit`` covers
only that deployment's runs). The slot is a lease the holder renews while it runs: a crashed
holder's slot is freed when its lease runs out (``LEASE_S``, plus the server's repossessor loop),
never held forever. Different environments have different limits and never wait for each other.

A run that has to wait says which run holds the environment (the running runs of the locking
flows, tagged ``env:<env>``); one that waits longer than its bound is refused with the same name.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from technicia_deploy.steps import env_tag

# The flows that change an environment's server and therefore take its lock.
LOCKING_FLOWS = ("deploy-environment", "rollback-environment")
LEASE_S = 60  # the server's minimum; renewed in the background while the holder is alive
DEFAULT_WAIT_S = 1800.0

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
    """Running runs of the locking flows on ``environment``, oldest first (the first one holds the lock)."""
    from prefect.client.schemas import filters as F
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    runs = client.read_flow_runs(
        flow_filter=F.FlowFilter(name=F.FlowFilterName(any_=list(LOCKING_FLOWS))),
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
            yield
    except TimeoutError:
        if acquired:  # a timeout inside the locked work (a DNS wait, ...) is that work's own failure
            raise
        with get_client(sync_client=True) as client:
            busy = holders(client, environment, exclude={flow_run_id})
        held_by = busy[0].describe() if busy else "a run that is no longer running (its lease has not expired yet)"
        raise EnvironmentLocked(f"{environment} is held by {held_by}; refused after waiting {wait_s:.0f} s "
                                "(nothing on the server was changed by this run)") from None
