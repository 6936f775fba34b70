"""The application on the server: releases, the .env, the deploy command, health.

Layout under the application directory (``application.directory``)::

    repo.git/                 bare mirror of the application repository (fetch cache)
    releases/<version>-<sha12>/   one immutable checkout per release, with its .env
    current -> releases/...   the release that runs (switched only once it is healthy)
    previous -> releases/...  the release before it: what a rollback goes back to

Every release keeps its compose file and .env, and its images stay on the
server's Docker: going back is re-running the previous release's deploy
command. All releases run under one compose project name, so a new release
replaces the old one's containers instead of running beside them.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from .shell import Section, fact_script, parse_sections, q

RELEASE_MARKER = ".technicia-release"
KEEP_RELEASES = 5
SHA_RE = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class AppLayout:
    directory: str  # /opt/technicia
    project: str  # compose project name
    user: str  # the deploy user owning everything

    @property
    def repo(self) -> str:
        return posixpath.join(self.directory, "repo.git")

    @property
    def releases(self) -> str:
        return posixpath.join(self.directory, "releases")

    @property
    def current(self) -> str:
        return posixpath.join(self.directory, "current")

    @property
    def previous(self) -> str:
        return posixpath.join(self.directory, "previous")

    def release_name(self, version: str, sha: str) -> str:
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", version)
        return f"{safe}-{sha[:12]}"

    def release_dir(self, version: str, sha: str) -> str:
        return posixpath.join(self.releases, self.release_name(version, sha))


# -- resolving a version (runs where the flow runs, before any server is touched) ----
def ls_remote_command(repository: str, version: str) -> list[str]:
    """argv resolving ``version`` (tag or branch) on the remote; the peeled line wins for annotated tags."""
    return ["git", "ls-remote", "--", repository, f"refs/tags/{version}", f"refs/tags/{version}^{{}}", f"refs/heads/{version}"]


def parse_ls_remote(output: str, version: str) -> str | None:
    """The commit SHA ``version`` names, or None when the remote has no such tag or branch."""
    refs = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 2 and SHA_RE.fullmatch(parts[0]):
            refs[parts[1]] = parts[0]
    for ref in (f"refs/tags/{version}^{{}}", f"refs/tags/{version}", f"refs/heads/{version}"):
        if ref in refs:
            return refs[ref]
    return None


# -- checkout ----------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckoutFacts:
    git_installed: bool
    directory_owner: str | None  # None: the application directory does not exist
    release_sha: str | None  # the SHA recorded in the wanted release dir, None if absent


def checkout_fact_command(layout: AppLayout, release_dir: str) -> str:
    return fact_script([
        ("git", "command -v git"),
        ("appdir", f"stat -c %U {q(layout.directory)}"),
        ("release", f"cat {q(posixpath.join(release_dir, RELEASE_MARKER))}"),
    ])


def parse_checkout_facts(output: str) -> CheckoutFacts:
    s = parse_sections(output, ("git", "appdir", "release"))
    sha = s["release"].text.strip() if s["release"].ok else None
    return CheckoutFacts(
        git_installed=s["git"].ok,
        directory_owner=s["appdir"].text.strip() if s["appdir"].ok else None,
        release_sha=sha if sha and SHA_RE.fullmatch(sha) else None,
    )


def checkout_operations(facts: CheckoutFacts, layout: AppLayout, repository: str, version: str, sha: str) -> list[tuple[str, bool]]:
    """(command, as_root) pairs still needed to have ``sha`` checked out as its own release."""
    from .shell import apt_install

    ops: list[tuple[str, bool]] = []
    if not facts.git_installed:
        ops.append((apt_install(["git", "ca-certificates"]), True))
    if facts.directory_owner != layout.user:
        ops.append((f"install -d -m 755 -o {q(layout.user)} -g {q(layout.user)} {q(layout.directory)} && "
                    f"chown -R {q(layout.user)}:{q(layout.user)} {q(layout.directory)}", True))
    release_dir = layout.release_dir(version, sha)
    if facts.release_sha != sha:
        ops.append((checkout_script(layout, repository, sha, release_dir), False))
    return ops


def checkout_script(layout: AppLayout, repository: str, sha: str, release_dir: str) -> str:
    """Fetch into the bare cache and unpack ``sha`` into a new release dir (atomically: temp + rename)."""
    g = f"git --git-dir={q(layout.repo)}"
    return "\n".join([
        "set -e",
        f"mkdir -p {q(layout.releases)}",
        f"[ -d {q(layout.repo)} ] || git init --quiet --bare {q(layout.repo)}",
        f"{g} fetch --quiet --force --tags {q(repository)} '+refs/heads/*:refs/heads/*'",
        f"{g} cat-file -e {q(sha + '^{commit}')} || "
        f"{{ echo 'commit {sha} is not in {repository} (tag moved or force-pushed?)' >&2; exit 3; }}",
        f"rm -rf {q(release_dir)}",
        f"t=$(mktemp -d {q(posixpath.join(layout.releases, '.tmp-XXXXXX'))})",
        "trap 'rm -rf -- \"$t\"' EXIT",
        f"{g} archive --format=tar {q(sha)} | tar -x -C \"$t\"",
        f"echo {q(sha)} > \"$t\"/{RELEASE_MARKER}",
        "chmod 755 \"$t\"",
        f"mv -T \"$t\" {q(release_dir)}",
    ])


# -- services --------------------------------------------------------------------------
@dataclass(frozen=True)
class Container:
    service: str
    id: str
    state: str  # running, exited, ...
    health: str  # healthy, unhealthy, starting, none

    @property
    def ready(self) -> bool:
        return self.state == "running" and self.health in ("healthy", "none")


@dataclass(frozen=True)
class ServiceFacts:
    current: str | None  # absolute path current points at
    previous: str | None
    containers: tuple[Container, ...]
    docker_ok: bool

    def unhealthy(self) -> list[Container]:
        return [c for c in self.containers if not c.ready]


def services_fact_command(layout: AppLayout) -> str:
    fmt = "{{.Id}} {{index .Config.Labels \"com.docker.compose.service\"}} {{.State.Status}} " \
          "{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}"
    return fact_script([
        ("current", f"readlink {q(layout.current)}"),
        ("previous", f"readlink {q(layout.previous)}"),
        ("containers", f"ids=$(docker ps -aq --filter label=com.docker.compose.project={q(layout.project)}) && "
                       f"if [ -n \"$ids\" ]; then docker inspect --format {q(fmt)} $ids; fi"),
    ])


def parse_service_facts(output: str) -> ServiceFacts:
    s = parse_sections(output, ("current", "previous", "containers"))

    def link(section: Section) -> str | None:
        return section.text.strip() or None if section.ok else None

    containers = []
    for line in s["containers"].lines:
        parts = line.split()
        if len(parts) == 4:
            containers.append(Container(service=parts[1], id=parts[0], state=parts[2], health=parts[3]))
    return ServiceFacts(link(s["current"]), link(s["previous"]), tuple(sorted(containers, key=lambda c: c.service)),
                        docker_ok=s["containers"].ok)


def deploy_command(layout: AppLayout, release_dir: str, command: str) -> str:
    """Run the application's deploy command in the release, under the fixed compose project name."""
    return f"cd {q(release_dir)} && COMPOSE_PROJECT_NAME={q(layout.project)} {command}"


def switch_current(layout: AppLayout, release_dir: str, old_current: str | None) -> str:
    """Point ``current`` at the release (atomic rename of a new link); remember the old one as ``previous``."""
    lines = ["set -e", f"cd {q(layout.directory)}"]
    if old_current and old_current != release_dir:
        lines.append(f"ln -sfn {q(old_current)} .previous.tmp && mv -T .previous.tmp previous")
    lines.append(f"ln -sfn {q(release_dir)} .current.tmp && mv -T .current.tmp current")
    return "\n".join(lines)


def prune_releases(layout: AppLayout, keep: int = KEEP_RELEASES) -> str:
    """Remove old release dirs beyond ``keep``, never current's or previous's."""
    return (
        f"cd {q(layout.releases)} && cur=$(readlink ../current); prev=$(readlink ../previous); "
        f"ls -1t | tail -n +{keep + 1} | while read -r r; do "
        f"[ \"$PWD/$r\" = \"$cur\" ] || [ \"$PWD/$r\" = \"$prev\" ] || rm -rf -- \"$r\"; done"
    )
