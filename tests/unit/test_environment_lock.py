"""The environment lock on a real Prefect server: one holder per environment, the next one waits or is refused
naming the holder, other environments are not blocked."""

from __future__ import annotations

import threading

from technicia_deploy import environment_lock


def _holding_flow(started: threading.Event, release: threading.Event, outcome: dict):
    from prefect import flow
    from prefect.runtime import flow_run

    from technicia_deploy.tracking.publish import add_tags

    # Named and tagged like the deploy flow: the lock names holders among the runs of the locking flows.
    @flow(name="deploy-environment", flow_run_name="hold-{environment}-{label}")
    def hold(environment: str, label: str, wait_s: float) -> str:
        add_tags([f"env:{environment}"])
        with environment_lock.hold(environment, "unitlock", str(flow_run.id), wait_s=wait_s):
            started.set()
            release.wait(timeout=60)
        return label

    return hold


def run_in_thread(fn, **kwargs):
    result = {}

    def target():
        result["state"] = fn(return_state=True, **kwargs)

    thread = threading.Thread(target=target)
    thread.start()
    return thread, result


def test_second_run_of_an_environment_is_refused_naming_the_holder(prefect_server):
    started, release = threading.Event(), threading.Event()
    hold = _holding_flow(started, release, {})
    first, first_result = run_in_thread(hold, environment="lockcheck", label="first", wait_s=60)
    assert started.wait(timeout=60)
    try:
        other_started, other_release = threading.Event(), threading.Event()
        other_release.set()
        # Another environment is not blocked by the first one's lock.
        other = _holding_flow(other_started, other_release, {})
        assert other(environment="lockcheck-other", label="other", wait_s=30, return_state=True).is_completed()
        # The same environment: refused after its bound, naming the run that holds it.
        second = hold(environment="lockcheck", label="second", wait_s=2, return_state=True)
        assert second.is_failed()
        assert "lockcheck is held by run 'hold-lockcheck-first' (deploy-environment" in second.message
        assert "refused after waiting 2 s" in second.message
    finally:
        release.set()
        first.join(timeout=60)
    assert first_result["state"].is_completed()


def test_a_timeout_inside_the_locked_work_is_not_a_lock_timeout(prefect_server):
    from prefect import flow
    from prefect.runtime import flow_run

    @flow(name="lock-inner-timeout")
    def inner() -> None:
        with environment_lock.hold("lockcheck-inner", "unitlock", str(flow_run.id), wait_s=5):
            raise TimeoutError("the DNS record did not propagate")

    state = inner(return_state=True)
    assert state.is_failed() and "did not propagate" in state.message and "held by" not in state.message


# --- the next holder marks the runs whose process was lost -------------------------------------------------

def _fake_run(environment: str, *, name: str, project: str = "unitlock", flow_name: str = "deploy-environment",
              steps: tuple[tuple[str, str], ...] = (), other_tasks: tuple[str, ...] = (), state: str = "Running",
              step_tags: bool = True):
    """A flow run left as a killed process leaves it: Running (or Crashed), with task runs in given states.

    ``steps``: (step id, state name) pairs, each a task run named by its step id and, with ``step_tags`` (older
    histories), tagged ``step:<id>`` and the environment; without it untagged, as the steps now run."""
    from prefect import flow, get_client, task
    from prefect.states import Completed, Crashed, Running

    states = {"Running": Running, "Completed": Completed, "Crashed": Crashed}

    @flow(name=flow_name)
    def placeholder():  # only its name matters: the run is made through the API
        pass

    with get_client(sync_client=True) as client:
        run = client.create_flow_run(placeholder, name=name, tags=[f"env:{environment}"],
                                     parameters={"environment": environment, "project": project, "operator": "alice"})
        client.set_flow_run_state(run.id, Running(), force=True)
        task_ids = {}
        for index, (step_id, step_state) in enumerate(steps):
            step = task(name=step_id, tags=[f"step:{step_id}"] if step_tags else [])(lambda: None)
            tr = client.create_task_run(step, run.id, dynamic_key=str(index), name=step_id,
                                        extra_tags=[f"env:{environment}"] if step_tags else [])
            client.set_task_run_state(tr.id, Running(), force=True)
            if step_state != "Running":
                client.set_task_run_state(tr.id, states[step_state](), force=True)
            task_ids[step_id] = tr.id
        for index, task_name in enumerate(other_tasks):
            other = task(name=task_name)(lambda: None)
            tr = client.create_task_run(other, run.id, dynamic_key=f"o{index}", name=task_name)
            client.set_task_run_state(tr.id, Running(), force=True)
            task_ids[task_name] = tr.id
        if state != "Running":
            client.set_flow_run_state(run.id, states[state](message="no heartbeat"), force=True)
    return run.id, task_ids


