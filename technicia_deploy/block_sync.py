"""Turn a validated ``environments.yaml`` into Prefect blocks, idempotently.

Everything is validated and every secret resolved before the first block is
saved: a bad file leaves the server's blocks as they were. A block whose
stored content already equals the wanted content is not saved again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from prefect.blocks.fields import SecretDict
from pydantic import SecretStr

from technicia_deploy import config as cfg


@dataclass(frozen=True)
class BlockChange:
    name: str
    block_type: str
    action: str  # created | changed | unchanged


def wanted_blocks(project: cfg.Project, secrets: dict[str, str]) -> list:
    """The blocks the file describes, secrets filled in (pure: no server)."""
    from blocks import (
        AlertDestinations,
        CloudApiKeys,
        OvhCredentials,
        SshAccess,
        TechniciaEnvironment,
        environment_block_name,
    )

    def secret(path: str) -> SecretStr:
        return SecretStr(secrets[path])

    ovh_name = f"{project.name}-ovh"
    wanted: list = [
        (ovh_name, OvhCredentials(
            endpoint=project.ovh.endpoint,
            api_url=project.ovh.api_url,
            application_key=secret("ovh.application_key"),
            application_secret=secret("ovh.application_secret"),
            consumer_key=secret("ovh.consumer_key"),
        )),
    ]
    for env_name, env in project.environments.items():
        base = environment_block_name(project.name, env_name)
        at = f"environments.{env_name}"
        google, voyage, anthropic = env.api_keys.google, env.api_keys.voyageai, env.api_keys.anthropic
        wanted += [
            (f"{base}-ssh", SshAccess(
                user=env.ssh.user,
                admin_user=env.ssh.admin_user,
                port=env.ssh.port,
                host=env.server.host,
                host_key=env.ssh.host_key,
                private_key=secret(f"{at}.ssh.private_key"),
            )),
            (f"{base}-api-keys", CloudApiKeys(
                google_project_id=google.project_id,
                google_service_account_json=secret(f"{at}.api_keys.google.service_account_json"),
                documentai_location=google.documentai_location,
                documentai_processor_id=google.documentai_processor_id,
                documentai_endpoint=google.documentai_endpoint,
                vision_endpoint=google.vision_endpoint,
                voyageai_api_key=secret(f"{at}.api_keys.voyageai.api_key"),
                voyageai_model=voyage.model,
                voyageai_base_url=voyage.base_url,
                anthropic_api_key=secret(f"{at}.api_keys.anthropic.api_key"),
                anthropic_model=anthropic.model,
                anthropic_base_url=anthropic.base_url,
            )),
            (f"{base}-alerts", AlertDestinations(
                destinations=SecretDict({a.name: secrets[f"{at}.alerts[{i}].url"] for i, a in enumerate(env.alerts)}),
            )),
            (base, TechniciaEnvironment(
                name=env_name,
                application=project.application.model_dump(mode="json"),
                settings=env.model_dump(mode="json"),
                ovh_block=ovh_name,
                ssh_block=f"{base}-ssh",
                api_keys_block=f"{base}-api-keys",
                alerts_block=f"{base}-alerts",
            )),
        ]
    return wanted


def _plain(block) -> dict:
    """A block's fields with secrets revealed, for comparison only (never printed)."""
    def reveal(value):
        if isinstance(value, (SecretStr, SecretDict)):
            return value.get_secret_value()
        if isinstance(value, dict):
            return {k: reveal(v) for k, v in value.items()}
        if isinstance(value, list):
            return [reveal(v) for v in value]
        return value

    return {name: reveal(getattr(block, name)) for name in type(block).model_fields if not name.startswith("_")}


def apply(path: str | os.PathLike, environ: dict[str, str] | None = None) -> list[BlockChange]:
    """Validate ``path``, resolve its secrets, then create or update the blocks that differ."""
    project = cfg.load(path)
    secrets = cfg.resolve_secrets(project, path, environ)
    project = cfg.embed_files(project, path)
    wanted = wanted_blocks(project, secrets)

    from prefect.exceptions import ObjectNotFound

    changes: list[BlockChange] = []
    for name, block in wanted:
        kind = type(block)
        try:
            current = kind.load(name, validate=True)
        except (ValueError, ObjectNotFound):
            current = None
        if current is not None and _plain(current) == _plain(block):
            changes.append(BlockChange(name, kind.get_block_type_slug(), "unchanged"))
            continue
        block.save(name, overwrite=True)
        changes.append(BlockChange(name, kind.get_block_type_slug(), "created" if current is None else "changed"))
    return changes


def default_config_path() -> Path:
    return Path(os.environ.get("TECHNICIA_ENVIRONMENTS", "environments.yaml"))
