"""Render the tracking document (markdown, fr or en) from a :class:`History`. Pure: no I/O.

Sections and rows follow the seed document (docs/tracking.md maps each one to
its source). Rows of the process tables come from the step catalogue only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable

from technicia_deploy.steps import PHASES, step as catalogue_step
from technicia_deploy.tracking.history import FAILED_STATES, FINAL_STATES, FlowRunRecord, History, TaskRunRecord
from technicia_deploy.tracking.labels import Labels
from technicia_deploy.tracking.messages import parse_step_message
from technicia_deploy.tracking.problems import Problem, error_text, find_problems, rollbacks_by_run

NOT_STARTED, RUNNING, COMPLETED, BLOCKED, PLANNED = "not_started", "running", "completed", "blocked", "planned"
ACTIVE_STATES = frozenset({"RUNNING", "PENDING", "PAUSED", "CANCELLING"})
SERVER_PARAMETERS = ("model", "vcores", "ram_gb", "disk_gb", "os", "zone", "ip", "domain")
SERVICES = ("documentai", "vision", "voyageai", "anthropic")
MAX_COMMENT = 300
_EARLIEST = datetime.min.replace(tzinfo=timezone.utc)
_SHA = re.compile(r"\b([0-9a-f]{12,40})\b")


# --- small helpers -------------------------------------------------------------------------------

def cell(value: Any, limit: int = MAX_COMMENT) -> str:
    """A table cell: one line, pipes escaped, bounded length."""
    text = " ".join(str(value).split()) if value not in (None, "") else "-"
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|")


def table(headers: Iterable[str], rows: Iterable[Iterable[Any]]) -> list[str]:
    headers = list(headers)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("-" * (len(h) + 2) for h in headers) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return lines


def _time(value: datetime | None) -> datetime:
    return value or _EARLIEST


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if not value:
        return None
    text = str(value).strip()
    if text.endswith(" UTC"):  # tasks/api_keys.py writes '2025-03-24 10:00:00 UTC'
        text = text[:-4] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class StepRow:
    status: str
    start: datetime | None
    end: datetime | None
    comment: str


class _Index:
    """The history indexed once, so each section is a lookup (1,000 runs render in milliseconds)."""

    def __init__(self, history: History):
        self.history = history
        self.runs = sorted(history.deploy_runs, key=lambda r: _time(r.when), reverse=True)
        self.runs_by_id = {r.id: r for r in self.runs}
        self.by_env: dict[str, list[FlowRunRecord]] = {}
        for run in self.runs:
            self.by_env.setdefault(run.environment or "", []).append(run)
        # per flow run, the latest task run of each step (a re-run inside one flow run replaces it)
        self.steps_of_run: dict[str, dict[str, TaskRunRecord]] = {}
        for task in history.task_runs:
            if task.flow_run_id is None:
                continue
            steps = self.steps_of_run.setdefault(task.flow_run_id, {})
            known = steps.get(task.step_id)
            if known is None or _time(task.when) >= _time(known.when):
                steps[task.step_id] = task
        self.problems = find_problems(history.task_runs, self.runs_by_id, history.notes)
        self.rollbacks = rollbacks_by_run(history.task_runs)  # flow run id -> release it went back to

    def latest(self, env: str) -> FlowRunRecord | None:
        runs = self.by_env.get(env)
        return runs[0] if runs else None

    def latest_completed(self, env: str) -> FlowRunRecord | None:
        return next((r for r in self.by_env.get(env, ()) if r.state_type == "COMPLETED"), None)

    def sha(self, run: FlowRunRecord) -> str | None:
        if run.sha:
            return run.sha[:12]
        clone = self.steps_of_run.get(run.id, {}).get("services.clone")
        match = _SHA.search(clone.message) if clone else None
        return match.group(1)[:12] if match else None


# --- step and phase status ----------------------------------------------------------------------

def step_row(task: TaskRunRecord | None, run: FlowRunRecord, t: Labels) -> StepRow:
    if task is None:
        return StepRow(NOT_STARTED, None, None, "")
    state = task.state_type
    if state == "COMPLETED":
        outcome, summary = parse_step_message(task.message)
        if outcome == "unchanged":
            summary = f"{t('outcome_unchanged')} {summary}".strip()
        return StepRow(COMPLETED, task.start, task.end, summary)
    if state in FAILED_STATES or state == "CANCELLED":
        return StepRow(BLOCKED, task.start, task.end, error_text(task.message) or task.state_name)
    if run.state_type in FINAL_STATES:
        # The flow run ended but this step never did: it is stuck, not running.
        return StepRow(BLOCKED, task.start, None, task.message or task.state_name)
    return StepRow(RUNNING, task.start, None, task.message or task.state_name)


def phase_status(rows: list[StepRow], run: FlowRunRecord) -> str:
    statuses = {r.status for r in rows}
    if BLOCKED in statuses:
        return BLOCKED
    if statuses == {NOT_STARTED}:
        return NOT_STARTED
    if statuses == {COMPLETED} or (run.state_type == "COMPLETED" and RUNNING not in statuses):
        return COMPLETED
    return RUNNING


def _status_label(status: str, t: Labels) -> str:
    return t(f"st_{status}")


def _owner(run: FlowRunRecord, t: Labels) -> str:
    owner = run.operator or "-"
    if run.approver:
        owner += f" ({t('approved_by', name=run.approver)})"
    return owner


# --- sections ---------------------------------------------------------------------------------------

def _overall(ix: _Index, t: Labels) -> tuple[str, str | None, str]:
    """(overall status, current environment, next step)."""
    envs = [e.name for e in ix.history.environments]
    latest = {env: ix.latest(env) for env in envs}
    real = {env: run for env, run in latest.items() if run is not None and run.state_type not in ("SCHEDULED",)}
    if not real:
        first = envs[0] if envs else "test"
        return PLANNED, None, t("next_deploy_env", env=t.env(first))
    active = [r for r in ix.runs if r.state_type in ACTIVE_STATES]
    if active:
        run = active[0]
        steps = ix.steps_of_run.get(run.id, {})
        pending = next((s for p in PHASES for s in p.steps if steps.get(s.id) is None or steps[s.id].state_type != "COMPLETED"), None)
        label = pending.label(t.lang) if pending else "-"
        return RUNNING, run.environment, t("next_running", step=label, env=t.env(run.environment or ""))
    failed = sorted(
        (r for r in real.values() if r.state_type in FAILED_STATES | {"CANCELLED"}), key=lambda r: _time(r.when), reverse=True,
    )
    if failed:
        run = failed[0]
        env = run.environment or ""
        problem = next((p for p in ix.problems if p.environment == env and not p.resolved), None)
        if problem:
            nxt = t("next_fix", id=problem.id, step=catalogue_label(problem.step_id, t), env=t.env(env))
        else:
            nxt = t("next_rerun", env=t.env(env))
        return BLOCKED, env, nxt
    newest = ix.runs[0]
    release = next((r.release for r in ix.runs if r.state_type == "COMPLETED" and r.release), None)
    for env in envs:
        done = ix.latest_completed(env)
        if done is None or (release and done.release != release):
            return COMPLETED, newest.environment, t("next_deploy_release", release=release or "-", env=t.env(env))
    return COMPLETED, newest.environment, t("next_none")


def catalogue_label(step_id: str, t: Labels) -> str:
    try:
        return catalogue_step(step_id).label(t.lang)
    except KeyError:
        return step_id


def _last_update(ix: _Index) -> datetime:
    h = ix.history
    times = [r.end or r.start for r in ix.runs]
    times += [task.end or task.start for task in h.task_runs]
    times += [r.end or r.start for r in h.maintenance_runs]
    times += [a.created for a in h.artifacts.values()]
    known = [x for x in times if x is not None]
    return max(known) if known else h.now


def section_global(ix: _Index, t: Labels) -> list[str]:
    status, env, nxt = _overall(ix, t)
    return [
        f"## {t('global')}", "",
        f"**{t('last_update')} :** {t.datetime(_last_update(ix))}  " if t.lang == "fr" else f"**{t('last_update')}:** {t.datetime(_last_update(ix))}  ",
        _kv(t, "overall", _status_label(status, t)) + "  ",
        _kv(t, "current_env", t.env(env) if env else "N/A") + "  ",
        _kv(t, "next_step", nxt), "",
    ]


def _kv(t: Labels, key: str, value: str) -> str:
    sep = " :" if t.lang == "fr" else ":"
    return f"**{t(key)}{sep}** {value}"


def section_environments(ix: _Index, t: Labels) -> list[str]:
    rows = []
    for spec in ix.history.environments:
        latest = ix.latest(spec.name)
        done = ix.latest_completed(spec.name)
        if latest is None or latest.state_type == "SCHEDULED":
            status = t("env_not_deployed")
        elif latest.state_type in ACTIVE_STATES:
            status = t("env_deploying")
        elif latest.state_type == "COMPLETED":
            status = t("env_deployed")
        elif latest.id in ix.rollbacks:
            status = t("env_rolled_back", failed=latest.release or "-", release=ix.rollbacks[latest.id])
        else:
            status = t("env_failed")
        version = "-"
        if done is not None:
            sha = ix.sha(done)
            version = f"{done.release or '-'}" + (f" ({sha})" if sha else "")
        rows.append([t.env(spec.name), status, spec.url, spec.server_label, version, t.datetime(done.end if done else None)])
    headers = [t("col_env"), t("col_status"), t("col_url"), t("col_server"), t("col_version"), t("col_deployed_at")]
    return [f"## {t('environments')}", "", *table(headers, rows), ""]


def _display(param: str, value: Any, t: Labels) -> str:
    if value in (None, ""):
        return "-"
    if param == "vcores":
        return t("unit_vcores", n=value)
    if param in ("ram_gb", "disk_gb"):
        return t("unit_gb", n=value)
    return str(value)


def _same(a: Any, b: Any) -> bool:
    a, b = str(a).strip().lower(), str(b).strip().lower()
    try:
        return float(a) == float(b)
    except ValueError:
        return a == b


def _observed_rows(artifact) -> dict[str, dict]:
    rows = artifact.data if artifact and isinstance(artifact.data, list) else []
    return {str(r.get("parameter")): r for r in rows if isinstance(r, dict) and r.get("parameter")}


def section_server(ix: _Index, t: Labels) -> list[str]:
    out = [f"## {t('server_config')}", ""]
    headers = [t("col_param"), t("col_declared"), t("col_ovh"), t("col_observed_server"), t("col_check")]
    for spec in ix.history.environments:
        key = f"server-{spec.name}"
        artifact = ix.history.artifacts.get(key)
        observed = _observed_rows(artifact)
        out += [f"### {t('server_of', env=t.env(spec.name), label=spec.server_label or '-')}", ""]
        if artifact is None:
            out += [t("server_not_observed", key=key), ""]
        rows = []
        for param in SERVER_PARAMETERS:
            declared = spec.declared.get(param)
            row = observed.get(param, {})
            seen = [v for v in (row.get("ovh"), row.get("server")) if v not in (None, "")]
            if not seen:
                check = t("not_observed") if artifact is not None else "-"
            elif declared is not None:
                check = t("same") if all(_same(v, declared) for v in seen) else t("differs")
            else:
                check = t("same") if all(_same(v, seen[0]) for v in seen) else t("differs")
            rows.append([t(f"p_{param}"), _display(param, declared, t), _display(param, row.get("ovh"), t),
                         _display(param, row.get("server"), t), check])
        out += [*table(headers, rows), ""]
    return out


def section_firewall(ix: _Index, t: Labels) -> list[str]:
    out = [f"## {t('firewall')}", ""]
    headers = [t("col_port"), t("col_service"), t("col_exposure"), t("col_observed"), t("col_comment")]
    for spec in ix.history.environments:
        key = f"security-{spec.name}"
        artifact = ix.history.artifacts.get(key)
        observed: dict[tuple[int, str], dict] = {}
        checked: list[datetime] = []
        for row in artifact.data if artifact and isinstance(artifact.data, list) else ():
            try:
                observed[(int(row["port"]), str(row.get("protocol") or "tcp"))] = row
            except (KeyError, TypeError, ValueError):
                continue
            when = _parse_time(row.get("checked_at"))
            if when:
                checked.append(when)
        out += [f"### {t.env(spec.name)}", ""]
        if artifact is None:
            out += [t("fw_not_tested", key=key), ""]
        else:
            out += [t("fw_tested", when=t.datetime(max(checked) if checked else artifact.created)), ""]
        rows = []
        for port in spec.ports:
            row = observed.pop((port.port, port.protocol), None)
            rows.append([f"{port.port}/{port.protocol}", port.service, t(f"exp_{port.exposure}"),
                         _observation(row, port.exposure, t), port.comment])
        for (number, proto), row in sorted(observed.items()):
            if str(row.get("observed", "")).lower() == "open":  # open but declared nowhere
                rows.append([f"{number}/{proto}", row.get("service") or "-", t("exp_undeclared"),
                             _observation(row, "undeclared", t), "-"])
        out += [*table(headers, rows), ""]
    return out


def _observation(row: dict | None, exposure: str, t: Labels) -> str:
    if row is None:
        return t("obs_none")
    seen = str(row.get("observed", "")).lower()
    text = t.get(f"obs_{seen}", seen or "-")
    expected_open = exposure == "public"
    if seen in ("open", "closed", "filtered") and (seen == "open") != expected_open:
        text += f" {t('fw_mismatch')}"
    if row.get("finding"):  # the security test's own verdict on this port (technicia_deploy/checks/security.py)
        text += f" ({row['finding']})"
    return text


def section_process(ix: _Index, t: Labels, env: str) -> list[str]:
    out = [f"## {t('process', env=t.env(env))}", ""]
    run = ix.latest(env)
    headers = [t("col_step"), t("col_status"), t("col_start"), t("col_end"), t("col_owner"), t("col_comments")]
    if run is None:
        out += [t("no_run"), ""]
        return out + [*table(headers, _not_started_rows(t)), ""]
    out += [t("run_line", name=run.name, release=run.release or "-", state=run.state_name, operator=run.operator or "-"), ""]
    steps = ix.steps_of_run.get(run.id, {})
    owner = _owner(run, t)
    rows: list[list[Any]] = []
    for phase in PHASES:
        step_rows = [(s, step_row(steps.get(s.id), run, t)) for s in phase.steps]
        status = phase_status([r for _, r in step_rows], run)
        starts = [r.start for _, r in step_rows if r.start]
        ends = [r.end for _, r in step_rows if r.end]
        phase_end = max(ends) if ends and status == COMPLETED else None
        rows.append([f"**{phase.label(t.lang)}**", _status_label(status, t), t.datetime(min(starts) if starts else None),
                     t.datetime(phase_end), owner if starts else "-", "-"])
        for s, r in step_rows:
            rows.append([f"- {s.label(t.lang)}", _status_label(r.status, t), t.datetime(r.start), t.datetime(r.end),
                         owner if r.status != NOT_STARTED else "-", r.comment])
    return out + [*table(headers, rows), ""]


def _not_started_rows(t: Labels) -> list[list[str]]:
    rows = []
    for phase in PHASES:
        rows.append([f"**{phase.label(t.lang)}**", _status_label(NOT_STARTED, t), "-", "-", "-", "-"])
        rows += [[f"- {s.label(t.lang)}", _status_label(NOT_STARTED, t), "-", "-", "-", "-"] for s in phase.steps]
    return rows


def service_id(name: Any) -> str:
    """'google-documentai', 'Document AI' -> 'documentai'; unknown names are kept."""
    text = re.sub(r"[^a-z]", "", str(name).lower())
    for needle, sid in (("document", "documentai"), ("vision", "vision"), ("voyage", "voyageai"),
                        ("anthropic", "anthropic"), ("claude", "anthropic")):
        if needle in text:
            return sid
    return str(name)


def key_status(status: Any, t: Labels) -> str:
    """The smoke call's status in words; 'invalid' is tested before anything that 'valid' could match."""
    text = str(status or "").strip().lower()
    if text in ("ok", "valid", "success", "passed", "pass"):
        return t("key_ok")
    for needles, key in (
        (("quota", "spend"), "key_quota"),
        (("rate",), "key_rate_limited"),
        (("forbidden", "permission", "denied"), "key_forbidden"),
        (("invalid", "unauthor", "auth", "revoked"), "key_invalid"),
        (("unreach", "timeout", "connect", "network"), "key_unreachable"),
        (("transient",), "key_transient"),
        (("misconfigured",), "key_misconfigured"),
        (("missing", "not_configured", "absent"), "key_not_configured"),
    ):
        if any(n in text for n in needles):
            return t(key)
    return f"{t('key_error')} ({cell(status, 40)})" if text else t("key_not_checked")


