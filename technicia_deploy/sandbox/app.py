"""Sandbox component ``app``: the sample TechnicIA application the pipeline deploys.

What a VPS sees, as it would for the real project:
- a git repository (``git daemon``, read-only) with releases v1.0.0 and v1.1.0 (good)
  and v1.2.0 (its API never turns healthy: the rollback case), see ``app_repo``;
- a Docker registry (Debian's ``docker-registry``) over HTTPS with a certificate for
  the gateway IP signed by the sandbox CA (``pki``), holding the images those
  releases' docker-compose.yml files name.
Both listen on the network gateway, the host as the VPSes see it. The images are
built here from scratch with the host's static busybox (nothing can be pulled).

Pushing from the host's dockerd needs it to trust the sandbox CA for this one
registry address: ``/etc/docker/certs.d/<gw>:<port>/ca.crt``, removed by ``down``.
"""

from __future__ import annotations

import hashlib
import shutil
import ssl
import struct
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from technicia_deploy.sandbox import app_repo, pki, processes
from technicia_deploy.sandbox.docker_engine import docker, require_engine
from technicia_deploy.sandbox.state import SandboxState

REGISTRY_DAEMON = "app-registry"
GIT_DAEMON = "app-git"
IMAGES = Path(__file__).with_name("app_template") / "images"
LABEL = "technicia.sandbox.app"
DOCKER_CERTS = Path("/etc/docker/certs.d")
MANIFEST_TYPES = ", ".join((
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
))

# As seen on the server (the compose file publishes these ports): what "healthy" means.
HEALTH = {
    "frontend": "http://127.0.0.1:8080/",
    "api": "http://127.0.0.1:8000/api/health",
    "n8n": "http://127.0.0.1:5678/healthz",
    "qdrant": "http://127.0.0.1:6333/readyz",
}
# What nginx must proxy to; n8n and qdrant must stay unreachable from outside.
UPSTREAMS = {"/": "http://127.0.0.1:8080", "/api/": "http://127.0.0.1:8000"}
INTERNAL_PORTS = [5678, 6333]
# What the sample's .env.example declares and its API reports in /api/health's "keys": the same names the
# pipeline writes (technicia_deploy.envfile.ENV_VARIABLES; a unit test holds them together).
ENV_KEYS = ["GOOGLE_CLOUD_PROJECT", "GOOGLE_APPLICATION_CREDENTIALS_JSON", "DOCUMENTAI_LOCATION",
            "DOCUMENTAI_PROCESSOR_ID", "VOYAGE_API_KEY", "VOYAGE_MODEL", "ANTHROPIC_API_KEY", "ANTHROPIC_MODEL"]


@dataclass(frozen=True)
class ImageSpec:
    service: str                    # directory under app_template/images
    repository: str                 # path in the registry, e.g. technicia/api
    tag: str
    build_args: tuple[tuple[str, str], ...]

    def ref(self, registry: str) -> str:
        return f"{registry}/{self.repository}:{self.tag}"


def image_specs() -> list[ImageSpec]:
    """Every image the releases' compose files name: front end and API per release, n8n and Qdrant once."""
    specs: list[ImageSpec] = []
    for release in app_repo.RELEASES:
        specs.append(ImageSpec("frontend", "technicia/frontend", release.version, (("APP_VERSION", release.version),)))
        specs.append(ImageSpec("api", "technicia/api", release.version,
                               (("APP_VERSION", release.version), ("API_HEALTHY", "yes" if release.healthy else "no"))))
    specs.append(ImageSpec("n8n", "n8nio/n8n", app_repo.N8N_TAG, (("APP_VERSION", app_repo.N8N_TAG),)))
    specs.append(ImageSpec("qdrant", "qdrant/qdrant", app_repo.QDRANT_TAG, (("APP_VERSION", app_repo.QDRANT_TAG),)))
    return specs


# --- prerequisites -------------------------------------------------------------------------------

def _gateway(state: SandboxState) -> str:
    try:
        return state.data["network"]["gateway"]
    except (KeyError, TypeError):
        raise RuntimeError("sandbox component app needs the network component first "
                           "(state.data['network']['gateway'] is missing): bring `network` up before `app`") from None


def is_static_elf(path: Path) -> bool:
    """True for an ELF executable without a program interpreter (runs in an empty image)."""
    data = path.read_bytes()[:65536]
    if data[:4] != b"\x7fELF":
        return False
    wide, little = data[4] == 2, data[5] == 1
    order = "<" if little else ">"
    if wide:
        phoff, = struct.unpack_from(order + "Q", data, 0x20)
        phentsize, phnum = struct.unpack_from(order + "HH", data, 0x36)
    else:
        phoff, = struct.unpack_from(order + "I", data, 0x1C)
        phentsize, phnum = struct.unpack_from(order + "HH", data, 0x2A)
    for i in range(phnum):
        p_type, = struct.unpack_from(order + "I", data, phoff + i * phentsize)
        if p_type == 3:  # PT_INTERP: needs a dynamic loader the image does not have
            return False
    return True


