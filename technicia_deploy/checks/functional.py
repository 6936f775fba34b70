"""Tests fonctionnels: every service answers, the front end serves its page, the API answers a real request
and, when its health answer reports them, sees every key of its .env.

Public services (front end, API) are checked through HTTPS on the domain, the
way a visitor reaches them; internal ones (n8n, Qdrant) from inside the server
with one SSH round trip (a fact script, one curl per check). Each check is a
:class:`CheckOutcome` with its name, verdict, HTTP status and timing.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from typing import Sequence

from technicia_deploy.commands.shell import fact_script, parse_sections, q
from technicia_deploy.config import HealthCheck

from .target import Target, fetch

PROBE_TIMEOUT_S = 5
# curl's exit codes that say what went wrong, in words an operator acts on.
CURL_ERRORS = {6: "name does not resolve", 7: "connection refused", 28: "timed out", 35: "TLS handshake failed",
               52: "empty reply", 56: "connection reset", 60: "certificate not trusted"}


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    where: str  # "public" (HTTPS on the domain) or "server" (from inside the VPS)
    url: str
    ok: bool
    status: int | None
    elapsed_ms: float
    detail: str

    def as_row(self) -> dict:
        row = asdict(self)
        row["elapsed_ms"] = round(self.elapsed_ms, 1)
        return row


def _content_problem(path: str, content_type: str, body: bytes) -> str | None:
    """Why a 2xx answer is still not a working service: the page is not a page, the JSON is not JSON."""
    if path.split("?")[0] == "/":
        if "html" not in content_type or not re.search(rb"<(!doctype html|html)", body[:4096], re.I):
            return f"front end did not serve an HTML page (Content-Type {content_type or 'none'})"
    elif "json" in content_type:
        try:
            json.loads(body)
        except ValueError:
            return "answer is not valid JSON"
    return None


def key_report(body: bytes, expected: Sequence[str]) -> tuple[bool, str] | None:
    """Judge the ``keys`` object of a JSON health answer (``{"NAME": true|false}``: which variables of its .env
    the application sees set), ``None`` when the answer carries no such report.

    ``expected`` is the pipeline's side of the contract (the variables it writes into the .env): a key the
    application reports missing fails the check, whether the pipeline writes it (then the .env the
    application reads is not the one written) or not (then the two disagree on a name); an expected
    variable the application does not report is noted, not failed (it may not need to announce it).
    """
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    keys = answer.get("keys") if isinstance(answer, dict) else None
    if not isinstance(keys, dict):
        return None
    missing = [name for name, seen in keys.items() if seen is not True]
    unreported = [name for name in expected if name not in keys]
    note = f" (not reported: {', '.join(unreported)})" if unreported else ""
    if missing:
        named = ", ".join(f"{name} ({'written by the pipeline' if name in expected else 'not provided by the pipeline'})"
                          for name in missing)
        return False, f"API reports key(s) missing: {named}{note}"
    return True, f"{len(keys)} key(s) seen{note}"


def check_public(target: Target, check: HealthCheck, timeout: float = PROBE_TIMEOUT_S,
                 expected_keys: Sequence[str] | None = None) -> CheckOutcome:
    """One public check; with ``expected_keys``, an answer that reports the application's keys must report
    them all set (:func:`key_report`)."""
    url = target.url(check.url)
    started = time.perf_counter()
    try:
        resp = fetch(target, check.url, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - any transport failure is this check's verdict
        elapsed = (time.perf_counter() - started) * 1000
        return CheckOutcome(check.name, "public", url, False, None, elapsed, _transport_error(exc))
    if resp.status != check.expect_status:
        return CheckOutcome(check.name, "public", url, False, resp.status, resp.elapsed_ms,
                            f"HTTP {resp.status}, expected {check.expect_status}")
    problem = _content_problem(check.url, resp.header("content-type") or "", resp.body)
    if problem:
        return CheckOutcome(check.name, "public", url, False, resp.status, resp.elapsed_ms, problem)
    keys = key_report(resp.body, expected_keys) if expected_keys is not None else None
    if keys is None:
        return CheckOutcome(check.name, "public", url, True, resp.status, resp.elapsed_ms, f"HTTP {resp.status}")
    ok, detail = keys
    return CheckOutcome(check.name, "public", url, ok, resp.status, resp.elapsed_ms,
                        f"HTTP {resp.status}, {detail}" if ok else detail)


def _transport_error(exc: Exception) -> str:
    import ssl

    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate rejected: {exc.verify_message}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"


# --- checks run on the server -----------------------------------------------------------------

def server_probe_command(checks: Sequence[HealthCheck], timeout: int = PROBE_TIMEOUT_S) -> str:
    """One fact script: section check.N prints 'HTTP_CODE SECONDS' for checks[N] (curl's status is the section's)."""
    sections = [("curl", "command -v curl")]
    for index, check in enumerate(checks):
        sections.append((f"check.{index}",
                         f"curl -sS -o /dev/null -w '%{{http_code}} %{{time_total}}' --max-time {int(timeout)} {q(check.url)}"))
    return fact_script(sections)


def parse_server_probes(checks: Sequence[HealthCheck], output: str) -> list[CheckOutcome]:
    sections = parse_sections(output, ["curl"] + [f"check.{i}" for i in range(len(checks))])
    if not sections["curl"].ok:
        return [CheckOutcome(c.name, "server", c.url, False, None, 0.0, "curl is not installed on the server")
                for c in checks]
    outcomes = []
    for index, check in enumerate(checks):
        section = sections[f"check.{index}"]
        fields = section.text.split()
        status = int(fields[0]) if fields and fields[0].isdigit() and fields[0] != "000" else None
        try:
            elapsed = float(fields[1]) * 1000 if len(fields) > 1 else 0.0
        except ValueError:
            elapsed = 0.0
        if not section.ok:
            detail = CURL_ERRORS.get(section.rc, f"curl failed (exit {section.rc})")
            outcomes.append(CheckOutcome(check.name, "server", check.url, False, status, elapsed, detail))
        elif status != check.expect_status:
            outcomes.append(CheckOutcome(check.name, "server", check.url, False, status, elapsed,
                                         f"HTTP {status}, expected {check.expect_status}"))
        else:
            outcomes.append(CheckOutcome(check.name, "server", check.url, True, status, elapsed, f"HTTP {status}"))
    return outcomes


def summary(outcomes: Sequence[CheckOutcome]) -> str:
    failed = [o for o in outcomes if not o.ok]
    if not failed:
        return f"{len(outcomes)} check(s) passed: " + ", ".join(f"{o.name} {o.elapsed_ms:.0f} ms" for o in outcomes)
    return f"{len(failed)}/{len(outcomes)} check(s) failed: " + "; ".join(f"{o.name} ({o.detail})" for o in failed)
