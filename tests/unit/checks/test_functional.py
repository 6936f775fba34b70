"""Functional checks against real HTTPS servers on 127.0.0.1, and the server-side probe script."""

from __future__ import annotations

import subprocess

import pytest

from technicia_deploy.checks import functional
from technicia_deploy.commands.shell import render_sections
from technicia_deploy.config import HealthCheck

from .conftest import PAGE, Route, closed_port, server_tls, target_for

ROUTES = {
    "/": Route(200, PAGE, {"Content-Type": "text/html"}),
    "/api/health": Route(200, b'{"status":"ok"}', {"Content-Type": "application/json"}),
    "/api/ask?q=ping": Route(200, b'{"answer":"pong"}', {"Content-Type": "application/json"}),
}


def test_healthy_public_services_pass_with_name_status_and_timing(pki, servers):
    https = servers(ROUTES, server_tls(*pki.leaf()))
    target = target_for(pki, https.port)
    checks = [HealthCheck(name="frontend", url="/"), HealthCheck(name="api", url="/api/health"),
              HealthCheck(name="api-request", url="/api/ask?q=ping")]
    outcomes = [functional.check_public(target, c) for c in checks]
    assert [(o.name, o.ok, o.status) for o in outcomes] == [("frontend", True, 200), ("api", True, 200), ("api-request", True, 200)]
    assert all(o.elapsed_ms > 0 for o in outcomes)
    assert outcomes[0].url == f"https://test-technicia.exemple.test:{https.port}/"
    assert functional.summary(outcomes).startswith("3 check(s) passed")


def test_a_failing_api_is_named_with_its_status(pki, servers):
    routes = {**ROUTES, "/api/health": Route(502, b"<html>Bad Gateway</html>", {"Content-Type": "text/html"})}
    target = target_for(pki, servers(routes, server_tls(*pki.leaf())).port)
    outcomes = [functional.check_public(target, HealthCheck(name=n, url=u)) for n, u in (("frontend", "/"), ("api", "/api/health"))]
    assert [o.ok for o in outcomes] == [True, False]
    assert "api (HTTP 502, expected 200)" in functional.summary(outcomes)


def test_front_end_must_serve_a_page_and_json_must_parse(pki, servers):
    routes = {"/": Route(200, b"hello", {"Content-Type": "text/plain"}),
              "/api/health": Route(200, b"{not json", {"Content-Type": "application/json"})}
    target = target_for(pki, servers(routes, server_tls(*pki.leaf())).port)
    page = functional.check_public(target, HealthCheck(name="frontend", url="/"))
    api = functional.check_public(target, HealthCheck(name="api", url="/api/health"))
    assert not page.ok and "HTML page" in page.detail
    assert not api.ok and "JSON" in api.detail


def test_untrusted_certificate_and_closed_port_are_failures(pki, servers, tmp_path):
    from .conftest import Pki

    other = Pki(tmp_path)  # a certificate from a CA the target does not trust
    target = target_for(pki, servers(ROUTES, server_tls(*other.leaf())).port)
    outcome = functional.check_public(target, HealthCheck(name="frontend", url="/"))
    assert not outcome.ok and "certificate rejected" in outcome.detail
    closed = target_for(pki, closed_port())
    assert functional.check_public(closed, HealthCheck(name="api", url="/api/health")).detail == "connection refused"


CHECKS = [HealthCheck(name="n8n", url="http://127.0.0.1:5678/healthz", from_server=True),
          HealthCheck(name="qdrant", url="http://127.0.0.1:6333/readyz", from_server=True)]


def test_server_probe_parses_curl_results():
    output = render_sections({"curl": ("/usr/bin/curl\n", 0), "check.0": ("200 0.004", 0), "check.1": ("000 0.001", 7)})
    n8n, qdrant = functional.parse_server_probes(CHECKS, output)
    assert (n8n.name, n8n.ok, n8n.status, round(n8n.elapsed_ms)) == ("n8n", True, 200, 4)
    assert (qdrant.name, qdrant.ok, qdrant.status, qdrant.detail) == ("qdrant", False, None, "connection refused")


def test_server_probe_without_curl_says_so():
    output = render_sections({"curl": ("", 1), "check.0": ("", 127), "check.1": ("", 127)})
    assert {o.detail for o in functional.parse_server_probes(CHECKS, output)} == {"curl is not installed on the server"}


