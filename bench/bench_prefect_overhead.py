"""Benchmark: what Prefect adds to a deployment, the same step functions run with and without it.

    uv run python bench/bench_prefect_overhead.py [--environment test] [--version v1.0.0] [--runs 3]

Against the local sandbox (`make demo`, or `technicia-deploy sandbox up` and a deployment of the environment), on
an environment that already runs ``--version`` (so both ways do the same read-only work), interleaved, in this
one process:

- **with Prefect**: the ``deploy-environment`` flow called in-process (flow and task runs, state events, the
  environment's lock, the promotion guard, progress and the end-of-run tracking publication);
- **without Prefect**: each catalogue step's own function (the one ``tasks.step.tracked_step`` wraps), called in
  catalogue order with the same arguments, the three post-deployment tests in threads as the flow runs them, over
  one SSH connection. Blocks are still read from the Prefect server (that is storage, not orchestration).

Prints each round, the medians and the difference, which is Prefect's engine plus the flow's own orchestration.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def step_calls(environment: str, version: str, sha: str, project: str = "technicia") -> dict[str, tuple]:
    """{step id: (step function, kwargs)}, what the flow's plan calls on a run that changes nothing."""
    from tasks import checks, https, monitoring, server, services

    common = {"environment": environment, "project": project}
    release = {**common, "version": version, "sha": sha}
    tasks = {
        "server.os": (server.os_installation, common), "server.firewall": (server.firewall, common),
        "server.docker": (server.docker_installation, common), "services.clone": (services.checkout, release),
        "services.api_keys": (services.api_keys, release), "services.deploy": (services.deploy, release),
        "https.dns": (https.dns, common), "https.certbot": (https.certbot_installation, common),
        "https.certificate": (https.certificate, common), "checks.functional": (checks.functional, common),
        "checks.performance": (checks.performance, {**common, "load_test": False}),
        "checks.security": (checks.security, common), "monitoring.script": (monitoring.script, common),
        "monitoring.alerts": (monitoring.alerts, common),
        "monitoring.alert_test": (monitoring.alert_test, {**common, "send": False}),
    }
    # The function tracked_step wrapped: no task run, no state, no event.
    return {step_id: (task.fn.__wrapped__, kwargs) for step_id, (task, kwargs) in tasks.items()}


def without_prefect(calls: dict[str, tuple]) -> tuple[float, list[str]]:
    import warnings

    from tasks import runtime

    # The steps publish their tables as artifacts; outside a run Prefect warns that this will go away.
    warnings.filterwarnings("ignore", category=FutureWarning, module="prefect.artifacts")

    started = time.perf_counter()
    outcomes = []
    try:
        together = [s for s in calls if s.startswith("checks.")]
        for step_id, (function, kwargs) in calls.items():
            if step_id in together:
                continue
            outcomes.append(function(**kwargs).outcome)
            if step_id == "https.certificate":
                with ThreadPoolExecutor(len(together)) as pool:
                    outcomes += [f.result().outcome for f in [pool.submit(calls[s][0], **calls[s][1]) for s in together]]
    finally:
        runtime.release()
    return time.perf_counter() - started, outcomes


def with_prefect(environment: str, version: str, sha: str) -> tuple[float, str]:
    from prefect import tags

    from flows.deploy_environment import deploy_environment
    from technicia_deploy.steps import env_tag

    started = time.perf_counter()
    with tags(env_tag(environment)):
        state = deploy_environment(environment=environment, version=version, sha=sha, operator="bench",
                                   return_state=True)
    return time.perf_counter() - started, state.type.value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--environment", default="test", choices=("test", "staging"))
    parser.add_argument("--version", default="v1.0.0")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from technicia_deploy.cli import server

    os.environ["PREFECT_API_URL"] = server.use()
    from technicia_deploy.cli.deploy import _resolve

    sha = _resolve("technicia", args.environment, args.version)
    calls = step_calls(args.environment, args.version, sha)
    with_prefect(args.environment, args.version, sha)  # warm-up: imports, connections to the server
    bare, flowed = [], []
    for index in range(1, args.runs + 1):
        order = ("bare", "flow") if index % 2 else ("flow", "bare")
        for way in order:
            if way == "bare":
                wall, outcomes = without_prefect(calls)
                if any(o != "unchanged" for o in outcomes):
                    print(f"round {index}: a step changed something: not a no-op", file=sys.stderr)
                    return 1
                bare.append(wall)
            else:
                wall, state = with_prefect(args.environment, args.version, sha)
                if state != "COMPLETED":
                    print(f"round {index}: the flow ended {state}", file=sys.stderr)
                    return 1
                flowed.append(wall)
        print(f"round {index} ({' → '.join(order)}): without Prefect {bare[-1]:.2f} s, with Prefect {flowed[-1]:.2f} s")
    b, f = statistics.median(bare), statistics.median(flowed)
    print(f"medians over {args.runs} round(s): without Prefect {b:.2f} s, with Prefect {f:.2f} s: Prefect and the "
          f"flow's orchestration add {f - b:.2f} s ({f / b:.2f}x), {(f - b) / len(calls) * 1000:.0f} ms per step")
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
