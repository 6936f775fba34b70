"""Read the run history from the Prefect API into plain dataclasses.

This is the only module of the tracking package that talks to Prefect. The
renderer takes a :class:`History` and nothing else, so it can be tested with
recorded histories (``History.to_json``/``from_json``) and benchmarked offline.

What is read, and how (docs/tracking.md is the contract the flows follow):

* deploy runs: flow runs tagged ``flow:deploy-environment`` (newest first, ``max_runs``);
* step task runs of each environment's latest run and latest successful run
  (one call, by flow-run id); every failed/crashed step task run (one call);
  for each (environment, step) that ever failed, its later successful runs
  (one call per pair, by tags ``env:``/``step:``): that is what resolves problems;
* production's ``https.dns`` successes (DNS age note);
* latest artifacts ``api-keys-<env>``, ``security-<env>``, ``server-<env>`` (one call);
* maintenance runs (tag ``maintenance``): upcoming and recent (two calls);
* problem notes (Prefect Variables ``technicia_problem_note_*``, one call);
* deployments tagged ``cost-monitoring`` (one call);
* environment settings from the ``technicia-environment`` blocks (one call) unless given.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Iterable

from technicia_deploy.config import ENVIRONMENTS
from technicia_deploy.steps import env_tag, step_id_of

DEPLOY_FLOW = "deploy-environment"
DEPLOY_FLOW_TAG = f"flow:{DEPLOY_FLOW}"
MAINTENANCE_TAG = "maintenance"
UPCOMING_SCAN = 200  # scheduled maintenance runs read to find each flow's next one
# Past maintenance runs read: a day of five flows on three environments is 15 per-environment runs (and their
# 'all' runs); the table shows the newest (render.MAX_RECENT_MAINTENANCE), the notes each environment's last drift.
RECENT_SCAN = 60
COST_MONITORING_TAG = "cost-monitoring"
NOTE_VARIABLE_PREFIX = "technicia_problem_note_"
FINAL_STATES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})
FAILED_STATES = frozenset({"FAILED", "CRASHED"})
# Flow-run parameters kept in the history: never anything else (a parameter could be sensitive).
KEPT_PARAMETERS = ("environment", "version", "operator")
ARTIFACT_KINDS = ("api-keys", "security", "server")


def _tag_value(tags: Iterable[str], prefix: str) -> str | None:
    for tag in tags:
        if tag.startswith(prefix):
            return tag[len(prefix):]
    return None


@dataclass(frozen=True)
class FlowRunRecord:
    id: str
    name: str
    state_type: str  # Prefect StateType value: COMPLETED, FAILED, RUNNING, SCHEDULED, PAUSED...
    state_name: str
    message: str
    expected_start: datetime | None
    start: datetime | None
    end: datetime | None
    tags: tuple[str, ...]
    parameters: dict[str, str] = field(default_factory=dict)

    @property
    def environment(self) -> str | None:
        return _tag_value(self.tags, "env:") or self.parameters.get("environment")

    @property
    def release(self) -> str | None:
        return _tag_value(self.tags, "release:") or self.parameters.get("version")

    @property
    def sha(self) -> str | None:
        return _tag_value(self.tags, "sha:")

    @property
    def flow(self) -> str | None:
        return _tag_value(self.tags, "flow:")

    @property
    def operator(self) -> str | None:
        return self.parameters.get("operator") or _tag_value(self.tags, "operator:")

    @property
    def approver(self) -> str | None:
        return _tag_value(self.tags, "approver:")

    @property
    def when(self) -> datetime | None:
        """The best known time of the run: start, else the scheduled time."""
        return self.start or self.expected_start


@dataclass(frozen=True)
class TaskRunRecord:
    id: str
    flow_run_id: str | None
    step_id: str
    environment: str | None
    state_type: str
    state_name: str
    message: str
    expected_start: datetime | None
    start: datetime | None
    end: datetime | None

    @property
    def when(self) -> datetime | None:
        return self.start or self.expected_start


@dataclass(frozen=True)
class ArtifactRecord:
    key: str
    type: str
    data: Any  # table: list of row dicts; markdown: str
    created: datetime | None
    flow_run_id: str | None = None


@dataclass(frozen=True)
class ProblemNote:
    problem_id: str
    text: str
    at: datetime | None
    by: str | None


@dataclass(frozen=True)
class DeploymentRecord:
    name: str
    flow: str | None
    active: bool  # not paused and at least one active schedule
    last_run_state: str | None = None
    last_run_at: datetime | None = None


@dataclass(frozen=True)
class PortSpec:
    port: int
    protocol: str
    service: str
    exposure: str  # public | internal
    comment: str


@dataclass(frozen=True)
class EnvironmentSpec:
    """What the configuration declares for one environment (no secrets)."""

    name: str
    url: str | None = None
    server_label: str | None = None
    declared: dict[str, str] = field(default_factory=dict)  # model, vcores, ram_gb, disk_gb, os, zone, ip, domain
    ports: tuple[PortSpec, ...] = ()


@dataclass(frozen=True)
class History:
    now: datetime
    environments: tuple[EnvironmentSpec, ...]
    deploy_runs: tuple[FlowRunRecord, ...] = ()
    task_runs: tuple[TaskRunRecord, ...] = ()
    maintenance_runs: tuple[FlowRunRecord, ...] = ()
    artifacts: dict[str, ArtifactRecord] = field(default_factory=dict)  # latest version per key
    notes: tuple[ProblemNote, ...] = ()
    cost_monitoring: tuple[DeploymentRecord, ...] = ()

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=_json_default, ensure_ascii=False, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "History":
        raw = json.loads(text)
        return cls(
            now=_dt(raw["now"]),
            environments=tuple(
                EnvironmentSpec(
                    name=e["name"], url=e.get("url"), server_label=e.get("server_label"),
                    declared=dict(e.get("declared") or {}),
                    ports=tuple(PortSpec(**p) for p in e.get("ports") or ()),
                )
                for e in raw["environments"]
            ),
            deploy_runs=tuple(_flow_run_from_dict(r) for r in raw.get("deploy_runs", ())),
            task_runs=tuple(_task_run_from_dict(r) for r in raw.get("task_runs", ())),
            maintenance_runs=tuple(_flow_run_from_dict(r) for r in raw.get("maintenance_runs", ())),
            artifacts={k: ArtifactRecord(**{**a, "created": _dt(a.get("created"))}) for k, a in raw.get("artifacts", {}).items()},
            notes=tuple(ProblemNote(**{**n, "at": _dt(n.get("at"))}) for n in raw.get("notes", ())),
            cost_monitoring=tuple(
                DeploymentRecord(**{**d, "last_run_at": _dt(d.get("last_run_at"))}) for d in raw.get("cost_monitoring", ())
            ),
        )


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _dt(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def _flow_run_from_dict(raw: dict) -> FlowRunRecord:
    return FlowRunRecord(**{
        **raw,
        "tags": tuple(raw.get("tags", ())),
        "expected_start": _dt(raw.get("expected_start")),
        "start": _dt(raw.get("start")),
        "end": _dt(raw.get("end")),
    })


def _task_run_from_dict(raw: dict) -> TaskRunRecord:
    return TaskRunRecord(**{
        **raw,
        "expected_start": _dt(raw.get("expected_start")),
        "start": _dt(raw.get("start")),
        "end": _dt(raw.get("end")),
    })


# --- environment settings -> EnvironmentSpec ------------------------------------------------

def environment_spec(name: str, settings: dict[str, Any]) -> EnvironmentSpec:
    """From one environment's section of environments.yaml (or the TechniciaEnvironment block's ``settings``)."""
    server = settings.get("server") or {}
    firewall = settings.get("firewall") or {}
    declared = {
        "model": server.get("model"),
        "vcores": server.get("vcores"),
        "ram_gb": server.get("ram_gb"),
        "disk_gb": server.get("disk_gb"),
        "os": server.get("os"),
        "zone": server.get("zone"),
        "ip": server.get("host"),
        "domain": settings.get("domain"),
    }
    ports = tuple(
        PortSpec(int(rule["port"]), rule.get("protocol", "tcp"), rule.get("service", ""), exposure, rule.get("comment", ""))
        for exposure in ("public", "internal")
        for rule in firewall.get(exposure) or ()
    )
    return EnvironmentSpec(
        name=name,
        url=settings.get("url"),
        server_label=server.get("label"),
        declared={k: str(v) for k, v in declared.items() if v is not None},
        ports=ports,
    )


def environments_from_project(project) -> tuple[EnvironmentSpec, ...]:
    """From a validated ``technicia_deploy.config.Project``."""
    return tuple(
        environment_spec(name, project.environments[name].model_dump(mode="json"))
        for name in ENVIRONMENTS if name in project.environments
    )


def bare_environments() -> tuple[EnvironmentSpec, ...]:
    return tuple(EnvironmentSpec(name) for name in ENVIRONMENTS)


# --- Prefect objects -> records ---------------------------------------------------------------

def _state_fields(obj: Any) -> tuple[str, str, str]:
    state = obj.state
    state_type = obj.state_type.value if obj.state_type is not None else "PENDING"
    name = obj.state_name or (state.name if state else state_type.title())
    message = (state.message if state else None) or ""
    return state_type, name, message


def flow_run_record(run: Any) -> FlowRunRecord:
    state_type, state_name, message = _state_fields(run)
    params = run.parameters or {}
    return FlowRunRecord(
        id=str(run.id),
        name=run.name,
        state_type=state_type,
        state_name=state_name,
        message=message,
        expected_start=run.expected_start_time,
        start=run.start_time,
        end=run.end_time,
        tags=tuple(run.tags or ()),
        parameters={k: str(params[k]) for k in KEPT_PARAMETERS if isinstance(params.get(k), (str, int, float))},
    )


def task_run_record(run: Any) -> TaskRunRecord | None:
    """A step task run (named by its catalogue id; a ``step:`` tag in older histories), or None for a task
    that is not a catalogue step. Its environment is its flow run's (filled in by the reader) unless tagged."""
    step_id = step_id_of(run)
    if step_id is None:
        return None
    state_type, state_name, message = _state_fields(run)
    return TaskRunRecord(
        id=str(run.id),
        flow_run_id=str(run.flow_run_id) if run.flow_run_id else None,
        step_id=step_id,
        environment=_tag_value(run.tags or (), "env:"),
        state_type=state_type,
        state_name=state_name,
        message=message,
        expected_start=run.expected_start_time,
        start=run.start_time,
        end=run.end_time,
    )


