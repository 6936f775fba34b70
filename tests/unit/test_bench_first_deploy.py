"""The pure parts of bench/bench_first_deploy.py: the playbook's tasks mapped to pipeline steps, step and phase
windows from task runs, the .env write and the end of the reinstall found in the trace."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import bench_first_deploy as bench  # noqa: E402

PLAYBOOK = BENCH / "ansible" / "noop.yml"


def test_every_playbook_task_stands_for_a_step():
    names = re.findall(r"^    - name: (.+)$", PLAYBOOK.read_text(), flags=re.M)
    assert len(names) > 15
    unmapped = [n for n in names if bench.ansible_step(n) == "ansible.other"]
    assert unmapped == []
    assert bench.ansible_step("Gathering Facts") == "ansible.setup"
    assert bench.ansible_step("release checked out at c073ce888b6f") == "services.clone"
    assert bench.ansible_step(".env") == "services.api_keys"
    assert bench.ansible_step("reload nginx") == "https.nginx"


def test_ansible_seconds_are_summed_per_step():
    timings = [{"task": "ufw installed", "start": 10.0, "end": 14.0},
               {"task": "ufw enabled", "start": 14.0, "end": 14.5},
               {"task": "services up", "start": 20.0, "end": 30.0},
               {"task": "something new", "start": 30.0, "end": 31.0}]
    assert bench.ansible_by_step(timings) == {"server.firewall": 4.5, "services.deploy": 10.0, "ansible.other": 1.0}


def test_phases_span_their_steps_and_concurrent_checks_are_not_summed():
    runs = [{"name": "server.os", "start": 0.0, "end": 5.0}, {"name": "server.docker", "start": 5.0, "end": 20.0},
            {"name": "checks.functional", "start": 30.0, "end": 33.0},
            {"name": "checks.performance", "start": 30.1, "end": 36.0},
            {"name": "monitoring.script", "start": 40.0, "end": None}]
    steps = bench.step_windows(runs)
    assert "monitoring.script" not in steps
    assert bench.phase_windows(steps) == {"server": (0.0, 20.0), "checks": (30.0, 36.0)}


def test_env_write_is_the_stdin_fed_cat_into_the_env_file():
    events = [{"t0": 1.0, "dur": 0.1, "stdin": False, "command": "cat /opt/technicia/releases/x/.env.example"},
              {"t0": 2.0, "dur": 0.2, "stdin": True, "command": 'sudo -n bash -c \'t=$(mktemp /opt/x/.env.XXXX); cat > "$t"\''},
              {"t0": 3.0, "dur": 0.2, "stdin": True, "command": "cat > /etc/other"}]
    assert bench.env_write(events) is events[1]
    assert bench.env_write(events[:1]) is None
    assert bench.inside(events, (1.5, 2.3)) == [events[1]]


def test_reinstall_ends_at_the_first_successful_connection_after_the_step_start():
    connects = [{"t0": 0.5, "dur": 0.1, "ok": True}, {"t0": 2.0, "dur": 1.0, "ok": False},
                {"t0": 4.0, "dur": 0.5, "ok": True}, {"t0": 9.0, "dur": 0.5}]
    assert bench.reinstall_end(connects, after=1.0) == pytest.approx(4.5)
    assert bench.reinstall_end(connects, after=10.0) is None
    assert bench.ratio(2.0, 4.0) == 0.5 and bench.ratio(None, 4.0) is None

