"""Which Prefect server a command talks to: the same answer for every command.

``$PREFECT_API_URL`` when it is set, else the local sandbox's own server when one is up
(``technicia-deploy sandbox up`` records it), else none: the command says so and stops, rather
than letting Prefect fall back to a temporary empty server and print an empty result.
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
    return url


def ui_url(api: str) -> str:
    return api.removesuffix("/").removesuffix("/api")
