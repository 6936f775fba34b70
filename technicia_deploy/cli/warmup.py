"""Import what a deployment run will need while the process waits on the network anyway.

A run spends its first second creating its flow run and reading blocks: the main thread mostly waits on the
Prefect API there. The modules its steps import on first use (SSH, the step modules, apprise, the DNS
resolver, the TLS scanner) then load in a background thread instead of on the run's critical path, one
after another. Importing is idempotent: a module the main thread asks for first is simply shared, and
one that fails to import here fails again, with its real error, where the run needs it.
"""

from __future__ import annotations

import importlib
import threading

RUN_MODULES = (
    "paramiko", "fabric", "technicia_deploy.ovh",
    "tasks.server", "tasks.services", "tasks.https", "tasks.checks", "tasks.monitoring", "tasks.api_keys",
    "technicia_deploy.checks.security", "technicia_deploy.checks.functional",
    "dns.resolver", "apprise",
)


def _import_all(modules: tuple[str, ...]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - see the module docstring
            pass


def start(modules: tuple[str, ...] = RUN_MODULES) -> threading.Thread:
    thread = threading.Thread(target=_import_all, args=(modules,), name="warm-imports", daemon=True)
    thread.start()
    return thread
