"""The OVH emulator refuses what OVH's schemas refuse: 400 ``Client::BadRequest`` naming the parameter, never a 500.

Driven by the real python-ovh client (signed requests), except for what python-ovh cannot send
(a body that is not JSON, not UTF-8, or a broken Content-Length), which goes through ``requests``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import ovh
import pytest
import requests

from technicia_deploy.sandbox.ovh_emulator import auth, routes, validation
from tests.unit.sandbox.test_ovh_emulator import ADMIN_TOKEN, client, start_emulator, wait_for

MODELS_FILE = Path(validation.__file__).parent / "schemas" / "models.json"
ZONE = "/domain/zone/exemple.test"
VPS = "/vps/vps-test.vps.ovh.net"
FIREWALL = "/ip/10.99.0.11%2F32/firewall"
ON = f"{FIREWALL}/10.99.0.11"
KEY = "ssh-ed25519 AAAAunitkey deploy"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One emulator with a record, a firewall and a rule to aim the requests at."""
    emu = start_emulator(tmp_path_factory.mktemp("ovh-validation"), settle_s=0.01)
    api = client(emu)
    record = api.post(f"{ZONE}/record", fieldType="A", subDomain="www", target="10.99.0.11", ttl=60)
    api.post(FIREWALL, ipOnFirewall="10.99.0.11")
    api.post(f"{ON}/rule", sequence=0, action="permit", protocol="tcp", destinationPort=22)
    yield {"emu": emu, "api": api, "record": record["id"]}
    emu.stop()


def _path(template: str, world: dict[str, Any]) -> str:
    return template.replace("{record}", str(world["record"]))


