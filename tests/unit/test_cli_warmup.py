"""The CLI's background imports: the modules load off the main thread, and a broken one never breaks the run."""

from __future__ import annotations

import sys

from technicia_deploy.cli import warmup


def test_modules_are_imported_in_a_background_thread_and_a_broken_one_is_skipped(monkeypatch):
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    thread = warmup.start(("no_such_module_for_technicia", "colorsys"))
    assert thread.daemon and thread.name == "warm-imports"
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert "colorsys" in sys.modules  # the broken module before it did not stop the others


def test_the_run_modules_exist():
    import importlib.util

    missing = [name for name in warmup.RUN_MODULES if importlib.util.find_spec(name) is None]
    assert missing == []
