"""What the e2e modules share: a command run inside a sandbox VPS, the step states of a flow run, a block changed
for the duration of a test, and the latest version of a table artifact."""

from __future__ import annotations

import json
import subprocess
from contextlib import contextmanager


def vps_exec(container: str, command: str, check: bool = True, timeout: float = 120) -> str:
    """``command`` run by bash inside the VPS container (as root, from inside: not through the pipeline)."""
    done = subprocess.run(["docker", "exec", container, "bash", "-c", command], capture_output=True, text=True,
                          timeout=timeout)
    if check:
        assert done.returncode == 0, done.stderr
    return done.stdout


def step_states(flow_state) -> dict[str, tuple[str, str]]:
    """{step id: (state type, message)} of the flow run's task runs."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_state.state_details.flow_run_id])))
    return {run.name: (run.state.type.value, run.state.message or "") for run in runs}


@contextmanager
def block_changed(kind, name: str, **fields):
    """Save block ``name`` with ``fields`` changed for the duration of the block, then put it back."""
    block = kind.load(name)
    saved = {field: getattr(block, field) for field in fields}
    for field, value in fields.items():
        setattr(block, field, value)
    block.save(name, overwrite=True)
    try:
        yield
    finally:
        for field, value in saved.items():
            setattr(block, field, value)
        block.save(name, overwrite=True)


def latest_table(key: str) -> list[dict]:
    """The rows of the latest version of table artifact ``key`` (it must exist)."""
    from prefect.artifacts import Artifact

    artifact = Artifact.get(key)
    assert artifact is not None, f"no artifact {key}"
    return json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
