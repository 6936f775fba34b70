"""The doctor's pure parts: the coverage row, the VPS judgement, the table, scrubbing, and how rows are put together."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from pydantic import SecretStr

from technicia_deploy import doctor, ovh
from technicia_deploy.doctor import FAILED, OK, SKIPPED, Row
from technicia_deploy.ovh import VpsDetails

SECRET = "s3cr3t-application-secret-value"


def test_full_rules_are_ok():
    row = doctor.rules_row("test", ovh.access_rules(), {"serviceName": "vps-1", "zoneName": "exemple.fr"})
    assert row.status == OK and str(len(ovh.ROUTES)) in row.detail


def test_a_lacking_route_is_named_with_the_command_that_fixes_it():
    rules = [r for r in ovh.access_rules() if r["path"] != "/domain/zone/*/refresh"]
    row = doctor.rules_row("staging", rules, {"serviceName": "vps-1", "zoneName": "exemple.fr"})
    assert row.status == FAILED
    assert "lacks 1 route(s): POST /domain/zone/{zoneName}/refresh" in row.detail
    assert "technicia-deploy ovh access-rules staging" in row.fix and "POST /auth/credential" in row.fix


def spec(**changes):
    base = dict(model="VPS-SSD-4", vcores=4, ram_gb=8, disk_gb=80, zone="GRA11", os="Debian 12")
    return SimpleNamespace(**{**base, **changes})


def details(**changes):
    base = dict(service_name="vps-1", model="vps-ssd-4", vcores=4, ram_gb=8, disk_gb=80,
                zone="Region OpenStack: os-gra11", datacentre="GRA11", state="running", os="Debian 12")
    return VpsDetails(**{**base, **changes})


def test_vps_matching_its_spec_has_no_problem():
    assert doctor.vps_problems(details(), spec()) == []


def test_vps_differences_name_each_field():
    found = doctor.vps_problems(details(ram_gb=4, os="Ubuntu 22.04", state="stopped"), spec())
    assert found == ["ram_gb is 4, expected 8", "OS is Ubuntu 22.04, expected Debian 12", "state is stopped, expected running"]


def test_table_has_one_row_per_check_and_a_summary():
    rows = [Row("OVH credential", "all", OK, "consumer key validated"),
            Row("SSH", "test", FAILED, "host key SHA256:abc [bold]not[/bold] declared", "verify it out of band")]
    text = doctor.render(rows)
    lines = text.splitlines()
    assert lines[-1] == "2 checks: 1 FAILED"
    header = next(line for line in lines if "CHECK" in line)
    assert all(name in header for name in ("CHECK", "ENVIRONMENT", "STATUS", "DETAIL", "FIX"))
    ssh = next(line for line in lines if line.strip().startswith("SSH"))
    assert "FAILED" in ssh and "verify it out of band" in ssh
    assert "[bold]not[/bold]" in text  # cells are text, not rich markup
    assert doctor.render(rows[:1]).splitlines()[-1] == "1 checks: all ok"


def test_scrub_removes_secrets_and_the_lines_of_multi_line_ones():
    pem = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----"
    url = "json://user:hunter2pass@10.0.0.1:8080/hook?token=abcdef123"
    text = f"failed with {SECRET}; line b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ; hunter2pass; abcdef123"
    out = doctor.scrub(text, [SECRET, pem, url])
    assert SECRET not in out and "b3BlbnNzaC1rZXkt" not in out and "hunter2pass" not in out and "abcdef123" not in out
    assert doctor.scrub("Prefect at http://10.0.0.1:4200/api", [url]) == "Prefect at http://10.0.0.1:4200/api"


def test_work_pools_come_from_deployments_yaml():
    assert doctor.work_pools() == ["technicia"]


def fake_target(name: str) -> doctor.Target:
    secret = SecretStr(SECRET)
    return doctor.Target(
        name,
        SimpleNamespace(server=SimpleNamespace(ovh_service_name=f"vps-{name}"), dns=SimpleNamespace(zone="exemple.fr")),
        SimpleNamespace(application_key=secret, application_secret=secret, consumer_key=secret),
        SimpleNamespace(private_key=secret),
        SimpleNamespace(google_service_account_json=secret, voyageai_api_key=secret, anthropic_api_key=secret),
        {"ops": "json://127.0.0.1:9/hook"},
    )


@pytest.fixture
def fake_checks(monkeypatch):
    """Every check replaced: the ordering, the skipping and the scrubbing of run() are what is tested."""
    calls = []

    def credential(target, timeout_s):
        calls.append(("credential", target.name))
        return Row("OVH credential", "all", OK, "validated"), {"rules": ovh.access_rules()}

    def vps(target, timeout_s):
        return Row("VPS", target.name, OK, "matches"), "10.0.0.1"

    monkeypatch.setattr(doctor, "check_prefect", lambda url, pools, t: [Row("Prefect server", "all", OK, str(url))])
    monkeypatch.setattr(doctor, "check_ovh_credential", credential)
    monkeypatch.setattr(doctor, "check_vps", vps)
    monkeypatch.setattr(doctor, "check_ssh", lambda t, address, s: Row("SSH", t.name, OK, address))
    monkeypatch.setattr(doctor, "check_dns", lambda t, s: Row("DNS zone", t.name, OK, "readable"))
    monkeypatch.setattr(doctor, "check_acme", lambda t, s: Row("ACME directory", t.name, OK, "200"))
    monkeypatch.setattr(doctor, "check_cloud", lambda t, s: [Row("Anthropic key", t.name, OK, "passed")])
    monkeypatch.setattr(doctor, "check_alerts", lambda t: [Row("alert destination ops", t.name, OK, "delivered")])
    return calls


def test_rows_come_in_a_stable_order_and_the_credential_is_checked_once(fake_checks):
    rows = doctor.run([fake_target("test"), fake_target("staging")], "http://127.0.0.1:1/api", ["technicia"])
    assert [(r.check, r.environment) for r in rows] == [
        ("Prefect server", "all"), ("OVH credential", "all"),
        *[(check, env) for env in ("test", "staging") for check in
          ("OVH access rules", "VPS", "SSH", "DNS zone", "ACME directory", "Anthropic key", "alert destination ops")],
    ]
    assert all(r.status == OK for r in rows)
    assert fake_checks == [("credential", "test")]


def test_a_failed_credential_skips_its_rules_and_a_vps_without_address_skips_ssh(fake_checks, monkeypatch):
    monkeypatch.setattr(doctor, "check_ovh_credential",
                        lambda t, s: (Row("OVH credential", "all", FAILED, "invalid signature", "check the secret"), None))
    monkeypatch.setattr(doctor, "check_vps", lambda t, s: (Row("VPS", t.name, FAILED, "invalid credential", "see above"), None))
    rows = {(r.check, r.environment): r for r in doctor.run([fake_target("test")], None, [])}
    assert rows[("OVH access rules", "test")].status == SKIPPED
    assert rows[("SSH", "test")].status == SKIPPED and "VPS" in rows[("SSH", "test")].detail


def test_a_check_that_crashes_is_a_scrubbed_failed_row(fake_checks, monkeypatch):
    def broken(target, timeout_s):
        raise RuntimeError(f"the ACME client choked on {SECRET}")

    monkeypatch.setattr(doctor, "check_acme", broken)
    rows = doctor.run([fake_target("test")], None, [])
    acme = next(r for r in rows if r.check == "ACME directory")
    assert acme.status == FAILED and "RuntimeError" in acme.detail and SECRET not in json.dumps(doctor.rows_as_dicts(rows))


def test_the_cli_exit_status_says_whether_something_failed(fake_checks, monkeypatch, capsys, example_data, write_config,
                                                          secret_home):
    from technicia_deploy.cli import main

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setattr("technicia_deploy.cli.server.api_url", lambda: None)
    path = write_config(example_data)
    assert main(["doctor", "test", "--config", str(path)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("all ok")
    monkeypatch.setattr(doctor, "check_dns", lambda t, s: Row("DNS zone", t.name, FAILED, "zone not found", "check dns.zone"))
    assert main(["doctor", "test", "--config", str(path), "--json"]) == 1
    rows = json.loads(capsys.readouterr().out)
    assert {"check": "DNS zone", "environment": "test", "status": "FAILED", "detail": "zone not found",
            "fix": "check dns.zone"} in rows