def test_server_probe_script_runs_against_real_local_services(pki, servers):
    # The fact script run by bash here, as the server runs it: one healthy service, one down.
    up = servers({"/healthz": Route(200, b"ok")})
    checks = [HealthCheck(name="n8n", url=f"http://127.0.0.1:{up.port}/healthz", from_server=True),
              HealthCheck(name="qdrant", url=f"http://127.0.0.1:{closed_port()}/readyz", from_server=True)]
    script = functional.server_probe_command(checks)
    assert subprocess.run(["bash", "-n", "-c", script]).returncode == 0
    output = subprocess.run(["bash", "-c", script], capture_output=True, text=True).stdout
    outcomes = functional.parse_server_probes(checks, output)
    assert [(o.name, o.ok) for o in outcomes] == [("n8n", True), ("qdrant", False)]


# -- the API sees every key of its .env (the pipeline's variable names are the expected list) ----------------
EXPECTED = ("GOOGLE_CLOUD_PROJECT", "DOCUMENTAI_PROCESSOR_ID", "ANTHROPIC_API_KEY")


def test_key_report_all_seen():
    body = b'{"status":"ok","keys":{"GOOGLE_CLOUD_PROJECT":true,"DOCUMENTAI_PROCESSOR_ID":true,"ANTHROPIC_API_KEY":true}}'
    assert functional.key_report(body, EXPECTED) == (True, "3 key(s) seen")


def test_key_report_names_each_missing_key_and_whether_the_pipeline_writes_it():
    # The bug this check exists for: the API looks for DOCUMENTAI_PROCESSOR, the pipeline writes DOCUMENTAI_PROCESSOR_ID.
    body = b'{"keys":{"GOOGLE_CLOUD_PROJECT":true,"DOCUMENTAI_PROCESSOR":false,"ANTHROPIC_API_KEY":false}}'
    assert functional.key_report(body, EXPECTED) == (
        False, "API reports key(s) missing: DOCUMENTAI_PROCESSOR (not provided by the pipeline), "
               "ANTHROPIC_API_KEY (written by the pipeline) (not reported: DOCUMENTAI_PROCESSOR_ID)")


def test_key_report_notes_expected_keys_the_api_does_not_announce():
    assert functional.key_report(b'{"keys":{"ANTHROPIC_API_KEY":true}}', EXPECTED) == (
        True, "1 key(s) seen (not reported: GOOGLE_CLOUD_PROJECT, DOCUMENTAI_PROCESSOR_ID)")


@pytest.mark.parametrize("body", [b'{"status":"ok"}', b'{"keys":["A"]}', b"[1]", b"<html></html>", b"\xff"])
def test_no_key_report_no_key_verdict(body):
    assert functional.key_report(body, EXPECTED) is None


def test_api_health_that_reports_a_missing_key_fails_the_check(pki, servers):
    routes = {**ROUTES, "/api/health": Route(200, b'{"status":"ok","keys":{"GOOGLE_CLOUD_PROJECT":true,'
                                                  b'"DOCUMENTAI_PROCESSOR_ID":false,"ANTHROPIC_API_KEY":true}}',
                                             {"Content-Type": "application/json"})}
    target = target_for(pki, servers(routes, server_tls(*pki.leaf())).port)
    checks = [HealthCheck(name="frontend", url="/"), HealthCheck(name="api", url="/api/health")]
    page, api = [functional.check_public(target, c, expected_keys=EXPECTED) for c in checks]
    assert (page.ok, page.detail) == (True, "HTTP 200")
    assert (api.ok, api.status, api.detail) == (
        False, 200, "API reports key(s) missing: DOCUMENTAI_PROCESSOR_ID (written by the pipeline)")
    assert functional.summary([page, api]) == (
        "1/2 check(s) failed: api (API reports key(s) missing: DOCUMENTAI_PROCESSOR_ID (written by the pipeline))")
    # Without an expected list (a caller that does not know the contract) the answer is judged as before.
    assert functional.check_public(target, checks[1]).ok


def test_api_health_with_every_key_set_passes_and_says_so(pki, servers):
    routes = {**ROUTES, "/api/health": Route(200, b'{"status":"ok","keys":{"GOOGLE_CLOUD_PROJECT":true,'
                                                  b'"DOCUMENTAI_PROCESSOR_ID":true,"ANTHROPIC_API_KEY":true}}',
                                             {"Content-Type": "application/json"})}
    target = target_for(pki, servers(routes, server_tls(*pki.leaf())).port)
    api = functional.check_public(target, HealthCheck(name="api", url="/api/health"), expected_keys=EXPECTED)
    assert (api.ok, api.detail) == (True, "HTTP 200, 3 key(s) seen")