def _smoke_rows(ix: _Index, env: str) -> dict[str, dict]:
    artifact = ix.history.artifacts.get(f"api-keys-{env}")
    rows = artifact.data if artifact and isinstance(artifact.data, list) else []
    return {service_id(r.get("service")): r for r in rows if isinstance(r, dict) and r.get("service")}


def section_api_keys(ix: _Index, t: Labels) -> list[str]:
    envs = [e.name for e in ix.history.environments]
    smoke = {env: _smoke_rows(ix, env) for env in envs}
    services = list(SERVICES) + sorted({s for rows in smoke.values() for s in rows if s not in SERVICES})
    rows = []
    for sid in services:
        for env in envs:
            row = smoke[env].get(sid)
            if row is None:
                rows.append([t.get(f"svc_{sid}", sid), t.env(env), t("key_not_checked"), "-", "-", "-", "-"])
                continue
            latency = row.get("latency_ms")
            checked = _parse_time(row.get("checked_at"))
            rows.append([
                t.get(f"svc_{sid}", sid), t.env(env), key_status(row.get("status"), t),
                t.datetime(checked) if checked else cell(row.get("checked_at")),
                f"{float(latency):.0f} ms" if _is_number(latency) else "-",
                cell(row.get("key_fingerprint") or row.get("fingerprint"), 24),
                _key_comment(row),
            ])
    headers = [t("col_service"), t("col_env"), t("col_status"), t("col_checked"), t("col_latency"), t("col_fingerprint"),
               t("col_comments")]
    return [f"## {t('api_keys')}", "", *table(headers, rows), ""]


