"""Prefect's per-process workers, re-bound when the tests switch Prefect servers."""

from __future__ import annotations


def rebind_prefect_workers() -> None:
    """Stop this process's event and log workers, so the next ones talk to the server now configured.

    Prefect keeps one of each per process, bound to the API URL of its first use: the e2e sandbox's
    server and the unit tests' harness would otherwise receive each other's task-run events and logs.
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        try:
            worker.drain_all(timeout=10)
        except Exception:  # noqa: BLE001 - a worker that never started, or a server already gone
            pass
