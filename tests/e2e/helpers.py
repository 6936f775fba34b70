"""What the e2e modules share: a command run inside a sandbox VPS, and the step states of a flow run."""

from __future__ import annotations

import subprocess


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
