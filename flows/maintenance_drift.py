"""The ``maintenance-drift`` flow: each server compared with what the pipeline declares and last applied, every
difference reported by name (firewall rules, ports open from outside, DOCKER-USER rules, the running release and its
containers, the .env's variable names and mode, the nginx site, the certificate and its renewal timer, the DNS
record, the monitoring timer).

Read only: each area is read the way its owning deployment step reads it, and a difference is what that step would
change now (or what a check from outside sees undeclared); the description names the owner to re-run. Any
difference fails the run, so the environment's destinations are alerted; the artifact ``maintenance-drift-<env>``
lists them. It takes the environment's lock, so a deployment half-way is never reported as drift.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from technicia_deploy import environment_lock
from technicia_deploy.maintenance import Outcome

FLOW_NAME = "maintenance-drift"
KIND = "drift"
TITLE = "Drift check"


class DriftFound(RuntimeError):
    """The server differs from what the pipeline declares; the message names each difference."""


def drift_of(env: Any) -> Outcome:
    from flows import _maintenance
    from technicia_deploy import drift
    from tasks.drift import observe

    observed = observe(env.name, env.project)
    found = observed["differences"]
    outcome = Outcome(env.name, f"{drift.summary(found)} (checked: {', '.join(observed['areas'])})",
                      details={"differences": [d.describe() for d in found]},
                      rows=[{"area": d.area, "subject": d.subject, "found": d.found, "owner": d.owner} for d in found])
    if found:
        _maintenance.publish_outcome(KIND, TITLE, outcome)  # the list by name, even though the run fails
        raise DriftFound(f"{env.name}: {drift.summary(found)}")
    return outcome


@flow(name=FLOW_NAME, flow_run_name="drift-{environment}", log_prints=False)
def maintenance_drift(environment: str = "all", project: str = "technicia",
                      lock_wait_s: float = environment_lock.DEFAULT_WAIT_S):
    """Compare each server with what the pipeline declares and last applied, and report every difference by name
    (read only; re-run the named step to repair).

    Args:
        environment: test, staging, production, or all (one run per environment, in that order).
        project: project name used in the Prefect block names (default technicia).
        lock_wait_s: how long to wait for a deployment of the environment to finish before giving up.
    """
    from flows import _maintenance

    return _maintenance.run(maintenance_drift, KIND, TITLE, environment, project, drift_of,
                            touches_server=True, lock_wait_s=lock_wait_s)
