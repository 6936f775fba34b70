"""Builders of recorded run histories: deployment runs shaped like the flow contract (docs/tracking.md)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from technicia_deploy.steps import STEPS
from technicia_deploy.tracking.history import (
    ArtifactRecord,
    DeploymentRecord,
    EnvironmentSpec,
    FlowRunRecord,
    History,
    PortSpec,
    ProblemNote,
    TaskRunRecord,
)

T0 = datetime(2025, 3, 24, 9, 0, tzinfo=timezone.utc)
STEP_SECONDS = 20


def spec(name: str) -> EnvironmentSpec:
    host = "technicia.exemple.fr" if name == "production" else f"{name}-technicia.exemple.fr"
    big = name == "production"
    return EnvironmentSpec(
        name=name,
        url=f"https://{host}",
        server_label=f"VPS-{name.upper()}-XYZ",
        declared={"model": "VPS-SSD-4" if big else "VPS-SSD-2", "vcores": "4" if big else "2", "ram_gb": "8" if big else "4",
                  "disk_gb": "160" if big else "80", "os": "Ubuntu Server 22.04 LTS", "zone": "GRA11", "domain": host},
        ports=(
            PortSpec(22, "tcp", "SSH", "public", "Accès administrateur"),
            PortSpec(80, "tcp", "HTTP", "public", "Redirection vers HTTPS"),
            PortSpec(443, "tcp", "HTTPS", "public", "Frontend + API"),
            PortSpec(5678, "tcp", "n8n", "internal", "Administration des workflows"),
            PortSpec(6333, "tcp", "Qdrant API", "internal", "Base vectorielle"),
        ),
    )


ENVS = (spec("test"), spec("staging"), spec("production"))


@dataclass
class HistoryBuilder:
    """Add deployment runs one after the other; each starts after the previous one ended."""

    now: datetime = T0 + timedelta(days=30)
    clock: datetime = T0
    runs: list[FlowRunRecord] = field(default_factory=list)
    tasks: list[TaskRunRecord] = field(default_factory=list)
    maintenance: list[FlowRunRecord] = field(default_factory=list)
    artifacts: dict[str, ArtifactRecord] = field(default_factory=dict)
    notes: list[ProblemNote] = field(default_factory=list)
    cost: list[DeploymentRecord] = field(default_factory=list)

    def deploy(
        self,
        env: str,
        release: str,
        *,
        fail_at: str | None = None,
        error: str = "RuntimeError: step failed",
        running_at: str | None = None,
        operator: str = "alice",
        extra_tags: tuple[str, ...] = (),
        sha: str | None = "0123456789abcdef0123",
        unchanged: tuple[str, ...] = (),
        gap: timedelta = timedelta(hours=1),
    ) -> FlowRunRecord:
        """One deploy-environment run: steps in catalogue order until ``fail_at`` fails or ``running_at`` is running."""
        run_id = str(uuid.uuid4())
        start = self.clock
        t = start
        state = "COMPLETED"
        for step in STEPS:
            tid = str(uuid.uuid4())
            if step.id == running_at:
                self.tasks.append(TaskRunRecord(tid, run_id, step.id, env, "RUNNING", "Running", "", t, t, None))
                state = "RUNNING"
                break
            end = t + timedelta(seconds=STEP_SECONDS)
            if step.id == fail_at:
                self.tasks.append(TaskRunRecord(tid, run_id, step.id, env, "FAILED", "Failed",
                                                f"Task run encountered an exception {error}", t, t, end))
                state = "FAILED"
                t = end
                break
            outcome = "unchanged" if step.id in unchanged else "changed"
            summary = f"{step.id} done" + (f" at commit {sha}" if step.id == "services.clone" and sha else "")
            self.tasks.append(TaskRunRecord(tid, run_id, step.id, env, "COMPLETED", "Completed", f"{outcome}: {summary}", t, t, end))
            t = end
        tags = (f"env:{env}", f"release:{release}", "flow:deploy-environment", *extra_tags)
        if sha and state == "COMPLETED":
            tags += (f"sha:{sha[:12]}",)
        message = {"COMPLETED": "All states completed.", "FAILED": f"Flow run encountered an exception: {error}",
                   "RUNNING": ""}[state]
        run = FlowRunRecord(
            id=run_id, name=f"run-{len(self.runs) + 1}", state_type=state, state_name=state.title(), message=message,
            expected_start=start, start=start, end=None if state == "RUNNING" else t, tags=tags,
            parameters={"environment": env, "version": release, "operator": operator},
        )
        self.runs.append(run)
        self.clock = t + gap
        return run

    def artifact(self, key: str, rows, created: datetime | None = None) -> None:
        self.artifacts[key] = ArtifactRecord(key, "table", rows, created or self.clock)

    def build(self) -> History:
        return History(
            now=self.now, environments=ENVS, deploy_runs=tuple(self.runs), task_runs=tuple(self.tasks),
            maintenance_runs=tuple(self.maintenance), artifacts=dict(self.artifacts), notes=tuple(self.notes),
            cost_monitoring=tuple(self.cost),
        )
