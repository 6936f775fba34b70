"""The OVH emulator, driven by the real python-ovh client and dnspython over 127.0.0.1.

``start_emulator`` is also used by tests/unit/test_ovh.py (the product client's tests).
"""

from __future__ import annotations

import copy
import threading
import time
from pathlib import Path
from typing import Any, Callable

import dns.resolver
import ovh
import ovh.client
import pytest
import requests

from technicia_deploy.sandbox.ovh_emulator import Emulator, new_app_keys
from technicia_deploy.sandbox.ovh_emulator.auth import AppKeys

INVENTORY: dict[str, Any] = {
    "test": {
        "service_name": "vps-test.vps.ovh.net",
        "container": "unit-test-vps",
        "ip": "10.99.0.11",
        "ipv6": "fd7e:c0de:7ec4:99::11",  # a dual-stack VPS; production's entry below is IPv4-only
        "host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIUnitTestKey",
        "admin_user": "debian",
        "spec": {"model": "VPS-SSD-2", "vcores": 2, "ram_gb": 4, "disk_gb": 80, "os": "Debian 12", "zone": "GRA11"},
    },
    "production": {
        "service_name": "vps-prod.vps.ovh.net",
        "container": "unit-prod-vps",
        "ip": "10.99.0.13",
        "host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIUnitProdKey",
        "admin_user": "debian",
        "spec": {"model": "VPS-SSD-4", "vcores": 4, "ram_gb": 8, "disk_gb": 160, "os": "Debian 12", "zone": "SBG5"},
    },
}
ADMIN_TOKEN = "unit-admin-token"


class FakeRebuild:
    """Stands in for sandbox.vps.rebuild: records calls, blocks until released, may fail."""

    def __init__(self, fail: bool = False, block: bool = False) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail = fail
        self.release = threading.Event()
        if not block:
            self.release.set()

    def __call__(self, env: str, public_key: str) -> None:
        self.calls.append((env, public_key))
        assert self.release.wait(10), "the test never released the rebuild"
        if self.fail:
            raise RuntimeError("container would not start")


def start_emulator(
    data_dir: Path,
    rebuild: Callable[[str, str], None] | None = None,
    keys: AppKeys | None = None,
    settle_s: float = 0.05,
) -> Emulator:
    return Emulator(
        data_dir,
        keys or new_app_keys(),
        lambda: copy.deepcopy(INVENTORY),
        rebuild or FakeRebuild(),
        admin_token=ADMIN_TOKEN,
        settle_s=settle_s,
    ).start()


@pytest.fixture
def fake_rebuild() -> FakeRebuild:
    return FakeRebuild(block=True)


@pytest.fixture
def emulator(tmp_path, fake_rebuild):
    emu = start_emulator(tmp_path / "ovh", fake_rebuild)
    yield emu
    fake_rebuild.release.set()
    emu.stop()


def client(emu: Emulator, **overrides: str) -> ovh.Client:
    """A real python-ovh client pointed at the emulator (python-ovh takes endpoint names only)."""
    ovh.client.ENDPOINTS["unit-emulator"] = emu.api_url
    keys = {
        "application_key": emu.keys.application_key,
        "application_secret": emu.keys.application_secret,
        "consumer_key": emu.keys.consumer_key,
        **overrides,
    }
    return ovh.Client(endpoint="unit-emulator", timeout=5, **keys)


def resolver(emu: Emulator, tcp: bool = False) -> Callable[[str, str], list[str]]:
    res = dns.resolver.Resolver(configure=False)
    res.nameservers = ["127.0.0.1"]
    res.port = emu.dns_port
    res.lifetime = 3

    def resolve(name: str, rdtype: str) -> list[str]:
        return sorted(r.to_text() for r in res.resolve(name, rdtype, tcp=tcp))

    return resolve


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.02)


# --- signatures and credentials --------------------------------------------------------------


def test_signed_call_with_the_right_keys_is_accepted(emulator):
    credential = client(emulator).get("/auth/currentCredential")
    assert credential["status"] == "validated"
    assert {"method": "GET", "path": "/*"} in credential["rules"]