def _key_comment(row: dict) -> str:
    """What went wrong and its fix, or the quota headroom the service reported."""
    if str(row.get("status", "")).lower() != "ok":
        return "; ".join(str(x) for x in (row.get("detail"), row.get("fix")) if x) or "-"
    quota = row.get("quota_headroom")
    return str(quota) if quota and quota != "not reported" else "-"


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def section_problems(ix: _Index, t: Labels) -> list[str]:
    rows = []
    for p in ix.problems:
        description = f"{catalogue_label(p.step_id, t)} : {p.error}" if t.lang == "fr" else f"{catalogue_label(p.step_id, t)}: {p.error}"
        if p.failures > 1:
            description += f" ({t('pb_failures', n=p.failures)})"
        rows.append([p.id, t.env(p.environment), description, t("pb_resolved" if p.resolved else "pb_open"),
                     t.datetime(p.identified_at), t.datetime(p.resolved_at), _solution(p, t)])
    if not rows:
        rows = [["-"] * 7]
    headers = [t("col_id"), t("col_env"), t("col_description"), t("col_status"), t("col_identified"),
               t("col_resolved"), t("col_solution")]
    return [f"## {t('problems')}", "", *table(headers, rows), ""]


def _solution(p: Problem, t: Labels) -> str:
    parts = [t("pb_rolled_back", release=p.rolled_back_to)] if p.rolled_back_to else []
    if p.resolved:
        if p.resolved_by_release:
            parts.append(t("pb_resolved_by", release=p.resolved_by_release))
        else:
            parts.append(t("pb_resolved_by_run", name=p.resolved_by_run or "-"))
    for note in p.notes:
        who = ", ".join(x for x in (note.by, t.datetime(note.at) if note.at else None) if x)
        parts.append(f"{note.text} ({who})" if who else note.text)
    return "; ".join(parts) or "-"


