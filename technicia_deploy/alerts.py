"""Sending alerts to an environment's destinations with apprise, one destination at a time.

Destination URLs are apprise URLs (``mailto://``, ``json://``, ``slack://``...)
and secrets: they carry tokens and passwords. They are never logged, returned
or put in an exception; a failed delivery is reported by the destination's
*name*, with apprise's own explanation scrubbed of every part of the URL.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

NOTIFY_TYPES = ("info", "success", "warning", "failure")


@dataclass(frozen=True)
class Delivery:
    name: str
    ok: bool
    detail: str  # safe to show: never contains the URL or its parts


def _secret_parts(url: str) -> list[str]:
    """Every piece of ``url`` that could be a secret, longest first (to scrub text that may quote it)."""
    parts = {url}
    try:
        split = urlsplit(url)
    except ValueError:
        return [url]
    for piece in (split.netloc, split.username, split.password, split.path, split.query):
        if piece:
            parts.add(piece)
            parts.add(unquote(piece))
    for segment in re.split(r"[/:@?&=]", url):
        if len(segment) >= 6:
            parts.add(segment)
    for _, value in parse_qsl(split.query):
        if len(value) >= 4:
            parts.add(value)
    return sorted((p for p in parts if p), key=len, reverse=True)


def redact(text: str, url: str) -> str:
    for part in _secret_parts(url):
        text = text.replace(part, "***")
    return text


def check_url(url: str) -> str | None:
    """Why apprise cannot use ``url`` (None if it can)."""
    import apprise

    scheme = url.split("://", 1)[0] if "://" in url else ""
    if not scheme:
        return "not a URL (expected scheme://...)"
    with apprise.LogCapture(level=logging.ERROR):
        client = apprise.Apprise()
        if not client.add(url):
            return f"apprise does not accept this {scheme}:// URL (unknown scheme or missing fields)"
    return None


def send_one(name: str, url: str, title: str, body: str, notify_type: str = "failure") -> Delivery:
    import apprise

    if notify_type not in NOTIFY_TYPES:
        raise ValueError(f"notify_type {notify_type!r} not in {NOTIFY_TYPES}")
    problem = check_url(url)
    if problem:
        return Delivery(name, False, problem)
    client = apprise.Apprise()
    client.add(url)
    # Apprise logs through the "apprise" logger; its warnings say why a delivery failed, and may quote hosts/URLs.
    with apprise.LogCapture(level=logging.WARNING) as captured:
        ok = bool(client.notify(title=title, body=body, notify_type=notify_type))
        log_text = captured.getvalue()
    if ok:
        return Delivery(name, True, "delivered (accepted by the destination)")
    # Lines look like "2026-01-01 10:00:00,123 - WARNING - A Connection error occurred ...": keep the message.
    lines = [re.sub(r"^[\d-]+ [\d:,]+ - \w+ - ", "", line.strip()) for line in log_text.splitlines() if line.strip()]
    reason = " ".join(lines)[-300:]
    return Delivery(name, False, "delivery failed" + (f": {redact(reason, url)}" if reason else ""))


def send(destinations: dict[str, str], title: str, body: str, notify_type: str = "failure") -> list[Delivery]:
    """Send to every destination separately, so one failing destination is named and does not hide the others."""
    return [send_one(name, url, title, body, notify_type) for name, url in destinations.items()]
