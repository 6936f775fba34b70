"""Performance results against thresholds and against the previous run (the ``performance-<env>`` artifact)."""

from __future__ import annotations

import uuid

import pytest

from technicia_deploy.checks.loadtest import LoadResult
from technicia_deploy.config import Performance

THRESHOLDS = Performance(concurrency=4, duration_s=3, min_rps=20, max_p95_ms=500, max_error_rate=0.01)


def _result(rps: float, p95: float, error_rate: float = 0.0) -> LoadResult:
    return LoadResult(requests=int(rps * 3), errors=0, duration_s=3.0, requests_per_s=rps, p50_ms=p95 / 2, p95_ms=p95,
                      p99_ms=p95 * 1.5, error_rate=error_rate, statuses={200: int(rps * 3)}, error_kinds={}, concurrency=4)


def test_rows_compare_with_thresholds_and_previous_values():
    from tasks.checks import performance_rows

    rows, violations = performance_rows(_result(100, 40), THRESHOLDS, {"requests_per_s": 80.0, "p95_ms": 50.0})
    by_metric = {r["metric"]: r for r in rows}
    assert violations == []
    assert by_metric["requests_per_s"] == {"metric": "requests_per_s", "value": 100, "threshold": ">= 20.0",
                                           "previous": 80.0, "change": "+25%", "verdict": "ok"}
    assert by_metric["p95_ms"]["change"] == "-20%" and by_metric["p99_ms"]["verdict"] == ""
    assert by_metric["error_rate"]["previous"] == ""


def test_threshold_violations_are_named():
    from tasks.checks import performance_rows

    _, violations = performance_rows(_result(10, 900, 0.05), THRESHOLDS, {})
    assert [v.split()[0] for v in violations] == ["requests_per_s", "p95_ms", "error_rate"]


def test_previous_metrics_come_from_the_latest_artifact_version(prefect_server):
    from prefect import flow

    from tasks.checks import _publish, performance_rows, previous_metrics

    environment = f"unit{uuid.uuid4().hex[:6]}"
    assert previous_metrics(environment) == {}

    @flow
    def two_runs():
        for rps, p95 in ((50, 120), (70, 90)):
            rows, _ = performance_rows(_result(rps, p95), THRESHOLDS, previous_metrics(environment))
            _publish("performance", environment, rows, "test")

    two_runs()
    latest = previous_metrics(environment)
    assert latest["requests_per_s"] == 70 and latest["p95_ms"] == 90


@pytest.mark.parametrize("rows, stands", [
    ([{"metric": "p95_ms", "value": 7.0, "verdict": "ok"}, {"metric": "requests_per_s", "value": 900.0, "verdict": "ok"}], True),
    ([{"metric": "p95_ms", "value": 900.0, "verdict": "FAILED"}, {"metric": "requests_per_s", "value": 900.0, "verdict": "ok"}], False),
    ([], False),  # never measured: a run that changed nothing still measures once
])
def test_only_a_passing_load_test_stands_for_a_run_that_changed_nothing(rows, stands):
    from tasks.checks import passed_load_test

    assert passed_load_test(rows) is stands
