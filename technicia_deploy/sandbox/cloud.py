"""Sandbox component ``cloud``: the cloud API emulator daemon and per-environment sandbox keys.

For each environment it generates, once, an Anthropic-like key (``sk-ant-...``),
a Voyage key (``pa-...``) and a Google service-account JSON with a fresh RSA
key, as files under ``<state dir>/cloud/<env>/`` (mode 0600). The emulator is
given only their SHA-256 hashes and public keys. ``data["cloud"]`` records the
URL, the files and, per environment, an ``api_keys`` section in the shape of
environments.yaml (secrets as ``{file: ...}`` references) ready for the world
writer to embed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from technicia_deploy.sandbox import processes
from technicia_deploy.sandbox.state import SandboxState

COMPONENT = "cloud"
DAEMON = "cloud-emulator"
ENVIRONMENTS = ("test", "staging", "production")
LOCATION = "eu"
ANTHROPIC_MODEL = "claude-sonnet-4-6"
VOYAGE_MODEL = "voyage-3.5-lite"
SANDBOX_UNIVERSE = "technicia-sandbox.test"


@dataclass(frozen=True)
class EnvironmentKeys:
    """Where one environment's sandbox keys are, and the non-secret identifiers that go with them."""

    environment: str
    anthropic_key_file: str
    voyageai_key_file: str
    service_account_file: str
    project_id: str
    processor_id: str
    location: str = LOCATION

    def block_fields(self, url: str) -> dict:
        """The CloudApiKeys block fields for these keys against the emulator at ``url`` (secrets read from their files)."""
        from pydantic import SecretStr

        def secret(path: str) -> SecretStr:
            return SecretStr(Path(path).read_text())

        return dict(
            google_project_id=self.project_id,
            google_service_account_json=secret(self.service_account_file),
            documentai_location=self.location,
            documentai_processor_id=self.processor_id,
            documentai_endpoint=url,
            vision_endpoint=url,
            voyageai_api_key=secret(self.voyageai_key_file),
            voyageai_base_url=url + "/v1",
            anthropic_api_key=secret(self.anthropic_key_file),
            anthropic_base_url=url,
        )


