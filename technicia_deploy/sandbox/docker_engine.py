"""Talking to the host's Docker engine through the ``docker`` command line.

The CLI (rather than the SDK) because the image cache needs pipes
(``docker save | zstd``) and because every command it runs is one a developer
can paste into a shell to see what the sandbox did.
"""

from __future__ import annotations

import shutil
import subprocess


class DockerUnavailable(RuntimeError):
    """No usable Docker engine: the message says what is missing and how to get it."""


def require_engine() -> None:
    """Raise DockerUnavailable naming the missing piece (client, daemon, permission)."""
    if shutil.which("docker") is None:
        raise DockerUnavailable(
            "the sandbox needs a Docker engine and the `docker` command is not installed: "
            "run `apt-get install docker.io` (then start `dockerd`), or `make bootstrap`"
        )
    probe = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True)
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or ["no answer"])[-1]
        raise DockerUnavailable(
            f"the Docker engine does not answer ({reason}): start it (`dockerd &` as root on a machine without "
            "systemd, or `systemctl start docker`), or run `make bootstrap`"
        )


def docker(*args: str, check: bool = True, input: bytes | None = None) -> str:
    """Run ``docker ARGS`` and return its stdout; a failure raises with docker's own message."""
    proc = subprocess.run(["docker", *args], capture_output=True, input=input)
    if check and proc.returncode != 0:
        message = proc.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"`docker {' '.join(args[:3])}...` failed: {message}")
    return proc.stdout.decode(errors="replace")


def exists(kind: str, name: str) -> bool:
    """Whether a docker object (container, network, volume, image) of that name exists."""
    sub = {"container": ["container", "inspect"], "network": ["network", "inspect"],
           "volume": ["volume", "inspect"], "image": ["image", "inspect"]}[kind]
    return subprocess.run(["docker", *sub, name], capture_output=True).returncode == 0


def names_with_prefix(kind: str, prefix: str) -> list[str]:
    """Names of containers / networks / volumes starting with ``prefix`` (docker filters by substring)."""
    if kind == "container":
        out = docker("ps", "-a", "--filter", f"name={prefix}", "--format", "{{.Names}}")
    else:
        out = docker(kind, "ls", "--filter", f"name={prefix}", "--format", "{{.Name}}")
    return [n for n in out.split() if n.startswith(prefix)]