# (method, path, parameters, what the message must contain)
INVALID: list[tuple[str, str, dict[str, Any], str]] = [
    # DNS records: POST /domain/zone/{zoneName}/record (domain.zone.RecordCreate)
    ("POST", f"{ZONE}/record", {"fieldType": "A", "target": "10.99.0.12", "ttl": "60"}, "[ttl] Given data (60) is not valid for type long"),
    ("POST", f"{ZONE}/record", {"fieldType": "A", "target": "10.99.0.12", "ttl": "abc"}, "[ttl]"),
    ("POST", f"{ZONE}/record", {"fieldType": "A", "target": "10.99.0.12", "ttl": True}, "[ttl]"),
    ("POST", f"{ZONE}/record", {"fieldType": "A", "target": "10.99.0.12", "ttl": 1.5}, "[ttl]"),
    ("POST", f"{ZONE}/record", {"fieldType": "A", "target": "10.99.0.12", "ttl": None}, "[ttl]"),
    ("POST", f"{ZONE}/record", {"fieldType": "A", "target": "10.99.0.12", "ttl": -1}, "[ttl] Given data (-1) is out of range"),
    ("POST", f"{ZONE}/record", {"fieldType": "A", "target": "10.99.0.12", "ttl": 2**31}, "[ttl]"),
    ("POST", f"{ZONE}/record", {"fieldType": "A", "target": "10.99.0.12", "comment": "x"}, "Received not described parameters: (comment)"),
    ("POST", f"{ZONE}/record", {"fieldType": "XYZ", "target": "10.99.0.12"}, "[fieldType] Given data (XYZ) does not belong to the RecordTypeEnum enumeration"),
    ("POST", f"{ZONE}/record", {"fieldType": "a", "target": "10.99.0.12"}, "[fieldType]"),
    ("POST", f"{ZONE}/record", {"fieldType": 1, "target": "10.99.0.12"}, "[fieldType]"),
    ("POST", f"{ZONE}/record", {"target": "10.99.0.12"}, "[fieldType] Property is mandatory"),
    ("POST", f"{ZONE}/record", {"fieldType": "A"}, "[target] Property is mandatory"),
    ("POST", f"{ZONE}/record", {"fieldType": "A", "target": None}, "[target] Property is mandatory"),
    ("POST", f"{ZONE}/record", {"fieldType": "TXT", "target": 42}, "[target]"),
    ("POST", f"{ZONE}/record", {"fieldType": "A", "target": "10.99.0.12", "subDomain": 5}, "[subDomain]"),
    ("POST", f"{ZONE}/record", {"fieldType": "A", "target": "10.99.0.12", "id": "seven"}, "[id]"),
    ("POST", f"{ZONE}/record", {"fieldType": "A", "target": "not-an-ip"}, "target"),  # the handler's own check
    # PUT /domain/zone/{zoneName}/record/{id} (domain.zone.RecordUpdate: no fieldType in it)
    ("PUT", f"{ZONE}/record/{{record}}", {"ttl": "300"}, "[ttl]"),
    ("PUT", f"{ZONE}/record/{{record}}", {"fieldType": "AAAA"}, "Received not described parameters: (fieldType)"),
    ("PUT", f"{ZONE}/record/{{record}}", {"target": None}, "[target]"),
    ("PUT", f"{ZONE}/record/{{record}}", {"target": ["10.99.0.12"]}, "[target]"),
    ("PUT", f"{ZONE}/record/abc", {"ttl": 60}, "[id] Given data (abc) is not valid for type long"),
    # GET/DELETE on records, the list's filters, refresh
    ("GET", f"{ZONE}/record/abc", {}, "[id]"),
    ("GET", f"{ZONE}/record/1.5", {}, "[id]"),
    ("DELETE", f"{ZONE}/record/-x", {}, "[id]"),
    ("GET", f"{ZONE}/record", {"fieldType": "XYZ"}, "[fieldType]"),
    ("GET", f"{ZONE}/record", {"type": "A"}, "Received not described parameters: (type)"),
    ("POST", f"{ZONE}/refresh", {"force": True}, "Received not described parameters: (force)"),
    # VPS: POST /vps/{serviceName}/rebuild (vps.rebuild.post), tasks
    ("POST", f"{VPS}/rebuild", {"publicSshKey": KEY}, "[imageId] Property is mandatory"),
    ("POST", f"{VPS}/rebuild", {"imageId": 42, "publicSshKey": KEY}, "[imageId]"),
    ("POST", f"{VPS}/rebuild", {"imageId": "x", "publicSshKey": KEY, "doNotSendPassword": "yes"}, "[doNotSendPassword]"),
    ("POST", f"{VPS}/rebuild", {"imageId": "x", "publicSshKey": None}, "[publicSshKey]"),
    ("POST", f"{VPS}/rebuild", {"imageId": "x", "publicSshKey": KEY, "hostname": "h"}, "Received not described parameters: (hostname)"),
    ("POST", f"{VPS}/rebuild", {"imageId": "nope", "publicSshKey": KEY}, "[imageId]"),  # the handler's own check
    ("GET", f"{VPS}/tasks/abc", {}, "[id]"),
    ("GET", VPS, {"details": "true"}, "Received not described parameters: (details)"),
    # Network firewall: {ip} is an ipBlock, {ipOnFirewall} an ipv4
    ("GET", "/ip/10.99.0.999%2F32/firewall", {}, "[ip] Given data (10.99.0.999/32) is not valid for type ipBlock"),
    ("GET", "/ip/10.99.0.11%2F33/firewall", {}, "[ip]"),
    ("GET", "/ip/10.99.0.11%2F24/firewall", {}, "[ip]"),  # host bits set: not a block
    ("GET", "/ip/nope/firewall", {}, "[ip]"),
    ("GET", FIREWALL, {"enabled": "maybe"}, "[enabled]"),
    ("GET", FIREWALL, {"state": "bogus"}, "[state] Given data (bogus) does not belong to the FirewallStateEnum enumeration"),
    ("POST", FIREWALL, {}, "[ipOnFirewall] Property is mandatory"),
    ("POST", FIREWALL, {"ipOnFirewall": "10.99.0"}, "[ipOnFirewall] Given data (10.99.0) is not valid for type ipv4"),
    ("POST", FIREWALL, {"ipOnFirewall": "10.99.0.11", "enabled": True}, "Received not described parameters: (enabled)"),
    ("GET", f"{FIREWALL}/not-an-ip", {}, "[ipOnFirewall]"),
    ("PUT", ON, {"enabled": "true"}, "[enabled] Given data (true) is not valid for type boolean"),
    ("PUT", ON, {"enabled": 1}, "[enabled]"),
    ("PUT", ON, {"enabled": True, "mode": "strict"}, "Received not described parameters: (mode)"),
    ("PUT", ON, {"enabled": True, "state": "bogus"}, "[state]"),
    # POST /ip/{ip}/firewall/{ipOnFirewall}/rule
    ("POST", f"{ON}/rule", {"sequence": 20, "action": "permit", "protocol": "tcp"}, "[sequence] Given data (20) does not belong to the FirewallSequenceRangeEnum enumeration"),
    ("POST", f"{ON}/rule", {"sequence": -1, "action": "permit", "protocol": "tcp"}, "[sequence]"),
    ("POST", f"{ON}/rule", {"sequence": "5", "action": "permit", "protocol": "tcp"}, "[sequence] Given data (5) is not valid for type long"),
    ("POST", f"{ON}/rule", {"action": "permit", "protocol": "tcp"}, "[sequence] Property is mandatory"),
    ("POST", f"{ON}/rule", {"sequence": 5, "protocol": "tcp"}, "[action] Property is mandatory"),
    ("POST", f"{ON}/rule", {"sequence": 5, "action": "allow", "protocol": "tcp"}, "[action]"),
    ("POST", f"{ON}/rule", {"sequence": 5, "action": "permit", "protocol": "TCP"}, "[protocol]"),
    ("POST", f"{ON}/rule", {"sequence": 5, "action": "permit"}, "[protocol] Property is mandatory"),
    ("POST", f"{ON}/rule", {"sequence": 5, "action": "permit", "protocol": "tcp", "destinationPort": "22"}, "[destinationPort]"),
    ("POST", f"{ON}/rule", {"sequence": 5, "action": "permit", "protocol": "tcp", "destinationPort": 70000}, "[destinationPort] Given data (70000) is out of range"),
    ("POST", f"{ON}/rule", {"sequence": 5, "action": "permit", "protocol": "tcp", "destinationPort": 0}, "[destinationPort]"),
    ("POST", f"{ON}/rule", {"sequence": 5, "action": "permit", "protocol": "udp", "sourcePort": 65536}, "[sourcePort]"),
    ("POST", f"{ON}/rule", {"sequence": 5, "action": "permit", "protocol": "tcp", "source": "10.0.0.0/33"}, "[source] Given data (10.0.0.0/33) is not valid for type ipv4Block"),
    ("POST", f"{ON}/rule", {"sequence": 5, "action": "permit", "protocol": "tcp", "source": "any"}, "[source]"),
    ("POST", f"{ON}/rule", {"sequence": 5, "action": "permit", "protocol": "tcp", "source": "2001:db8::/32"}, "[source]"),
    ("POST", f"{ON}/rule", {"sequence": 5, "action": "permit", "protocol": "tcp", "tcpOption": "established"}, "[tcpOption] Given data (established) is not valid for type ip.FirewallOptionTCP"),
    ("POST", f"{ON}/rule", {"sequence": 5, "action": "permit", "protocol": "tcp", "tcpOption": {"option": "fin"}}, "[tcpOption.option]"),
    ("POST", f"{ON}/rule", {"sequence": 5, "action": "permit", "protocol": "tcp", "tcpOption": {"flags": 1}}, "Received not described parameters: (tcpOption.flags)"),
    ("POST", f"{ON}/rule", {"sequence": 5, "action": "permit", "protocol": "tcp", "tcpOption": {"fragments": "yes"}}, "[tcpOption.fragments]"),
    ("POST", f"{ON}/rule", {"sequence": 5, "action": "permit", "protocol": "tcp", "comment": "ssh"}, "Received not described parameters: (comment)"),
    ("POST", f"{ON}/rule", {"sequence": 5, "action": "permit", "protocol": "icmp", "destinationPort": 22}, "Ports"),  # handler
    ("GET", f"{ON}/rule/abc", {}, "[sequence] Given data (abc) is not valid for type long"),
    ("DELETE", f"{ON}/rule/1e3", {}, "[sequence]"),
    ("GET", f"{ON}/rule", {"state": "bogus"}, "[state]"),
]


