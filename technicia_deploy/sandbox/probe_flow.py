"""A VPS-free flow to exercise the orchestrator itself: which worker ran which flow run, and how many times.

Each execution appends one line to ``ledger`` (``<flow run id> <worker pid> <flow process pid>``; a process
worker is the parent of the flow run's process) and logs the same through Prefect, then sleeps ``seconds``.
A run executed twice would show twice in the ledger. Registered on the ``technicia`` pool by
``deploy_probe`` (tests/e2e/test_orchestrator_postgres.py, bench/bench_workers.py).
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

FLOW_NAME = "orchestrator-probe"
ENTRYPOINT = f"{Path(__file__).name}:probe"


@flow(name=FLOW_NAME, persist_result=False)
def probe(ledger: str, seconds: float = 1.0) -> None:
    line = f"{flow_run.id} {os.getppid()} {os.getpid()}\n"
    with open(ledger, "a") as out:  # one small O_APPEND write: lines of concurrent runs never interleave
        out.write(line)
    get_run_logger().info("probe run %s executed by the worker process %s", flow_run.id, os.getppid())
    time.sleep(seconds)


def deploy_probe(work_pool: str = "technicia", name: str = "probe") -> str:
    """Register the probe on ``work_pool`` (the current Prefect settings' server); returns the deployment id."""
    deployment = probe.from_source(source=str(Path(__file__).parent), entrypoint=ENTRYPOINT)
    with contextlib.redirect_stdout(io.StringIO()):  # Prefect's table of deployments: not the caller's output
        return str(deployment.deploy(name=name, work_pool_name=work_pool, print_next_steps=False, build=False,
                                     push=False, ignore_warnings=True))