def artifact_record(artifact: Any) -> ArtifactRecord:
    data = artifact.data
    if artifact.type == "table" and isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            pass
    if isinstance(data, dict) and artifact.type == "table":
        # create_table_artifact also accepts columns -> lists; normalise to rows.
        keys = list(data)
        data = [dict(zip(keys, values)) for values in zip(*(data[k] for k in keys))]
    return ArtifactRecord(
        key=artifact.key,
        type=artifact.type or "",
        data=data,
        created=getattr(artifact, "created", None) or getattr(artifact, "updated", None),
        flow_run_id=str(artifact.flow_run_id) if artifact.flow_run_id else None,
    )


# --- the reader ---------------------------------------------------------------------------------

PAGE = 200  # the Prefect server's default maximum page size


def read_history(
    client: Any,
    *,
    environments: tuple[EnvironmentSpec, ...] | None = None,
    now: datetime | None = None,
    max_runs: int = 1000,
    overrides: Iterable[FlowRunRecord] = (),
) -> History:
    """Read everything the document shows, with a handful of API calls (``client``: a sync PrefectClient).

    ``overrides`` replace the server's copy of a flow run: a flow's end hook passes its
    own final state, which the server may not have stored yet when the hook runs.
    """
    from prefect.client.schemas import filters as F
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort, TaskRunSort

    now = now or datetime.now(timezone.utc)
    environments = environments or read_environment_blocks(client) or bare_environments()
    env_names = [e.name for e in environments]

    # 1. deploy runs, newest first.
    deploy: list[FlowRunRecord] = []
    while len(deploy) < max_runs:
        page = client.read_flow_runs(
            flow_run_filter=F.FlowRunFilter(tags=F.FlowRunFilterTags(all_=[DEPLOY_FLOW_TAG])),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=min(PAGE, max_runs - len(deploy)),
            offset=len(deploy),
        )
        deploy += [flow_run_record(r) for r in page]
        if len(page) < PAGE:
            break
    by_id = {r.id: r for r in deploy}
    for record in overrides:
        by_id[record.id] = record
    deploy = sorted(by_id.values(), key=lambda r: _sort_time(r.when), reverse=True)

    # 2. step task runs of the runs the document details: each environment's latest run and
    #    latest successful run (its version/SHA), plus every running one.
    detailed: set[str] = set()
    seen_latest: set[str] = set()
    seen_ok: set[str] = set()
    for run in deploy:
        env = run.environment
        if run.state_type in ("RUNNING", "PAUSED", "PENDING"):
            detailed.add(run.id)
        if env not in seen_latest:
            seen_latest.add(env)
            detailed.add(run.id)
        if run.state_type == "COMPLETED" and env not in seen_ok:
            seen_ok.add(env)
            detailed.add(run.id)
    tasks: dict[str, TaskRunRecord] = {}

    def add_tasks(runs: Iterable[Any], env: str | None = None) -> int:
        """Record the step task runs among ``runs`` (``env``: the environment their query selected)."""
        count = 0
        for raw in runs:
            count += 1
            record = task_run_record(raw)
            if record is not None:
                if record.environment is None:
                    known = by_id.get(record.flow_run_id)
                    record = _with_env(record, known.environment if known else env)
                tasks[record.id] = record
        return count

    if detailed:
        ids = sorted(detailed)
        offset = 0
        while True:
            got = add_tasks(client.read_task_runs(
                flow_run_filter=F.FlowRunFilter(id=F.FlowRunFilterId(any_=ids)),
                sort=TaskRunSort.EXPECTED_START_TIME_DESC, limit=PAGE, offset=offset,
            ))
            offset += got
            if got < PAGE:
                break

    # 3. every failed step, all time: each is a problem row.
    failed_filter = F.TaskRunFilter(
        state=F.TaskRunFilterState(type=F.TaskRunFilterStateType(any_=[StateType.FAILED, StateType.CRASHED])),
    )
    add_tasks(client.read_task_runs(
        flow_filter=F.FlowFilter(name=F.FlowFilterName(any_=[DEPLOY_FLOW])),
        task_run_filter=failed_filter, sort=TaskRunSort.EXPECTED_START_TIME_DESC, limit=PAGE,
    ))
    # A failed step of a run older than the runs read above: its environment is its flow run's tag.
    unplaced = sorted({t.flow_run_id for t in tasks.values() if t.environment is None and t.flow_run_id})
    if unplaced:
        env_of = {str(r.id): _tag_value(r.tags or (), "env:") for r in client.read_flow_runs(
            flow_run_filter=F.FlowRunFilter(id=F.FlowRunFilterId(any_=unplaced)), limit=len(unplaced))}
        for task_id, task in list(tasks.items()):
            if task.environment is None and task.flow_run_id in env_of:
                tasks[task_id] = _with_env(task, env_of[task.flow_run_id])

    # 4. successes after the first failure of each failing (environment, step): what resolves it.
    first_failure: dict[tuple[str, str], datetime] = {}
    for task in tasks.values():
        if task.state_type in FAILED_STATES and task.environment and task.when:
            key = (task.environment, task.step_id)
            first_failure[key] = min(first_failure.get(key, task.when), task.when)
    completed = F.TaskRunFilterStateType(any_=[StateType.COMPLETED])
    for (env, step_id), since in sorted(first_failure.items()):
        add_tasks(client.read_task_runs(
            flow_run_filter=F.FlowRunFilter(tags=F.FlowRunFilterTags(all_=[env_tag(env)])),
            task_run_filter=F.TaskRunFilter(
                name=F.TaskRunFilterName(any_=[step_id]),
                state=F.TaskRunFilterState(type=completed),
                start_time=F.TaskRunFilterStartTime(after_=since),
            ),
            sort=TaskRunSort.EXPECTED_START_TIME_ASC, limit=PAGE,
        ), env=env)

    # 5. production DNS successes (the DNS age note).
    if "production" in env_names:
        add_tasks(client.read_task_runs(
            flow_run_filter=F.FlowRunFilter(tags=F.FlowRunFilterTags(all_=[env_tag("production")])),
            task_run_filter=F.TaskRunFilter(
                name=F.TaskRunFilterName(any_=["https.dns"]),
                state=F.TaskRunFilterState(type=completed),
            ),
            sort=TaskRunSort.EXPECTED_START_TIME_DESC, limit=50,
        ), env="production")

    # 6. the latest observations published by other flows.
    keys = [f"{kind}-{env}" for kind in ARTIFACT_KINDS for env in env_names]
    artifacts = {
        a.key: artifact_record(a)
        for a in client.read_latest_artifacts(
            artifact_filter=F.ArtifactCollectionFilter(key=F.ArtifactCollectionFilterKey(any_=keys)), limit=len(keys),
        )
    }

    # 7. maintenance: what is scheduled next, and what ran last.
    maintenance_tags = F.FlowRunFilterTags(all_=[MAINTENANCE_TAG])
    waiting = [StateType.SCHEDULED, StateType.PENDING]
    # The scheduler plans many runs ahead (a daily flow fills 10 slots by itself): read enough to find the next
    # run of every maintenance flow, the renderer keeps the next one of each.
    upcoming = client.read_flow_runs(
        flow_run_filter=F.FlowRunFilter(tags=maintenance_tags, state=F.FlowRunFilterState(type=F.FlowRunFilterStateType(any_=waiting))),
        sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=UPCOMING_SCAN,
    )
    recent = client.read_flow_runs(
        flow_run_filter=F.FlowRunFilter(tags=maintenance_tags, state=F.FlowRunFilterState(type=F.FlowRunFilterStateType(not_any_=waiting))),
        sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=RECENT_SCAN,
    )
    maintenance = tuple(flow_run_record(r) for r in [*upcoming, *recent])

    return History(
        now=now,
        environments=tuple(environments),
        deploy_runs=tuple(deploy),
        task_runs=tuple(tasks.values()),
        maintenance_runs=maintenance,
        artifacts=artifacts,
        notes=read_problem_notes(client),
        cost_monitoring=read_cost_monitoring(client, maintenance),
    )


