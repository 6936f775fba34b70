"""The emulator answers with OVH's own models: the field names and enum values of OVH's API schemas."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import technicia_deploy.sandbox.ovh_emulator as emulator_package
from tests.unit.sandbox.test_ovh_emulator import client, start_emulator, wait_for

MODELS = json.loads((Path(emulator_package.__file__).parent / "schemas" / "models.json").read_text())["models"]


def assert_model(value: dict, model: str, enums: dict[str, str] | None = None) -> None:
    """``value`` has exactly the model's fields, no null where OVH forbids it, enum fields within the enum."""
    properties = MODELS[model]["properties"]
    assert set(value) == set(properties), f"{model}: fields differ"
    for name, prop in properties.items():
        if value[name] is None:
            assert prop["canBeNull"], f"{model}.{name} may not be null"
    for name, enum in (enums or {}).items():
        assert value[name] in MODELS[enum]["enum"], f"{model}.{name}={value[name]!r} not in {enum}"


@pytest.fixture
def api(tmp_path):
    emu = start_emulator(tmp_path, settle_s=0.01)
    yield client(emu)
    emu.stop()


def test_vps_answers_follow_the_vps_models(api):
    vps = api.get("/vps/vps-test.vps.ovh.net")
    assert_model(
        vps,
        "vps.VPSWithIAM",
        {"state": "vps.VpsStateEnum", "netbootMode": "vps.VpsNetbootEnum", "offerType": "vps.VpsOfferEnum"},
    )
    assert_model(vps["model"], "vps.Model", {"version": "vps.VpsVersionEnum"})
    image_id = api.get("/vps/vps-test.vps.ovh.net/images/available")[0]
    assert_model(api.get(f"/vps/vps-test.vps.ovh.net/images/available/{image_id}"), "vps.Image")
    task = api.post("/vps/vps-test.vps.ovh.net/rebuild", imageId=image_id, publicSshKey="ssh-ed25519 AAAAk")
    assert_model(task, "vps.Task", {"state": "vps.TaskStateEnum", "type": "vps.TaskTypeEnum"})


def test_rebuild_body_fields_exist_in_the_model():
    assert {"imageId", "publicSshKey", "doNotSendPassword"} <= set(MODELS["vps.rebuild.post"]["properties"])


def test_record_answers_follow_the_record_model(api):
    record = api.post("/domain/zone/exemple.test/record", fieldType="A", subDomain="www", target="10.99.0.11", ttl=60)
    assert_model(record, "domain.zone.Record", {"fieldType": "domain.zone.RecordTypeEnum"})
    assert_model(api.get(f"/domain/zone/exemple.test/record/{record['id']}"), "domain.zone.Record")


def test_firewall_answers_follow_the_firewall_models(api):
    base = "/ip/10.99.0.11%2F32/firewall"
    assert_model(api.post(base, ipOnFirewall="10.99.0.11"), "ip.FirewallIp", {"state": "ip.FirewallStateEnum"})
    rule = api.post(f"{base}/10.99.0.11/rule", sequence=0, action="permit", protocol="tcp", destinationPort=443)
    enums = {
        "state": "ip.FirewallRuleStateEnum",
        "action": "ip.FirewallActionEnum",
        "protocol": "ip.FirewallProtocolEnum",
    }
    assert_model(rule, "ip.FirewallNetworkRule", enums)
    assert_model(wait_for(lambda: api.get(f"{base}/10.99.0.11/rule/0")), "ip.FirewallNetworkRule", enums)


def test_current_credential_follows_the_credential_model(api):
    credential = api.get("/auth/currentCredential")
    assert_model(credential, "auth.ApiCredential", {"status": "auth.CredentialStateEnum"})