def test_wrong_application_secret_is_a_bad_signature(emulator):
    with pytest.raises(ovh.exceptions.BadParametersError, match="Invalid signature"):
        client(emulator, application_secret="x" * 32).get("/vps/vps-test.vps.ovh.net")


def test_body_is_part_of_the_signature(emulator):
    api = client(emulator)
    original = api._session.request

    def tamper(method, url, headers=None, data=None, **kwargs):  # a proxy changing the body after signing
        return original(method, url, headers=headers, data=data.replace("www", "evil"), **kwargs)

    api._session.request = tamper
    with pytest.raises(ovh.exceptions.BadParametersError, match="Invalid signature"):
        api.post("/domain/zone/exemple.test/record", fieldType="A", subDomain="www", target="10.0.0.1")


def test_unknown_application_key_is_invalid_key(emulator):
    with pytest.raises(ovh.exceptions.InvalidKey):
        client(emulator, application_key="unknownappkey123").get("/auth/currentCredential")


def test_unknown_consumer_key_is_invalid_credential(emulator):
    with pytest.raises(ovh.exceptions.InvalidCredential, match="does not exist"):
        client(emulator, consumer_key="y" * 32).get("/auth/currentCredential")


def test_credential_not_validated_is_invalid_credential(emulator):
    emulator.add_credential("pending" * 4, rules=[{"method": "GET", "path": "/*"}], status="pendingValidation")
    with pytest.raises(ovh.exceptions.InvalidCredential, match="not valid"):
        client(emulator, consumer_key="pending" * 4).get("/auth/currentCredential")


def test_stale_timestamp_is_refused(emulator):
    api = client(emulator)
    api._time_delta = -3600  # a clock an hour late, not corrected from /auth/time
    with pytest.raises(ovh.exceptions.BadParametersError, match="Query out of time"):
        api.get("/auth/currentCredential")


def test_call_outside_the_credential_rules_is_not_granted(emulator):
    emulator.add_credential("dnsonly" * 4, rules=[{"method": "GET", "path": "/domain/*"}])
    api = client(emulator, consumer_key="dnsonly" * 4)
    assert api.get("/domain/zone/exemple.test/record", fieldType="NS")
    with pytest.raises(ovh.exceptions.NotGrantedCall):
        api.get("/vps/vps-test.vps.ovh.net")


def test_unsigned_request_must_login_first(emulator):
    answer = requests.get(
        emulator.api_url + "/vps/vps-test.vps.ovh.net",
        headers={"X-Ovh-Application": emulator.keys.application_key},
        timeout=5,
    )
    assert answer.status_code == 403
    assert answer.json()["errorCode"] == "NOT_CREDENTIAL"


def test_auth_time_is_unsigned_and_current(emulator):
    assert abs(client(emulator).get("/auth/time", _need_auth=False) - time.time()) < 5


# --- VPS ------------------------------------------------------------------------------------


def test_vps_details_come_from_the_inventory(emulator):
    vps = client(emulator).get("/vps/vps-prod.vps.ovh.net")
    assert vps["name"] == "vps-prod.vps.ovh.net"
    assert vps["model"]["name"] == "vps-ssd-4"
    assert (vps["model"]["vcore"], vps["model"]["memory"], vps["model"]["disk"]) == (4, 8192, 160)
    assert vps["zone"] == "Region OpenStack: os-sbg5"
    assert vps["state"] == "running" and vps["netbootMode"] == "local"
    assert client(emulator).get("/vps/vps-prod.vps.ovh.net/ips") == ["10.99.0.13"]
    # OVH's ip[]: both families of a dual-stack VPS.
    assert client(emulator).get("/vps/vps-test.vps.ovh.net/ips") == ["10.99.0.11", "fd7e:c0de:7ec4:99::11"]


def test_unknown_vps_is_not_found(emulator):
    with pytest.raises(ovh.exceptions.ResourceNotFoundError, match="vps-nope"):
        client(emulator).get("/vps/vps-nope.vps.ovh.net")