def static_busybox() -> Path:
    found = shutil.which("busybox")
    if not found or not is_static_elf(Path(found).resolve()):
        raise RuntimeError("the sample application's images need a static busybox: "
                           "`apt-get install busybox-static` (or `make bootstrap`)")
    return Path(found).resolve()


def _registry_binary() -> str:
    found = shutil.which("docker-registry")
    if not found:
        raise RuntimeError("the sandbox registry needs Debian's docker-registry: "
                           "`apt-get install docker-registry` (or `make bootstrap`)")
    return found


# --- registry ------------------------------------------------------------------------------------

def registry_config(address: str, storage: Path, cert: Path, key: Path) -> dict:
    return {
        "version": "0.1",
        "log": {"level": "info", "fields": {"service": "registry"}},
        "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True},
                    "cache": {"blobdescriptor": "inmemory"}},
        "http": {"addr": address, "tls": {"certificate": str(cert), "key": str(key)},
                 "headers": {"X-Content-Type-Options": ["nosniff"]}},
    }


def tls_context(ca_file: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


def has_manifest(registry: str, repository: str, tag: str, ca_file: Path) -> bool:
    """Whether the registry serves ``repository:tag`` (HTTPS, verified with the sandbox CA)."""
    request = urllib.request.Request(f"https://{registry}/v2/{repository}/manifests/{tag}",
                                     method="HEAD", headers={"Accept": MANIFEST_TYPES})
    try:
        with urllib.request.urlopen(request, context=tls_context(ca_file), timeout=10) as resp:
            return resp.status == 200
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return False
        raise


def _wait_for_registry(registry: str, ca_file: Path, log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"https://{registry}/v2/", context=tls_context(ca_file), timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the sandbox registry does not answer https://{registry}/v2/ within {timeout:.0f}s; see {log}")
        time.sleep(0.1)


def trust_on_host(registry: str, ca_cert: Path) -> Path:
    """Let the host's dockerd push to the registry: it reads certs.d per registry address, no restart."""
    target = DOCKER_CERTS / registry
    try:
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ca_cert, target / "ca.crt")
    except PermissionError:
        raise RuntimeError(f"cannot write {target}/ca.crt: the host's Docker must trust the sandbox CA to push "
                           f"to {registry}; run the sandbox as root (or make {DOCKER_CERTS} writable)") from None
    return target


# --- images --------------------------------------------------------------------------------------

def build_image(spec: ImageSpec, ref: str, busybox: Path, labels: dict[str, str]) -> None:
    """``docker build`` one stand-in image from scratch, its context assembled in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix=f"technicia-{spec.service}-") as tmp:
        context = Path(tmp)
        shutil.copy2(busybox, context / "busybox")
        shutil.copytree(IMAGES / "common", context / "common")
        shutil.copytree(IMAGES / spec.service, context / "service", ignore=shutil.ignore_patterns("Dockerfile"))
        shutil.copy2(IMAGES / spec.service / "Dockerfile", context / "Dockerfile")
        args = ["build", "-q", "-t", ref]
        for name, value in spec.build_args:
            args += ["--build-arg", f"{name}={value}"]
        for name, value in labels.items():
            args += ["--label", f"{name}={value}"]
        docker(*args, str(context))


def images_digest(busybox: Path) -> str:
    """sha256 of everything an image is built from (template files, busybox): a registry holding images of
    other inputs (an older routes.sh) is rebuilt, not trusted because its tags exist."""
    digest = hashlib.sha256(hashlib.sha256(busybox.read_bytes()).digest())
    for path in sorted(p for p in IMAGES.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(IMAGES)}\0".encode() + path.read_bytes() + b"\0")
    return digest.hexdigest()


def remove_images(prefix: str) -> list[str]:
    """Remove every image this sandbox built (found by label, so half-made builds go too)."""
    ids = sorted(set(docker("images", "-q", "--filter", f"label={LABEL}={prefix}", check=False).split()))
    if ids:
        docker("image", "rm", "-f", *ids, check=False)
    return ids


# --- component -----------------------------------------------------------------------------------

def _port(current: dict, key: str, gateway: str) -> int:
    if current.get("gateway") == gateway and current.get(key):
        return int(current[key])
    return processes.free_port(gateway)


def _start_registry(state: SandboxState, gateway: str, port: int, directory: Path, ca_cert: Path, ca_key: Path) -> str:
    cert, key = directory / "registry.pem", directory / "registry-key.pem"
    if pki.cert_ip(cert) != gateway:
        pki.issue_server_cert(ca_cert, ca_key, gateway, cert, key)
    address = f"{gateway}:{port}"
    config = directory / "registry.yml"
    wanted = yaml.safe_dump(registry_config(address, directory / "registry-data", cert, key), sort_keys=False)
    if not (config.is_file() and config.read_text() == wanted):
        processes.stop(state, REGISTRY_DAEMON)
        config.write_text(wanted)
    processes.start(state, REGISTRY_DAEMON, [_registry_binary(), "serve", str(config)], cwd=directory)
    _wait_for_registry(address, ca_cert, state.logs / f"{REGISTRY_DAEMON}.log")
    return address


def _start_git_daemon(state: SandboxState, gateway: str, port: int, base: Path, current: dict) -> None:
    if current.get("gateway") != gateway or int(current.get("git_port") or 0) != port:
        processes.stop(state, GIT_DAEMON)
    # Read-only (upload-pack only); serves repositories under base that carry git-daemon-export-ok.
    argv = ["git", "daemon", "--reuseaddr", "--informative-errors", f"--listen={gateway}", f"--port={port}",
            f"--base-path={base}", str(base)]
    processes.start(state, GIT_DAEMON, argv, cwd=base)
    processes.wait_for_port(gateway, port, name="git daemon", log=state.logs / f"{GIT_DAEMON}.log")


def up(state: SandboxState) -> None:
    gateway = _gateway(state)
    busybox = static_busybox()
    _registry_binary()
    require_engine()
    current = dict(state.data.get("app") or {})
    directory = state.path("app")
    directory.mkdir(parents=True, exist_ok=True)
    registry_port, git_port = _port(current, "registry_port", gateway), _port(current, "git_port", gateway)

    ca_cert, ca_key = pki.ensure_ca(state.path("pki"), f"TechnicIA sandbox CA {state.prefix}")
    registry = _start_registry(state, gateway, registry_port, directory, ca_cert, ca_key)
    certs_dir = trust_on_host(registry, ca_cert)
    # Recorded before the slow part, so `down` after a failed build still finds the daemons and the trust entry.
    state.data["app"] = {**current, "gateway": gateway, "registry": registry, "registry_port": registry_port,
                         "git_port": git_port, "registry_ca": str(ca_cert), "host_docker_trust": str(certs_dir)}
    state.save()

    refs: list[str] = []
    inputs = images_digest(busybox)
    same_inputs = current.get("images_digest") == inputs
    for spec in image_specs():
        ref = spec.ref(registry)
        refs.append(ref)
        if same_inputs and has_manifest(registry, spec.repository, spec.tag, ca_cert):
            continue
        build_image(spec, ref, busybox, {LABEL: state.prefix})
        docker("push", "-q", ref)
    state.data["app"]["images_digest"] = inputs

    base = directory / "git"
    bare = base / "technicia.git"
    commits = app_repo.tag_commits(bare) if bare.is_dir() else {}
    if not commits or current.get("registry") != registry or commits != current.get("commits"):
        commits = app_repo.build_bare_repo(bare, registry)
    _start_git_daemon(state, gateway, git_port, base, current)

    state.data["app"] = {
        **state.data["app"],
        "repository": f"git://{gateway}:{git_port}/technicia.git",
        "versions": {"good": app_repo.good_tags(), "broken": app_repo.broken_tag()},
        "commits": commits,
        # What GET /api/health reports as "version" for each tag.
        "api_versions": {r.tag: r.version for r in app_repo.RELEASES},
        "images": refs,
        "health": dict(HEALTH),
        "upstreams": dict(UPSTREAMS),
        "internal_ports": list(INTERNAL_PORTS),
        "env_keys": list(ENV_KEYS),
        "compose_file": "docker-compose.yml",
        "deploy_command": "./deploy.sh",
    }
    state.save()


def down(state: SandboxState) -> None:
    current = state.data.get("app") or {}
    processes.stop(state, GIT_DAEMON)
    processes.stop(state, REGISTRY_DAEMON)
    if shutil.which("docker"):
        remove_images(state.prefix)
    trust = current.get("host_docker_trust")
    if trust and Path(trust).parent == DOCKER_CERTS:
        shutil.rmtree(trust, ignore_errors=True)
    shutil.rmtree(state.path("app"), ignore_errors=True)
    state.data.pop("app", None)
    state.save()


def status(state: SandboxState) -> list[str]:
    app = state.data.get("app")
    if not app:
        return ["app: not created"]
    registry = "running" if processes.pid_of(state, REGISTRY_DAEMON) else "STOPPED"
    git = "running" if processes.pid_of(state, GIT_DAEMON) else "STOPPED"
    lines = [f"app: registry https://{app['registry']} ({registry}), {len(app.get('images', []))} images; "
             f"trust {app.get('registry_ca')}"]
    if app.get("repository"):
        versions = app["versions"]
        lines.append(f"app: repository {app['repository']} ({git}); good {' '.join(versions['good'])}, "
                     f"broken {versions['broken']}; deploy with {app['deploy_command']}")
    else:
        lines.append("app: repository not built (up did not finish)")
    return lines
