"""The ``deploy-environment`` flow: one environment, from whatever state it is in, to one version.

Its task runs are the deployment log: one task per catalogue step, in catalogue
order, each tagged with its step id, the environment and the release. What a
step found and did is its final state's message ("changed: ..." /
"unchanged: ..."); the tracking document is rendered from these.
"""

from __future__ import annotations

from typing import Any, Callable

from prefect import flow, get_run_logger, tags

from technicia_deploy import steps
from technicia_deploy.config import ENVIRONMENTS

FLOW_NAME = "deploy-environment"


def _plan(environment: str, version: str, sha: str, project: str, rebuild_server: bool) -> dict[str, Callable[[], Any]]:
    """The catalogue steps this build implements, each bound to its arguments."""
    from tasks import https, server, services

    common = {"environment": environment, "project": project}
    release = {**common, "version": version, "sha": sha}
    return {
        "server.os": lambda: server.os_installation(rebuild=rebuild_server, **common),
        "server.firewall": lambda: server.firewall(**common),
        "server.docker": lambda: server.docker_installation(**common),
        "services.clone": lambda: services.checkout(**release),
        "services.api_keys": lambda: services.api_keys(**release),
        "services.deploy": lambda: services.deploy(**release),
        "https.dns": lambda: https.dns(**common),
        "https.certbot": lambda: https.certbot_installation(**common),
        "https.certificate": lambda: https.certificate(**common),
    }


def preflight(environment: str, project: str):
    """Everything that can be checked without touching a server: environment, blocks, secrets."""
    from tasks import runtime

    if environment not in ENVIRONMENTS:
        raise ValueError(f"unknown environment {environment!r}; expected one of {', '.join(ENVIRONMENTS)}")
    env = runtime.environment(environment, project)
    block = env.block
    loaders = {block.ovh_block: block.ovh, block.ssh_block: block.ssh, block.api_keys_block: block.api_keys}
    for name, load in loaders.items():
        try:
            loaded = load()
        except Exception as exc:  # noqa: BLE001 - reported with the block's name
            raise LookupError(f"environment {environment!r}: block {name!r} cannot be loaded ({type(exc).__name__}); "
                              "run `technicia-deploy blocks apply environments.yaml`") from None
        for field, value in loaded:
            if hasattr(value, "get_secret_value") and not str(value.get_secret_value()).strip():
                raise LookupError(f"environment {environment!r}: secret {field!r} of block {name!r} is empty")
    return env


def _tag_this_run(extra: list[str]) -> None:
    """Add the environment/release tags to this flow run (a UI-triggered run only has the deployment's)."""
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    if not flow_run.id:
        return
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run.id)
        wanted = sorted(set(run.tags) | set(extra))
        if wanted != sorted(run.tags):
            client.update_flow_run(flow_run.id, tags=wanted)


@flow(name=FLOW_NAME, flow_run_name="deploy-{environment}-{version}", log_prints=False)
def deploy_environment(environment: str, version: str, operator: str = "unknown", rebuild_server: bool = False,
                       project: str = "technicia") -> dict[str, Any]:
    """Deploy ``version`` of TechnicIA to ``environment`` (test, staging or production).

    rebuild_server: reinstall the VPS through OVH first. Destroys the server's data; never implicit.
    """
    from technicia_deploy import versions
    from tasks import runtime

    logger = get_run_logger()
    try:
        env = preflight(environment, project)
        sha = versions.resolve(env.application.repository, version)
        logger.info("deploying %s (%s) to %s for %s", version, sha[:12], environment, operator)
        _tag_this_run([steps.env_tag(environment), steps.release_tag(version), f"flow:{FLOW_NAME}",
                       f"sha:{sha[:12]}", f"operator:{operator}"])
        plan = _plan(environment, version, sha, project, rebuild_server)
        results: dict[str, Any] = {}
        with tags(steps.env_tag(environment), steps.release_tag(version)):
            for step in steps.STEPS:
                if step.id in plan:
                    results[step.id] = plan[step.id]()
        return {"environment": environment, "version": version, "sha": sha, "steps": results}
    finally:
        runtime.release()
