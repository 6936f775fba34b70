"""The sample application as the pipeline meets it: git over git://, images over verified HTTPS, services that answer.

Runs against the session sandbox. The images run on the host's Docker, published on
127.0.0.1 only, on a network of their own, and are removed at the end.
"""

from __future__ import annotations

import json
import re
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from technicia_deploy.sandbox import app
from technicia_deploy.sandbox.docker_engine import docker

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def app_data(sandbox) -> dict:
    return sandbox.data["app"]


def http(url: str, timeout: float = 3.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_http(url: str, status: int = 200, deadline_s: float = 20.0) -> bytes:
    """Poll until ``url`` answers ``status``; returns the body."""
    deadline = time.monotonic() + deadline_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            got, body = http(url)
            if got == status:
                return body
            last = got
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer {status} within {deadline_s}s (last: {last})")


def wait_health(container: str, wanted: str, deadline_s: float = 30.0) -> None:
    deadline = time.monotonic() + deadline_s
    state = ""
    while time.monotonic() < deadline:
        state = docker("inspect", "-f", "{{.State.Health.Status}}", container).strip()
        if state == wanted:
            return
        time.sleep(0.2)
    raise AssertionError(f"{container} health is {state!r}, not {wanted!r}, after {deadline_s}s")


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, timeout=60).stdout


# --- the repository -------------------------------------------------------------------------------

def test_served_repository_lists_the_release_tags(app_data):
    refs = dict(reversed(line.split("\t")) for line in git("ls-remote", "--tags", app_data["repository"]).splitlines())
    peeled = {name.removeprefix("refs/tags/").removesuffix("^{}"): sha for name, sha in refs.items()
              if name.endswith("^{}")}
    assert peeled == app_data["commits"]
    assert sorted(peeled) == sorted(app_data["versions"]["good"] + [app_data["versions"]["broken"]])


def test_a_tag_checkout_is_deployable_and_the_repository_is_read_only(app_data, tmp_path):
    checkout = tmp_path / "technicia"
    git("clone", "-q", app_data["repository"], str(checkout))
    git("checkout", "-q", "v1.1.0", cwd=checkout)
    assert (checkout / "deploy.sh").stat().st_mode & 0o111
    assert f"{app_data['registry']}/technicia/api:1.1.0" in (checkout / "docker-compose.yml").read_text()
    push = subprocess.run(["git", "push", "origin", "HEAD:refs/heads/intruder"], cwd=checkout,
                          capture_output=True, text=True, timeout=60)
    assert push.returncode != 0


# --- the registry ---------------------------------------------------------------------------------

def test_registry_serves_every_manifest_over_https_verified_by_the_sandbox_ca(app_data):
    ca = Path(app_data["registry_ca"])
    for ref in app_data["images"]:
        repository, tag = ref.removeprefix(app_data["registry"] + "/").rsplit(":", 1)
        assert app.has_manifest(app_data["registry"], repository, tag, ca), ref
    # Without the sandbox CA the certificate is refused: the TLS is real, not skipped.
    with pytest.raises(urllib.error.URLError) as refused:
        urllib.request.urlopen(f"https://{app_data['registry']}/v2/", context=ssl.create_default_context(), timeout=5)
    assert isinstance(refused.value.reason, ssl.SSLCertVerificationError)


def test_host_docker_pulls_from_the_registry(app_data):
    ref = next(r for r in app_data["images"] if "/n8nio/n8n:" in r)
    docker("image", "rm", ref)
    docker("pull", "-q", ref)
    assert docker("image", "inspect", "-f", "{{.Config.Healthcheck.Test}}", ref).count("/healthz") == 1


# --- the images, run on the host ------------------------------------------------------------------

@pytest.fixture(scope="module")
def stack(sandbox, app_data):
    """qdrant, n8n, api + frontend of v1.1.0, and the broken api of v1.2.0, on a network of their own."""
    registry = app_data["registry"]
    network = f"{sandbox.prefix}-apptest"
    runs = {
        "qdrant": (f"{registry}/qdrant/qdrant:v1.12.1", 6333, ["--network-alias", "qdrant"]),
        "n8n": (f"{registry}/n8nio/n8n:1.64.0", 5678, ["--network-alias", "n8n"]),
        "api": (f"{registry}/technicia/api:1.1.0", 8000, ["-e", "ANTHROPIC_API_KEY=sk-ant-canary"]),
        "frontend": (f"{registry}/technicia/frontend:1.1.0", 8080, []),
        "broken-api": (f"{registry}/technicia/api:1.2.0", 8000, []),
    }
    containers = {name: f"{sandbox.prefix}-apptest-{name}" for name in runs}
    docker("network", "create", network)
    try:
        ports = {}
        for name, (image, port, extra) in runs.items():
            docker("run", "-d", "--name", containers[name], "--network", network,
                   "-p", f"127.0.0.1::{port}", *extra, image)
            ports[name] = int(docker("port", containers[name], f"{port}/tcp").split(":")[-1])
        yield {"ports": ports, "containers": containers}
    finally:
        docker("rm", "-f", *containers.values(), check=False)
        docker("network", "rm", network, check=False)


