"""Checks that passed, remembered per environment in Prefect Variables (technicia_deploy.freshness).

Each is a digest, a time and a summary; never a secret. Losing one only costs a later run the check.
"""

from __future__ import annotations

import time
from typing import Any

from technicia_deploy.freshness import PassedCheck, reusable


def variable_name(kind: str, environment: str, project: str) -> str:
    return f"{project}_{kind}_passed_{environment}".replace("-", "_").lower()


def remember(kind: str, environment: str, project: str, digest: str, summary: str) -> None:
    from prefect import get_run_logger
    from prefect.variables import Variable

    passed = PassedCheck(digest, time.time(), summary[:500])
    try:
        Variable.set(variable_name(kind, environment, project), passed.as_dict(), overwrite=True)
    except Exception as exc:  # noqa: BLE001 - only a later run's shortcut is lost
        get_run_logger().warning("%s of %s: passing check not remembered (%s)", kind, environment, type(exc).__name__)


def forget(kind: str, environment: str, project: str) -> None:
    """After a check that failed: no later run may stand on an earlier pass."""
    from prefect.variables import Variable

    try:
        Variable.unset(variable_name(kind, environment, project))
    except Exception:  # noqa: BLE001 - absent already
        pass


def last(kind: str, environment: str, project: str) -> dict[str, Any] | None:
    from prefect.variables import Variable

    try:
        value = Variable.get(variable_name(kind, environment, project), default=None)
    except Exception:  # noqa: BLE001 - then the check runs
        return None
    return value if isinstance(value, dict) else None


def still_passing(kind: str, environment: str, project: str, digest: str, max_age_s: float) -> PassedCheck | None:
    """The remembered check of ``kind`` if it stands now (same digest, young enough), else None."""
    if max_age_s <= 0:
        return None
    return reusable(last(kind, environment, project), digest, time.time(), max_age_s)


def age_minutes(passed: PassedCheck) -> float:
    return max(time.time() - passed.at, 0.0) / 60