def _sort_time(value: datetime | None) -> datetime:
    return value or datetime.min.replace(tzinfo=timezone.utc)


def _with_env(record: TaskRunRecord, env: str | None) -> TaskRunRecord:
    return replace(record, environment=env)


def read_environment_blocks(client: Any) -> tuple[EnvironmentSpec, ...]:
    """Environment settings from the TechniciaEnvironment blocks (``blocks apply`` wrote them); () if none."""
    import httpx
    from prefect.exceptions import ObjectNotFound

    try:
        documents = client.read_block_documents_by_type("technicia-environment", include_secrets=False)
    except ObjectNotFound:
        return ()
    except httpx.HTTPStatusError as exc:  # the block type was never registered
        if exc.response.status_code == 404:
            return ()
        raise
    found: dict[str, EnvironmentSpec] = {}
    for doc in documents:
        data = doc.data or {}
        name, settings = data.get("name"), data.get("settings")
        if name in ENVIRONMENTS and isinstance(settings, dict):
            found[name] = environment_spec(name, settings)
    return tuple(found[name] for name in ENVIRONMENTS if name in found)


def note_variable_name(problem_id: str) -> str:
    return NOTE_VARIABLE_PREFIX + re.sub(r"[^a-z0-9]", "_", problem_id.lower())