def base(stack, name: str) -> str:
    return f"http://127.0.0.1:{stack['ports'][name]}"


def test_health_routes_answer(stack):
    health = json.loads(wait_http(base(stack, "api") + "/api/health"))
    assert health["status"] == "ok" and health["version"] == "1.1.0"
    assert health["keys"]["ANTHROPIC_API_KEY"] is True
    assert json.loads(wait_http(base(stack, "n8n") + "/healthz")) == {"status": "ok"}
    assert wait_http(base(stack, "qdrant") + "/readyz") == b"all shards are ready"
    collections = json.loads(wait_http(base(stack, "qdrant") + "/collections"))
    assert collections["status"] == "ok" and collections["result"]["collections"]
    page = wait_http(base(stack, "frontend") + "/").decode()
    assert re.search(r'id="version">1\.1\.0<', page)


def test_a_request_crosses_from_the_api_to_qdrant(stack):
    wait_http(base(stack, "qdrant") + "/readyz")
    answer = json.loads(wait_http(base(stack, "api") + "/api/ask?q=pression%20pompe"))
    assert answer["question"] == "pression pompe" and answer["qdrant"]["collections"] >= 1
    request = urllib.request.Request(base(stack, "api") + "/api/echo", data=b'{"hello": "world"}', method="POST")
    with urllib.request.urlopen(request, timeout=5) as resp:
        assert json.loads(resp.read())["echo"] == '{"hello": "world"}'


def test_docker_healthchecks_pass_for_good_images(stack):
    for name in ("qdrant", "n8n", "api", "frontend"):
        wait_health(stack["containers"][name], "healthy")


def test_broken_release_runs_but_turns_unhealthy(stack):
    body = wait_http(base(stack, "broken-api") + "/api/health", status=503)
    assert json.loads(body)["version"] == "1.2.0"
    wait_health(stack["containers"]["broken-api"], "unhealthy")


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="needs docker-compose (v1, Debian bookworm)")
def test_deploy_script_pulls_and_converges_idempotently(sandbox, app_data, tmp_path):
    """deploy.sh of v1.1.0 with compose v1 on the host; every port re-published on 127.0.0.1 (host safety)."""
    checkout = tmp_path / "technicia"
    git("clone", "-q", "--branch", "v1.1.0", app_data["repository"], str(checkout))
    compose = checkout / "docker-compose.yml"
    compose.write_text(re.sub(r'- "(?:127\.0\.0\.1:)?\d+:(\d+)"', r'- "127.0.0.1::\1"', compose.read_text()))
    (checkout / ".env").write_text("ANTHROPIC_API_KEY=sk-ant-canary\n")
    project = f"{sandbox.prefix}-appdeploy"
    env = {"COMPOSE_PROJECT_NAME": project, "PATH": "/usr/local/bin:/usr/bin:/bin"}
    try:
        first = subprocess.run(["./deploy.sh"], cwd=checkout, env=env, capture_output=True, text=True, timeout=180)
        assert first.returncode == 0, first.stderr
        second = subprocess.run(["./deploy.sh"], cwd=checkout, env=env, capture_output=True, text=True, timeout=180)
        assert second.returncode == 0, second.stderr
        assert "Recreating" not in second.stderr and "Creating" not in second.stderr
        for service in ("frontend", "api", "n8n", "qdrant"):
            wait_health(f"{project}_{service}_1", "healthy")
        api_port = docker("port", f"{project}_api_1", "8000/tcp").split(":")[-1].strip()
        answer = json.loads(wait_http(f"http://127.0.0.1:{api_port}/api/ask?q=x"))
        assert answer["version"] == "1.1.0"
    finally:
        subprocess.run(["docker-compose", "down", "-v", "--remove-orphans"], cwd=checkout, env=env,
                       capture_output=True, timeout=120)
