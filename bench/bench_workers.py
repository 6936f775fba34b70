"""Benchmark: the same batch of queued flow runs through one worker and through two, wall time side by side.

    uv run --frozen python bench/bench_workers.py [--runs 12] [--seconds 5] [--rounds 2] [--dir PATH]

The postgres orchestrator of the sandbox, alone (`world.orchestrator_up`: PostgreSQL, the Prefect server with its
auth string, two workers with `--limit 4` each, on the `technicia` pool; no VPS), in a state directory of its own
(removed at the end unless --dir is given). The runs are the VPS-free probe flow
(technicia_deploy/sandbox/probe_flow.py) sleeping --seconds: the time a deployment spends waiting on SSH and remote
commands, not on this machine's CPU. For each round: --runs runs queued at once, with the second worker stopped,
then with both; wall time from the first run queued to the last one final, and the runs each worker executed.
Prints a markdown table (append it to docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from technicia_deploy.sandbox import orchestration, processes, world  # noqa: E402
from technicia_deploy.sandbox.state import SandboxState  # noqa: E402


def _wait_online(client, count: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        online = [w for w in client.read_workers_for_work_pool(orchestration.WORK_POOL)
                  if str(getattr(w.status, "value", w.status)).upper() == "ONLINE"]
        if len(online) >= count:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(online)} worker(s) online, {count} wanted")
        time.sleep(0.5)


def batch(client, deployment_id, ledger: Path, runs: int, seconds: float) -> tuple[float, Counter, Counter]:
    """Queue ``runs`` runs at once; wall time until all are final, final states, executions per worker pid."""
    ledger.write_text("")
    started = time.perf_counter()
    ids = [client.create_flow_run_from_deployment(deployment_id, parameters={"ledger": str(ledger), "seconds": seconds}).id
           for _ in range(runs)]
    while True:
        flow_runs = [client.read_flow_run(i) for i in ids]
        if all(r.state is not None and r.state.is_final() for r in flow_runs):
            break
        time.sleep(0.25)
    elapsed = time.perf_counter() - started
    by_worker = Counter(line.split()[1] for line in ledger.read_text().splitlines())
    return elapsed, Counter(r.state.name for r in flow_runs), by_worker


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=5.0, help="each run's sleep (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dir", help="sandbox state directory (default: a temporary one, removed at the end)")
    args = parser.parse_args()

    own = args.dir is None
    directory = Path(args.dir or tempfile.mkdtemp(prefix="technicia-bench-workers-"))
    directory.chmod(0o755)  # PostgreSQL runs as Debian's postgres user when this runs as root
    state = SandboxState.load(directory)
    os.environ.pop("PREFECT_API_URL", None)
    os.environ["PREFECT_HOME"] = str(directory / "client")  # this process's Prefect profile: not the user's
    os.environ.setdefault("DO_NOT_TRACK", "1")
    try:
        url = world.orchestrator_up(state, log=lambda line: print(f"# {line}", file=sys.stderr))
        os.environ["PREFECT_API_URL"] = url
        os.environ.update(orchestration.client_env(state))  # this process's client only; never printed
        from prefect import get_client

        from technicia_deploy.sandbox.probe_flow import deploy_probe

        deploy_probe()
        ledger = directory / "ledger"
        second = orchestration.worker_daemons(state)[1]
        results: dict[int, list[tuple[float, Counter, Counter]]] = {1: [], 2: []}
        with get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name("orchestrator-probe/probe")
            for _ in range(args.rounds):
                processes.stop(state, second)
                time.sleep(1)
                results[1].append(batch(client, deployment.id, ledger, args.runs, args.seconds))
                orchestration.workers_up(state, url, log=lambda line: None)
                _wait_online(client, 2)
                results[2].append(batch(client, deployment.id, ledger, args.runs, args.seconds))
        load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
        cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
        print(f"Machine: {os.cpu_count()} CPUs ({cpu}), {platform.platform()}; load after the run {load}; "
              f"{args.runs} runs of {args.seconds:g} s each, workers `--limit {orchestration.WORKER_LIMIT}`\n")
        print("| round | workers | wall time | runs / worker | final states |")
        print("|---|---|---|---|---|")
        for n in range(args.rounds):
            for workers in (1, 2):
                elapsed, states, by_worker = results[workers][n]
                split = " + ".join(str(c) for c in sorted(by_worker.values(), reverse=True))
                finals = ", ".join(f"{k} {v}" for k, v in sorted(states.items()))
                print(f"| {n + 1} | {workers} | {elapsed:.1f} s | {split} | {finals} |")
        one = statistics.median(r[0] for r in results[1])
        two = statistics.median(r[0] for r in results[2])
        print(f"\nMedian: one worker {one:.1f} s, two workers {two:.1f} s: **{two / one:.2f}x** the wall time.")
    finally:
        world.orchestrator_down(state)
        if own:
            shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