def _read(flow_run_id=None, task_run_id=None):
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id) if flow_run_id else client.read_task_run(task_run_id)


def _take_lock(environment: str, label: str) -> "object":
    started, release = threading.Event(), threading.Event()
    release.set()
    hold = _holding_flow(started, release, {})
    return hold(environment=environment, label=label, wait_s=30, return_state=True)


def test_the_next_holder_marks_a_dead_run_crashed_and_says_what_it_left(prefect_server, caplog):
    import uuid

    env = f"reap{uuid.uuid4().hex[:6]}"
    dead_id, tasks = _fake_run(env, name=f"deploy-{env}-v1", steps=(("server.os", "Completed"),
                                                                   ("services.clone", "Completed"),
                                                                   ("services.deploy", "Running")))
    caplog.set_level("INFO", logger="technicia_deploy.environment_lock")
    state = _take_lock(env, "next")
    assert state.is_completed(), state.message

    dead = _read(flow_run_id=dead_id)
    assert dead.state.type.value == "CRASHED"
    assert dead.state.message.startswith(f"process lost; found by run 'hold-{env}-next' (id ")
    assert " at 20" in dead.state.message
    assert dead.state.message.endswith("; its last step services.deploy was Running")
    assert _read(task_run_id=tasks["services.deploy"]).state.type.value == "CRASHED"
    assert "process lost; found by run" in _read(task_run_id=tasks["services.deploy"]).state.message
    assert _read(task_run_id=tasks["services.clone"]).state.type.value == "COMPLETED"  # finished steps stay as they were
    said = [r.getMessage() for r in caplog.records if "had lost its process" in r.getMessage()]
    assert said == [f"{env}: run 'deploy-{env}-v1' (deploy-environment, id {dead_id}, started by alice) had lost its "
                    "process: its last step services.deploy was Running (3 step(s) started); marked Crashed with 1 "
                    "unfinished task run(s). This run starts from the server's state (every step reads it first)."]

    # The next holder finds nothing more to do.
    caplog.clear()
    assert _take_lock(env, "after").is_completed()
    assert not [r for r in caplog.records if "had lost its process" in r.getMessage()]


def test_a_dead_run_whose_steps_carry_no_tags_is_found_by_its_step_names(prefect_server, caplog):
    """Step task runs are named by their catalogue id and carry no tags (tasks/step.py): a killed run of them is
    still found, marked Crashed naming its last step, and the next holder's log names it."""
    import uuid

    env = f"reap{uuid.uuid4().hex[:6]}"
    dead_id, tasks = _fake_run(env, name=f"deploy-{env}-v1.1.0", step_tags=False,
                               steps=(("server.os", "Completed"), ("services.clone", "Completed"),
                                      ("services.deploy", "Running")))
    assert not _read(task_run_id=tasks["services.deploy"]).tags  # as the flow now makes them
    caplog.set_level("INFO", logger="technicia_deploy.environment_lock")
    assert _take_lock(env, "next").is_completed()

    dead = _read(flow_run_id=dead_id)
    assert dead.state.type.value == "CRASHED"
    assert dead.state.message.startswith(f"process lost; found by run 'hold-{env}-next' (id ")
    assert dead.state.message.endswith("; its last step services.deploy was Running")
    assert _read(task_run_id=tasks["services.deploy"]).state.type.value == "CRASHED"
    assert _read(task_run_id=tasks["services.clone"]).state.type.value == "COMPLETED"
    said = [r.getMessage() for r in caplog.records if "had lost its process" in r.getMessage()]
    assert said == [f"{env}: run 'deploy-{env}-v1.1.0' (deploy-environment, id {dead_id}, started by alice) had lost "
                    "its process: its last step services.deploy was Running (3 step(s) started); marked Crashed with 1 "
                    "unfinished task run(s). This run starts from the server's state (every step reads it first)."]