@pytest.mark.parametrize(("method", "path", "params", "expected"), INVALID, ids=[f"{m} {p} {e}" for m, p, _, e in INVALID])
def test_invalid_request_is_a_400_naming_the_parameter(world, method, path, params, expected):
    api = world["api"]
    with pytest.raises(ovh.exceptions.BadParametersError) as refused:
        getattr(api, method.lower())(_path(path, world), **params)
    answer = refused.value.response
    assert answer.status_code == 400
    body = answer.json()
    assert body["class"] == "Client::BadRequest"
    assert expected in body["message"]


def test_invalid_requests_change_nothing(world):
    api = world["api"]
    record = api.get(f"{ZONE}/record/{world['record']}")
    assert (record["target"], record["ttl"]) == ("10.99.0.11", 60)
    assert api.get(f"{ON}/rule") == [0]
    assert api.get(FIREWALL) == ["10.99.0.11"]


# (method, path, parameters): what OVH's schemas allow, including what they allow to be null or left out.
VALID: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", f"{ZONE}/record", {"fieldType": "A", "target": "10.99.0.13"}),
    ("POST", f"{ZONE}/record", {"fieldType": "A", "target": "10.99.0.13", "subDomain": None, "ttl": 0}),
    ("POST", f"{ZONE}/record", {"fieldType": "TXT", "subDomain": "txt", "target": '"v=1"', "ttl": 2**31 - 1}),
    ("PUT", f"{ZONE}/record/{{record}}", {"ttl": None}),
    ("PUT", f"{ZONE}/record/{{record}}", {"subDomain": "www", "target": "10.99.0.11", "ttl": 60}),
    ("PUT", f"{ZONE}/record/{{record}}", {}),
    ("GET", f"{ZONE}/record", {"fieldType": "A", "subDomain": ""}),
    ("GET", f"{ZONE}/record", {"subDomain": "WWW"}),
    ("GET", f"{ZONE}/record/{{record}}", {}),
    ("POST", f"{ZONE}/refresh", {}),
    ("GET", FIREWALL, {"enabled": False}),
    ("GET", FIREWALL, {"state": "ok"}),
    ("GET", "/ip/10.99.0.11/firewall", {}),  # a bare address is a /32 block
    ("GET", ON, {}),
    ("PUT", ON, {}),
    ("PUT", ON, {"enabled": False}),
    ("GET", f"{ON}/rule", {"state": "ok"}),
    ("GET", f"{ON}/rule/0", {}),
    ("POST", f"{ON}/rule", {"sequence": 1, "action": "permit", "protocol": "tcp", "tcpOption": {"option": "established", "fragments": None}}),
    ("POST", f"{ON}/rule", {"sequence": 2, "action": "permit", "protocol": "udp", "source": "192.0.2.0/24", "sourcePort": 53, "destinationPort": 65535}),
    ("POST", f"{ON}/rule", {"sequence": 3, "action": "permit", "protocol": "tcp", "destinationPort": None, "source": None, "tcpOption": None}),
    ("POST", f"{ON}/rule", {"sequence": 19, "action": "deny", "protocol": "ipv4"}),
    ("GET", f"{VPS}/tasks/999999", {}),  # a well-formed id: 404, not 400
]


