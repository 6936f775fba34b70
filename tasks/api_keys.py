"""Prefect tasks around the API-key smoke calls (technicia_deploy.cloud).

- :func:`check_api_keys` checks one environment's keys (loaded from its blocks), publishes the
  ``api-keys-<env>`` table artifact and returns the results as plain data; it does not fail on a bad key.
- :func:`require_working_keys` is the deploy gate (step ``services.api_keys``, called inside that step's
  task before the .env is written): the same, then it raises with a message naming each service, the
  environment and the fix; :func:`verify_api_keys` is that gate as a task of its own.
- :func:`smoke_environment` is the plain function behind both, for a caller that already holds a
  ``CloudApiKeys`` block inside its own task (e.g. right before it writes the .env).

Only block and environment names travel as parameters; results carry fingerprints, never keys.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from technicia_deploy import cloud


def api_keys_artifact_key(environment: str) -> str:
    return f"api-keys-{environment}"


def _table_rows(results: list[dict[str, Any]], checked_at: str) -> list[dict[str, Any]]:
    return [
        {
            "service": cloud.SERVICE_LABELS.get(r["service"], r["service"]),
            "environment": r["environment"],
            "status": r["status"],
            "latency_ms": r["latency_ms"],
            "attempts": r["attempts"],
            "key_fingerprint": r["fingerprint"],
            "quota_headroom": cloud.quota_summary(r["quota"]) or "not reported",
            "detail": r["detail"],
            "fix": r["fix"],
            "checked_at": checked_at,
        }
        for r in results
    ]


def publish_results(environment: str, results: list[dict[str, Any]]) -> None:
    """The environment's table artifact (a new version per check) and one log line per service."""
    from prefect.artifacts import create_table_artifact

    checked_at = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    failed = [r for r in results if r["status"] != cloud.Status.OK]
    summary = "all keys work" if not failed else f"{len(failed)} of {len(results)} keys failed"
    create_table_artifact(
        key=api_keys_artifact_key(environment),
        table=_table_rows(results, checked_at),
        description=f"**API keys, environment `{environment}`** ({checked_at}): {summary}.",
    )
    logger = get_run_logger()
    for r in results:
        line = f"{cloud.SERVICE_LABELS.get(r['service'], r['service'])} [{environment}] {r['status']} in {r['latency_ms']:.0f} ms, " \
               f"{r['attempts']} attempt(s), key {r['fingerprint']}"
        if r["status"] == cloud.Status.OK:
            logger.info(line)
        else:
            logger.warning(f"{line}: {r['detail']}. Fix: {r['fix']}")


MEMO = "api_keys"  # tasks.memo kind: the last check that passed for every service


def smoke_environment(
    environment: str, keys: cloud.ApiKeySettings, *, message: bool = False, timeout: float = 20.0,
    project: str | None = None,
) -> list[dict[str, Any]]:
    """Check, publish and return the results as plain data (call from inside a task or flow).

    ``project``: remember a check that passed for every service, for the deployments that follow.
    """
    results = [r.as_dict() for r in cloud.check_api_keys(environment, keys, send_message=message, timeout=timeout)]
    publish_results(environment, results)
    if project:
        from tasks import memo

        if results and all(r["status"] == cloud.Status.OK for r in results):
            slowest = max(r["latency_ms"] for r in results)
            memo.remember(MEMO, environment, project, cloud.settings_digest(keys), f"slowest {slowest:.0f} ms")
        else:
            memo.forget(MEMO, environment, project)
    return results


def load_api_keys(environment: str, project: str = "technicia"):
    """The environment's CloudApiKeys block, through its TechniciaEnvironment block."""
    from blocks import TechniciaEnvironment, environment_block_name

    return TechniciaEnvironment.load(environment_block_name(project, environment)).api_keys()


def require_working_keys(environment: str, project: str = "technicia", message: bool = False, timeout: float = 20.0,
                         keys: cloud.ApiKeySettings | None = None, max_age_s: float = 0.0) -> str:
    """The deploy step's gate, called inside its task before the .env is written.

    ``keys``: the CloudApiKeys block when the caller has it already (else it is loaded).
    ``max_age_s``: a check that passed with the same keys and settings less than this long ago stands
    (no SDK import, no call): the scheduled key audit calls every day whatever this says.
    Publishes the table, raises :class:`technicia_deploy.cloud.ApiKeysRejected` (naming service,
    environment and fix) if any key fails, else returns a one-line summary for the step result.
    """
    from tasks import memo

    keys = keys if keys is not None else load_api_keys(environment, project)
    passed = memo.still_passing(MEMO, environment, project, cloud.settings_digest(keys), max_age_s)
    if passed is not None:
        return (f"{len(cloud.SERVICES)} API keys passed their smoke calls {memo.age_minutes(passed):.0f} min ago with "
                f"the same keys and settings (re-checked after {max_age_s / 60:g} min)")
    results = smoke_environment(environment, keys, message=message, timeout=timeout, project=project)
    cloud.raise_for_failures(results)
    slowest = max(r["latency_ms"] for r in results)
    return f"{len(results)} API keys passed their smoke calls (slowest {slowest:.0f} ms)"


# NO_CACHE: a smoke call proves the key works now. With result persistence on, the default policy
# would hand back the earlier verdict to a second call in the same flow run (e.g. a flow re-run
# from the top after a suspend) instead of calling the services again.
@task(name="check-api-keys", task_run_name="check-api-keys-{environment}", cache_policy=NO_CACHE)
def check_api_keys(environment: str, project: str = "technicia", message: bool = False, timeout: float = 20.0) -> list[dict[str, Any]]:
    return smoke_environment(environment, load_api_keys(environment, project), message=message, timeout=timeout,
                             project=project)


@task(name="verify-api-keys", task_run_name="verify-api-keys-{environment}", cache_policy=NO_CACHE)
def verify_api_keys(environment: str, project: str = "technicia", message: bool = False, timeout: float = 20.0) -> list[dict[str, Any]]:
    """A task of its own for the same gate: fails (ApiKeysRejected) unless every key passed its smoke call."""
    results = smoke_environment(environment, load_api_keys(environment, project), message=message, timeout=timeout,
                                project=project)
    cloud.raise_for_failures(results)
    return results
