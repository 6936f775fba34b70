"""A valid configuration and canary secrets, shared by the unit tests."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "environments.example.yaml"

# Canary secrets: recognisable strings whose presence anywhere they must not be is a leak.
CANARY = {
    "OVH_APPLICATION_KEY": "canary-ovh-ak-7f3e",
    "OVH_APPLICATION_SECRET": "canary-ovh-as-91bd",
    "OVH_CONSUMER_KEY": "canary-ovh-ck-2c44",
    "TECHNICIA_ALERT_MAIL_URL": "mailto://canary-alert-5e1a@exemple.fr",
    **{f"VOYAGE_API_KEY_{e}": f"canary-voyage-{e.lower()}-aa01" for e in ("TEST", "STAGING", "PRODUCTION")},
    **{f"ANTHROPIC_API_KEY_{e}": f"canary-anthropic-{e.lower()}-bb02" for e in ("TEST", "STAGING", "PRODUCTION")},
}
CANARY_FILES = {
    **{f".ssh/technicia_{e}_ed25519": f"canary-ssh-private-key-{e}-cc03\n" for e in ("test", "staging", "production")},
    **{f".config/technicia/{e}-service-account.json": f'{{"private_key": "canary-google-{e}-dd04"}}' for e in ("test", "staging", "production")},
}
VALID_HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq6nW0r8pQ2Vw3mX9yZtK1cJhU4bN5sD7eF0gH2iL3k"


def canary_values() -> list[str]:
    return list(CANARY.values()) + list(CANARY_FILES.values())
