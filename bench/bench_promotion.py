"""Benchmark: a full promotion with the approval answered at once, and the rollback time of a broken release.

    uv run python bench/bench_promotion.py [--version v1.0.0] [--broken v1.2.0]

Runs against the local sandbox (`technicia-deploy sandbox up` first; production's DNS prepared with
`technicia-deploy dns prepare production`), through its Prefect server and worker, exactly as a user would:
`technicia-deploy promote VERSION --approve-as bench`, then `technicia-deploy promote BROKEN`, which fails on
test and rolls it back. Figures come from the run history (flow and task run start/end times):

- the promotion: wall time of the CLI, then each stage (test, staging, gates, approval wait, production);
- the rollback: from the end of the failed health wait (``services.deploy`` failed) to the end of
  ``services.rollback`` (the previous release serving again, verified by the functional tests).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLI = str(Path(sys.executable).parent / "technicia-deploy")


def promote(version: str, *extra: str) -> tuple[str, float, int]:
    started = time.monotonic()
    done = subprocess.run([CLI, "promote", version, "--operator", "bench", *extra], capture_output=True, text=True)
    wall = time.monotonic() - started
    run_id = done.stdout.split("(", 1)[1].split(")", 1)[0]
    return run_id, wall, done.returncode


def stage_times(run_id: str) -> dict[str, float]:
    from prefect import get_client
    from prefect.client.schemas import filters as F

    with get_client(sync_client=True) as client:
        promotion = client.read_flow_run(run_id)
        children = client.read_flow_runs(flow_run_filter=F.FlowRunFilter(
            tags=F.FlowRunFilterTags(all_=[f"promotion:{run_id}"])))
        gates = [t for t in client.read_task_runs(flow_run_filter=F.FlowRunFilter(id=F.FlowRunFilterId(any_=[run_id])))
                 if t.name == "promotion.gates" and t.end_time]
        states = client.read_flow_run_states(run_id)
    times = {}
    for run in children:
        env = next(t[4:] for t in run.tags if t.startswith("env:"))
        times[env] = (run.end_time - run.start_time).total_seconds()
    if gates:
        first = min(gates, key=lambda t: t.start_time)
        times["gates"] = (first.end_time - first.start_time).total_seconds()
    paused = [s.timestamp for s in states if s.type.value == "PAUSED"]
    resumed = [s.timestamp for s in states if s.name == "Resuming"]
    if paused and resumed:
        times["approval wait (pause → resumed)"] = (resumed[0] - paused[0]).total_seconds()
    times["promotion run (start → end)"] = (promotion.end_time - promotion.start_time).total_seconds()
    return times


def rollback_time(run_id: str) -> float | None:
    from prefect import get_client
    from prefect.client.schemas import filters as F

    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(flow_run_filter=F.FlowRunFilter(
            tags=F.FlowRunFilterTags(all_=[f"promotion:{run_id}"])))
        tasks = client.read_task_runs(flow_run_filter=F.FlowRunFilter(id=F.FlowRunFilterId(any_=[r.id for r in children])))
    failed = [t for t in tasks if t.name == "services.deploy" and t.state.is_failed()]
    back = [t for t in tasks if t.name == "services.rollback" and t.state.is_completed()]
    if not failed or not back:
        return None
    return (back[0].end_time - failed[0].end_time).total_seconds()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default="v1.0.0")
    parser.add_argument("--broken", default="v1.2.0")
    args = parser.parse_args()

    from technicia_deploy.cli import server

    print(f"Prefect server: {server.use()}")
    run_id, wall, rc = promote(args.version, "--approve-as", "bench")
    print(f"promotion of {args.version}: exit {rc}, CLI wall time {wall:.1f} s")
    for stage, seconds in stage_times(run_id).items():
        print(f"  {stage:34s} {seconds:7.1f} s")
    run_id, wall, rc = promote(args.broken)
    seconds = rollback_time(run_id)
    print(f"promotion of {args.broken}: exit {rc} (expected 1), CLI wall time {wall:.1f} s")
    print(f"  rollback, failed health wait → previous release serving (verified): "
          + (f"{seconds:.1f} s" if seconds is not None else "not found in the history"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