WAITING_STATES = ("SCHEDULED", "PENDING")
MAX_RECENT_MAINTENANCE = 15  # past maintenance rows shown, newest first


def _covered_by_environment_runs(run: FlowRunRecord, runs: Iterable[FlowRunRecord]) -> bool:
    """A finished maintenance run made for several environments (or started in-process) whose per-environment
    runs (tagged ``env:``, same flow, started within it) are in the table: they say what was done, each in its
    own row; the run that created them would only repeat it."""
    if run.state_type in WAITING_STATES or _tag(run, "env:") or run.start is None:
        return False
    end = run.end or datetime.max.replace(tzinfo=timezone.utc)
    return any(other is not run and other.flow == run.flow and _tag(other, "env:") and other.start
               and run.start <= other.start <= end for other in runs)


def _tag(run: FlowRunRecord, prefix: str) -> str | None:
    return next((tag[len(prefix):] for tag in run.tags if tag.startswith(prefix)), None)


def _next_of_each(upcoming: list[FlowRunRecord]) -> list[FlowRunRecord]:
    """The next scheduled run of each flow and environment (the scheduler plans many runs ahead of a daily one)."""
    seen, kept = set(), []
    for run in upcoming:
        key = (run.flow, run.environment)
        if key not in seen:
            seen.add(key)
            kept.append(run)
    return kept


