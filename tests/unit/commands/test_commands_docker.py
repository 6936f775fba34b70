"""Docker engine + Compose from the distribution or Docker's apt repository; group; service."""

from __future__ import annotations

import pytest

from technicia_deploy.commands import docker as d
from technicia_deploy.commands.shell import APT_GET, render_sections
from technicia_deploy.config import Docker

BOOKWORM_POLICY = """\
docker.io:
  Installed: (none)
  Candidate: 20.10.24+dfsg1-1+deb12u1+b6
  Version table:
     20.10.24+dfsg1-1+deb12u1+b6 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
docker-compose:
  Installed: (none)
  Candidate: 1.29.2-3
  Version table:
     1.29.2-3 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
"""

JAMMY_POLICY = """\
docker.io:
  Installed: (none)
  Candidate: 24.0.7-0ubuntu2~22.04.1
docker-compose:
  Installed: (none)
  Candidate: 1.29.2-1
docker-compose-v2:
  Installed: (none)
  Candidate: 2.24.6+ds1-0ubuntu1~22.04.1
"""

INSTALL = f"{APT_GET} update && {APT_GET} install --no-install-recommends"


def facts(**overrides) -> d.DockerFacts:
    values = {
        "os": ("debian bookworm\n", 0),
        "arch": ("amd64\n", 0),
        "docker": ("", 127),
        "compose_v2": ("", 127),
        "compose_v1": ("", 127),
        "active": ("inactive\n", 4),
        "enabled": ("", 1),
        "groups": ("deploy\n", 0),
        "policy": (BOOKWORM_POLICY, 0),
        "sources": ("absent\n", 0),
        "keyring": ("", 1),
    }
    values.update(overrides)
    return d.parse_facts(render_sections(values))


def installed_bookworm(**overrides) -> d.DockerFacts:
    values = {
        "docker": ("Docker version 20.10.24+dfsg1, build 297e128\n", 0),
        "compose_v2": ("", 1),  # "'compose' is not a docker command"
        "compose_v1": ("1.29.2\n", 0),
        "active": ("active\n", 0),
        "enabled": ("enabled\n", 0),
        "groups": ("deploy docker\n", 0),
    }
    values.update(overrides)
    return facts(**values)


def test_debian_12_gets_docker_io_and_compose_v1(bash_syntax):
    commands = d.operations(facts(), Docker())
    assert commands == [
        f"{INSTALL} docker.io docker-compose",
        "systemctl enable --now docker",
        "usermod -aG docker deploy",
    ]
    assert d.needs_reconnect(commands)
    for command in commands:
        bash_syntax(command)


def test_debian_12_post_state_is_unchanged_and_uses_docker_compose_v1():
    after = installed_bookworm()
    assert d.operations(after, Docker()) == []
    assert d.compose_command(after) == "docker-compose"


def test_ubuntu_22_04_prefers_compose_v2():
    ubuntu = facts(os=("ubuntu jammy\n", 0), policy=(JAMMY_POLICY, 0))
    assert d.operations(ubuntu, Docker())[0] == f"{INSTALL} docker.io docker-compose-v2"
    after = installed_bookworm(
        os=("ubuntu jammy\n", 0), docker=("Docker version 24.0.7, build 24.0.7-0ubuntu2~22.04.1\n", 0),
        compose_v2=("2.24.6+ds1-0ubuntu1~22.04.1\n", 0), compose_v1=("", 127),
    )
    assert d.operations(after, Docker()) == []
    assert d.compose_command(after) == "docker compose"


def test_empty_package_lists_choose_compose_on_the_server(bash_syntax):
    # A new VPS may never have run 'apt-get update': apt-cache knows no candidate yet.
    commands = d.operations(facts(policy=("", 0)), Docker())
    assert commands[0].startswith(f"{APT_GET} update && pkg=$(for p in docker-compose-v2 docker-compose-plugin docker-compose; do")
    assert commands[0].endswith('install --no-install-recommends docker.io "$pkg"')
    bash_syntax(commands[0])


