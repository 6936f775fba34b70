"""When a check that passed may stand for a new one: same inputs, young enough.

A deployment that changed nothing does not need to spend the cloud services' quota, send the team test
alerts or wait for SDK imports to learn again what it learnt minutes ago. A check that passed is
remembered with a digest of everything it depended on (secrets by fingerprint only); a later run with
the same digest, within the configured age, re-uses the verdict. Pure: the storage is the caller's.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any


def digest(inputs: Any) -> str:
    """A stable digest of JSON-able ``inputs`` (pass fingerprints, never secrets)."""
    return "sha256:" + hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PassedCheck:
    """A check that passed: what it depended on, when, and its one-line result."""

    digest: str
    at: float  # epoch seconds
    summary: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def reusable(last: dict[str, Any] | None, wanted_digest: str, now: float, max_age_s: float) -> PassedCheck | None:
    """The remembered check if it stands for one now: same digest, not older than ``max_age_s`` (0: never)."""
    if not last or max_age_s <= 0:
        return None
    try:
        passed = PassedCheck(str(last["digest"]), float(last["at"]), str(last.get("summary", "")))
    except (KeyError, TypeError, ValueError):
        return None
    if passed.digest != wanted_digest or not 0 <= now - passed.at <= max_age_s:
        return None
    return passed