def maintenance_description(run: FlowRunRecord, t: Labels) -> str:
    """What the run did (its final state's message, written by the flow: technicia_deploy/maintenance.py), what an
    upcoming run will do (its flow's purpose: a scheduled run has a random name until it starts), or, for a run that
    said nothing, its name; a failure adds why."""
    from technicia_deploy.maintenance import failure_text, is_description

    flow = run.flow or "-"
    if run.state_type in WAITING_STATES:
        return t.get(f"mt_what_{flow}", t("mt_what", flow=t.get(f"flow_{flow}", flow)))
    if run.state_type in FAILED_STATES:
        why = failure_text(run.message)
        return (f"{run.name} : {why}" if t.lang == "fr" else f"{run.name}: {why}") if why else run.name
    return run.message if is_description(run.message) else run.name


def section_maintenance(ix: _Index, t: Labels) -> list[str]:
    """Upcoming runs (soonest first), then past ones (newest first); times in the team's time zone (the schedules'
    own, deployments.yaml)."""
    from technicia_deploy.maintenance import TEAM_TIMEZONE

    runs = ix.history.maintenance_runs
    shown = [r for r in runs if not _covered_by_environment_runs(r, runs)]
    upcoming = _next_of_each(sorted((r for r in shown if r.state_type in WAITING_STATES), key=lambda r: _time(r.expected_start)))
    recent = sorted((r for r in shown if r.state_type not in WAITING_STATES), key=lambda r: _time(r.when),
                    reverse=True)[:MAX_RECENT_MAINTENANCE]
    rows = []
    for run in [*upcoming, *recent]:
        flow = run.flow or "-"
        when = run.expected_start if run.state_type in WAITING_STATES else (run.start or run.expected_start)
        rows.append([t.datetime(when, zone=TEAM_TIMEZONE), t.get(f"flow_{flow}", flow),
                     t.env(run.environment) if run.environment else "-",
                     maintenance_description(run, t), run.operator or t("mt_scheduler"), _maintenance_status(run, t)])
    if not rows:
        rows = [["-"] * 6]
    headers = [t("col_date"), t("col_type"), t("col_env"), t("col_description"), t("col_owner"), t("col_status")]
    return [f"## {t('maintenance')}", "", *table(headers, rows), ""]


