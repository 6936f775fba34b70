"""A deployment re-uses the last passing smoke calls of the same keys and settings for a while, and only then."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pydantic import SecretStr

from technicia_deploy import cloud, freshness

NOW = 1_800_000_000.0


def _keys(**changes):
    fields = dict(
        google_project_id="technicia-test", google_service_account_json=SecretStr('{"type": "service_account", "k": 1}'),
        documentai_location="eu", documentai_processor_id="a1b2c3", documentai_endpoint=None, vision_endpoint=None,
        voyageai_api_key=SecretStr("pa-canary-secret"), voyageai_model="voyage-3.5-lite", voyageai_base_url=None,
        anthropic_api_key=SecretStr("sk-ant-canary-secret"), anthropic_model="claude-sonnet-4-6", anthropic_base_url=None)
    fields.update(changes)
    return SimpleNamespace(**fields)


def test_the_digest_follows_every_key_and_setting_and_holds_no_secret():
    base = cloud.settings_digest(_keys())
    assert cloud.settings_digest(_keys()) == base
    for change in ({"anthropic_api_key": SecretStr("sk-ant-other")}, {"voyageai_model": "voyage-3.5"},
                   {"documentai_processor_id": "z9"}, {"anthropic_base_url": "http://127.0.0.1:1"},
                   {"google_service_account_json": SecretStr('{"type": "service_account", "k": 2}')}):
        assert cloud.settings_digest(_keys(**change)) != base, change
    assert "canary" not in base and base.startswith("sha256:")


@pytest.mark.parametrize("last, max_age_s, reused", [
    ({"digest": "D", "at": NOW - 600, "summary": "ok"}, 3600, True),
    ({"digest": "D", "at": NOW - 7200}, 3600, False),   # too old
    ({"digest": "other", "at": NOW - 60}, 3600, False),  # other keys or settings
    ({"digest": "D", "at": NOW - 60}, 0, False),                             # 0: always call
    ({"digest": "D", "at": NOW + 600}, 3600, False),                         # from the future: a clock problem
    ({"digest": "D"}, 3600, False),                                          # malformed
    (None, 3600, False),
])
def test_a_passing_check_is_reused_only_when_young_enough_and_for_the_same_settings(last, max_age_s, reused):
    assert (freshness.reusable(last, "D", NOW, max_age_s) is not None) is reused


def test_the_deploy_gate_calls_once_then_reuses_until_the_keys_change(prefect_server, monkeypatch):
    from prefect import flow

    from tasks import api_keys

    calls = []

    def fake_check(environment, keys, send_message=False, timeout=20.0):
        calls.append(keys.anthropic_model)
        return [cloud.CheckResult(s, environment, cloud.Status.OK, 12.0, "sha256:x") for s in cloud.SERVICES]

    monkeypatch.setattr(cloud, "check_api_keys", fake_check)

    @flow
    def gate(keys, max_age_s: float) -> str:
        return api_keys.require_working_keys("test", "freshness", keys=keys, max_age_s=max_age_s)

    first = gate(_keys(), 3600)
    again = gate(_keys(), 3600)
    changed = gate(_keys(anthropic_model="claude-haiku-4-5"), 3600)
    always = gate(_keys(anthropic_model="claude-haiku-4-5"), 0)
    assert calls == ["claude-sonnet-4-6", "claude-haiku-4-5", "claude-haiku-4-5"]
    assert first.startswith("4 API keys passed their smoke calls (slowest 12 ms)")
    assert again.startswith("4 API keys passed their smoke calls 0 min ago with the same keys and settings")
    assert changed.startswith("4 API keys passed their smoke calls (slowest")
    assert always.startswith("4 API keys passed their smoke calls (slowest")


def test_a_failing_check_forgets_the_earlier_pass(prefect_server, monkeypatch):
    from prefect import flow

    from tasks import api_keys, memo

    def failing(environment, keys, send_message=False, timeout=20.0):
        return [cloud.CheckResult(s, environment, cloud.Status.INVALID_CREDENTIAL if s == "voyageai" else cloud.Status.OK,
                                  12.0, "sha256:x", fix="rotate it") for s in cloud.SERVICES]

    @flow
    def earlier_pass() -> None:
        memo.remember(api_keys.MEMO, "test", "forgotten", cloud.settings_digest(_keys()), "slowest 1 ms")

    @flow
    def audit() -> list:  # what the scheduled key audit runs
        return api_keys.smoke_environment("test", _keys(), project="forgotten")

    @flow
    def gate() -> None:
        api_keys.require_working_keys("test", "forgotten", keys=_keys(), max_age_s=3600)

    earlier_pass()
    assert memo.last(api_keys.MEMO, "test", "forgotten") is not None
    monkeypatch.setattr(cloud, "check_api_keys", failing)
    audit()
    assert memo.last(api_keys.MEMO, "test", "forgotten") is None
    with pytest.raises(cloud.ApiKeysRejected):
        gate()  # the next deployment calls the services again, and stops on the bad key
