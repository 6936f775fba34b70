"""The OVH route table (technicia_deploy.ovh.ROUTES): the generated access rules grant every call the client makes,
and nothing it does not make; the client refuses a call outside the table; the coverage judgement."""

from __future__ import annotations

import fnmatch
import json
from urllib.parse import unquote

import pytest

from technicia_deploy import ovh
from technicia_deploy.ovh import ROUTES, access_rules, network_firewall_rules, uncovered_routes
from tests.unit.sandbox.test_ovh_emulator import FakeRebuild, start_emulator
from tests.unit.test_ovh import Sleeps, make_api

ZONE = "exemple.test"
TEST_VPS = "vps-test.vps.ovh.net"
MINIMUM_KEY = "m" * 32


class Recorder:
    """Wraps python-ovh's client: every request that actually goes out, as (method, path without query)."""

    def __init__(self, client) -> None:
        self.client, self.calls = client, []

    def __getattr__(self, name):
        attr = getattr(self.client, name)
        if name not in ("get", "post", "put", "delete"):
            return attr

        def recorded(path, *args, **kwargs):
            self.calls.append((name.upper(), path.split("?", 1)[0]))
            return attr(path, *args, **kwargs)

        return recorded


def exercise_every_helper(api: ovh.OvhApi) -> None:
    """Each public helper of OvhApi, on paths that reach each of its branches (create, update, delete...)."""
    api.check_credentials()
    api.vps_details(TEST_VPS)
    api.vps_ipv4(TEST_VPS)
    api.vps_ipv6(TEST_VPS)
    image = api.find_image(TEST_VPS, "Debian 12")
    api.rebuild_and_wait(TEST_VPS, image, "ssh-ed25519 AAAAdeploy deploy@technicia", timeout_s=10, poll_s=0.02)
    api.records(ZONE, "technicia", "A")
    api.ensure_record(ZONE, "technicia", "A", "10.0.0.1", 300)  # POST record + refresh
    api.ensure_record(ZONE, "technicia", "A", "10.0.0.2", 300)  # PUT record
    api.request(ovh.RECORD_CREATE, {"zoneName": ZONE}, fieldType="A", subDomain="technicia", target="10.0.0.3", ttl=300)
    api.ensure_record(ZONE, "technicia", "A", "10.0.0.2", 300)  # DELETE the duplicate
    api.ensure_record(ZONE, "technicia", "AAAA", "fd7e:c0de:7ec4:99::11", 300)
    api.ensure_no_record(ZONE, "technicia", "AAAA")  # DELETE + refresh
    api.ensure_firewall("10.99.0.11", network_firewall_rules([(22, "tcp"), (80, "tcp")]), timeout_s=5, poll_s=0.01)
    api.ensure_firewall("10.99.0.11", network_firewall_rules([(22, "tcp")]), timeout_s=5, poll_s=0.01)


HELPERS = {"check_credentials", "vps_details", "vps_ipv4", "vps_ipv6", "find_image", "rebuild", "wait_task",
           "rebuild_and_wait", "records", "ensure_record", "ensure_no_record", "ensure_firewall"}


def test_exercise_covers_every_public_helper():
    """A new helper must be added to exercise_every_helper, or its routes would go unchecked below."""
    import inspect

    # Static methods have no client to call the API with (caa_target formats a record): nothing to check.
    public = {name for name in vars(ovh.OvhApi) if not name.startswith("_") and callable(getattr(ovh.OvhApi, name))
              and not isinstance(inspect.getattr_static(ovh.OvhApi, name), staticmethod)}
    assert public - {"call", "request", "from_block"} == HELPERS


@pytest.fixture
def minimum_emulator(tmp_path):
    """An emulator whose consumer key has exactly the generated rules: OVH's own check refuses anything else."""
    emu = start_emulator(tmp_path / "ovh", FakeRebuild(), settle_s=0.02)
    emu.add_credential(MINIMUM_KEY, access_rules())
    yield emu
    emu.stop()


def test_every_route_the_client_calls_is_granted_by_the_generated_rules(minimum_emulator):
    api = make_api(minimum_emulator, Sleeps(), consumer_key=MINIMUM_KEY)
    recorder = Recorder(api._client)
    api._client = recorder
    exercise_every_helper(api)  # a route missing from the rules would be a 403 NotGrantedCall here

    rules = access_rules()
    for method, path in recorder.calls:
        # Judged as OVH and the emulator judge it, independently of the table's own matching code.
        if path == "/auth/time":  # unsigned, asked by python-ovh itself: no rule needed
            continue
        assert any(r["method"] == method and fnmatch.fnmatchcase(unquote(path), r["path"]) for r in rules), (method, path)
    # ... and the rules grant nothing the client does not call: each route was used.
    called = {ovh.route_of(method, path) for method, path in recorder.calls if path != "/auth/time"}
    assert called == set(ROUTES)


