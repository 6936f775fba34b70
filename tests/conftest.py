"""Session-wide test setup: an isolated PREFECT_HOME and one Prefect test server per session."""

from __future__ import annotations

import os
import tempfile

# Before prefect is imported anywhere: no telemetry, and a home of our own so a
# developer's profile or server is never touched by the tests.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="technicia-prefect-home-")
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("PREFECT_PROFILE", None)

import pytest  # noqa: E402

from tests.prefect_workers import rebind_prefect_workers  # noqa: E402


@pytest.fixture(scope="session")
def prefect_server():
    """A real Prefect server for the whole session (the harness starts in ~9 s: once only).

    Yields its API URL; PREFECT_API_URL is set for this process while it runs,
    so subprocesses given ``os.environ`` reach the same server.
    """
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    rebind_prefect_workers()
    with prefect_test_harness(server_startup_timeout=60):
        url = PREFECT_API_URL.value()
        os.environ["PREFECT_API_URL"] = url
        try:
            yield url
        finally:
            os.environ.pop("PREFECT_API_URL", None)
