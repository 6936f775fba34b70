"""Docker engine + Compose, running, at or above the configured version; deploy user in 'docker'.

Two sources (config ``docker.source``):

- ``distro``: the distribution's packages, ``docker.io`` plus the best Compose
  package it offers: ``docker-compose-v2`` (Ubuntu 22.04+), else
  ``docker-compose-plugin``, else ``docker-compose`` (Compose v1: all that
  Debian 12 has). The choice is read from ``apt-cache policy`` in the facts;
  when the server's package lists are empty (a new VPS) it is made on the
  server after ``apt-get update``.
- ``docker-apt``: Docker's own apt repository (keyring + sources entry), then
  docker-ce and docker-compose-plugin, as docs.docker.com documents it.

Facts (one round trip): OS id/codename and architecture, ``docker --version``,
``docker compose version`` / ``docker-compose version``, service state, the
user's groups, ``apt-cache policy`` of the candidate packages, and Docker's
apt sources file and keyring.

Adding the user to 'docker' does not apply to an SSH connection already
open: the executor must reconnect after :func:`operations` returns a
``usermod`` (see :func:`needs_reconnect`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

from ..config import Docker
from .files import FileFact, WantedFile, ensure_file, file_fact_body, parse_file_section
from .shell import APT_GET, Section, apt_install, check_unix_name, fact_script, parse_sections, q, version_at_least

# Docker's repository as documented on docs.docker.com (configuration data, overridable).
DEFAULT_DOCKER_APT_URL = "https://download.docker.com/linux"
DOCKER_KEYRING = "/etc/apt/keyrings/docker.asc"
DOCKER_SOURCES = "/etc/apt/sources.list.d/docker.list"
DOCKER_CE_PACKAGES = ("docker-ce", "docker-ce-cli", "containerd.io", "docker-buildx-plugin", "docker-compose-plugin")
# Best first: Compose v2 as a CLI plugin, else the v1 binary.
DISTRO_COMPOSE_PACKAGES = ("docker-compose-v2", "docker-compose-plugin", "docker-compose")
POLICY_PACKAGES = ("docker.io", *DISTRO_COMPOSE_PACKAGES, "docker-ce")
SECTIONS = ("os", "arch", "docker", "compose_v2", "compose_v1", "active", "enabled", "groups", "policy", "sources", "keyring")


class DockerError(RuntimeError):
    """The wanted Docker cannot be installed from the configured source (names why)."""


@dataclass(frozen=True)
class PackagePolicy:
    installed: str | None
    candidate: str | None


@dataclass(frozen=True)
class DockerFacts:
    os_id: str | None  # 'debian' / 'ubuntu'
    codename: str | None  # 'bookworm' / 'jammy'
    arch: str | None  # 'amd64'
    docker_version: str | None
    compose_v2_version: str | None  # 'docker compose' works
    compose_v1_version: str | None  # 'docker-compose' works
    active: bool
    enabled: bool
    user_groups: tuple[str, ...]
    policy: Mapping[str, PackagePolicy]
    sources: FileFact
    keyring_present: bool


def fact_command(user: str = "deploy") -> str:
    return fact_script([
        ("os", '. /etc/os-release && echo "$ID $VERSION_CODENAME"'),
        ("arch", "dpkg --print-architecture"),
        ("docker", "docker --version"),
        ("compose_v2", "docker compose version --short"),
        # Compose v1 is a Python program that takes up to a second to print its version: read it from the
        # package database when Debian installed it (the binary otherwise, e.g. installed by pip).
        ("compose_v1", "v=$(dpkg-query -W -f='${db:Status-Status} ${Version}' docker-compose 2>/dev/null) "
                       '&& [ "${v%% *}" = installed ] && echo "${v#* }" || docker-compose version --short'),
        ("active", "systemctl is-active docker"),
        ("enabled", "systemctl is-enabled docker"),
        ("groups", f"id -nG {q(check_unix_name(user))}"),
        ("policy", "apt-cache policy " + " ".join(POLICY_PACKAGES)),
        ("sources", file_fact_body(DOCKER_SOURCES)),
        ("keyring", f"[ -s {DOCKER_KEYRING} ] && echo present"),
    ])


def parse_policy(text: str) -> dict[str, PackagePolicy]:
    """``apt-cache policy a b`` -> {a: PackagePolicy(installed, candidate)}; unknown packages are absent."""
    found: dict[str, PackagePolicy] = {}
    package = None
    fields: dict[str, str] = {}

    def close() -> None:
        if package:
            def value(key: str) -> str | None:
                v = fields.get(key)
                return None if v in (None, "(none)") else v
            found[package] = PackagePolicy(value("Installed"), value("Candidate"))

    for line in text.splitlines():
        if line and not line[0].isspace() and line.rstrip().endswith(":"):
            close()
            package, fields = line.rstrip()[:-1], {}
        elif package and line.strip().startswith(("Installed:", "Candidate:")):
            key, _, val = line.strip().partition(":")
            fields[key] = val.strip()
    close()
    return found


def _first_version(section: Section) -> str | None:
    if not section.ok or not section.lines:
        return None
    match = re.search(r"v?\d+\.\d+(?:\.\d+)?\S*", section.lines[0])
    return match.group(0).rstrip(",").lstrip("v") if match else None


def upstream_version(version: str | None) -> str | None:
    """A Debian package version's upstream part: ``1:1.29.2-3`` -> ``1.29.2`` (others unchanged)."""
    if version is None:
        return None
    return re.sub(r"-[^-]*$", "", re.sub(r"^\d+:", "", version)) if re.match(r"^(\d+:)?\d[^-]*-[^-]+$", version) else version


