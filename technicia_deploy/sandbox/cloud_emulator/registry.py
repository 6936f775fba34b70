"""What the emulator knows: registered keys (by hash), service accounts (by public key), processors, models.

The configuration is plain JSON without secrets::

    {"anthropic": {"keys": {"<sha256 hex>": "test"}, "models": [...], "ratelimit": {"requests": 50, "tokens": 40000}},
     "voyageai": {"keys": {"<sha256 hex>": "test"}, "models": [...]},
     "google": {"service_accounts": {"<private_key_id>": {"email": ..., "public_key": "<PEM>",
                                                          "environment": "test", "projects": ["p"]}},
                "processors": [{"project": "p", "location": "eu", "id": "abc", "environment": "test"}]}}
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_ANTHROPIC_MODELS = ("claude-sonnet-4-6", "claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1")
DEFAULT_VOYAGE_MODELS = ("voyage-3.5-lite", "voyage-3.5", "voyage-3-large")


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class ServiceAccount:
    key_id: str
    email: str
    public_key: str
    environment: str
    projects: tuple[str, ...]


@dataclass(frozen=True)
class Processor:
    project: str
    location: str
    id: str
    environment: str


@dataclass
class Registry:
    anthropic_keys: dict[str, str] = field(default_factory=dict)  # sha256 -> environment
    anthropic_models: tuple[str, ...] = DEFAULT_ANTHROPIC_MODELS
    anthropic_ratelimit: dict[str, int] = field(default_factory=lambda: {"requests": 50, "tokens": 40000})
    voyage_keys: dict[str, str] = field(default_factory=dict)
    voyage_models: tuple[str, ...] = DEFAULT_VOYAGE_MODELS
    service_accounts: dict[str, ServiceAccount] = field(default_factory=dict)  # private_key_id -> account
    processors: list[Processor] = field(default_factory=list)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Registry":
        anthropic = config.get("anthropic", {})
        voyage = config.get("voyageai", {})
        google = config.get("google", {})
        return cls(
            anthropic_keys=dict(anthropic.get("keys", {})),
            anthropic_models=tuple(anthropic.get("models", DEFAULT_ANTHROPIC_MODELS)),
            anthropic_ratelimit=dict(anthropic.get("ratelimit", {"requests": 50, "tokens": 40000})),
            voyage_keys=dict(voyage.get("keys", {})),
            voyage_models=tuple(voyage.get("models", DEFAULT_VOYAGE_MODELS)),
            service_accounts={
                kid: ServiceAccount(kid, sa["email"], sa["public_key"], sa.get("environment", ""), tuple(sa.get("projects", ())))
                for kid, sa in google.get("service_accounts", {}).items()
            },
            processors=[Processor(p["project"], p["location"], p["id"], p.get("environment", "")) for p in google.get("processors", [])],
        )

    @classmethod
    def from_file(cls, path: str | Path) -> "Registry":
        return cls.from_config(json.loads(Path(path).read_text()))

    def anthropic_environment(self, key: str | None) -> str | None:
        return self.anthropic_keys.get(key_hash(key)) if key else None

    def voyage_environment(self, key: str | None) -> str | None:
        return self.voyage_keys.get(key_hash(key)) if key else None

    def processor(self, project: str, location: str, processor_id: str) -> Processor | None:
        for p in self.processors:
            if (p.project, p.location, p.id) == (project, location, processor_id):
                return p
        return None

    def processor_elsewhere(self, project: str, processor_id: str) -> Processor | None:
        """The processor registered under another location (the wrong-endpoint mistake)."""
        return next((p for p in self.processors if (p.project, p.id) == (project, processor_id)), None)
