"""Benchmark: the post-deployment tests run together take about as long as the slowest of them.

    uv run python bench/bench_parallel_checks.py [--environment test] [--runs 3] [--version V]

Runs against the local sandbox (`make demo`, or `technicia-deploy sandbox up` and a deployment of the environment),
through its Prefect server, as a user would: `technicia-deploy deploy ENV --version V --load-test` (the load test is
asked for, so the three tests run on a redeploy that changes nothing), ``--runs`` times. From the run history (task
run start/end times) for each run: the ``checks`` phase's wall time (first start to last end of its three steps)
against its slowest member and against the sum of the three (what running them one after another would cost).
The smoke calls' concurrency has its own benchmark (bench/bench_smoke.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLI = str(Path(sys.executable).parent / "technicia-deploy")
CHECKS = ("checks.functional", "checks.performance", "checks.security")


def phase_figures(spans: dict[str, tuple[float, float]]) -> dict[str, float]:
    """{step: (start, end)} of one run's checks -> phase wall, slowest member, sum of members (seconds)."""
    durations = [end - start for start, end in spans.values()]
    wall = max(end for _, end in spans.values()) - min(start for start, _ in spans.values())
    return {"wall": wall, "slowest": max(durations), "sum": sum(durations)}


def check_spans(run_id: str) -> dict[str, tuple[float, float]]:
    from prefect import get_client
    from prefect.client.schemas import filters as F

    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(flow_run_filter=F.FlowRunFilter(id=F.FlowRunFilterId(any_=[run_id])), limit=200)
    return {t.name: (t.start_time.timestamp(), t.end_time.timestamp())
            for t in tasks if t.name in CHECKS and t.start_time and t.end_time}


def latest_run_id(environment: str) -> str:
    from prefect import get_client
    from prefect.client.schemas import filters as F
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        [run] = client.read_flow_runs(
            flow_run_filter=F.FlowRunFilter(tags=F.FlowRunFilterTags(all_=[f"env:{environment}", "flow:deploy-environment"])),
            sort=FlowRunSort.START_TIME_DESC, limit=1)
    return str(run.id)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--environment", default="test", choices=("test", "staging"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--version", default="v1.0.0", help="the version the environment runs (default %(default)s)")
    args = parser.parse_args()
    from technicia_deploy.cli import server

    os.environ["PREFECT_API_URL"] = server.use()
    figures = []
    for index in range(1, args.runs + 1):
        done = subprocess.run([CLI, "deploy", args.environment, "--version", args.version, "--load-test",
                               "--no-alert-test", "--operator", "bench"], capture_output=True, text=True)
        if done.returncode != 0:
            print(f"run {index}: the deployment failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}", file=sys.stderr)
            return 1
        spans = check_spans(latest_run_id(args.environment))
        if set(spans) != set(CHECKS):
            print(f"run {index}: checks missing from the history: {sorted(set(CHECKS) - set(spans))}", file=sys.stderr)
            return 1
        one = phase_figures(spans)
        figures.append(one)
        members = ", ".join(f"{name.split('.')[1]} {end - start:.2f} s" for name, (start, end) in sorted(spans.items()))
        print(f"run {index}: checks phase {one['wall']:.2f} s; slowest {one['slowest']:.2f} s; sum {one['sum']:.2f} s "
              f"({members})")
    median = {key: statistics.median(f[key] for f in figures) for key in ("wall", "slowest", "sum")}
    print(f"median over {len(figures)} run(s): phase {median['wall']:.2f} s, slowest member {median['slowest']:.2f} s "
          f"(phase / slowest = {median['wall'] / median['slowest']:.2f}), one after another {median['sum']:.2f} s "
          f"(phase / sum = {median['wall'] / median['sum']:.2f})")
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
