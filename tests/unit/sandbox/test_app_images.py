"""The stand-in services' HTTP routes, run with the host's static busybox exactly as in the images.

Each request goes through the image's own http-request.sh (what `nc -ll -e` runs per
connection) with busybox applets only on PATH: no Docker engine needed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from technicia_deploy.sandbox import app

IMAGES = app.IMAGES
pytestmark = pytest.mark.skipif(shutil.which("busybox") is None, reason="needs busybox (apt-get install busybox-static)")


@pytest.fixture(scope="module")
def applets(tmp_path_factory) -> Path:
    """A directory holding busybox's applets only: the image's /bin."""
    directory = tmp_path_factory.mktemp("bin")
    busybox = Path(shutil.which("busybox")).resolve()
    shutil.copy2(busybox, directory / "busybox")
    subprocess.run([str(directory / "busybox"), "--install", "-s", str(directory)], check=True)
    return directory


def request(applets: Path, service: str, raw: bytes, **env: str) -> tuple[int, dict[str, str], bytes]:
    environment = {"PATH": str(applets), "ROUTES": str(IMAGES / service / "routes.sh"), **env}
    proc = subprocess.run(["busybox", "sh", str(IMAGES / "common" / "http-request.sh")], input=raw,
                          env=environment, capture_output=True, timeout=20, executable=str(applets / "busybox"))
    head, _, body = proc.stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert int(headers["Content-Length"]) == len(body)
    return int(lines[0].split()[1]), headers, body


def get(applets: Path, service: str, target: str, **env: str) -> tuple[int, dict[str, str], bytes]:
    return request(applets, service, f"GET {target} HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\n".encode(), **env)


def post(applets: Path, service: str, target: str, body: bytes, **env: str):
    raw = (f"POST {target} HTTP/1.1\r\nHost: x\r\ncontent-length: {len(body)}\r\n\r\n").encode() + body
    return request(applets, service, raw, **env)


def test_api_health_reports_version_and_which_keys_are_set(applets):
    status, headers, body = get(applets, "api", "/api/health", APP_VERSION="1.1.0", API_HEALTHY="yes",
                                ANTHROPIC_API_KEY="sk-secret-canary", VOYAGE_API_KEY="")
    assert status == 200 and headers["Content-Type"] == "application/json"
    health = json.loads(body)
    assert health["status"] == "ok" and health["version"] == "1.1.0"
    assert health["keys"]["ANTHROPIC_API_KEY"] is True and health["keys"]["VOYAGE_API_KEY"] is False
    assert list(health["keys"]) == app.ENV_KEYS  # the names .env.example declares, in its order
    assert health["keys"]["DOCUMENTAI_PROCESSOR_ID"] is False and "DOCUMENTAI_PROCESSOR" not in health["keys"]
    assert b"sk-secret-canary" not in body  # presence only, never a value


def test_api_health_sees_every_variable_the_pipeline_writes(applets):
    # What the post-deployment functional check asks of the API: every key of the pipeline's .env reported set.
    from technicia_deploy import envfile
    from technicia_deploy.checks import functional

    env = {name: "x" for name in envfile.ENV_VARIABLES}
    status, _, body = get(applets, "api", "/api/health", APP_VERSION="1.0.0", API_HEALTHY="yes", **env)
    assert status == 200
    assert functional.key_report(body, envfile.ENV_VARIABLES) == (True, f"{len(envfile.ENV_VARIABLES)} key(s) seen")
    status, _, body = get(applets, "api", "/api/health", APP_VERSION="1.0.0", API_HEALTHY="yes",
                          **{**env, "DOCUMENTAI_PROCESSOR_ID": ""})
    assert functional.key_report(body, envfile.ENV_VARIABLES) == (
        False, "API reports key(s) missing: DOCUMENTAI_PROCESSOR_ID (written by the pipeline)")


def test_broken_release_fails_its_health_check(applets):
    status, _, body = get(applets, "api", "/api/health", APP_VERSION="1.2.0", API_HEALTHY="no")
    assert status == 503
    assert json.loads(body)["status"] == "error"


def test_echo_round_trips_any_text_as_json(applets):
    text = 'quote " backslash \\ tab\t new\nline é'
    status, _, body = post(applets, "api", "/api/echo", text.encode(), APP_VERSION="1.0.0", API_HEALTHY="yes")
    assert status == 200
    assert json.loads(body) == {"echo": text, "version": "1.0.0"}
    status, _, body = get(applets, "api", "/api/echo?message=bonjour%20%C3%A0+tous", APP_VERSION="1.0.0")
    assert json.loads(body)["echo"] == "bonjour à tous"


def test_ask_without_qdrant_is_a_bad_gateway(applets):
    status, _, body = get(applets, "api", "/api/ask?q=pompe", APP_VERSION="1.0.0",
                          QDRANT_URL="http://127.0.0.1:9")  # discard port: nothing listens
    assert status == 502 and "qdrant unreachable" in json.loads(body)["error"]


def test_unknown_route_is_404_json(applets):
    status, _, body = get(applets, "api", "/nope", APP_VERSION="1.0.0")
    assert status == 404 and "error" in json.loads(body)


def test_n8n_health(applets):
    status, _, body = get(applets, "n8n", "/healthz")
    assert status == 200 and json.loads(body) == {"status": "ok"}


@pytest.fixture
def qdrant_env(applets, tmp_path) -> dict[str, str]:
    env = {"QDRANT_STORAGE": str(tmp_path / "storage"), "QDRANT_SNAPSHOTS": str(tmp_path / "snapshots"),
           "APP_VERSION": "v1.12.1", "PATH": str(applets)}
    subprocess.run([str(applets / "sh"), str(IMAGES / "qdrant" / "prepare.sh")], env=env, check=True)
    return env


def test_qdrant_probes_answer_like_qdrant(applets, qdrant_env):
    assert get(applets, "qdrant", "/healthz", **qdrant_env)[::2] == (200, b"healthz check passed")
    assert get(applets, "qdrant", "/readyz", **qdrant_env)[::2] == (200, b"all shards are ready")
    status, _, body = get(applets, "qdrant", "/collections", **qdrant_env)
    assert json.loads(body)["result"] == {"collections": [{"name": "technicia_docs"}]}
    status, _, body = get(applets, "qdrant", "/collections/missing", **qdrant_env)
    assert status == 404 and "doesn't exist" in json.loads(body)["status"]["error"]


def test_qdrant_collection_snapshot_create_list_download_delete(applets, qdrant_env, tmp_path):
    status, _, body = post(applets, "qdrant", "/collections/technicia_docs/snapshots", b"", **qdrant_env)
    assert status == 200
    snapshot = json.loads(body)["result"]
    assert snapshot["name"].startswith("technicia_docs-") and snapshot["name"].endswith(".snapshot")
    listed = json.loads(get(applets, "qdrant", "/collections/technicia_docs/snapshots", **qdrant_env)[2])["result"]
    assert listed == [snapshot]
    status, headers, data = get(applets, "qdrant", f"/collections/technicia_docs/snapshots/{snapshot['name']}",
                                **qdrant_env)
    assert status == 200 and len(data) == snapshot["size"]
    import hashlib
    assert hashlib.sha256(data).hexdigest() == snapshot["checksum"]
    request(applets, "qdrant", f"DELETE /collections/technicia_docs/snapshots/{snapshot['name']} HTTP/1.0\r\n\r\n"
            .encode(), **qdrant_env)
    assert json.loads(get(applets, "qdrant", "/collections/technicia_docs/snapshots", **qdrant_env)[2])["result"] == []


def test_qdrant_full_snapshot_and_path_traversal_refused(applets, qdrant_env):
    status, _, body = post(applets, "qdrant", "/snapshots", b"", **qdrant_env)
    assert status == 200 and json.loads(body)["result"]["name"].startswith("full-snapshot-")
    status, _, _ = get(applets, "qdrant", "/snapshots/..", **qdrant_env)
    assert status == 400


def put(applets: Path, service: str, target: str, body: bytes, **env: str):
    raw = (f"PUT {target} HTTP/1.1\r\nHost: x\r\ncontent-length: {len(body)}\r\n\r\n").encode() + body
    return request(applets, service, raw, **env)


def test_qdrant_points_snapshot_and_recovery_like_qdrant(applets, qdrant_env, tmp_path):
    """Points upserted and counted, a snapshot taken, the collection recovered from it (what the backup and the
    restore drill call); an upsert of a known id changes nothing."""
    points = {"points": [{"id": i, "vector": [0.1, 0.2], "payload": {"doc": f"d{i}"}} for i in range(1, 6)]}
    status, _, body = put(applets, "qdrant", "/collections/technicia_docs/points?wait=true",
                          json.dumps(points).encode(), **qdrant_env)
    assert status == 200 and json.loads(body)["result"]["status"] == "completed"
    put(applets, "qdrant", "/collections/technicia_docs/points", json.dumps({"points": points["points"][:2]}).encode(),
        **qdrant_env)
    count = post(applets, "qdrant", "/collections/technicia_docs/points/count", b'{"exact":true}', **qdrant_env)
    assert json.loads(count[2])["result"] == {"count": 5}
    info = json.loads(get(applets, "qdrant", "/collections/technicia_docs", **qdrant_env)[2])["result"]
    assert info["points_count"] == 5

    snapshot = json.loads(post(applets, "qdrant", "/collections/technicia_docs/snapshots", b"", **qdrant_env)[2])["result"]
    location = f"file://{qdrant_env['QDRANT_SNAPSHOTS']}/technicia_docs/{snapshot['name']}"
    # Into another collection (the drill restores production's into test's): same points.
    status, _, body = put(applets, "qdrant", "/collections/restored/snapshots/recover",
                          json.dumps({"location": location}).encode(), **qdrant_env)
    assert status == 200 and json.loads(body)["result"] is True, body
    assert json.loads(get(applets, "qdrant", "/collections/restored", **qdrant_env)[2])["result"]["points_count"] == 5


def test_qdrant_recovery_refuses_a_truncated_or_foreign_snapshot(applets, qdrant_env):
    snapshots = Path(qdrant_env["QDRANT_SNAPSHOTS"])
    (snapshots / "technicia_docs").mkdir(parents=True, exist_ok=True)
    (snapshots / "technicia_docs" / "empty.snapshot").write_bytes(b"")
    status, _, body = put(applets, "qdrant", "/collections/technicia_docs/snapshots/recover",
                          json.dumps({"location": f"file://{snapshots}/technicia_docs/empty.snapshot"}).encode(),
                          **qdrant_env)
    assert status == 400, body
    status, _, _ = put(applets, "qdrant", "/collections/technicia_docs/snapshots/recover",
                       b'{"location": "file:///etc/passwd"}', **qdrant_env)
    assert status == 403
    # The collection was left as it was.
    assert get(applets, "qdrant", "/collections/technicia_docs", **qdrant_env)[0] == 200
