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


def ls_remote_tags_command(repository: str) -> list[str]:
    """argv listing the remote's tags (no peeled lines): what an unknown version's error offers instead."""
    return ["git", "ls-remote", "--tags", "--refs", "--", repository]


def parse_tags(output: str, newest: int = 10) -> list[str]:
    """The remote's tag names, newest version first (v1.10.0 after v1.9.0), at most ``newest``."""
    names = [parts[1].removeprefix("refs/tags/") for parts in (line.split() for line in output.splitlines())
             if len(parts) == 2 and SHA_RE.fullmatch(parts[0]) and parts[1].startswith("refs/tags/")]

    def version_key(name: str) -> tuple:
        # v1.10.0 after v1.9.0; a pre-release (v2.0.0-rc1) before its release; names that are no version last.
        match = re.fullmatch(r"[vV]?(\d+(?:\.\d+)*)(.*)", name)
        if match is None:
            return (0, (), 0, name)
        numbers, suffix = tuple(int(n) for n in match.group(1).split(".")), match.group(2)
        return (1, numbers, 0 if suffix else 1, suffix)

    return sorted(names, key=version_key, reverse=True)[:newest]


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
    release_dir: str | None = None  # the checkout compose started it from (its working_dir label)

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

    def running(self) -> list[Container]:
        return [c for c in self.containers if c.state == "running"]

    def healthy(self) -> bool:
        """Containers are up and every one is running and healthy."""
        return bool(self.containers) and not self.unhealthy()

    def serves(self, release_dir: str) -> bool:
        """Every service runs healthy and was started from ``release_dir``.

        Strict: a service the release did not change keeps the container (and working_dir label) of the
        release that created it, so this is only the "nothing to do" test; after a deploy command,
        :meth:`healthy` is the verdict."""
        return bool(self.containers) and not self.unhealthy() and all(c.release_dir == release_dir for c in self.containers)


def services_fact_command(layout: AppLayout) -> str:
    fmt = "{{.Id}} {{index .Config.Labels \"com.docker.compose.service\"}} {{.State.Status}} " \
          "{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}} " \
          "{{index .Config.Labels \"com.docker.compose.project.working_dir\"}}"
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
        if len(parts) in (4, 5):
            containers.append(Container(service=parts[1], id=parts[0], state=parts[2], health=parts[3],
                                        release_dir=parts[4] if len(parts) == 5 else None))
    return ServiceFacts(link(s["current"]), link(s["previous"]), tuple(sorted(containers, key=lambda c: c.service)),
                        docker_ok=s["containers"].ok)


DEPLOY_LOCK = ".deploy.lock"  # in the application directory
DEPLOY_LOCK_WAIT_S = 600
DEPLOY_LOCK_BUSY = 75  # the exit code when another deploy command kept the lock past the wait


def deploy_command(layout: AppLayout, release_dir: str, command: str, lock_wait_s: int = DEPLOY_LOCK_WAIT_S) -> str:
    """Run the application's deploy command in the release, under the fixed compose project name, holding the
    server's deploy lock (``flock`` on ``<directory>/.deploy.lock``).

    The lock makes running it again after a lost SSH connection safe: the copy started on the lost connection
    may still be running on the server (nothing tells it the client went away), and the new one waits for it to
    end instead of racing it on the same compose project. A lock still held after ``lock_wait_s`` exits
    ``DEPLOY_LOCK_BUSY`` saying so. The whole command (compound or not) sees COMPOSE_PROJECT_NAME."""
    lock = q(posixpath.join(layout.directory, DEPLOY_LOCK))
    busy = q(f"another deploy command still holds {posixpath.join(layout.directory, DEPLOY_LOCK)} "
             f"after {lock_wait_s} s")
    return (f"cd {q(release_dir)} && exec 9>>{lock} && "
            f"{{ flock -w {int(lock_wait_s)} 9 || {{ echo {busy} >&2; exit {DEPLOY_LOCK_BUSY}; }}; }} && "
            f"COMPOSE_PROJECT_NAME={q(layout.project)} bash -c {q(command)}")


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


# -- rollback ----------------------------------------------------------------------------
def describe_release(release_dir: str | None) -> str:
    """``v1.0.0 (0123456789ab)`` from a release directory's name (``<version>-<sha12>``)."""
    if not release_dir:
        return "none"
    name = posixpath.basename(release_dir.rstrip("/"))
    version, _, sha = name.rpartition("-")
    return f"{version} ({sha})" if version and re.fullmatch(r"[0-9a-f]{12}", sha) else name


def rollback_target(facts: ServiceFacts, failed_release_dir: str | None) -> str | None:
    """The release to go back to: the one ``current`` still names when the failed release never became
    current (its health wait failed), else ``previous``. None: there is nothing to go back to.

    ``failed_release_dir`` None means an on-demand rollback, which goes from ``current`` to ``previous``.
    """
    if failed_release_dir and facts.current and facts.current != failed_release_dir:
        return facts.current
    if facts.previous and facts.previous != (failed_release_dir or facts.current):
        return facts.previous
    return None


def rollback_operations(facts: ServiceFacts, layout: AppLayout, target: str, command: str) -> list[str]:
    """What is still needed for ``target`` to serve: its deploy command (its compose file, .env and images,
    all kept in its release dir and on the server's Docker) unless it already runs healthy, then ``current``
    pointed back at it. ``previous`` is dropped: the release rolled back from is not a release to go back to."""
    ops = []
    if not facts.serves(target):
        ops.append(deploy_command(layout, target, command))
    if facts.current != target:
        ops.append("\n".join(["set -e", f"cd {q(layout.directory)}",
                               f"ln -sfn {q(target)} .current.tmp && mv -T .current.tmp current", "rm -f previous"]))
    return ops


def stop_services_command(layout: AppLayout) -> str:
    """Stop every container of the compose project (a first release that failed has nothing to go back to)."""
    return (f"ids=$(docker ps -q --filter label=com.docker.compose.project={q(layout.project)}) && "
            "if [ -n \"$ids\" ]; then docker stop $ids >/dev/null; fi")
