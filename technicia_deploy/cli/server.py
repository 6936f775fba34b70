"""Which Prefect server a command talks to: the same answer for every command.

``$PREFECT_API_URL`` when it is set, else the local sandbox's own server when one is up
(``technicia-deploy sandbox up`` records it), else none: the command says so and stops, rather
than letting Prefect fall back to a temporary empty server and print an empty result.

The sandbox's server may want an auth string (``sandbox up --orchestrator postgres``): talking to it, a
command takes it from the sandbox's state (a file, mode 0600) unless ``$PREFECT_API_AUTH_STRING`` is set.
It goes into this process's environment only, never into an output.
"""

from __future__ import annotations

import os


class NoPrefectServer(RuntimeError):
    pass


def api_url() -> str | None:
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    from technicia_deploy.sandbox.state import SandboxState

    return (SandboxState.load().data.get("prefect") or {}).get("url")


def use() -> str:
    """Point this process's Prefect client at the server (before prefect is imported) and return its URL."""
    url = api_url()
    if not url:
        raise NoPrefectServer("no Prefect server: set PREFECT_API_URL, or run `technicia-deploy sandbox up` "
                              "in this directory")
    os.environ["PREFECT_API_URL"] = url
    os.environ.setdefault("DO_NOT_TRACK", "1")
    if not os.environ.get("PREFECT_API_AUTH_STRING"):
        auth = sandbox_auth_string(url)
        if auth:
            os.environ["PREFECT_API_AUTH_STRING"] = auth
    return url


def sandbox_auth_string(url: str) -> str | None:
    """The local sandbox's API auth string, when ``url`` is its own server and it has one."""
    from technicia_deploy.sandbox.state import SandboxState

    prefect = SandboxState.load().data.get("prefect") or {}
    if prefect.get("url") != url or not prefect.get("auth_string_file"):
        return None
    try:
        return open(prefect["auth_string_file"]).read().strip() or None
    except OSError:
        return None


def ui_url(api: str) -> str:
    return api.removesuffix("/").removesuffix("/api")
