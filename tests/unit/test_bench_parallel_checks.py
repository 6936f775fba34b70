"""The pure part of bench/bench_parallel_checks.py: how a run's checks phase is measured."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import bench_parallel_checks as bench  # noqa: E402


def test_the_phase_runs_from_its_first_start_to_its_last_end_beside_its_slowest_member_and_the_sum():
    figures = bench.phase_figures({"checks.functional": (10.0, 11.0), "checks.performance": (10.1, 14.1),
                                   "checks.security": (10.2, 12.2)})
    assert figures == pytest.approx({"wall": 4.1, "slowest": 4.0, "sum": 7.0})
