"""The catalogue of tracked deployment phases and steps.

This is the only list: the deploy flow runs its tasks in this order and the
tracking document takes its rows from it. A new step is one line here, one
task, and its command builders.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Step:
    id: str  # "<phase>.<step>", stable: it is a run tag and a report key
    fr: str
    en: str

    @property
    def phase_id(self) -> str:
        return self.id.split(".", 1)[0]

    @property
    def tag(self) -> str:
        return step_tag(self.id)

    def label(self, lang: str) -> str:
        return self.fr if lang == "fr" else self.en


@dataclass(frozen=True)
class Phase:
    id: str
    fr: str
    en: str
    steps: tuple[Step, ...]

    @property
    def tag(self) -> str:
        return step_tag(self.id)

    def label(self, lang: str) -> str:
        return self.fr if lang == "fr" else self.en


PHASES: tuple[Phase, ...] = (
    Phase(
        "server", "Préparation du serveur", "Server preparation",
        (
            Step("server.os", "Installation OS", "OS installation"),
            Step("server.firewall", "Configuration Firewall", "Firewall configuration"),
            Step("server.docker", "Installation Docker", "Docker installation"),
        ),
    ),
    Phase(
        "services", "Déploiement des services", "Service deployment",
        (
            Step("services.clone", "Clonage du repository", "Repository checkout"),
            Step("services.api_keys", "Configuration des clés API", "API key configuration"),
            Step("services.deploy", "Exécution du script de déploiement", "Deployment script run"),
        ),
    ),
    Phase(
        "https", "Configuration HTTPS", "HTTPS configuration",
        (
            Step("https.dns", "Configuration DNS", "DNS configuration"),
            Step("https.certbot", "Installation Certbot", "Certbot installation"),
            Step("https.certificate", "Obtention certificats SSL", "SSL certificate issuance"),
        ),
    ),
    Phase(
        "checks", "Tests post-déploiement", "Post-deployment tests",
        (
            Step("checks.functional", "Tests fonctionnels", "Functional tests"),
            Step("checks.performance", "Tests de performance", "Performance tests"),
            Step("checks.security", "Tests de sécurité", "Security tests"),
        ),
    ),
    Phase(
        "monitoring", "Configuration monitoring", "Monitoring configuration",
        (
            Step("monitoring.script", "Installation du script de monitoring", "Monitoring script installation"),
            Step("monitoring.alerts", "Configuration des alertes", "Alert configuration"),
            Step("monitoring.alert_test", "Tests des alertes", "Alert tests"),
        ),
    ),
)

STEPS: tuple[Step, ...] = tuple(step for phase in PHASES for step in phase.steps)

# Tracked operations that are not rows of the seed's process tables: what happens when a release
# fails (going back to the previous one) and what a promotion checks before production. Their
# task runs are in the history like the steps'; the tracking document shows them with the problem
# they answer and in the promotion's evidence.
ROLLBACK = Step("services.rollback", "Retour à la version précédente", "Rollback to the previous release")
GATES = Step("promotion.gates", "Contrôles avant production", "Pre-production gates")
OPERATIONS: tuple[Step, ...] = (ROLLBACK, GATES)

_BY_ID = {step.id: step for step in STEPS + OPERATIONS}
_PHASE_BY_ID = {phase.id: phase for phase in PHASES}


def is_step(step_id: str | None) -> bool:
    """Whether ``step_id`` names a catalogue step or operation (a step task run's name is its id)."""
    return step_id in _BY_ID


def step_id_of(task_run: Any) -> str | None:
    """The catalogue step a task run is: its name (step task runs carry no tags), or its ``step:`` tag in older
    histories; None for any other task run (tagging, preflight...)."""
    tagged = next((t[len(STEP_TAG_PREFIX):] for t in (task_run.tags or ()) if t.startswith(STEP_TAG_PREFIX)), None)
    return tagged or (task_run.name if is_step(task_run.name) else None)


def step(step_id: str) -> Step:
    """The catalogue entry for ``step_id``; a typo is a KeyError naming the known ids."""
    try:
        return _BY_ID[step_id]
    except KeyError:
        raise KeyError(f"unknown step {step_id!r}; known: {', '.join(_BY_ID)}") from None


def phase(phase_id: str) -> Phase:
    try:
        return _PHASE_BY_ID[phase_id]
    except KeyError:
        raise KeyError(f"unknown phase {phase_id!r}; known: {', '.join(_PHASE_BY_ID)}") from None


# Run tags. Prefect cannot filter runs on parameters, so everything the run
# history is queried by (environment, release) is a flow run tag; a step task run is found by its
# name (its step id). ``step:`` tags are read from older histories only.
def env_tag(environment: str) -> str:
    return f"env:{environment}"


def release_tag(version: str) -> str:
    return f"release:{version}"


STEP_TAG_PREFIX = "step:"


def step_tag(step_or_phase_id: str) -> str:
    return f"{STEP_TAG_PREFIX}{step_or_phase_id}"