def _maintenance_status(run: FlowRunRecord, t: Labels) -> str:
    kind = run.state_type
    if kind in ("SCHEDULED", "PENDING"):
        return t("mt_scheduled")
    if kind in ACTIVE_STATES:
        return t("mt_running")
    if kind == "COMPLETED":
        return t("mt_done")
    if kind == "CANCELLED":
        return t("mt_cancelled")
    return t("mt_failed")


def section_notes(ix: _Index, t: Labels) -> list[str]:
    return [f"## {t('notes')}", "", *(f"- {line}" for line in notes_checks(ix, t)), ""]


def notes_checks(ix: _Index, t: Labels) -> list[str]:
    return [_note_quotas(ix, t), _note_dns(ix, t), _note_costs(ix, t), _note_docs(ix, t), *_notes_drift(ix, t)]


DRIFT_FLOW = "maintenance-drift"


def _notes_drift(ix: _Index, t: Labels) -> list[str]:
    """One note per environment whose drift was checked: its latest drift run's verdict, each difference by name
    (its message). None before the first drift check."""
    from technicia_deploy.maintenance import failure_text

    latest: dict[str, FlowRunRecord] = {}
    for run in sorted(ix.history.maintenance_runs, key=lambda r: _time(r.when), reverse=True):
        env = _tag(run, "env:")
        if run.flow == DRIFT_FLOW and env and run.state_type in FINAL_STATES and env not in latest:
            latest[env] = run
    notes = []
    from technicia_deploy.config import ENVIRONMENTS

    for env in sorted(latest, key=lambda e: ENVIRONMENTS.index(e) if e in ENVIRONMENTS else len(ENVIRONMENTS)):
        run = latest[env]
        when = t.datetime(run.end or run.when)
        if run.state_type == "COMPLETED":
            notes.append(f"{t('ok')} " + t("note_drift_ok", env=t.env(env), when=when))
        else:
            notes.append(f"{t('warn')} " + t("note_drift_bad", env=t.env(env), when=when,
                                             detail=cell(failure_text(run.message), 600)))
    return notes


