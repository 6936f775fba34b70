# bench/bench_first_deploy.py: per-task wall times of a playbook run, as JSON lines.
# ansible-core has no per-task timer of its own (ansible.posix's profile_tasks is not in it): this
# callback writes one line per task (handlers included) to $TECHNICIA_BENCH_ANSIBLE_TIMINGS:
# {"task", "handler", "start", "end", "status", "changed"}; end is the time of the task's last result.
# Enabled only by the bench (ANSIBLE_CALLBACKS_ENABLED=task_timings); without the variable it writes nothing.
from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: task_timings
    type: aggregate
    short_description: per-task wall times as JSON lines (bench only)
    description: writes one JSON line per task to the file named by TECHNICIA_BENCH_ANSIBLE_TIMINGS
    requirements: [enabled in the configuration]
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "task_timings"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        path = os.environ.get("TECHNICIA_BENCH_ANSIBLE_TIMINGS")
        self._out = open(path, "a", buffering=1) if path else None
        self._current = None

    def _close(self):
        if self._current and self._out:
            current = self._current
            current.setdefault("end", time.time())
            self._out.write(json.dumps(current) + "\n")
        self._current = None

    def _start(self, task, handler):
        self._close()
        self._current = {"task": task.get_name().strip(), "handler": handler, "start": time.time(),
                         "status": None, "changed": False}

    def _result(self, result, status):
        if self._current is None:
            return
        self._current["end"] = time.time()
        self._current["status"] = status
        self._current["changed"] = bool(self._current["changed"] or result._result.get("changed"))

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._start(task, False)

    def v2_playbook_on_handler_task_start(self, task):
        self._start(task, True)

    def v2_runner_on_ok(self, result):
        self._result(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._result(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._result(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        self._close()
