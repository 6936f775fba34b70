"""The ``ovh`` sandbox component: the daemon it starts, its recorded data, restart and teardown.

The VPS inventory is written into the state by hand (no Docker needed); no rebuild is run here.
"""

from __future__ import annotations

import copy
import socket
import stat
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import dns.resolver
import pytest
from pydantic import SecretStr

from technicia_deploy.ovh import OvhApi, OvhError, OvhErrorKind
from technicia_deploy.sandbox import ovh as ovh_component
from technicia_deploy.sandbox import processes
from technicia_deploy.sandbox.state import SandboxState
from tests.unit.sandbox.test_ovh_emulator import INVENTORY, wait_for


def api_for(state: SandboxState, **options) -> OvhApi:
    data = state.data["ovh"]
    block = SimpleNamespace(
        endpoint="ovh-eu",
        api_url=data["api_url"],
        application_key=SecretStr(Path(data["application_key_file"]).read_text().strip()),
        application_secret=SecretStr(Path(data["application_secret_file"]).read_text().strip()),
        consumer_key=SecretStr(Path(data["consumer_key_file"]).read_text().strip()),
    )
    return OvhApi.from_block(block, **{"timeout_s": 5.0, "sleep": lambda s: None, **options})


def resolve(state: SandboxState, name: str) -> list[str]:
    host, port = state.data["ovh"]["dns"].split(":")
    res = dns.resolver.Resolver(configure=False)
    res.nameservers, res.port, res.lifetime = [host], int(port), 3
    return sorted(r.to_text() for r in res.resolve(name, "A"))


@pytest.fixture
def state(tmp_path):
    state = SandboxState(tmp_path / "sandbox", {"vps": copy.deepcopy(INVENTORY)})
    state.save()
    yield state
    ovh_component.down(state)


def test_up_records_the_contract_and_serves_api_and_dns(state):
    ovh_component.up(state)
    data = SandboxState.load(state.dir).data["ovh"]
    assert data["zone"] == "exemple.test"
    assert data["api_url"].startswith("http://127.0.0.1:") and data["api_url"].endswith("/1.0")
    for field in ("application_key_file", "application_secret_file", "consumer_key_file"):
        path = Path(data[field])
        assert path.is_relative_to(state.dir)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

    api = api_for(state)
    assert api.vps_details("vps-test.vps.ovh.net").model == "vps-ssd-2"
    assert api.ensure_record("exemple.test", "test-technicia", "A", "10.99.0.11", 60) == "changed"
    assert resolve(state, "test-technicia.exemple.test") == ["10.99.0.11"]
    assert any("API answers" in line for line in ovh_component.status(state))


def test_up_twice_is_a_no_op_and_restart_keeps_records_and_keys(state):
    ovh_component.up(state)
    first = dict(state.data["ovh"])
    pid = processes.pid_of(state, "ovh")
    ovh_component.up(state)
    assert processes.pid_of(state, "ovh") == pid and state.data["ovh"] == first

    api_for(state).ensure_record("exemple.test", "technicia", "A", "10.99.0.13", 60)
    processes.stop(state, "ovh")  # the daemon dies; `sandbox up` again brings it back
    assert "not running" in ovh_component.status(state)[0]
    ovh_component.up(state)
    assert state.data["ovh"] == first  # same ports and key files: environments.yaml stays right
    assert api_for(state).ensure_record("exemple.test", "technicia", "A", "10.99.0.13", 60) == "unchanged"
    assert resolve(state, "technicia.exemple.test") == ["10.99.0.13"]


def test_fault_injection_through_the_admin_route(state):
    ovh_component.up(state)
    ovh_component.admin(state, "POST", "faults", {"path": "/vps/", "status": 503, "count": 5})
    with pytest.raises(OvhError) as caught:
        api_for(state, retries=1).vps_ipv4("vps-test.vps.ovh.net")
    assert caught.value.kind is OvhErrorKind.TRANSIENT
    ovh_component.admin(state, "DELETE", "faults")
    assert api_for(state).vps_ipv4("vps-test.vps.ovh.net") == "10.99.0.11"


def test_down_stops_the_daemon_and_removes_its_files(state):
    ovh_component.up(state)
    api_port = urlsplit(state.data["ovh"]["api_url"]).port
    ovh_component.down(state)
    assert "ovh" not in SandboxState.load(state.dir).data
    assert not (state.dir / "ovh").exists()
    assert processes.pid_of(state, "ovh") is None
    wait_for(lambda: not _listening(api_port))
    ovh_component.down(state)  # tolerates being run twice


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True