def _note_quotas(ix: _Index, t: Labels) -> str:
    rows = _smoke_rows(ix, "production")
    if not rows:
        return f"{t('warn')} " + t("note_quotas_bad", detail=t("note_quotas_none"))
    ok_label = t("key_ok")
    failing = [t.get(f"svc_{sid}", sid) for sid in SERVICES if sid not in rows or key_status(rows[sid].get("status"), t) != ok_label]
    if failing:
        return f"{t('warn')} " + t("note_quotas_bad", detail=t("note_quotas_failing", services=", ".join(failing)))
    checked = [x for x in (_parse_time(r.get("checked_at")) for r in rows.values()) if x]
    line = f"{t('ok')} " + t("note_quotas_ok", when=t.datetime(max(checked) if checked else None))
    approved = next((r for r in ix.by_env.get("production", ()) if r.approver), None)
    if approved is not None and "quotas-confirmed" in approved.tags:
        line += " " + t("note_quotas_confirmed", who=approved.approver, when=t.datetime(approved.start or approved.when))
    return line


def _note_dns(ix: _Index, t: Labels) -> str:
    done = [task for task in ix.history.task_runs
            if task.environment == "production" and task.step_id == "https.dns" and task.state_type == "COMPLETED"]
    if not done:
        return f"{t('warn')} " + t("note_dns_none")
    changed = [task for task in done if parse_step_message(task.message)[0] == "changed"]
    dns = max(changed, key=lambda x: _time(x.end)) if changed else min(done, key=lambda x: _time(x.end))
    dns_time = dns.end or dns.when or ix.history.now
    # Measured against the latest production deployment that ran with this DNS configuration
    # (the very run that changed it counts: 0 h), else against now (a deployment still to come).
    since = [r for r in ix.by_env.get("production", ()) if r.start is not None and (r.end is None or r.end >= dns_time)]
    if since:
        ref_run = since[0]
        ref_time, ref_text = ref_run.start, t("ref_deploy", when=t.datetime(ref_run.start))
    else:
        ref_time, ref_text = ix.history.now, t("ref_now")
    hours = max(0, int((ref_time - dns_time).total_seconds() // 3600))
    key = "note_dns_ok" if hours >= 24 else "note_dns_short"
    return f"{t('ok' if hours >= 24 else 'warn')} " + t(key, when=t.datetime(dns_time), hours=hours, ref=ref_text)


def _note_costs(ix: _Index, t: Labels) -> str:
    active = [d for d in ix.history.cost_monitoring if d.active]
    if not active:
        return f"{t('warn')} " + t("note_cost_none")
    dep = active[0]
    last = ""
    if dep.last_run_state:
        status = {"COMPLETED": t("mt_done"), "CANCELLED": t("mt_cancelled")}.get(dep.last_run_state, t("mt_failed"))
        last = t("note_cost_last", state=status, when=t.datetime(dep.last_run_at))
    return f"{t('ok')} " + t("note_cost_ok", name=dep.name, last=last)


def _note_docs(ix: _Index, t: Labels) -> str:
    approved = next((r for r in ix.by_env.get("production", ()) if r.approver), None)
    if approved is None:
        return f"{t('warn')} " + t("note_docs_none")
    who, when = approved.approver, t.datetime(approved.start or approved.when)
    if "docs-confirmed" in approved.tags:
        return f"{t('ok')} " + t("note_docs_ok", who=who, when=when)
    return f"{t('warn')} " + t("note_docs_bad", who=who, when=when)


# --- the document ---------------------------------------------------------------------------------

def render(history: History, lang: str = "fr") -> str:
    t = Labels(lang)
    ix = _Index(history)
    lines = [f"# {t('title')}", "", f"_{t('generated', now=t.datetime(history.now))}_", ""]
    lines += section_global(ix, t)
    lines += section_environments(ix, t)
    lines += section_server(ix, t)
    lines += section_firewall(ix, t)
    for spec in history.environments:
        lines += section_process(ix, t, spec.name)
    lines += section_api_keys(ix, t)
    lines += section_problems(ix, t)
    lines += section_maintenance(ix, t)
    lines += section_notes(ix, t)
    return "\n".join(lines).rstrip() + "\n"


def overall_status(history: History) -> str:
    """'planned' | 'running' | 'completed' | 'blocked' (for callers that need the state, not the text)."""
    return _overall(_Index(history), Labels("en"))[0]


def problems(history: History) -> list[Problem]:
    return _Index(history).problems
