"""The application's .env, rendered from an environment's CloudApiKeys block.

Variable names are the contract with the TechnicIA application (its
.env.example): services.api_keys compares them with the release's file
(technicia_deploy.commands.env_contract) before it writes the .env, and the
functional check expects the API to report each one set. The rendered text holds secrets: it only ever travels to the
server on an SSH channel's stdin, and only its sha256 is ever compared or shown.
"""

from __future__ import annotations

import base64
import hashlib

ENV_VARIABLES = (
    "GOOGLE_CLOUD_PROJECT",
    "GOOGLE_APPLICATION_CREDENTIALS_JSON",
    "DOCUMENTAI_LOCATION",
    "DOCUMENTAI_PROCESSOR_ID",
    "VOYAGE_API_KEY",
    "VOYAGE_MODEL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_MODEL",
)


def _line(name: str, value: str) -> str:
    if "\n" in value or "\r" in value:
        raise ValueError(f"{name} would span several lines in .env")
    return f"{name}={value}"


def render(keys) -> str:
    """The .env text for a CloudApiKeys block (deterministic: same keys, same bytes)."""
    sa_json = keys.google_service_account_json.get_secret_value()
    values = {
        "GOOGLE_CLOUD_PROJECT": keys.google_project_id,
        # One line whatever the JSON's layout: base64 keeps .env parsers happy.
        "GOOGLE_APPLICATION_CREDENTIALS_JSON": base64.b64encode(sa_json.encode()).decode(),
        "DOCUMENTAI_LOCATION": keys.documentai_location,
        "DOCUMENTAI_PROCESSOR_ID": keys.documentai_processor_id,
        "VOYAGE_API_KEY": keys.voyageai_api_key.get_secret_value(),
        "VOYAGE_MODEL": keys.voyageai_model,
        "ANTHROPIC_API_KEY": keys.anthropic_api_key.get_secret_value(),
        "ANTHROPIC_MODEL": keys.anthropic_model,
    }
    header = "# Written by technicia-deploy from Prefect blocks; edits are overwritten.\n"
    return header + "\n".join(_line(name, values[name]) for name in ENV_VARIABLES) + "\n"


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