def test_images_and_current_image(emulator):
    api = client(emulator)
    ids = api.get("/vps/vps-test.vps.ovh.net/images/available")
    names = [api.get(f"/vps/vps-test.vps.ovh.net/images/available/{i}")["name"] for i in ids]
    assert "Debian 12" in names and "Ubuntu 22.04" in names
    assert api.get("/vps/vps-test.vps.ovh.net/images/current")["name"] == "Debian 12"


def _image_id(api: ovh.Client, sn: str, name: str) -> str:
    for image_id in api.get(f"/vps/{sn}/images/available"):
        if api.get(f"/vps/{sn}/images/available/{image_id}")["name"] == name:
            return image_id
    raise AssertionError(name)


def test_rebuild_task_goes_todo_doing_done(emulator, fake_rebuild):
    api = client(emulator)
    sn = "vps-test.vps.ovh.net"
    image = _image_id(api, sn, "Ubuntu 22.04")
    task = api.post(
        f"/vps/{sn}/rebuild", imageId=image, publicSshKey="ssh-ed25519 AAAAnewkey deploy", doNotSendPassword=True
    )
    assert task["state"] == "todo" and task["type"] == "reinstallVm"
    wait_for(lambda: api.get(f"/vps/{sn}/tasks/{task['id']}")["state"] == "doing")
    assert api.get(f"/vps/{sn}")["state"] == "installing"
    with pytest.raises(ovh.exceptions.ResourceConflictError):  # one task at a time per VPS
        api.post(f"/vps/{sn}/rebuild", imageId=image, publicSshKey="ssh-ed25519 AAAAnewkey deploy")
    fake_rebuild.release.set()
    done = wait_for(lambda: (t := api.get(f"/vps/{sn}/tasks/{task['id']}"))["state"] == "done" and t)
    assert done["progress"] == 100
    assert fake_rebuild.calls == [("test", "ssh-ed25519 AAAAnewkey deploy")]
    assert api.get(f"/vps/{sn}")["state"] == "running"
    assert api.get(f"/vps/{sn}/images/current")["name"] == "Ubuntu 22.04"


def test_failed_rebuild_ends_in_error(tmp_path):
    emu = start_emulator(tmp_path, FakeRebuild(fail=True))
    try:
        api = client(emu)
        sn = "vps-test.vps.ovh.net"
        task = api.post(f"/vps/{sn}/rebuild", imageId=_image_id(api, sn, "Debian 12"), publicSshKey="ssh-ed25519 AAAAk")
        wait_for(lambda: api.get(f"/vps/{sn}/tasks/{task['id']}")["state"] == "error")
    finally:
        emu.stop()


def test_rebuild_needs_a_known_image(emulator):
    with pytest.raises(ovh.exceptions.BadParametersError, match="imageId"):
        client(emulator).post("/vps/vps-test.vps.ovh.net/rebuild", imageId="nope", publicSshKey="ssh-ed25519 AAAAk")


# --- DNS zone and the DNS server --------------------------------------------------------------


def test_record_is_served_only_after_refresh(emulator):
    api, resolve = client(emulator), resolver(emulator)
    record = api.post("/domain/zone/exemple.test/record", fieldType="A", subDomain="www", target="10.99.0.11", ttl=300)
    assert record["zone"] == "exemple.test" and record["subDomain"] == "www"
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolve("www.exemple.test", "A")
    api.post("/domain/zone/exemple.test/refresh")
    assert resolve("www.exemple.test", "A") == ["10.99.0.11"]
    assert resolver(emulator, tcp=True)("www.exemple.test", "A") == ["10.99.0.11"]

    api.put(f"/domain/zone/exemple.test/record/{record['id']}", target="10.99.0.13")
    assert resolve("www.exemple.test", "A") == ["10.99.0.11"]
    api.post("/domain/zone/exemple.test/refresh")
    assert resolve("www.exemple.test", "A") == ["10.99.0.13"]

    api.delete(f"/domain/zone/exemple.test/record/{record['id']}")
    api.post("/domain/zone/exemple.test/refresh")
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolve("www.exemple.test", "A")