def parse_facts(output: str) -> DockerFacts:
    s = parse_sections(output, SECTIONS)
    os_words = s["os"].lines[0].split() if s["os"].ok and s["os"].lines else []
    return DockerFacts(
        os_id=os_words[0] if os_words else None,
        codename=os_words[1] if len(os_words) > 1 else None,
        arch=s["arch"].lines[0].strip() if s["arch"].ok and s["arch"].lines else None,
        docker_version=_first_version(s["docker"]),
        compose_v2_version=_first_version(s["compose_v2"]),
        compose_v1_version=upstream_version(_first_version(s["compose_v1"])),
        active=bool(s["active"].lines) and s["active"].lines[0].strip() == "active",
        enabled=bool(s["enabled"].lines) and s["enabled"].lines[0].strip() == "enabled",
        user_groups=tuple(s["groups"].lines[0].split()) if s["groups"].ok and s["groups"].lines else (),
        policy=parse_policy(s["policy"].text),
        sources=parse_file_section(DOCKER_SOURCES, s["sources"]),
        keyring_present=s["keyring"].ok and s["keyring"].lines == ["present"],
    )


def compose_command(facts: DockerFacts) -> str:
    """The Compose command prefix to use on this server: 'docker compose' (v2) or 'docker-compose' (v1)."""
    if facts.compose_v2_version:
        return "docker compose"
    if facts.compose_v1_version:
        return "docker-compose"
    raise DockerError("neither 'docker compose' nor 'docker-compose' works on the server")


def needs_reconnect(commands: list[str]) -> bool:
    """Group membership changes only reach new SSH sessions."""
    return any(cmd.startswith("usermod -aG docker ") for cmd in commands)


def distro_compose_package(facts: DockerFacts) -> str | None:
    for package in DISTRO_COMPOSE_PACKAGES:
        policy = facts.policy.get(package)
        if policy and policy.candidate:
            return package
    return None


def _install_distro_with_runtime_choice() -> str:
    # The lists were empty when the facts were read: choose after 'apt-get update', on the server.
    candidates = " ".join(DISTRO_COMPOSE_PACKAGES)
    return (
        f"{APT_GET} update && "
        f"pkg=$(for p in {candidates}; do "
        'if LC_ALL=C apt-cache policy "$p" | grep -q "Candidate: [0-9]"; then echo "$p"; break; fi; done) && '
        '[ -n "$pkg" ] && '
        f'{APT_GET} install --no-install-recommends docker.io "$pkg"'
    )


def _distro_operations(facts: DockerFacts, wanted: Docker) -> list[str]:
    engine = facts.policy.get("docker.io", PackagePolicy(None, None))
    have_engine = facts.docker_version is not None and version_at_least(facts.docker_version, wanted.min_version)
    have_compose = bool(facts.compose_v2_version or facts.compose_v1_version)
    if have_engine and have_compose:
        return []
    if not have_engine and engine.candidate and not version_at_least(engine.candidate, wanted.min_version):
        raise DockerError(
            f"the distribution offers docker.io {engine.candidate}, below docker.min_version {wanted.min_version}: "
            "set docker.source: docker-apt"
        )
    packages = [] if have_engine else ["docker.io"]
    if not have_compose:
        compose = distro_compose_package(facts)
        if compose is None:
            return [_install_distro_with_runtime_choice()]
        packages.append(compose)
    return [apt_install(packages)]


def docker_apt_sources_line(facts: DockerFacts, url: str) -> str:
    if facts.os_id not in ("debian", "ubuntu") or not facts.codename or not facts.arch:
        raise DockerError(f"Docker's apt repository needs Debian or Ubuntu; the server reports {facts.os_id!r} {facts.codename!r}")
    return f"deb [arch={facts.arch} signed-by={DOCKER_KEYRING}] {url.rstrip('/')}/{facts.os_id} {facts.codename} stable\n"


def _docker_apt_operations(facts: DockerFacts, wanted: Docker, url: str) -> list[str]:
    cmds: list[str] = []
    if not facts.keyring_present:
        key_url = f"{url.rstrip('/')}/{facts.os_id}/gpg"
        cmds.append(
            f"{{ command -v curl >/dev/null || {apt_install(['ca-certificates', 'curl'])}; }} && "
            f"install -m 0755 -d /etc/apt/keyrings && "
            f"curl -fsSL --retry 3 {q(key_url)} -o {DOCKER_KEYRING} && chmod a+r {DOCKER_KEYRING}"
        )
    sources = docker_apt_sources_line(facts, url)
    cmds += ensure_file(facts.sources, WantedFile(DOCKER_SOURCES, sources))
    ce = facts.policy.get("docker-ce", PackagePolicy(None, None))
    up_to_date = (
        ce.installed is not None
        and facts.docker_version is not None
        and version_at_least(facts.docker_version, wanted.min_version)
        and facts.compose_v2_version is not None
    )
    if not up_to_date:
        cmds.append(apt_install(DOCKER_CE_PACKAGES))
    return cmds


def operations(facts: DockerFacts, wanted: Docker, *, user: str = "deploy", apt_url: str = DEFAULT_DOCKER_APT_URL) -> list[str]:
    if wanted.source == "distro":
        cmds = _distro_operations(facts, wanted)
    else:
        cmds = _docker_apt_operations(facts, wanted, apt_url)
    if not (facts.active and facts.enabled):
        cmds.append("systemctl enable --now docker")
    if "docker" not in facts.user_groups:
        cmds.append(f"usermod -aG docker {q(check_unix_name(user))}")
    return cmds


def installed_version_ok(facts: DockerFacts, wanted: Docker) -> bool:
    """For a post-check: engine present at or above the minimum, and some Compose available."""
    return (
        facts.docker_version is not None
        and version_at_least(facts.docker_version, wanted.min_version)
        and bool(facts.compose_v2_version or facts.compose_v1_version)
    )
