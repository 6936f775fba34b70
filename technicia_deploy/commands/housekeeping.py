"""Docker housekeeping on a server: unused images and old releases go, what a rollback needs stays.

Facts (one round trip): ``current`` and ``previous``, the release directories newest first, the images each
kept release's compose file names, the images every container (running or stopped) was created from, the
images on the server, and the space left on Docker's disk.

What a rollback needs (tasks/rollback.py goes from ``current`` to ``previous`` by re-running the previous
release's deploy command in its directory, with its compose file and .env, on images already on the server):
both release directories and every image their compose files name. Those are never removed, nor an image a
container was created from, nor volumes (they hold the data). A compose file whose image names use variables
cannot be read without its environment: then no image is removed at all, and the facts say why.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from .release import AppLayout
from .shell import FactError, fact_script, parse_sections, q

SECTIONS = ("current", "previous", "releases", "compose", "used", "images", "disk")
COMPOSE_MARK = "@@compose "
MIN_KEEP_RELEASES = 2  # current and previous
_IMAGE_LINE = re.compile(r"^\s*image:\s*['\"]?([^'\"\s#]+)['\"]?\s*(?:#.*)?$")


@dataclass(frozen=True)
class Image:
    id: str  # sha256:...
    ref: str  # repository:tag, or <none>:<none>

    @property
    def dangling(self) -> bool:
        return self.ref in ("<none>:<none>", "<none>")


@dataclass(frozen=True)
class HousekeepingFacts:
    current: str | None
    previous: str | None
    releases: tuple[str, ...]  # release directories, newest first
    compose_images: dict[str, tuple[str, ...]]  # release dir -> images its compose file names
    unreadable: tuple[str, ...]  # release dirs whose compose images cannot be known (variables, no file)
    used_image_ids: frozenset[str]  # images containers were created from
    images: tuple[Image, ...]
    disk_available: int | None  # bytes free where Docker keeps its images


@dataclass(frozen=True)
class Plan:
    keep_releases: tuple[str, ...]
    remove_releases: tuple[str, ...]
    keep_images: tuple[str, ...]  # refs
    remove_images: tuple[str, ...]  # refs (tagged) or ids (dangling)
    images_blocked: str | None  # why no image is removed, if so


def fact_command(layout: AppLayout, compose_file: str = "docker-compose.yml") -> str:
    releases = q(layout.releases)
    compose = (f"for d in $(readlink {q(layout.current)}) $(readlink {q(layout.previous)}); do "
               f"echo '{COMPOSE_MARK}'\"$d\"; cat \"$d\"/{q(compose_file)} || echo '@@missing'; done")
    return fact_script([
        ("current", f"readlink {q(layout.current)}"),
        ("previous", f"readlink {q(layout.previous)}"),
        ("releases", f"cd {releases} && ls -1t"),
        ("compose", compose),
        ("used", "ids=$(docker ps -aq) && if [ -n \"$ids\" ]; then docker inspect --format '{{.Image}}' $ids; fi"),
        ("images", "docker image ls --no-trunc --format '{{.ID}} {{.Repository}}:{{.Tag}}'"),
        ("disk", "df --output=avail -B1 /var/lib/docker | tail -n 1"),
    ])


def _normalise(ref: str) -> str:
    """``name`` means ``name:latest`` (a digest or a tag after the last slash is kept as is)."""
    last = ref.rsplit("/", 1)[-1]
    return ref if (":" in last or "@" in ref) else f"{ref}:latest"


def parse_compose_images(text: str) -> dict[str, tuple[str, ...] | None]:
    """{release dir: its compose file's images}; None for a file that is missing or names images by variables."""
    found: dict[str, tuple[str, ...] | None] = {}
    directory, images, missing = None, [], False

    def close():
        if directory is not None:
            variable = any("$" in image for image in images)
            found[directory] = None if (missing or variable) else tuple(_normalise(i) for i in images)

    for line in text.splitlines():
        if line.startswith(COMPOSE_MARK):
            close()
            directory, images, missing = line[len(COMPOSE_MARK):].strip(), [], False
        elif line.strip() == "@@missing":
            missing = True
        elif (match := _IMAGE_LINE.match(line)) is not None:
            images.append(match.group(1))
    close()
    return found


def parse_facts(output: str, layout: AppLayout) -> HousekeepingFacts:
    s = parse_sections(output, SECTIONS)
    if not s["images"].ok:
        raise FactError("`docker image ls` failed: is Docker installed and running?")

    def link(name: str) -> str | None:
        return s[name].lines[0].strip() if s[name].ok and s[name].lines else None

    releases = tuple(posixpath.join(layout.releases, line.strip()) for line in s["releases"].lines) if s["releases"].ok else ()
    composed = parse_compose_images(s["compose"].text)
    images = []
    for line in s["images"].lines:
        image_id, _, ref = line.strip().partition(" ")
        images.append(Image(image_id, ref.strip()))
    disk = s["disk"].lines[0].strip() if s["disk"].ok and s["disk"].lines else ""
    return HousekeepingFacts(
        current=link("current"), previous=link("previous"), releases=releases,
        compose_images={d: i for d, i in composed.items() if i is not None},
        unreadable=tuple(d for d, i in composed.items() if i is None),
        used_image_ids=frozenset(line.strip() for line in s["used"].lines),
        images=tuple(images), disk_available=int(disk) if disk.isdigit() else None,
    )


def plan(facts: HousekeepingFacts, keep_releases: int = MIN_KEEP_RELEASES) -> Plan:
    """What goes and what stays. ``keep_releases``: the newest release directories kept (never fewer than
    current and previous, which are kept whatever their age)."""
    keep_releases = max(keep_releases, MIN_KEEP_RELEASES)
    pinned = [d for d in (facts.current, facts.previous) if d]
    kept = list(dict.fromkeys(pinned + [d for d in facts.releases if d not in pinned][: max(keep_releases - len(pinned), 0)]))
    removed = tuple(d for d in facts.releases if d not in kept)
    blocked = None
    if facts.current is None:
        blocked = "no current release: which images a rollback needs is unknown"
    elif facts.unreadable:
        blocked = (f"the compose file of {', '.join(facts.unreadable)} is missing or names images by variables: "
                   "the images a rollback needs are unknown")
    needed = sorted({ref for d in pinned for ref in facts.compose_images.get(d, ())})
    if blocked:
        return Plan(tuple(kept), removed, tuple(needed), (), blocked)
    remove = []
    for image in facts.images:
        if image.id in facts.used_image_ids or (not image.dangling and _normalise(image.ref) in needed):
            continue
        remove.append(image.id if image.dangling else image.ref)
    # An id whose every tag goes is removed by its tags; a dangling id once.
    return Plan(tuple(kept), removed, tuple(needed), tuple(dict.fromkeys(remove)), None)


def operations(facts: HousekeepingFacts, wanted: Plan) -> list[str]:
    """The commands for the plan; [] when there is nothing to remove (an idempotent second run)."""
    commands = []
    if wanted.remove_releases:
        commands.append("rm -rf -- " + " ".join(q(d) for d in wanted.remove_releases))
    if wanted.remove_images:
        # Without --force: Docker itself refuses to remove an image a container still uses.
        commands.append("docker image rm " + " ".join(q(ref) for ref in wanted.remove_images))
    return commands