def test_record_filters_and_types(emulator):
    api, resolve = client(emulator), resolver(emulator)
    zone = "/domain/zone/exemple.test"
    txt = api.post(f"{zone}/record", fieldType="TXT", subDomain="www", target='"hello world"')
    api.post(f"{zone}/record", fieldType="CNAME", subDomain="api", target="www")
    a = api.post(f"{zone}/record", fieldType="A", subDomain="www", target="10.99.0.11")
    assert api.get(f"{zone}/record", fieldType="TXT", subDomain="www") == [txt["id"]]
    assert api.get(f"{zone}/record", subDomain="www") == sorted([txt["id"], a["id"]])
    assert api.get(f"{zone}/record", fieldType="NS", subDomain="") != []
    api.post(f"{zone}/refresh")
    assert resolve("www.exemple.test", "TXT") == ['"hello world"']
    assert resolve("api.exemple.test", "A") == ["10.99.0.11"]  # through the CNAME
    assert resolve("exemple.test", "NS") == ["ns1.exemple.test."]
    assert resolve("exemple.test", "SOA")[0].startswith("ns1.exemple.test.")
    with pytest.raises(dns.resolver.NoAnswer):  # the name exists, not this type
        resolve("www.exemple.test", "AAAA")
    with pytest.raises(ovh.exceptions.BadParametersError):
        api.post(f"{zone}/record", fieldType="A", subDomain="bad", target="not-an-ip")
    with pytest.raises(ovh.exceptions.ResourceNotFoundError):
        api.get(f"{zone}/record/99999")
    with pytest.raises(ovh.exceptions.ResourceNotFoundError):
        api.get("/domain/zone/other.test/record")


def test_caa_record_is_served_as_written(emulator):
    from technicia_deploy.ovh import OvhApi

    api, resolve = client(emulator), resolver(emulator)
    target = OvhApi.caa_target("letsencrypt.org")
    api.post("/domain/zone/exemple.test/record", fieldType="CAA", subDomain="www", target=target, ttl=300)
    api.post("/domain/zone/exemple.test/refresh")
    # dnspython presents it as OVH stores it: the pipeline compares the two when it waits for propagation.
    assert resolve("www.exemple.test", "CAA") == ['0 issue "letsencrypt.org"'] == [target]


def test_names_outside_the_zone_are_refused(emulator):
    with pytest.raises(dns.resolver.NoNameservers):
        resolver(emulator)("example.com", "A")


def test_state_survives_a_restart(tmp_path):
    keys = new_app_keys()
    first = start_emulator(tmp_path, keys=keys)
    api = client(first)
    record = api.post("/domain/zone/exemple.test/record", fieldType="A", subDomain="kept", target="10.99.0.12")
    api.post("/domain/zone/exemple.test/refresh")
    first.stop()
    second = start_emulator(tmp_path, keys=keys)
    try:
        assert client(second).get(f"/domain/zone/exemple.test/record/{record['id']}")["target"] == "10.99.0.12"
        assert resolver(second)("kept.exemple.test", "A") == ["10.99.0.12"]
        new = client(second).post(
            "/domain/zone/exemple.test/record", fieldType="A", subDomain="new", target="10.99.0.12"
        )
        assert new["id"] > record["id"]
    finally:
        second.stop()


# --- network firewall -------------------------------------------------------------------------


def test_firewall_rules_settle_and_free_their_sequence(emulator):
    api = client(emulator)
    base = "/ip/10.99.0.11%2F32/firewall"
    assert api.get(base) == []
    assert api.post(base, ipOnFirewall="10.99.0.11") == {"enabled": False, "ipOnFirewall": "10.99.0.11", "state": "ok"}
    with pytest.raises(ovh.exceptions.ResourceConflictError):
        api.post(base, ipOnFirewall="10.99.0.11")
    rule = api.post(f"{base}/10.99.0.11/rule", sequence=0, action="permit", protocol="tcp", destinationPort=22)
    assert rule["state"] == "creationPending" and rule["destinationPort"] == "eq 22"
    wait_for(lambda: api.get(f"{base}/10.99.0.11/rule/0")["state"] == "ok")
    with pytest.raises(ovh.exceptions.ResourceConflictError):
        api.post(f"{base}/10.99.0.11/rule", sequence=0, action="deny", protocol="ipv4")
    assert api.delete(f"{base}/10.99.0.11/rule/0")["state"] == "removalPending"
    wait_for(lambda: api.get(f"{base}/10.99.0.11/rule") == [])
    api.put(f"{base}/10.99.0.11", enabled=True)
    assert wait_for(lambda: (f := api.get(f"{base}/10.99.0.11"))["state"] == "ok" and f)["enabled"] is True


