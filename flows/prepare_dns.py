"""The ``prepare-dns`` flow: an environment's DNS record, created ahead of its deployment (no server touched).

The deploy flow's own ``https.dns`` step, run on its own: the seed asks for the production record 24 h
before the production deployment, and the promotion's DNS gate measures the record's age from it.
"""

from __future__ import annotations

from prefect import flow

FLOW_NAME = "prepare-dns"


@flow(name=FLOW_NAME, flow_run_name="prepare-dns-{environment}", log_prints=False)
def prepare_dns(environment: str, project: str = "technicia") -> str:
    """Point the environment's domain at its VPS (OVH API) and wait until every authoritative server answers it.

    Args:
        environment: test, staging or production.
        project: project name used in the Prefect block names (default technicia).
    """
    from flows.deploy_environment import preflight
    from technicia_deploy.steps import env_tag
    from technicia_deploy.tracking import publish
    from tasks import runtime
    from tasks.https import dns
    from tasks.step import result_of, untagged

    publish.add_tags([f"flow:{FLOW_NAME}", env_tag(environment)])
    try:
        preflight(environment, project)
        with untagged():
            return result_of(dns(environment=environment, project=project))["summary"]
    finally:
        runtime.release()
