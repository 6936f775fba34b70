"""Prefect blocks: the credentials and the environment, as stored on the Prefect server.

Written by ``technicia-deploy blocks apply environments.yaml``; read by the flows.
Secrets are ``SecretStr`` fields: the API returns them masked unless a client
asks for ``include_secrets``, so bind the Prefect server to localhost or set
``PREFECT_SERVER_API_AUTH_STRING`` (see docs/security.md).

``prefect block register -m blocks`` registers all of them.
"""

from __future__ import annotations

from typing import Any

from prefect.blocks.core import Block
from prefect.blocks.fields import SecretDict
from pydantic import Field, SecretStr


class OvhCredentials(Block):
    """OVH API application credentials (one set for the project)."""

    _block_type_name = "TechnicIA OVH Credentials"
    _description = "OVH API application key, secret and consumer key."

    endpoint: str = Field(default="ovh-eu", description="python-ovh endpoint name")
    api_url: str | None = Field(default=None, description="override of the endpoint's URL (sandbox emulator)")
    application_key: SecretStr
    application_secret: SecretStr
    consumer_key: SecretStr


class SshAccess(Block):
    """How to reach one VPS over SSH: user, pinned host key, private key."""

    _block_type_name = "TechnicIA SSH Access"
    _description = "Deploy user, pinned host key and private key for one environment's VPS."

    user: str = "deploy"
    admin_user: str | None = Field(default=None, description="sudo user of a fresh VPS, used until the deploy user exists")
    port: int = 22
    host: str | None = Field(default=None, description="address; default: the VPS IPv4 from OVH")
    host_key: str = Field(description="pinned OpenSSH public host key line")
    private_key: SecretStr


class CloudApiKeys(Block):
    """The cloud API keys of one environment (the seed's 'Configuration des Clés API' table)."""

    _block_type_name = "TechnicIA Cloud API Keys"
    _description = "Google (Document AI, Vision), VoyageAI and Anthropic keys for one environment."

    google_project_id: str
    google_service_account_json: SecretStr
    documentai_location: str = "eu"
    documentai_processor_id: str
    documentai_endpoint: str | None = None
    vision_endpoint: str | None = None
    voyageai_api_key: SecretStr
    voyageai_model: str = "voyage-3.5-lite"
    voyageai_base_url: str | None = None
    anthropic_api_key: SecretStr
    anthropic_model: str = "claude-sonnet-4-6"
    anthropic_base_url: str | None = None


class AlertDestinations(Block):
    """Apprise URLs of one environment's alert destinations, by name (secrets: they carry tokens)."""

    _block_type_name = "TechnicIA Alert Destinations"
    _description = "Named apprise URLs (mailto://, json://, slack://...) for one environment."

    # SecretDict, not dict[str, SecretStr]: Prefect masks a SecretDict's values in
    # API reads, but stores a dict of SecretStr in plain text.
    destinations: SecretDict = Field(default_factory=lambda: SecretDict({}))

    def urls(self) -> dict[str, str]:
        return dict(self.destinations.get_secret_value())


class TechniciaEnvironment(Block):
    """One environment: its validated, secret-free settings and the names of its credential blocks."""

    _block_type_name = "TechnicIA Environment"
    _description = "One TechnicIA environment (test, staging, production) and the blocks that hold its secrets."

    name: str
    application: dict[str, Any] = Field(description="the application section of environments.yaml")
    settings: dict[str, Any] = Field(description="the environment's section of environments.yaml (secret references only)")
    ovh_block: str
    ssh_block: str
    api_keys_block: str
    alerts_block: str

    def environment(self):
        """The settings as the validated config model."""
        from technicia_deploy.config import Environment

        return Environment.model_validate(self.settings)

    def app(self):
        from technicia_deploy.config import Application

        return Application.model_validate(self.application)

    def ovh(self) -> OvhCredentials:
        return OvhCredentials.load(self.ovh_block)

    def ssh(self) -> SshAccess:
        return SshAccess.load(self.ssh_block)

    def api_keys(self) -> CloudApiKeys:
        return CloudApiKeys.load(self.api_keys_block)

    def alerts(self) -> AlertDestinations:
        return AlertDestinations.load(self.alerts_block)


ALL_BLOCKS = (OvhCredentials, SshAccess, CloudApiKeys, AlertDestinations, TechniciaEnvironment)


def environment_block_name(project: str, environment: str) -> str:
    return f"{project}-{environment}"