def test_only_missing_pieces_are_installed():
    no_compose = installed_bookworm(compose_v1=("", 127))
    assert d.operations(no_compose, Docker()) == [f"{INSTALL} docker-compose"]
    stopped = installed_bookworm(active=("failed\n", 3))
    assert d.operations(stopped, Docker()) == ["systemctl enable --now docker"]
    not_in_group = installed_bookworm(groups=("deploy sudo\n", 0))
    assert d.operations(not_in_group, Docker(), user="deploy") == ["usermod -aG docker deploy"]


def test_distro_too_old_for_min_version_says_what_to_change():
    with pytest.raises(d.DockerError, match="docker.io 20.10.24.*below docker.min_version 24.0.*docker-apt"):
        d.operations(facts(), Docker(min_version="24.0"))


def test_installed_engine_below_min_version_is_upgraded_when_the_distro_has_it():
    old = installed_bookworm(
        docker=("Docker version 20.10.21, build x\n", 0),
        policy=(BOOKWORM_POLICY.replace("Installed: (none)\n  Candidate: 20.10.24", "Installed: 20.10.21\n  Candidate: 20.10.24", 1), 0),
    )
    assert d.operations(old, Docker(min_version="20.10.24")) == [f"{INSTALL} docker.io"]


def test_docker_apt_repository(payload, bash_syntax):
    commands = d.operations(facts(), Docker(source="docker-apt", min_version="24.0"))
    keyring, sources, install, service, group = commands
    assert keyring == (
        "{ command -v curl >/dev/null || "
        f"{INSTALL} ca-certificates curl; }} && install -m 0755 -d /etc/apt/keyrings && "
        "curl -fsSL --retry 3 https://download.docker.com/linux/debian/gpg -o /etc/apt/keyrings/docker.asc && "
        "chmod a+r /etc/apt/keyrings/docker.asc"
    )
    assert payload(sources) == (
        "deb [arch=amd64 signed-by=/etc/apt/keyrings/docker.asc] https://download.docker.com/linux/debian bookworm stable\n"
    )
    assert install == f"{INSTALL} docker-ce docker-ce-cli containerd.io docker-buildx-plugin docker-compose-plugin"
    assert (service, group) == ("systemctl enable --now docker", "usermod -aG docker deploy")
    for command in commands:
        bash_syntax(command)


def test_docker_apt_url_is_configuration(payload):
    commands = d.operations(facts(os=("ubuntu jammy\n", 0)), Docker(source="docker-apt"), apt_url="https://mirror.example/docker/")
    assert "https://mirror.example/docker/ubuntu/gpg" in commands[0]
    assert payload(commands[1]).endswith("https://mirror.example/docker/ubuntu jammy stable\n")


def test_docker_apt_post_state_is_unchanged():
    sources = d.docker_apt_sources_line(facts(), d.DEFAULT_DOCKER_APT_URL)
    from technicia_deploy.commands.files import WantedFile
    digest = WantedFile(d.DOCKER_SOURCES, sources).sha256
    policy = "docker-ce:\n  Installed: 5:27.3.1-1~debian.12~bookworm\n  Candidate: 5:27.3.1-1~debian.12~bookworm\n"
    after = installed_bookworm(
        docker=("Docker version 27.3.1, build ce12230\n", 0), compose_v2=("2.29.7\n", 0), compose_v1=("", 127),
        policy=(policy, 0), sources=(f"644 root root\n{digest}\n", 0), keyring=("present\n", 0),
    )
    assert d.operations(after, Docker(source="docker-apt", min_version="24.0")) == []


def test_docker_apt_needs_debian_or_ubuntu():
    with pytest.raises(d.DockerError, match="Debian or Ubuntu"):
        d.operations(facts(os=("alpine \n", 0)), Docker(source="docker-apt"))


def test_no_compose_at_all_is_an_error():
    with pytest.raises(d.DockerError, match="neither"):
        d.compose_command(installed_bookworm(compose_v1=("", 127)))


def test_fact_script_is_valid(bash_syntax):
    bash_syntax(d.fact_command("deploy"))
