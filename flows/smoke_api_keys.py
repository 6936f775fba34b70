"""Flow ``smoke-api-keys``: prove every environment's cloud API keys still work (scheduled daily).

Environments are checked concurrently (each one's four services concurrently too); each gets its
``api-keys-<env>`` table artifact and ``env:<env>`` tag. The run fails, naming service,
environment and fix, if any key fails; the results are still published and carried by the
exception (``ApiKeysRejected.results``).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, tags

from tasks.api_keys import check_api_keys
from technicia_deploy.cloud import ApiKeysRejected, Status
from technicia_deploy.config import ENVIRONMENTS
from technicia_deploy.steps import env_tag


def environments_for(environment: str) -> tuple[str, ...]:
    if environment == "all":
        return ENVIRONMENTS
    if environment not in ENVIRONMENTS:
        raise ValueError(f"unknown environment {environment!r}; expected one of {', '.join(ENVIRONMENTS)} or 'all'")
    return (environment,)


@flow(name="smoke-api-keys", log_prints=False)
def smoke_api_keys(
    environment: str = "all", message: bool = False, project: str = "technicia", timeout: float = 20.0
) -> list[dict[str, Any]]:
    """Smoke-call each cloud API key of one environment, or of all three (one cheap real call per service).

    Args:
        environment: test, staging, production, or all.
        message: also send Anthropic a 1-token message (costs a fraction of a cent) instead of only listing models.
        project: project name used in the Prefect block names (default technicia).
        timeout: seconds allowed per service, retries included.
    """
    futures = []
    for name in environments_for(environment):
        with tags(env_tag(name)):
            futures.append(check_api_keys.submit(name, project=project, message=message, timeout=timeout))
    results = [result for future in futures for result in future.result()]
    if any(r["status"] != Status.OK for r in results):
        raise ApiKeysRejected(results)
    # The final state's message says what the run did: the tracking document's maintenance table shows it
    # (technicia_deploy/maintenance.py); calling the flow still returns the results.
    from prefect.states import Completed

    return Completed(message=describe(results), data=results)


def describe(results: list[dict[str, Any]]) -> str:
    """'12 API key(s) answered their smoke call: test, staging, production (...)'."""
    environments = list(dict.fromkeys(r["environment"] for r in results))
    services = list(dict.fromkeys(r["service"] for r in results))
    return (f"{len(results)} API key(s) answered their smoke call: {', '.join(environments)} "
            f"({', '.join(services)})")
