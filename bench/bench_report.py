"""Benchmark: render the tracking document from a recorded history of 1,000 deployment runs.

    uv run python bench/bench_report.py [--runs 1000] [--repeat 5]

The history is built like the recorded fixtures (tests/unit/tracking/builders.py):
deployments cycling through test, staging and production, one run in ten failing
at a step that the next run of that environment passes, every step a task run
(about 15,000 task runs), API-key, server and security artifacts, problem notes.
It is serialised to JSON first, so the figure covers what a report does after the
API calls: parse the recorded history, index it, find the problems, render.
Prints the seconds per report (best and median of --repeat) for fr and en.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from technicia_deploy.steps import STEPS  # noqa: E402
from technicia_deploy.tracking.history import History, ProblemNote  # noqa: E402
from technicia_deploy.tracking.render import problems, render  # noqa: E402
from tests.unit.tracking.builders import HistoryBuilder  # noqa: E402


def build(runs: int) -> str:
    b = HistoryBuilder()
    envs = ("test", "staging", "production")
    for i in range(runs):
        env = envs[i % 3]
        fail_at = STEPS[(i * 7) % len(STEPS)].id if i % 10 == 0 else None
        b.deploy(env, f"v1.{i // 30}.{i % 30}", fail_at=fail_at, error=f"RuntimeError: failure {i}")
    for env in envs:
        b.artifact(f"api-keys-{env}", [
            {"service": s, "environment": env, "status": "ok", "latency_ms": 100, "fingerprint": "sha256:abcd",
             "checked_at": b.clock.isoformat()} for s in ("documentai", "vision", "voyageai", "anthropic")
        ])
        b.artifact(f"security-{env}", [{"port": p, "protocol": "tcp", "observed": "open" if p in (22, 80, 443) else "closed",
                                         "checked_at": b.clock.isoformat()} for p in (22, 80, 443, 5678, 6333)])
        b.artifact(f"server-{env}", [{"parameter": "vcores", "ovh": "4", "server": "4"}])
    history = b.build()
    b.notes += [ProblemNote(p.id, "fixed by hand", b.clock, "bench") for p in problems(history)[:20]]
    return b.build().to_json()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    recorded = build(args.runs)
    history = History.from_json(recorded)
    print(f"history: {len(history.deploy_runs)} deployment runs, {len(history.task_runs)} task runs, "
          f"{len(problems(history))} problems, {len(recorded) / 1e6:.1f} MB of JSON")
    worst = 0.0
    for lang in ("fr", "en"):
        times, render_only = [], []
        for _ in range(args.repeat):
            start = time.perf_counter()
            parsed = History.from_json(recorded)
            parsed_at = time.perf_counter()
            document = render(parsed, lang)
            end = time.perf_counter()
            times.append(end - start)
            render_only.append(end - parsed_at)
        worst = max(worst, statistics.median(times))
        print(f"{lang}: best {min(times):.3f} s, median {statistics.median(times):.3f} s per report "
              f"(parse + render; render alone median {statistics.median(render_only):.3f} s; {len(document.splitlines())} lines)")
    print(f"seconds: {worst:.3f}")
    return 0 if worst < 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