def test_firewall_of_an_ip_not_owned_is_not_found(emulator):
    with pytest.raises(ovh.exceptions.ResourceNotFoundError):
        client(emulator).get("/ip/192.0.2.1%2F32/firewall")


# --- fault injection --------------------------------------------------------------------------


def test_injected_fault_answers_then_clears(emulator):
    api = client(emulator)
    api.get("/auth/currentCredential")  # learn the time delta first
    emulator.inject_fault("/vps/", status=503, count=2)
    for _ in range(2):
        with pytest.raises(ovh.exceptions.APIError) as caught:
            api.get("/vps/vps-test.vps.ovh.net")
        assert caught.value.response.status_code == 503
    assert api.get("/vps/vps-test.vps.ovh.net")["state"] == "running"


def test_dns_delay_holds_a_refresh_back_until_it_is_due(emulator):
    api, resolve = client(emulator), resolver(emulator)
    zone = "/domain/zone/exemple.test"
    record = api.post(f"{zone}/record", fieldType="A", subDomain="slow", target="10.99.0.11", ttl=60)
    api.post(f"{zone}/refresh")
    assert resolve("slow.exemple.test", "A") == ["10.99.0.11"]

    emulator.set_dns_delay(0.6)
    api.put(f"{zone}/record/{record['id']}", target="10.99.0.13")
    refreshed = time.monotonic()
    api.post(f"{zone}/refresh")
    assert resolve("slow.exemple.test", "A") == ["10.99.0.11"]  # the DNS server has not caught up yet
    wait_for(lambda: resolve("slow.exemple.test", "A") == ["10.99.0.13"], timeout=5)
    assert time.monotonic() - refreshed >= 0.6

    # A new record, a long delay: clearing the faults publishes it at once and the delay is gone.
    emulator.set_dns_delay(60)
    api.post(f"{zone}/record", fieldType="A", subDomain="late", target="10.99.0.12", ttl=60)
    api.post(f"{zone}/refresh")
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolve("late.exemple.test", "A")
    emulator.clear_faults()
    assert resolve("late.exemple.test", "A") == ["10.99.0.12"]
    api.put(f"{zone}/record/{record['id']}", target="10.99.0.11")
    api.post(f"{zone}/refresh")
    assert resolve("slow.exemple.test", "A") == ["10.99.0.11"]  # no delay any more


def test_dns_delay_through_the_admin_route(emulator):
    base = emulator.api_url.rsplit("/1.0", 1)[0] + "/_emulator/dns-delay"
    headers = {"X-Emulator-Admin": ADMIN_TOKEN}
    assert requests.post(base, json={"delay_s": 5}, timeout=5).status_code == 404  # no token: no such route
    assert requests.post(base, json={"delay_s": -1}, headers=headers, timeout=5).status_code == 400
    assert requests.post(base, json={"delay": 5}, headers=headers, timeout=5).status_code == 400
    assert requests.post(base, json={"delay_s": 5}, headers=headers, timeout=5).status_code == 200
    with emulator.store.read() as data:
        assert data["dns_delay_s"] == 5
    cleared = requests.delete(base.replace("dns-delay", "faults"), headers=headers, timeout=5)
    assert cleared.status_code == 200
    with emulator.store.read() as data:
        assert data["dns_delay_s"] == 0


def test_admin_route_needs_the_token(emulator):
    base = emulator.api_url.rsplit("/1.0", 1)[0] + "/_emulator/faults"
    assert requests.post(base, json={"path": "/vps/", "status": 500}, timeout=5).status_code == 404
    ok = requests.post(
        base, json={"path": "/vps/", "status": 500}, headers={"X-Emulator-Admin": ADMIN_TOKEN}, timeout=5
    )
    assert ok.status_code == 200
    with pytest.raises(ovh.exceptions.APIError):
        client(emulator).get("/vps/vps-test.vps.ovh.net")
