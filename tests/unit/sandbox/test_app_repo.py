"""The sample TechnicIA repository: tags, reproducible SHAs, and the files the deploy flow relies on."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from technicia_deploy import envfile
from technicia_deploy.commands import env_contract
from technicia_deploy.commands.files import FileFact
from technicia_deploy.sandbox import app, app_repo

REGISTRY = "10.213.7.1:5443"
pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def bare(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("repo") / "technicia.git"
    app_repo.build_bare_repo(path, REGISTRY)
    return path


def show(bare: Path, tag: str, name: str) -> str:
    return git(bare, "show", f"{tag}:{name}")


def compose(bare: Path, tag: str) -> dict:
    return yaml.safe_load(show(bare, tag, "docker-compose.yml"))


def test_three_annotated_tags_on_main_in_release_order(bare):
    tags = git(bare, "for-each-ref", "--format=%(refname:short) %(objecttype)", "refs/tags").split("\n")
    assert [t for t in tags if t] == ["v1.0.0 tag", "v1.1.0 tag", "v1.2.0 tag"]
    assert git(bare, "rev-list", "--reverse", "main").split() == [app_repo.tag_commits(bare)[t] for t in
                                                                  ("v1.0.0", "v1.1.0", "v1.2.0")]
    assert app_repo.good_tags() == ["v1.0.0", "v1.1.0"] and app_repo.broken_tag() == "v1.2.0"


def test_served_by_git_daemon_only_with_the_export_marker(bare):
    assert (bare / "git-daemon-export-ok").is_file()
    assert git(bare, "rev-parse", "--is-bare-repository").strip() == "true"


def test_shas_are_reproducible_and_follow_the_registry_address(bare, tmp_path):
    again = app_repo.build_bare_repo(tmp_path / "again.git", REGISTRY)
    assert again == app_repo.tag_commits(bare)
    other = app_repo.build_bare_repo(tmp_path / "other.git", "10.213.8.1:5443")
    assert set(other.values()).isdisjoint(again.values())


def test_rebuilding_in_place_keeps_the_same_repository(bare, tmp_path):
    path = tmp_path / "technicia.git"
    first = app_repo.build_bare_repo(path, REGISTRY)
    assert app_repo.build_bare_repo(path, REGISTRY) == first
    assert not path.with_name("technicia.git.new").exists()


@pytest.mark.parametrize("tag", ["v1.0.0", "v1.1.0", "v1.2.0"])
def test_deploy_script_is_committed_executable(bare, tag):
    entries = {line.split("\t")[1]: line.split()[0] for line in git(bare, "ls-tree", tag).splitlines()}
    assert entries["deploy.sh"] == "100755"
    assert {"docker-compose.yml", ".env.example", "README.md", "VERSION", ".gitignore"} <= set(entries)


@pytest.mark.parametrize("release", app_repo.RELEASES, ids=lambda r: r.tag)
def test_compose_names_the_release_images_in_the_registry(bare, release):
    services = compose(bare, release.tag)["services"]
    assert set(services) == {"frontend", "api", "n8n", "qdrant"}
    assert services["frontend"]["image"] == f"{REGISTRY}/technicia/frontend:{release.version}"
    assert services["api"]["image"] == f"{REGISTRY}/technicia/api:{release.version}"
    assert services["n8n"]["image"] == f"{REGISTRY}/n8nio/n8n:{app_repo.N8N_TAG}"
    assert services["qdrant"]["image"] == f"{REGISTRY}/qdrant/qdrant:{app_repo.QDRANT_TAG}"
    # Every image the compose file names is one that `up` builds and pushes.
    pushed = {spec.ref(REGISTRY) for spec in app.image_specs()}
    assert {s["image"] for s in services.values()} <= pushed
    assert show(bare, release.tag, "VERSION").strip() == release.version


def test_published_ports_reproduce_the_real_compose_file(bare):
    services = compose(bare, "v1.1.0")["services"]
    # Front end and API only on loopback (nginx proxies); n8n and Qdrant on every interface: the ufw trap.
    assert services["frontend"]["ports"] == ["127.0.0.1:8080:8080"]
    assert services["api"]["ports"] == ["127.0.0.1:8000:8000"]
    assert services["n8n"]["ports"] == ["5678:5678"]
    assert services["qdrant"]["ports"] == ["6333:6333"]
    assert sorted(app.INTERNAL_PORTS) == [5678, 6333]


def test_health_urls_match_published_ports_and_healthchecks(bare):
    services = compose(bare, "v1.1.0")["services"]
    for name, url in app.HEALTH.items():
        port = url.split(":")[2].split("/")[0]
        assert any(p.split(":")[-2] == port for p in services[name]["ports"]), name
        test = services[name]["healthcheck"]["test"]
        assert test[0] == "CMD" and url.split(":", 2)[2].split("/", 1)[1] in test[-1], name


def test_services_restart_and_stop_fast(bare):
    for name, service in compose(bare, "v1.0.0")["services"].items():
        assert service["restart"] == "unless-stopped", name
        assert service["stop_grace_period"] == "1s", name
        assert "healthcheck" in service, name


def test_api_reads_the_keys_from_env_and_env_example_lists_them(bare):
    services = compose(bare, "v1.0.0")["services"]
    assert services["api"]["env_file"] == ".env"
    example = show(bare, "v1.0.0", ".env.example")
    names = [line.split("=")[0] for line in example.splitlines() if line and not line.startswith("#")]
    assert names == app.ENV_KEYS
    assert show(bare, "v1.0.0", ".gitignore").split() == [".env"]


@pytest.mark.parametrize("tag", [r.tag for r in app_repo.RELEASES])
def test_every_release_agrees_with_the_pipeline_on_the_env_variables(bare, tag):
    # The contract services.api_keys checks before it writes .env: same names on both sides, in the same order.
    example = show(bare, tag, ".env.example")
    facts = env_contract.EnvFacts(FileFact.absent("/r/.env"), "/r/.env.example", example)
    contract = env_contract.contract(facts, envfile.ENV_VARIABLES)
    assert contract.problem() is None
    assert contract.declared == envfile.ENV_VARIABLES == tuple(app.ENV_KEYS)
    assert "DOCUMENTAI_PROCESSOR_ID=" in example.splitlines()  # the id, as Google's processor_path(project, location, processor_id)


def test_releases_differ_visibly(bare):
    assert show(bare, "v1.0.0", "VERSION") != show(bare, "v1.1.0", "VERSION")
    readme = show(bare, "v1.2.0", "README.md")
    assert "Release **1.2.0**" in readme and "v1.0.0" in readme


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="needs docker-compose (v1, Debian bookworm)")
def test_docker_compose_v1_accepts_the_file(bare, tmp_path):
    checkout = tmp_path / "checkout"
    subprocess.run(["git", "clone", "-q", "--branch", "v1.2.0", str(bare), str(checkout)], check=True,
                   capture_output=True)
    (checkout / ".env").write_text("ANTHROPIC_API_KEY=x\n")
    proc = subprocess.run(["docker-compose", "config", "-q"], cwd=checkout, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