def _write_secret(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def new_anthropic_key() -> str:
    return "sk-ant-api03-" + secrets.token_urlsafe(68) + "AA"


def new_voyage_key() -> str:
    return "pa-" + secrets.token_urlsafe(32)


def new_service_account(project_id: str, name: str, token_uri: str) -> dict:
    """A service-account key file like Google's, with a freshly generated RSA key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    email = f"{name}@{project_id}.iam.gserviceaccount.com"
    return {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": email,
        "client_id": str(secrets.randbelow(10**21)),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": f"https://www.googleapis.com/robot/v1/metadata/x509/{email}",
        # Not Google's universe: google-auth then never calls iamcredentials.googleapis.com for this key.
        "universe_domain": SANDBOX_UNIVERSE,
    }


def public_key_pem(service_account: dict) -> str:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(service_account["private_key"].encode(), password=None)
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def ensure_keys(directory: Path, environment: str, token_uri: str) -> EnvironmentKeys:
    """The environment's keys under ``directory/<env>``, generated the first time (idempotent).

    An existing service account keeps its key; only its token_uri follows the emulator's URL.
    """
    env_dir = directory / environment
    anthropic, voyage, google = env_dir / "anthropic.key", env_dir / "voyageai.key", env_dir / "google-service-account.json"
    if not anthropic.exists():
        _write_secret(anthropic, new_anthropic_key())
    if not voyage.exists():
        _write_secret(voyage, new_voyage_key())
    project_id = f"technicia-sandbox-{environment}"
    if google.exists():
        account = json.loads(google.read_text())
        if account.get("token_uri") != token_uri:
            account["token_uri"] = token_uri
            _write_secret(google, json.dumps(account, indent=2))
    else:
        account = new_service_account(project_id, f"technicia-{environment}", token_uri)
        _write_secret(google, json.dumps(account, indent=2))
    ids_file = env_dir / "ids.json"
    if ids_file.exists():
        processor_id = json.loads(ids_file.read_text())["processor_id"]
    else:
        processor_id = secrets.token_hex(8)
        ids_file.write_text(json.dumps({"processor_id": processor_id}))
    return EnvironmentKeys(environment, str(anthropic), str(voyage), str(google), account.get("project_id", project_id), processor_id)


def emulator_config(all_keys: list[EnvironmentKeys]) -> dict:
    """The emulator's registry: key hashes and public keys only, never a secret."""
    from technicia_deploy.sandbox.cloud_emulator.registry import key_hash

    config: dict = {"anthropic": {"keys": {}}, "voyageai": {"keys": {}}, "google": {"service_accounts": {}, "processors": []}}
    for keys in all_keys:
        config["anthropic"]["keys"][key_hash(Path(keys.anthropic_key_file).read_text().strip())] = keys.environment
        config["voyageai"]["keys"][key_hash(Path(keys.voyageai_key_file).read_text().strip())] = keys.environment
        account = json.loads(Path(keys.service_account_file).read_text())
        config["google"]["service_accounts"][account["private_key_id"]] = {
            "email": account["client_email"],
            "public_key": public_key_pem(account),
            "environment": keys.environment,
            "projects": [keys.project_id],
        }
        config["google"]["processors"].append(
            {"project": keys.project_id, "location": keys.location, "id": keys.processor_id, "environment": keys.environment}
        )
    return config


def api_keys_section(keys: EnvironmentKeys, url: str) -> dict:
    """The environment's ``api_keys`` section of environments.yaml, pointing at the emulator."""
    return {
        "google": {
            "project_id": keys.project_id,
            "service_account_json": {"file": keys.service_account_file},
            "documentai_location": keys.location,
            "documentai_processor_id": keys.processor_id,
            "documentai_endpoint": url,
            "vision_endpoint": url,
        },
        "voyageai": {"api_key": {"file": keys.voyageai_key_file}, "model": VOYAGE_MODEL, "base_url": url + "/v1"},
        "anthropic": {"api_key": {"file": keys.anthropic_key_file}, "model": ANTHROPIC_MODEL, "base_url": url},
    }


def _choose_port(state: SandboxState) -> int:
    previous = state.data.get(COMPONENT, {}).get("port")
    if previous and processes.pid_of(state, DAEMON):
        return previous
    if previous:
        import socket

        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", previous))
                return previous  # keep the URL the generated configuration already names
            except OSError:
                pass
    return processes.free_port()


def up(state: SandboxState) -> None:
    directory = state.path(COMPONENT)
    port = _choose_port(state)
    url = f"http://127.0.0.1:{port}"
    all_keys = [ensure_keys(directory, env, url + "/token") for env in ENVIRONMENTS]
    config_file = directory / "emulator.json"
    config_file.write_text(json.dumps(emulator_config(all_keys), indent=2))
    already_running = processes.pid_of(state, DAEMON) is not None
    processes.start(
        state, DAEMON,
        [sys.executable, "-m", "technicia_deploy.sandbox.cloud_emulator", "--config", str(config_file), "--port", str(port)],
    )
    processes.wait_for_port("127.0.0.1", port, timeout=30, name=DAEMON, log=state.logs / f"{DAEMON}.log")
    if already_running:
        from technicia_deploy.sandbox.cloud_emulator.server import admin_request

        admin_request(url, "POST", "/_admin/reload")  # keys may have been added since it started
    state.data[COMPONENT] = {
        "url": url,
        "port": port,
        "config": str(config_file),
        "environments": {
            keys.environment: {**asdict(keys), "api_keys": api_keys_section(keys, url)} for keys in all_keys
        },
    }
    state.save()


def down(state: SandboxState) -> None:
    processes.stop(state, DAEMON)
    shutil.rmtree(state.path(COMPONENT), ignore_errors=True)
    if state.data.pop(COMPONENT, None) is not None:
        state.save()


def status(state: SandboxState) -> list[str]:
    data = state.data.get(COMPONENT)
    pid = processes.pid_of(state, DAEMON)
    if not data:
        return [f"cloud: not set up{' (emulator still running, pid %d)' % pid if pid else ''}"]
    running = f"running (pid {pid})" if pid else "NOT running"
    lines = [f"cloud: emulator {running} at {data['url']} (Anthropic, VoyageAI, Vision, Document AI)"]
    for env, info in data.get("environments", {}).items():
        lines.append(f"cloud: {env}: project {info['project_id']}, Document AI processor {info['location']}/{info['processor_id']}")
    return lines
