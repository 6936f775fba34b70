"""Benchmark: the four API-key smoke calls run concurrently take about as long as the slowest one.

    uv run python bench/bench_smoke.py [--repeat 5] [--delays documentai=0.8,vision=0.4,voyageai=0.2,anthropic=0.6]

The cloud emulator runs in-process on 127.0.0.1 with sandbox keys; each service is given a fixed
server-side delay (fault injection), so the expected figures are known: concurrent wall time
close to the largest delay, against the sum of the delays when the services are checked one
after another. The real SDKs make the calls. SDK imports are done once before timing.
Prints best and median wall time of --repeat runs for both ways, and the overhead over the slowest.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from technicia_deploy.cloud import RetryPolicy, Status, check_api_keys  # noqa: E402
from technicia_deploy.sandbox import cloud as sandbox_cloud  # noqa: E402
from technicia_deploy.sandbox.cloud_emulator.registry import Registry  # noqa: E402
from technicia_deploy.sandbox.cloud_emulator.server import admin_request, run_in_thread  # noqa: E402


def keys_block(keys: sandbox_cloud.EnvironmentKeys, url: str):
    from blocks import CloudApiKeys

    return CloudApiKeys(**keys.block_fields(url))


def parse_delays(text: str) -> dict[str, float]:
    return {name: float(value) for name, value in (item.split("=") for item in text.split(","))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--delays", default="documentai=0.8,vision=0.4,voyageai=0.2,anthropic=0.6")
    args = parser.parse_args()
    delays = parse_delays(args.delays)

    with tempfile.TemporaryDirectory() as directory, run_in_thread({}) as emulator:
        keys = sandbox_cloud.ensure_keys(Path(directory), "test", emulator.url + "/token")
        emulator.emulator.registry = Registry.from_config(sandbox_cloud.emulator_config([keys]))
        block = keys_block(keys, emulator.url)
        policy = RetryPolicy(max_attempts=1)
        check_api_keys("test", block, timeout=30, policy=policy)  # warm-up: SDK imports, connections

        def run(services: list[str]) -> float:
            for service in services:
                # Anthropic makes two calls (list, retrieve): delay only the first.
                admin_request(emulator.url, "POST", "/_admin/faults", {"service": service, "delay": delays[service]})
            started = time.perf_counter()
            results = check_api_keys("test", block, timeout=30, policy=policy, services=services)
            elapsed = time.perf_counter() - started
            assert all(r.status is Status.OK for r in results), [r.as_dict() for r in results]
            return elapsed

        concurrent = [run(list(delays)) for _ in range(args.repeat)]
        sequential = [sum(run([service]) for service in delays) for _ in range(args.repeat)]

    slowest, total = max(delays.values()), sum(delays.values())
    print(f"server delays: {', '.join(f'{k} {v:g}s' for k, v in delays.items())} (slowest {slowest:g}s, sum {total:g}s)")
    for name, samples in (("concurrent", concurrent), ("one by one", sequential)):
        print(f"{name:>11}: best {min(samples):.3f}s, median {statistics.median(samples):.3f}s")
    print(f"concurrent overhead over the slowest service: {statistics.median(concurrent) - slowest:+.3f}s (median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
