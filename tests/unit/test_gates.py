"""The gates before production: facts in, verdict and evidence out."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from technicia_deploy import gates

SHA = "0123456789abcdef0123456789abcdef01234567"
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)
CHECKS = {"checks.functional": "5/5 checks passed", "checks.performance": "1650 req/s, p95 12 ms",
          "checks.security": "0 high, 0 medium, 1 low"}
LABELS = {"anthropic": "Anthropic", "vision": "Google Vision"}


def test_staging_must_run_the_commit_with_its_tests_passed():
    run = {"name": "deploy-staging-v1.0.0", "version": "v1.0.0", "sha": SHA[:12]}
    ok = gates.staging_release(run, SHA, CHECKS)
    assert ok.verdict == gates.PASSED and "1650 req/s" in ok.evidence and "v1.0.0 (0123456789ab)" in ok.evidence
    assert gates.staging_release(None, SHA, CHECKS).blocks
    assert "runs ffffffffffff, not 0123456789ab" in gates.staging_release({**run, "sha": "ffffffffffff"}, SHA, CHECKS).evidence
    partial = gates.staging_release(run, SHA, {"checks.functional": "5/5"})
    assert partial.blocks and "checks.performance, checks.security" in partial.evidence


def dns(**kw):
    base = dict(domain="technicia.exemple.fr", address="192.0.2.10", ovh_targets=["192.0.2.10"],
                answers={"ns1:53": {"192.0.2.10"}, "ns2:53": {"192.0.2.10"}}, since=NOW - timedelta(hours=30),
                how="written", now=NOW, min_age_hours=24, policy="block")
    return gates.production_dns(**{**base, **kw})


def test_dns_record_old_enough_passes_with_its_age():
    gate = dns()
    assert gate.verdict == gates.PASSED
    assert "answered by 2 authoritative server(s)" in gate.evidence and "30.0 h ago" in gate.evidence


def test_dns_record_too_young_blocks_or_warns_as_configured():
    young = dns(since=NOW - timedelta(hours=2))
    assert young.blocks and "younger than the 24 h minimum (policy: block)" in young.evidence
    warned = dns(since=NOW - timedelta(hours=2), policy="warn")
    assert warned.verdict == gates.WARNING and not warned.blocks


def test_dns_record_missing_or_not_served_blocks():
    missing = dns(ovh_targets=[])
    assert missing.blocks and "OVH has no A record" in missing.evidence and "dns prepare production" in missing.evidence
    lagging = dns(answers={"ns1:53": {"192.0.2.10"}, "ns2:53": set()})
    assert lagging.blocks and "ns2:53 answers nothing" in lagging.evidence
    unknown_age = dns(since=None, how=None)
    assert unknown_age.blocks and "age is unknown" in unknown_age.evidence


def smoke(service, status="ok", quota=None, detail=""):
    return {"service": service, "status": status, "quota": quota or {}, "detail": detail}


def test_api_keys_need_to_work_with_quota_headroom():
    quota = {"requests-limit": "1000", "requests-remaining": "950", "tokens-limit": "40000", "tokens-remaining": "39000"}
    ok = gates.production_api_keys([smoke("anthropic", quota=quota), smoke("vision")], 10, LABELS)
    assert ok.verdict == gates.PASSED
    assert "Anthropic ok (requests 95 %, tokens 98 %)" in ok.evidence
    assert "Google Vision ok (quota not reported by the service)" in ok.evidence

    low = gates.production_api_keys([smoke("anthropic", quota={**quota, "requests-remaining": "50"})], 10, LABELS)
    assert low.blocks and "Anthropic: quota below 10 %: requests 5 %" in low.evidence
    bad = gates.production_api_keys([smoke("vision", status="invalid_key", detail="401 from the API")], 10, LABELS)
    assert bad.blocks and "Google Vision: invalid_key (401 from the API)" in bad.evidence


def test_evidence_shows_release_production_now_tests_and_every_gate():
    verdicts = [gates.Gate("staging-release", gates.PASSED, "staging runs v1.0.0"),
                gates.Gate("production-dns", gates.WARNING, "2.0 h ago | young")]
    text = gates.evidence_markdown("v1.0.0", SHA, "v0.9.0 (cccccccccccc)", CHECKS, verdicts)
    assert "**v1.0.0** (`0123456789ab`)" in text and "v0.9.0 (cccccccccccc)" in text
    assert "- performance: 1650 req/s, p95 12 ms" in text
    assert "| production-dns | ⚠️ warning | 2.0 h ago / young |" in text
