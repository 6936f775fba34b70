"""services.api_keys around the .env contract: the step's own code with its server replaced by bash on a
temporary release directory (every command it sends runs here, in order, and is recorded)."""

from __future__ import annotations

import getpass
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import SecretStr

from technicia_deploy import envfile
from tasks import services

SHA = "0123456789abcdef0123456789abcdef01234567"
USER = getpass.getuser()


@dataclass
class LocalServer:
    """A connection whose commands run in bash here (sudo ignored: the test owns the files)."""

    commands: list[str] = field(default_factory=list)

    def read(self, command: str, *, sudo: bool = False):
        return self.run(command, sudo=sudo)

    def run(self, command: str, *, sudo: bool = False, as_user: str | None = None, stdin: str | None = None, **_):
        self.commands.append(command)
        done = subprocess.run(["bash", "-c", command], input=stdin, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return SimpleNamespace(stdout=done.stdout, stderr=done.stderr, exit_code=0)


KEYS = SimpleNamespace(
    google_project_id="technicia-test", google_service_account_json=SecretStr('{"type": "service_account"}'),
    documentai_location="eu", documentai_processor_id="a1b2c3", voyageai_api_key=SecretStr("pa-canary"),
    voyageai_model="voyage-3.5-lite", anthropic_api_key=SecretStr("sk-ant-canary"), anthropic_model="claude-sonnet-4-6")


@pytest.fixture
def step(tmp_path, monkeypatch):
    release = tmp_path / "releases" / f"v1.0.0-{SHA[:12]}"
    release.mkdir(parents=True)
    server = LocalServer()
    env = SimpleNamespace(
        name="test", project="technicia", deploy_user=USER,
        api_keys=lambda: KEYS,
        settings=SimpleNamespace(api_keys=SimpleNamespace(smoke_max_age_minutes=60)),
        application=SimpleNamespace(directory=str(tmp_path), env_file=".env"))
    monkeypatch.setattr(services.runtime, "environment", lambda name, project="technicia": env)
    monkeypatch.setattr(services.runtime, "connect", lambda _env: server)
    monkeypatch.setattr(services, "_smoke", lambda *a, **k: "4 keys work")

    def run():
        return services.api_keys.fn(environment="test", version="v1.0.0", sha=SHA).result()

    return SimpleNamespace(release=release, server=server, run=run)


def test_a_variable_the_release_expects_stops_the_step_before_anything_is_written(step):
    example = "".join(f"{name}=\n" for name in envfile.ENV_VARIABLES) + "QDRANT_API_KEY=\n"
    (step.release / ".env.example").write_text(example)
    with pytest.raises(services.ContractMismatch) as caught:
        step.run()
    assert str(caught.value) == (
        f"test: v1.0.0 (0123456789ab): {step.release}/.env.example and the pipeline's .env disagree: the application "
        "expects QDRANT_API_KEY, which the pipeline does not provide. Rename the variable in the application's "
        ".env.example or in the pipeline (technicia_deploy/envfile.py ENV_VARIABLES); .env not written, "
        "no container restarted")
    assert len(step.server.commands) == 1  # the one fact round trip, nothing after it
    assert not (step.release / ".env").exists()


def test_agreeing_release_gets_its_env_and_the_summary_says_the_contract_held(step):
    (step.release / ".env.example").write_text("# keys\n" + "".join(f"{n}=\n" for n in envfile.ENV_VARIABLES))
    result = step.run()
    assert (step.release / ".env").read_text() == envfile.render(KEYS)
    assert result["outcome"] == "changed" and result["details"]["contract"] == f"{step.release}/.env.example"
    assert result["summary"] == (f".env written (8 variables, sha256 {envfile.digest(envfile.render(KEYS))[:12]}; "
                                 "8 variables match .env.example); 4 keys work")
    assert "sk-ant-canary" not in "".join(step.server.commands)  # the secret went on stdin only
    assert step.run()["outcome"] == "unchanged"


def test_release_without_example_is_accepted_and_says_no_contract_was_found(step):
    result = step.run()
    assert (step.release / ".env").is_file()
    assert result["details"]["contract"] is None
    assert "no contract found (no .env.example in the release): variable names not checked" in result["summary"]