def test_a_call_outside_the_table_is_refused_before_it_is_sent(minimum_emulator):
    api = make_api(minimum_emulator)
    with pytest.raises(ValueError, match="not in technicia_deploy.ovh.ROUTES"):
        api.call("GET", "/me")
    with pytest.raises(ValueError, match="not in technicia_deploy.ovh.ROUTES"):
        api.call("DELETE", f"/vps/{TEST_VPS}")  # a declared path, but not with this method


def test_rules_are_method_and_path_with_a_star_per_parameter():
    rules = access_rules()
    assert rules[:3] == [
        {"method": "GET", "path": "/auth/currentCredential"},
        {"method": "GET", "path": "/vps/*"},
        {"method": "GET", "path": "/vps/*/images/current"},
    ]
    assert {"method": "DELETE", "path": "/ip/*/firewall/*/rule/*"} in rules
    assert len(rules) == len(ROUTES) == len({(r["method"], r["path"]) for r in rules})
    assert {r["method"] for r in rules} <= {"GET", "POST", "PUT", "DELETE"}  # OVH's auth.HTTPMethodEnum
    assert all("{" not in r["path"] for r in rules)


def test_rules_narrowed_to_one_environment():
    rules = access_rules({"serviceName": TEST_VPS, "zoneName": ZONE})
    assert {"method": "POST", "path": f"/vps/{TEST_VPS}/rebuild"} in rules
    assert {"method": "POST", "path": f"/domain/zone/{ZONE}/refresh"} in rules
    assert {"method": "GET", "path": "/ip/*/firewall"} in rules  # no value given: still a star


def test_the_cli_prints_the_rules_as_json(capsys):
    from technicia_deploy.cli import main

    assert main(["ovh", "access-rules"]) == 0
    assert json.loads(capsys.readouterr().out) == access_rules()


def test_the_cli_narrows_to_an_environment(capsys, example_data, write_config):
    from technicia_deploy.cli import main

    path = write_config(example_data)
    env = example_data["environments"]["staging"]
    assert main(["ovh", "access-rules", "staging", "--config", str(path)]) == 0
    rules = json.loads(capsys.readouterr().out)
    assert {"method": "GET", "path": f"/vps/{env['server']['ovh_service_name']}"} in rules
    assert uncovered_routes(rules, {"serviceName": env["server"]["ovh_service_name"], "zoneName": env["dns"]["zone"]}) == []


# --- the coverage judgement ------------------------------------------------------------------------------


def test_everything_is_covered_by_the_generated_rules_or_a_full_wildcard():
    assert uncovered_routes(access_rules()) == []
    assert uncovered_routes([{"method": m, "path": "/*"} for m in ("GET", "POST", "PUT", "DELETE")]) == []


def test_a_missing_rule_is_named():
    rules = [r for r in access_rules() if r != {"method": "POST", "path": "/domain/zone/*/refresh"}]
    assert uncovered_routes(rules) == [ovh.ZONE_REFRESH]


def test_a_method_is_not_granted_by_another_methods_rule():
    rules = [{"method": "GET", "path": "/*"}]
    missing = uncovered_routes(rules)
    assert ovh.VPS_REBUILD in missing and ovh.VPS not in missing


def test_rules_scoped_to_the_environment_cover_it_and_only_it():
    scoped = access_rules({"serviceName": TEST_VPS, "zoneName": ZONE})
    assert uncovered_routes(scoped, {"serviceName": TEST_VPS, "zoneName": ZONE}) == []
    other = uncovered_routes(scoped, {"serviceName": "vps-other.vps.ovh.net", "zoneName": ZONE})
    assert ovh.VPS in other and ovh.RECORDS not in other
    # Without the environment's values, a parameter is only granted by a star.
    assert ovh.VPS in uncovered_routes(scoped)


def test_prefix_rules_cover_what_is_beneath_them():
    rules = [{"method": m, "path": p} for m in ("GET", "POST", "PUT", "DELETE")
             for p in ("/auth/*", "/vps/*", "/domain/zone/*", "/ip/*")]
    assert uncovered_routes(rules) == []
    assert ovh.VPS in uncovered_routes([{"method": "GET", "path": "/vps"}])  # no star: only /vps itself


def test_route_paths_encode_parameters_and_check_their_names():
    assert ovh.FIREWALL_RULE.path(ip="1.2.3.4/32", ipOnFirewall="1.2.3.4", sequence=3) == "/ip/1.2.3.4%2F32/firewall/1.2.3.4/rule/3"
    with pytest.raises(ValueError, match="path parameters are serviceName"):
        ovh.VPS.path(service="x")