def test_a_run_waiting_for_the_lock_or_of_another_project_is_left_alone(prefect_server):
    import uuid

    env = f"reap{uuid.uuid4().hex[:6]}"
    # Waiting for the lock: Running, with non-step work done (tagging, preflight) but no step started.
    waiting_id, waiting_tasks = _fake_run(env, name=f"deploy-{env}-waiting", other_tasks=("preflight",))
    other_project_id, _ = _fake_run(env, name=f"deploy-{env}-other", project="another-project",
                                    steps=(("services.deploy", "Running"),))
    not_locking_id, _ = _fake_run(env, name=f"dns-{env}", flow_name="prepare-dns", steps=(("https.dns", "Running"),))
    assert _take_lock(env, "next").is_completed()
    assert _read(flow_run_id=waiting_id).state.type.value == "RUNNING"
    assert _read(task_run_id=waiting_tasks["preflight"]).state.type.value == "RUNNING"
    assert _read(flow_run_id=other_project_id).state.type.value == "RUNNING"
    assert _read(flow_run_id=not_locking_id).state.type.value == "RUNNING"


def test_a_run_already_crashed_by_zombie_detection_has_its_task_runs_finished(prefect_server, caplog):
    import uuid

    env = f"reap{uuid.uuid4().hex[:6]}"
    dead_id, tasks = _fake_run(env, name=f"rollback-{env}", flow_name="rollback-environment",
                               steps=(("services.rollback", "Running"),), state="Crashed")
    caplog.set_level("INFO", logger="technicia_deploy.environment_lock")
    assert _take_lock(env, "next").is_completed()
    run = _read(flow_run_id=dead_id)
    assert (run.state.type.value, run.state.message) == ("CRASHED", "no heartbeat")  # Prefect's own verdict kept
    assert _read(task_run_id=tasks["services.rollback"]).state.type.value == "CRASHED"
    said = [r.getMessage() for r in caplog.records if "had lost its process" in r.getMessage()]
    assert len(said) == 1 and "it was already Crashed but left step services.rollback Running" in said[0]


def test_steps_of_an_attempt_before_a_flow_retry_do_not_make_a_waiting_run_dead():
    """Pure: a Running run whose step task runs all belong to an earlier attempt is waiting, not dead."""
    from datetime import datetime, timedelta, timezone
    from types import SimpleNamespace

    now = datetime.now(timezone.utc)
    run = SimpleNamespace(run_count=2, state=SimpleNamespace(timestamp=now))
    engine_made = SimpleNamespace(flow_run_run_count=1, start_time=now - timedelta(minutes=5), expected_start_time=None,
                                  created=None)
    assert not environment_lock._in_current_attempt(engine_made, run)
    assert environment_lock._in_current_attempt(SimpleNamespace(**{**vars(engine_made), "flow_run_run_count": 2}), run)
    # Task runs made through the API carry no attempt number: their time says it.
    api_made = SimpleNamespace(flow_run_run_count=0, start_time=now - timedelta(minutes=5), expected_start_time=None,
                               created=None)
    assert not environment_lock._in_current_attempt(api_made, run)
    assert environment_lock._in_current_attempt(SimpleNamespace(**{**vars(api_made), "start_time": now + timedelta(seconds=1)}), run)