@pytest.mark.parametrize(("method", "path", "params"), VALID, ids=[f"{m} {p} {sorted(k)}" for m, p, k in VALID])
def test_valid_request_passes_validation(world, method, path, params):
    api = world["api"]
    try:
        getattr(api, method.lower())(_path(path, world), **params)
    except ovh.exceptions.ResourceNotFoundError:
        assert path.endswith("/999999")


def test_rebuild_with_every_declared_field_is_accepted(world):
    api = world["api"]
    image = api.get(f"{VPS}/images/available")[0]
    task = api.post(f"{VPS}/rebuild", imageId=image, publicSshKey=KEY, doNotSendPassword=False, installRTM=False)
    assert wait_for(lambda: api.get(f"{VPS}/tasks/{task['id']}")["state"] == "done")


def test_firewall_list_filters_on_enabled_and_state(world):
    api = world["api"]
    api.put(ON, enabled=False)
    wait_for(lambda: api.get(ON)["state"] == "ok")
    assert api.get(FIREWALL, enabled=False) == ["10.99.0.11"]
    assert api.get(FIREWALL, enabled=True) == []
    assert api.get(FIREWALL, state="enableFirewallPending") == []


# --- what python-ovh cannot send: raw HTTP, signed by hand ------------------------------------


def _raw(emu, method: str, path: str, body: bytes, **headers: str) -> requests.Response:
    url = emu.api_url + path
    timestamp = str(int(time.time()))
    keys = emu.keys
    text = body.decode("utf-8", "replace")
    signed = {
        "X-Ovh-Application": keys.application_key,
        "X-Ovh-Consumer": keys.consumer_key,
        "X-Ovh-Timestamp": timestamp,
        "X-Ovh-Signature": auth.signature(keys.application_secret, keys.consumer_key, method, url, text, timestamp),
        "Content-Type": "application/json",
        **headers,
    }
    return requests.request(method, url, data=body, headers=signed, timeout=5)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{not json", "Invalid JSON received"),
        (b'["fieldType", "A"]', "an object was expected"),
        (b'"A"', "an object was expected"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"fieldType": "A", "target": "10.99.0.12", "ttl": 1e400}', "[ttl]"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_a_400(world, body, expected):
    answer = _raw(world["emu"], "POST", f"{ZONE}/record", body)
    assert answer.status_code == 400
    assert answer.json()["class"] == "Client::BadRequest" and expected in answer.json()["message"]


def test_a_broken_content_length_is_a_400_not_a_crash(world):
    import socket

    host, port = "127.0.0.1", world["emu"].api_port
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(b"POST /1.0/auth/time HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):  # the emulator closes the connection after answering
            answer += chunk
        answer = answer.decode()
    assert answer.startswith("HTTP/1.1 400") and "Content-Length" in answer


@pytest.mark.parametrize(
    ("action", "payload"),
    [
        ("faults", "{"),
        ("faults", json.dumps({"status": 503})),
        ("faults", json.dumps({"path": "/vps/", "count": "2"})),
        ("faults", json.dumps({"path": "/vps/", "colour": "red"})),
        ("faults", json.dumps(["/vps/"])),
        ("credentials", json.dumps({"rules": []})),
        ("credentials", json.dumps({"consumerKey": "k" * 32, "rules": "all"})),
    ],
)
def test_a_malformed_admin_request_is_a_400(world, action, payload):
    base = world["emu"].api_url.rsplit("/1.0", 1)[0]
    answer = requests.post(f"{base}/_emulator/{action}", data=payload, headers={"X-Emulator-Admin": ADMIN_TOKEN}, timeout=5)
    assert answer.status_code == 400


# --- the schema extract itself ----------------------------------------------------------------


def test_every_route_has_its_declared_parameters():
    assert {(r.method, r.template) for r in routes.ROUTES} == set(validation.OPERATIONS)


def test_every_type_in_the_extract_can_be_checked():
    unknown = validation.known_types() - set(validation.PRIMITIVES) - set(validation.MODELS)
    assert not unknown


def test_the_extract_agrees_with_the_answer_models():
    answers = json.loads(MODELS_FILE.read_text())["models"]
    for name, model in validation.MODELS.items():
        if name in answers and "enum" in model:
            assert model["enum"] == answers[name]["enum"], name
