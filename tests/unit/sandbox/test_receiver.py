"""The sandbox's alert receiver as a component: daemon up/status/down, destination files, environments.yaml."""

from __future__ import annotations

import stat

from technicia_deploy import alerts, config
from technicia_deploy.sandbox import receiver, world
from technicia_deploy.sandbox.state import SandboxState
from tests.unit.sandbox.test_world import components_state


def test_up_writes_secret_destinations_that_deliver_then_down_stops_it(tmp_path):
    state = SandboxState(tmp_path / "sbx", {"network": {"gateway": "127.0.0.1"}})
    receiver.up(state)
    try:
        data = state.data["receiver"]
        receiver.up(state)  # idempotent: same daemon, same ports
        assert state.data["receiver"]["http_port"] == data["http_port"]
        webhook = data["destinations"]["test"][0]
        path = webhook["url"]["file"]
        assert webhook["name"] == "ops-webhook" and stat.S_IMODE((tmp_path / path).stat().st_mode) == 0o600
        urls = {d["name"]: (tmp_path / d["url"]["file"]).read_text() for d in data["destinations"]["test"]}
        assert [d.ok for d in alerts.send(urls, "t-42", "body", "info")] == [True, True]
        got = receiver.wait_for(tmp_path / data["record"], lambda e: e["kind"] == "email", timeout=10)
        assert got["subject"] == "t-42"
        assert "running" in receiver.status(state)[0] and "2 delivery(ies)" in receiver.status(state)[0]
    finally:
        receiver.down(state)
    assert "receiver" not in state.data and receiver.status(state) == ["receiver: not up"]


def test_environments_yaml_gets_the_receiver_destinations_and_the_issuer_root(tmp_path):
    data = components_state(tmp_path)
    data["receiver"] = {"destinations": {env: [{"name": "ops-webhook", "url": {"file": str(tmp_path / f"{env}.url")}}]
                                         for env in ("test", "staging", "production")}}
    project = config.parse(world.sandbox_config(data))
    test = project.environment("test")
    assert [a.name for a in test.alerts] == ["ops-webhook"] and test.alerts[0].url.file == str(tmp_path / "test.url")
    assert test.tls.issuer_ca == str(tmp_path / "roots.pem")
    assert any(h.url.startswith("/api/ask") for h in test.health)