def read_problem_notes(client: Any) -> tuple[ProblemNote, ...]:
    """Every hand-written problem note: one Prefect Variable per problem, value a list of notes."""
    response = client.request(
        "POST", "/variables/filter",
        json={"variables": {"name": {"like_": NOTE_VARIABLE_PREFIX + "%"}}, "limit": PAGE, "offset": 0},
    )
    notes: list[ProblemNote] = []
    for variable in response.json():
        value = variable.get("value")
        for entry in value if isinstance(value, list) else ():
            if isinstance(entry, dict) and entry.get("problem_id") and entry.get("text"):
                notes.append(ProblemNote(entry["problem_id"], entry["text"], _dt(entry.get("at")), entry.get("by")))
    return tuple(sorted(notes, key=lambda n: _sort_time(n.at)))


def read_cost_monitoring(client: Any, maintenance: tuple[FlowRunRecord, ...]) -> tuple[DeploymentRecord, ...]:
    from prefect.client.schemas import filters as F

    deployments = client.read_deployments(
        deployment_filter=F.DeploymentFilter(tags=F.DeploymentFilterTags(all_=[COST_MONITORING_TAG])), limit=20,
    )
    out = []
    for dep in deployments:
        schedules = getattr(dep, "schedules", None) or []
        active = not getattr(dep, "paused", False) and any(getattr(s, "active", True) for s in schedules)
        last = next(
            (r for r in maintenance if COST_MONITORING_TAG in r.tags and r.state_type in FINAL_STATES), None,
        )
        out.append(DeploymentRecord(
            name=dep.name, flow=_tag_value(dep.tags or (), "flow:"), active=active,
            last_run_state=last.state_type if last else None, last_run_at=(last.end or last.when) if last else None,
        ))
    return tuple(out)

