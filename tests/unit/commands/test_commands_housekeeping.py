"""Docker housekeeping builders: facts in -> what a rollback needs stays -> exact commands; nothing twice."""

from __future__ import annotations

from technicia_deploy.commands import housekeeping as h
from technicia_deploy.commands.release import AppLayout
from technicia_deploy.commands.shell import render_sections

LAYOUT = AppLayout("/opt/technicia", "technicia", "deploy")
R = "/opt/technicia/releases/"
CUR, PREV, OLD1, OLD2 = R + "v1.2.0-aaaaaaaaaaaa", R + "v1.1.0-bbbbbbbbbbbb", R + "v1.0.0-cccccccccccc", R + "v0.9.0-dddddddddddd"


def compose(version: str, qdrant: str = "qdrant/qdrant:v1.9.0") -> str:
    return (f"version: \"2.4\"\nservices:\n  api:\n    image: registry.local:5000/technicia/api:{version}\n"
            f"  qdrant:\n    image: \"registry.local:5000/{qdrant}\"  # pinned\n  n8n:\n    image: n8nio/n8n\n")


def facts(current=CUR, previous=PREV, compose_text=None, used=("sha256:a1",), images=None, disk=1_000_000_000):
    compose_text = compose_text if compose_text is not None else (
        f"{h.COMPOSE_MARK}{CUR}\n{compose('v1.2.0')}{h.COMPOSE_MARK}{PREV}\n{compose('v1.1.0')}")
    images = images if images is not None else [
        "sha256:a1 registry.local:5000/technicia/api:v1.2.0", "sha256:b1 registry.local:5000/technicia/api:v1.1.0",
        "sha256:c1 registry.local:5000/technicia/api:v1.0.0", "sha256:q1 registry.local:5000/qdrant/qdrant:v1.9.0",
        "sha256:n1 n8nio/n8n:latest", "sha256:d1 <none>:<none>", "sha256:e1 busybox:latest"]
    output = render_sections({
        "current": (current or "", 0 if current else 1),
        "previous": (previous or "", 0 if previous else 1),
        "releases": ("\n".join(x.rsplit("/", 1)[1] for x in (CUR, OLD1, PREV, OLD2)) + "\n", 0),
        "compose": (compose_text, 0),
        "used": ("\n".join(used) + "\n", 0),
        "images": ("\n".join(images) + "\n", 0),
        "disk": (f"{disk}\n", 0),
    })
    return h.parse_facts(output, LAYOUT)


def test_fact_command_is_valid_bash(bash_syntax):
    command = h.fact_command(LAYOUT)
    bash_syntax(command)
    assert "cat \"$d\"/docker-compose.yml" in command
    assert "docker image ls --no-trunc --format '{{.ID}} {{.Repository}}:{{.Tag}}'" in command


def test_current_previous_and_their_images_stay_everything_else_goes():
    f = facts()
    assert f.releases == (CUR, OLD1, PREV, OLD2)
    plan = h.plan(f)
    assert plan.keep_releases == (CUR, PREV)
    assert plan.remove_releases == (OLD1, OLD2)
    assert plan.keep_images == ("n8nio/n8n:latest", "registry.local:5000/qdrant/qdrant:v1.9.0",
                                "registry.local:5000/technicia/api:v1.1.0", "registry.local:5000/technicia/api:v1.2.0")
    assert plan.remove_images == ("registry.local:5000/technicia/api:v1.0.0", "sha256:d1", "busybox:latest")
    assert h.operations(f, plan) == [
        "rm -rf -- /opt/technicia/releases/v1.0.0-cccccccccccc /opt/technicia/releases/v0.9.0-dddddddddddd",
        "docker image rm registry.local:5000/technicia/api:v1.0.0 sha256:d1 busybox:latest"]


def test_an_image_a_container_was_created_from_stays():
    plan = h.plan(facts(used=("sha256:a1", "sha256:e1", "sha256:d1")))
    assert plan.remove_images == ("registry.local:5000/technicia/api:v1.0.0",)


def test_keep_more_releases_never_fewer_than_two():
    assert h.plan(facts(), keep_releases=3).keep_releases == (CUR, PREV, OLD1)
    assert h.plan(facts(), keep_releases=0).keep_releases == (CUR, PREV)


def test_after_the_removals_nothing_is_left_to_do():
    left = facts(images=["sha256:a1 registry.local:5000/technicia/api:v1.2.0",
                         "sha256:b1 registry.local:5000/technicia/api:v1.1.0",
                         "sha256:q1 registry.local:5000/qdrant/qdrant:v1.9.0", "sha256:n1 n8nio/n8n:latest"])
    plan = h.plan(left)
    assert plan.remove_images == ()
    # The releases listing of this fact still shows the old ones: a real second run lists only the kept ones.
    assert h.operations(left, h.Plan(plan.keep_releases, (), plan.keep_images, (), None)) == []


def test_unknown_rollback_images_block_every_image_removal_but_not_old_releases():
    variable = f"{h.COMPOSE_MARK}{CUR}\n{compose('${TAG}')}{h.COMPOSE_MARK}{PREV}\n{compose('v1.1.0')}"
    plan = h.plan(facts(compose_text=variable))
    assert plan.remove_images == ()
    assert plan.images_blocked.startswith(f"the compose file of {CUR} is missing or names images by variables")
    assert plan.remove_releases == (OLD1, OLD2)
    missing = f"{h.COMPOSE_MARK}{CUR}\n@@missing\n{h.COMPOSE_MARK}{PREV}\n{compose('v1.1.0')}"
    assert h.plan(facts(compose_text=missing)).remove_images == ()
    assert h.plan(facts(current=None, previous=None, compose_text="")).images_blocked == (
        "no current release: which images a rollback needs is unknown")


def test_first_release_only_keeps_its_images():
    only = f"{h.COMPOSE_MARK}{CUR}\n{compose('v1.2.0')}"
    plan = h.plan(facts(previous=None, compose_text=only))
    assert "registry.local:5000/technicia/api:v1.1.0" in plan.remove_images
    assert plan.keep_releases == (CUR, OLD1)
