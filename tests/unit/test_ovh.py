"""The product's OVH client (technicia_deploy.ovh) against the in-process OVH emulator, through real python-ovh."""

from __future__ import annotations

from types import SimpleNamespace

import dns.resolver
import pytest
from pydantic import SecretStr

from technicia_deploy.ovh import FirewallRule, OvhApi, OvhError, OvhErrorKind, network_firewall_rules
from technicia_deploy.sandbox.processes import free_port
from tests.unit.sandbox.test_ovh_emulator import FakeRebuild, resolver, start_emulator

ZONE = "exemple.test"
TEST_VPS = "vps-test.vps.ovh.net"


@pytest.fixture
def fake_rebuild() -> FakeRebuild:
    return FakeRebuild()


@pytest.fixture
def emulator(tmp_path, fake_rebuild):
    emu = start_emulator(tmp_path / "ovh", fake_rebuild, settle_s=0.02)
    yield emu
    emu.stop()


class Sleeps(list):
    """Records the backoff waits instead of sleeping them (keeps the tests fast, shows the retries)."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def make_api(emu, sleeps=None, **overrides) -> OvhApi:
    block = SimpleNamespace(
        endpoint="ovh-eu",
        api_url=emu.api_url,
        application_key=SecretStr(overrides.pop("application_key", emu.keys.application_key)),
        application_secret=SecretStr(overrides.pop("application_secret", emu.keys.application_secret)),
        consumer_key=SecretStr(overrides.pop("consumer_key", emu.keys.consumer_key)),
    )
    options = {"timeout_s": 5.0, "retries": 3, "backoff_s": 0.5, "sleep": sleeps if sleeps is not None else Sleeps()}
    return OvhApi.from_block(block, **{**options, **overrides})


def assert_no_secret(emu, text: str) -> None:
    for secret in (emu.keys.application_key, emu.keys.application_secret, emu.keys.consumer_key):
        assert secret not in text


# --- credentials and error classification -----------------------------------------------------


def test_valid_credentials_are_checked(emulator):
    assert make_api(emulator).check_credentials()["status"] == "validated"


def test_wrong_secret_is_an_invalid_credential_and_not_retried(emulator, sleeps):
    api = make_api(emulator, sleeps, application_secret="w" * 32)
    with pytest.raises(OvhError) as caught:
        api.vps_details(TEST_VPS)
    assert caught.value.kind is OvhErrorKind.INVALID_CREDENTIAL
    assert sleeps == []
    message = str(caught.value)
    assert f"GET /vps/{TEST_VPS}" in message and "Invalid signature" in message
    assert_no_secret(emulator, message + repr(api))
    assert "w" * 32 not in message


def test_unknown_consumer_key_is_an_invalid_credential(emulator, sleeps):
    with pytest.raises(OvhError) as caught:
        make_api(emulator, sleeps, consumer_key="c" * 32).check_credentials()
    assert caught.value.kind is OvhErrorKind.INVALID_CREDENTIAL and caught.value.status == 403
    assert sleeps == []


def test_call_not_granted_is_a_permission_error(emulator):
    emulator.add_credential("r" * 32, rules=[{"method": "GET", "path": "/*"}])
    with pytest.raises(OvhError) as caught:
        make_api(emulator, consumer_key="r" * 32).ensure_record(ZONE, "test-technicia", "A", "10.99.0.11", 300)
    assert caught.value.kind is OvhErrorKind.PERMISSION
    assert "POST /domain/zone/exemple.test/record" in str(caught.value)


def test_unknown_vps_is_not_found(emulator):
    with pytest.raises(OvhError) as caught:
        make_api(emulator).vps_details("vps-missing.vps.ovh.net")
    assert caught.value.kind is OvhErrorKind.NOT_FOUND and caught.value.status == 404


def test_503_then_success_is_retried_with_backoff(emulator, sleeps):
    emulator.inject_fault(f"/vps/{TEST_VPS}", status=503, count=2)
    assert make_api(emulator, sleeps).vps_ipv4(TEST_VPS) == "10.99.0.11"
    assert sleeps == [0.5, 1.0]


def test_retries_are_recorded_on_the_client_and_in_every_enclosing_block(emulator, sleeps):
    from technicia_deploy.ovh import Retry, retries_recorded, retry_note

    api = make_api(emulator, sleeps)
    api.check_credentials()
    emulator.inject_fault(f"/vps/{TEST_VPS}", status=500, count=2, method="GET")
    with retries_recorded() as outer:
        with retries_recorded() as inner:
            assert api.vps_ipv4(TEST_VPS) == "10.99.0.11"
        api.vps_ipv4(TEST_VPS)  # no fault left: nothing more recorded
    call = f"GET /vps/{TEST_VPS}/ips"
    assert api.retried == inner == outer == [Retry(call, 500, 1, 0.5), Retry(call, 500, 2, 1.0)]
    assert retry_note(inner) == f"OVH API retried 2 transient error(s): {call} HTTP 500 ×2"
    assert retry_note([]) == ""
    with retries_recorded() as later:
        api.vps_ipv4(TEST_VPS)
    assert later == []  # a block sees only its own calls' retries


def test_persistent_5xx_gives_up_after_the_retries(emulator, sleeps):
    emulator.inject_fault(f"/vps/{TEST_VPS}", status=500, count=10)
    with pytest.raises(OvhError) as caught:
        make_api(emulator, sleeps, retries=2).vps_ipv4(TEST_VPS)
    assert caught.value.kind is OvhErrorKind.TRANSIENT and caught.value.status == 500
    assert len(sleeps) == 2
    assert caught.value.attempts == 3 and str(caught.value).endswith("; gave up after 3 attempts)")


def test_an_error_keeps_its_fields_through_pickling():
    import pickle

    error = OvhError("GET /vps/x", OvhErrorKind.TRANSIENT, "Internal server error", 500, attempts=4)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.call, copy.kind, copy.status, copy.attempts, str(copy)) == (
        "GET /vps/x", OvhErrorKind.TRANSIENT, 500, 4, str(error))


def test_connection_refused_is_transient(sleeps):
    closed = SimpleNamespace(
        api_url=f"http://127.0.0.1:{free_port()}/1.0",
        keys=SimpleNamespace(application_key="a" * 16, application_secret="s" * 32, consumer_key="c" * 32),
    )
    with pytest.raises(OvhError) as caught:
        make_api(closed, sleeps, retries=1).vps_ipv4(TEST_VPS)
    assert caught.value.kind is OvhErrorKind.TRANSIENT
    assert len(sleeps) == 1
    assert "s" * 32 not in str(caught.value)


def test_slow_answer_times_out_as_transient(emulator, sleeps):
    emulator.inject_fault(f"/vps/{TEST_VPS}", status=None, delay_s=1.0)
    with pytest.raises(OvhError) as caught:
        make_api(emulator, sleeps, timeout_s=0.3, retries=0).vps_details(TEST_VPS)
    assert caught.value.kind is OvhErrorKind.TRANSIENT


def test_unknown_endpoint_name_is_refused():
    with pytest.raises(ValueError, match="unknown OVH endpoint 'ovh-mars'"):
        OvhApi(endpoint="ovh-mars", application_key="a", application_secret="b", consumer_key="c")


# --- VPS ------------------------------------------------------------------------------------


def test_vps_details_match_the_server_spec(emulator):
    details = make_api(emulator).vps_details("vps-prod.vps.ovh.net")
    assert (details.model, details.vcores, details.ram_gb, details.disk_gb) == ("vps-ssd-4", 4, 8, 160)
    assert (details.datacentre, details.state, details.os) == ("SBG5", "running", "Debian 12")
    spec = SimpleNamespace(model="VPS-SSD-4", vcores=4, ram_gb=8, disk_gb=160, zone="SBG5")
    assert details.differences(spec) == []
    wrong = SimpleNamespace(model="VPS-SSD-2", vcores=4, ram_gb=16, disk_gb=160, zone="GRA11")
    assert details.differences(wrong) == [
        "model is vps-ssd-4, expected VPS-SSD-2",
        "ram_gb is 8, expected 16",
        "zone is SBG5, expected GRA11",
    ]


def test_rebuild_and_wait_runs_the_task_to_done(emulator, fake_rebuild):
    api = make_api(emulator)
    image = api.find_image(TEST_VPS, "ubuntu 22.04")
    task = api.rebuild_and_wait(TEST_VPS, image, "ssh-ed25519 AAAAdeploy deploy@technicia", timeout_s=10, poll_s=0.02)
    assert task["state"] == "done"
    assert fake_rebuild.calls == [("test", "ssh-ed25519 AAAAdeploy deploy@technicia")]
    assert api.vps_details(TEST_VPS).os == "Ubuntu 22.04"


def test_failed_rebuild_task_is_an_error(tmp_path):
    emu = start_emulator(tmp_path, FakeRebuild(fail=True))
    try:
        api = make_api(emu)
        with pytest.raises(OvhError, match="ended error"):
            api.rebuild_and_wait(
                TEST_VPS, api.find_image(TEST_VPS, "Debian 12"), "ssh-ed25519 AAAAk", timeout_s=10, poll_s=0.02
            )
    finally:
        emu.stop()


def test_rebuild_while_a_task_runs_is_a_conflict(tmp_path):
    slow = FakeRebuild(block=True)
    emu = start_emulator(tmp_path, slow)
    try:
        api = make_api(emu)
        image = api.find_image(TEST_VPS, "Debian 12")
        api.rebuild(TEST_VPS, image, "ssh-ed25519 AAAAk")
        with pytest.raises(OvhError) as caught:
            api.rebuild(TEST_VPS, image, "ssh-ed25519 AAAAk")
        assert caught.value.kind is OvhErrorKind.CONFLICT
        with pytest.raises(OvhError, match="still doing"):
            api.wait_task(TEST_VPS, 1, timeout_s=0.1, poll_s=0.02)
    finally:
        slow.release.set()
        emu.stop()


def test_missing_image_names_the_available_ones(emulator):
    with pytest.raises(OvhError, match="no image 'Windows'.*Debian 12"):
        make_api(emulator).find_image(TEST_VPS, "Windows")


# --- DNS ------------------------------------------------------------------------------------


def test_ensure_record_creates_then_is_unchanged_then_updates(emulator):
    api, resolve = make_api(emulator), resolver(emulator)
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolve("test-technicia.exemple.test", "A")

    assert api.ensure_record(ZONE, "test-technicia", "A", "10.99.0.11", 300) == "changed"
    assert resolve("test-technicia.exemple.test", "A") == ["10.99.0.11"]
    assert api.ensure_record(ZONE, "test-technicia", "A", "10.99.0.11", 300) == "unchanged"

    assert api.ensure_record(ZONE, "test-technicia", "A", "10.99.0.12", 300) == "changed"
    assert resolve("test-technicia.exemple.test", "A") == ["10.99.0.12"]
    assert len(api.call("GET", f"/domain/zone/{ZONE}/record", fieldType="A", subDomain="test-technicia")) == 1


def test_ensure_record_removes_duplicates(emulator):
    api, resolve = make_api(emulator), resolver(emulator)
    for target in ("10.0.0.1", "10.0.0.2"):
        api.call("POST", f"/domain/zone/{ZONE}/record", fieldType="A", subDomain="technicia", target=target, ttl=300)
    api.call("POST", f"/domain/zone/{ZONE}/refresh")
    assert resolve("technicia.exemple.test", "A") == ["10.0.0.1", "10.0.0.2"]
    assert api.ensure_record(ZONE, "technicia", "A", "10.0.0.2", 300) == "changed"
    assert resolve("technicia.exemple.test", "A") == ["10.0.0.2"]
    assert api.ensure_record(ZONE, "technicia", "A", "10.0.0.2", 300) == "unchanged"


def test_unchanged_record_does_not_refresh_the_zone(emulator):
    api = make_api(emulator)
    api.ensure_record(ZONE, "staging-technicia", "A", "10.99.0.12", 300)
    emulator.inject_fault(f"/domain/zone/{ZONE}/refresh", status=500, count=1)  # a refresh now would fail
    assert api.ensure_record(ZONE, "staging-technicia", "A", "10.99.0.12", 300) == "unchanged"


def test_vps_ipv6_is_the_listed_ipv6_or_none(emulator):
    api = make_api(emulator)
    assert api.vps_ipv6(TEST_VPS) == "fd7e:c0de:7ec4:99::11"
    assert api.vps_ipv4(TEST_VPS) == "10.99.0.11"  # the IPv4 helper ignores the IPv6 beside it
    assert api.vps_ipv6("vps-prod.vps.ovh.net") is None  # an IPv4-only VPS


def test_vps_ipv6_accepts_ovh_full_form_and_a_prefix(monkeypatch, emulator):
    api = make_api(emulator)
    monkeypatch.setattr(api, "request", lambda route, path=None, **kw: [
        "51.38.1.2", "fe80::1", "2001:41d0:0304:0200:0000:0000:0000:9c41/128"])
    assert api.vps_ipv6(TEST_VPS) == "2001:41d0:304:200::9c41"  # compressed, as DNS answers it; link-local skipped


def test_aaaa_record_then_no_aaaa_record(emulator):
    api, resolve = make_api(emulator), resolver(emulator)
    assert api.ensure_record(ZONE, "test-technicia", "AAAA", "fd7e:c0de:7ec4:99::11", 300) == "changed"
    assert resolve("test-technicia.exemple.test", "AAAA") == ["fd7e:c0de:7ec4:99::11"]
    assert api.ensure_record(ZONE, "test-technicia", "AAAA", "fd7e:c0de:7ec4:99::11", 300) == "unchanged"
    assert api.ensure_no_record(ZONE, "test-technicia", "AAAA") == "changed"
    with pytest.raises(dns.resolver.NXDOMAIN):  # the name has no other record left
        resolve("test-technicia.exemple.test", "AAAA")
    emulator.inject_fault(f"/domain/zone/{ZONE}/refresh", status=500, count=1)  # a refresh now would fail
    assert api.ensure_no_record(ZONE, "test-technicia", "AAAA") == "unchanged"


# --- network firewall -------------------------------------------------------------------------


def test_ensure_firewall_mirrors_the_rules(emulator):
    api = make_api(emulator)
    rules = network_firewall_rules([(22, "tcp"), (443, "tcp"), (80, "tcp")])
    assert [r.port for r in rules] == [None, None, 22, 80, 443, None]
    assert api.ensure_firewall("10.99.0.11", rules, timeout_s=5, poll_s=0.01) == "changed"
    assert api.ensure_firewall("10.99.0.11", rules, timeout_s=5, poll_s=0.01) == "unchanged"

    base = "/ip/10.99.0.11%2F32/firewall/10.99.0.11"
    assert api.call("GET", base)["enabled"] is True
    assert [
        FirewallRule.from_api(api.call("GET", f"{base}/rule/{s}")) for s in api.call("GET", f"{base}/rule")
    ] == rules

    fewer = network_firewall_rules([(22, "tcp"), (443, "tcp")])  # port 80 closed: sequences shift
    assert api.ensure_firewall("10.99.0.11", fewer, timeout_s=5, poll_s=0.01) == "changed"
    assert [
        FirewallRule.from_api(api.call("GET", f"{base}/rule/{s}")) for s in api.call("GET", f"{base}/rule")
    ] == fewer
    assert api.ensure_firewall("10.99.0.11", fewer, timeout_s=5, poll_s=0.01) == "unchanged"


def test_firewall_rules_must_fit_in_twenty():
    with pytest.raises(ValueError, match="20 rules"):
        network_firewall_rules([(p, "tcp") for p in range(1000, 1018)])


def test_timed_out_post_is_not_retried(emulator, sleeps):
    """The record may have been created before the answer was lost: a retry could create it twice."""
    api = make_api(emulator, sleeps, timeout_s=0.3)
    api.check_credentials()
    emulator.inject_fault(f"/domain/zone/{ZONE}/record", status=None, delay_s=1.0, method="POST")
    with pytest.raises(OvhError) as caught:
        api.ensure_record(ZONE, "slow", "A", "10.99.0.11", 300)
    assert caught.value.kind is OvhErrorKind.TRANSIENT
    assert sleeps == []
