"""The gates a promotion passes before production: facts in, a verdict with its evidence out (pure).

- ``staging-release``: staging runs the promotion's commit, deployed in this promotion, with its
  post-deployment tests passed (their results are the evidence);
- ``production-dns``: production's record exists at OVH and points at the production server, every
  authoritative server answers it, and it is older than the configured minimum (the seed: 24 h, for
  propagation) — a younger record blocks or warns, as configured;
- ``production-api-keys``: production's keys pass their smoke calls, and every quota a service reports
  has more headroom than the configured minimum (a service that reports none is said so: the
  approval's "quotas API vérifiés" confirmation covers it).

The tasks gather the facts (tasks/gates.py); the promotion shows these verdicts in the approval
form and refuses production when one that blocks failed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Iterable

PASSED, WARNING, FAILED = "passed", "warning", "failed"


@dataclass(frozen=True)
class Gate:
    name: str
    verdict: str  # passed | warning | failed
    evidence: str

    @property
    def blocks(self) -> bool:
        return self.verdict == FAILED

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def staging_release(staging_run: dict[str, Any] | None, sha: str, checks: dict[str, str]) -> Gate:
    """``staging_run``: {name, version, sha} of staging's deploy run completed in this promotion, or None;
    ``checks``: the summaries of its post-deployment test steps, by step id."""
    name = "staging-release"
    if staging_run is None:
        return Gate(name, FAILED, "staging has no completed deployment of this commit in this promotion")
    if (staging_run.get("sha") or "")[:12] != sha[:12]:
        return Gate(name, FAILED, f"staging runs {staging_run.get('sha')}, not {sha[:12]}")
    missing = [step for step in ("checks.functional", "checks.performance", "checks.security") if step not in checks]
    if missing:
        return Gate(name, FAILED, f"staging's post-deployment tests did not all pass: missing {', '.join(missing)}")
    results = "; ".join(f"{step.split('.', 1)[1]}: {summary}" for step, summary in sorted(checks.items()))
    return Gate(name, PASSED, f"staging runs {staging_run['version']} ({sha[:12]}), run {staging_run['name']!r}; {results}")


def production_dns(domain: str, address: str, ovh_targets: list[str], answers: dict[str, set[str]],
                   since: datetime | None, how: str | None, now: datetime, min_age_hours: float, policy: str) -> Gate:
    """``ovh_targets``: the A records OVH has for the domain; ``answers``: each authoritative server's answer;
    ``since``/``how``: when the record was created or first seen by the pipeline (None: never recorded)."""
    name = "production-dns"
    if address not in ovh_targets:
        found = f"OVH has {', '.join(ovh_targets)}" if ovh_targets else "OVH has no A record"
        return Gate(name, FAILED, f"{domain}: {found}, production is {address}; prepare it first "
                                  f"(`technicia-deploy dns prepare production`), {min_age_hours:g} h ahead")
    lagging = {server: sorted(seen) for server, seen in answers.items() if seen != {address}}
    if not answers or lagging:
        detail = ", ".join(f"{s} answers {v or 'nothing'}" for s, v in lagging.items()) or "no authoritative server"
        return Gate(name, FAILED, f"{domain} A {address} not answered by every authoritative server: {detail}")
    servers = f"answered by {len(answers)} authoritative server(s)"
    if since is None:
        return Gate(name, FAILED if policy == "block" else WARNING,
                    f"{domain} A {address} {servers}; its age is unknown (never recorded by the pipeline)")
    age_h = max(0.0, (now - since).total_seconds() / 3600)
    text = f"{domain} A {address} {servers}; {how or 'recorded'} {since:%Y-%m-%d %H:%M} UTC, {age_h:.1f} h ago"
    if age_h >= min_age_hours:
        return Gate(name, PASSED, f"{text} (minimum {min_age_hours:g} h)")
    verdict = FAILED if policy == "block" else WARNING
    return Gate(name, verdict, f"{text}: younger than the {min_age_hours:g} h minimum"
                + (" (policy: block)" if verdict == FAILED else " (policy: warn only)"))


def _headroom(quota: dict[str, str]) -> list[tuple[str, float]]:
    """(kind, remaining/limit in %) for each quota a service reported."""
    found = []
    for key, limit in quota.items():
        if not key.endswith("-limit"):
            continue
        kind = key.removesuffix("-limit")
        try:
            remaining, total = float(quota[f"{kind}-remaining"]), float(limit)
        except (KeyError, ValueError):
            continue
        if total > 0:
            found.append((kind, 100.0 * remaining / total))
    return sorted(found)


def production_api_keys(results: Iterable[dict[str, Any]], min_headroom_percent: float, labels: dict[str, str]) -> Gate:
    """``results``: the smoke-call results of production's keys (cloud.check_api_keys, as dicts)."""
    name = "production-api-keys"
    problems, parts = [], []
    for r in results:
        label = labels.get(r["service"], r["service"])
        if r["status"] != "ok":
            problems.append(f"{label}: {r['status']} ({r['detail']})")
            continue
        headroom = _headroom(r.get("quota") or {})
        low = [f"{kind} {pct:.0f} %" for kind, pct in headroom if pct < min_headroom_percent]
        if low:
            problems.append(f"{label}: quota below {min_headroom_percent:g} %: {', '.join(low)}")
        shown = ", ".join(f"{kind} {pct:.0f} %" for kind, pct in headroom) or "quota not reported by the service"
        parts.append(f"{label} ok ({shown})")
    if problems:
        return Gate(name, FAILED, "; ".join(problems))
    return Gate(name, PASSED, "; ".join(parts) + f" (minimum headroom {min_headroom_percent:g} %)")


def evidence_markdown(version: str, sha: str, production_now: str, staging_checks: dict[str, str],
                      gates: list[Gate], promotion_url: str | None = None) -> str:
    """The approval form's description: what is about to happen and why it is safe, in numbers."""
    icon = {PASSED: "✅", WARNING: "⚠️", FAILED: "❌"}
    lines = [
        f"### Production deployment of **{version}** (`{sha[:12]}`)",
        "",
        f"- **Production runs now:** {production_now}",
        f"- **Commit:** `{sha}`",
    ]
    if promotion_url:
        lines.append(f"- **Promotion run:** {promotion_url}")
    lines += ["", "**Staging's post-deployment tests (this commit, this promotion):**", ""]
    lines += [f"- {step.split('.', 1)[1]}: {summary}" for step, summary in sorted(staging_checks.items())] or ["- none"]
    lines += ["", "| Gate | Result | Evidence |", "|---|---|---|"]
    lines += [f"| {g.name} | {icon[g.verdict]} {g.verdict} | {g.evidence.replace('|', '/')} |" for g in gates]
    lines += ["", "Approve only if both confirmations hold: **documentation utilisateur finalisée** and "
                  "**quotas API vérifiés**. Reject to end the promotion with production untouched."]
    return "\n".join(lines)
