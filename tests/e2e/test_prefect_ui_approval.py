"""The production approval answered through the real Prefect UI, in headless Chromium.

A `prefect server start` of this module's own (the session harness serves no UI) and a flow, in a
subprocess talking only to that server, paused on `ProductionApproval`; `answer_approval` fills and
submits the UI's "Resume Flow Run" form; the flow must get exactly the values typed in.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.prefect_ui import CHROMIUM, PrefectUIError, answer_approval

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]

# The flow under approval: its run id to a file as soon as it runs, then its answer to another file.
FLOW_SCRIPT = r'''
import json, os, sys
from pathlib import Path

from prefect import flow, pause_flow_run
from prefect.runtime import flow_run

from technicia_deploy.approval import APPROVAL_KEY, ProductionApproval

out = Path(sys.argv[1])


def publish(name, text):
    tmp = out / (name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, out / name)


@flow(name="ui-approval-probe")
def probe():
    publish("flow_run_id", str(flow_run.id))
    answer = pause_flow_run(
        wait_for_input=ProductionApproval.with_initial_data(description="**evidence** markdown"),
        timeout=120, key=APPROVAL_KEY, poll_interval=1)
    return answer.model_dump()


publish("answer.json", json.dumps(probe()))
'''


@dataclass
class UIServer:
    ui_url: str
    api_url: str
    log: Path


def _isolated_env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any PREFECT_* (the session harness's API URL, home, profile)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_HOME=str(home), **extra)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen) -> None:
    """Stop a process started in a session of its own, and whatever it started (its process group)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def prefect_ui(tmp_path_factory) -> UIServer:
    """A real `prefect server start` with its UI, on a free loopback port, with a PREFECT_HOME of its own."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"the Prefect UI tests need Debian's chromium at {CHROMIUM} (apt-get install chromium, "
                    "or scripts/bootstrap.sh)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail("the Prefect UI tests need playwright (dev dependency group): uv sync --frozen")
    root = tmp_path_factory.mktemp("prefect-ui")
    port = _free_port()
    ui_url = f"http://127.0.0.1:{port}"
    api_url = f"{ui_url}/api"
    log_path = root / "server.log"
    env = _isolated_env(root / "home", PREFECT_UI_API_URL=api_url)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env, cwd=root, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"prefect server exited with {proc.returncode} before answering:\n{_tail(log_path)}")
            try:
                with urllib.request.urlopen(f"{api_url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"prefect server did not answer {api_url}/health within 120 s:\n{_tail(log_path)}")
            time.sleep(0.2)
        yield UIServer(ui_url=ui_url, api_url=api_url, log=log_path)
    finally:
        _stop(proc)


@pytest.fixture
def paused_run(prefect_ui, tmp_path):
    """Start the flow against the module's server; yield (flow run id, wait_for_answer) once it has started."""
    out = tmp_path / "flow"
    out.mkdir()
    script = tmp_path / "approval_flow.py"
    script.write_text(FLOW_SCRIPT)
    log_path = tmp_path / "flow.log"
    env = _isolated_env(tmp_path / "client-home", PREFECT_API_URL=prefect_ui.api_url)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, str(script), str(out)], env=env, cwd=REPO,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (out / "flow_run_id").exists():
            if proc.poll() is not None:
                pytest.fail(f"the flow exited with {proc.returncode} before pausing:\n{_tail(log_path)}")
            if time.monotonic() > deadline:
                pytest.fail(f"the flow did not start within 60 s:\n{_tail(log_path)}")
            time.sleep(0.1)

        def wait_for_answer(timeout_s: float = 60) -> dict:
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the flow did not end within {timeout_s} s of the answer:\n{_tail(log_path)}")
            assert proc.returncode == 0, f"the flow failed:\n{_tail(log_path)}"
            return json.loads((out / "answer.json").read_text())

        yield (out / "flow_run_id").read_text(), wait_for_answer
    finally:
        _stop(proc)


def _answer_timed(prefect_ui: UIServer, flow_run_id: str, values: dict, screenshot: Path) -> float:
    started = time.monotonic()
    answer_approval(prefect_ui.ui_url, flow_run_id, values, screenshot=screenshot, timeout_s=60)
    took = time.monotonic() - started
    print(f"approval through the Prefect UI: {took:.1f} s (browser start to run resumed)")
    return took


def test_an_approval_typed_into_the_prefect_ui_reaches_the_flow(prefect_ui, paused_run, tmp_path):
    flow_run_id, wait_for_answer = paused_run
    screenshot = tmp_path / "approval.png"
    # Keys as the form shows them: the fields' titles.
    _answer_timed(prefect_ui, flow_run_id, {
        "Approbateur / Approver": "Alice Martin",
        "Décision / Decision": "approve",
        "Documentation utilisateur finalisée": True,
        "Quotas API vérifiés": True,
        "Commentaire / Comment": "staging checks green; see run 42",
    }, screenshot)

    assert wait_for_answer() == {
        "approver": "Alice Martin",
        "decision": "approve",
        "documentation_finalised": True,
        "quotas_verified": True,
        "comment": "staging checks green; see run 42",
    }
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_rejection_typed_into_the_prefect_ui_reaches_the_flow(prefect_ui, paused_run, tmp_path):
    flow_run_id, wait_for_answer = paused_run
    # A field the form does not have: refused before anything is submitted, naming the fields there are.
    with pytest.raises(PrefectUIError, match=r"'Signature'.*approver \('Approbateur / Approver'\).*decision"):
        answer_approval(prefect_ui.ui_url, flow_run_id, {"Signature": "x"}, timeout_s=30)

    # Keys as the RunInput names them; the confirmations are left at their defaults (off).
    _answer_timed(prefect_ui, flow_run_id, {
        "approver": "Bruno Leroy",
        "decision": "reject",
        "comment": "quotas not raised yet",
    }, tmp_path / "rejection.png")

    assert wait_for_answer() == {
        "approver": "Bruno Leroy",
        "decision": "reject",
        "documentation_finalised": False,
        "quotas_verified": False,
        "comment": "quotas not raised yet",
    }
