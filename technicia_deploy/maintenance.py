"""What every scheduled maintenance flow shares, as plain data: tags, run names, descriptions, the team's time zone.

A maintenance flow is one flow per kind of work (certificates, housekeeping, ...), run for one environment or for
``all``. The per-environment work always runs in a flow run tagged ``maintenance`` + ``env:<env>`` +
``flow:<flow>`` *from its creation*: the alert automation of an environment matches failed runs on the
``env:<env>`` tag, and the server takes a run's tags for its events from a cache filled at the run's first
state event (tasks/monitoring.py ``alert_trigger``), so a tag added by the run itself comes too late. A run
that was not created with them (an ``all`` run, a run started in-process) runs each environment's work as a
subflow created under those tags (flows/_maintenance.py).

Each run's final state message is one line saying what it did (the tracking document's maintenance table
shows it instead of the run's name); a run's name says what it is (``certificates-staging``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from technicia_deploy.config import ENVIRONMENTS
from technicia_deploy.steps import env_tag

MAINTENANCE_TAG = "maintenance"
# The team's time zone: the schedules in deployments.yaml are written in it and the tracking document's
# maintenance table shows times in it.
TEAM_TIMEZONE = "Europe/Paris"
ALL = "all"
# Messages Prefect gives a final state by itself: not a description of what the run did.
PREFECT_DEFAULT_MESSAGES = frozenset({"", "All states completed.", "Flow run completed.", "Finished in state Completed()"})
MAX_DESCRIPTION = 300


def flow_tag(flow_name: str) -> str:
    return f"flow:{flow_name}"


def run_tags(flow_name: str, environment: str) -> tuple[str, ...]:
    """The tags a per-environment maintenance run must be created with (in this order)."""
    return (MAINTENANCE_TAG, env_tag(environment), flow_tag(flow_name))


def environments_for(environment: str) -> tuple[str, ...]:
    """``all`` -> every environment, in promotion order; a single name -> itself; anything else is refused."""
    if environment == ALL:
        return ENVIRONMENTS
    if environment not in ENVIRONMENTS:
        raise ValueError(f"unknown environment {environment!r}; expected one of {', '.join(ENVIRONMENTS)} or {ALL!r}")
    return (environment,)


def is_tagged_for(tags: Any, flow_name: str, environment: str) -> bool:
    """Whether a run carrying ``tags`` was created as the per-environment run of ``flow_name`` on ``environment``."""
    return environment != ALL and set(run_tags(flow_name, environment)) <= set(tags or ())


def one_line(text: str, limit: int = MAX_DESCRIPTION) -> str:
    """A description as the tracking document's cell wants it: one line, bounded."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


_PREFECT_FAILURE_PREFIXES = ("Flow run encountered an exception: ", "Task run encountered an exception: ")


def failure_text(message: str | None) -> str:
    """The error of a failed run's message, without the words Prefect puts before it."""
    text = (message or "").strip()
    for prefix in _PREFECT_FAILURE_PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix):]
    return text


def is_description(message: str | None) -> bool:
    """Whether a final state's message says what the run did (not one Prefect wrote by itself)."""
    return (message or "").strip() not in PREFECT_DEFAULT_MESSAGES


@dataclass
class Outcome:
    """What one environment's maintenance work did: the one-line description, whether it changed the
    server, and details for the run's artifact (names and figures only, never a secret)."""

    environment: str
    description: str
    changed: bool = False
    details: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)  # the artifact's table, one row per item checked

    @property
    def message(self) -> str:
        return one_line(f"{'changed' if self.changed else 'unchanged'}: {self.description}")

    def as_dict(self) -> dict[str, Any]:
        return {"environment": self.environment, "description": self.description, "changed": self.changed,
                "details": self.details, "rows": self.rows}


def combined_message(per_environment: dict[str, str]) -> str:
    """The ``all`` run's message: each environment's, in order."""
    return one_line("; ".join(f"{env}: {message}" for env, message in per_environment.items()))


def artifact_key(kind: str, environment: str) -> str:
    return f"maintenance-{kind}-{environment}"


def artifact_markdown(title: str, outcome: Outcome) -> str:
    """The run's markdown artifact: the description, then one table row per item checked."""
    lines = [f"# {title}: {outcome.environment}", "", outcome.message, ""]
    if outcome.rows:
        headers = list(outcome.rows[0])
        lines += ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        for row in outcome.rows:
            lines.append("| " + " | ".join(one_line(str(row.get(h, "")), 200).replace("|", "\\|") for h in headers) + " |")
    return "\n".join(lines) + "\n"
