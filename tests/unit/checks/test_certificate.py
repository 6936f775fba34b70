"""The certificates maintenance's judgement of a served certificate: when to renew, what fails the run."""

from __future__ import annotations

from datetime import datetime, timezone

from technicia_deploy.checks.certificate import Served, problems, reasons_to_renew
from technicia_deploy.checks.security import TlsFacts

DOMAIN = "test-technicia.exemple.fr"


def seen(days_left=80, names=(DOMAIN,), verified=True, error=None) -> Served:
    tls = TlsFacts(verified, error, "TLSv1.3", datetime(2031, 1, 1, tzinfo=timezone.utc), days_left, names,
                   "CN=Pebble Intermediate CA", (), ())
    return Served(tls, "ab" * 32)


def test_renew_under_the_threshold_or_for_the_wrong_names():
    assert reasons_to_renew(DOMAIN, seen(80), 30) == []
    assert reasons_to_renew(DOMAIN, seen(12), 30) == ["12 day(s) left (< 30)"]
    assert reasons_to_renew(DOMAIN, seen(80, names=("other.exemple.fr",)), 30) == [
        "not valid for test-technicia.exemple.fr (names: other.exemple.fr)"]
    assert reasons_to_renew(DOMAIN, seen(80, names=("*.exemple.fr",)), 30) == []


def test_problems_left_fail_the_run():
    assert problems(DOMAIN, seen(80), 30) == []
    assert problems(DOMAIN, seen(3, verified=False, error="unable to get local issuer certificate"), 30) == [
        "certificate does not verify: unable to get local issuer certificate",
        "certificate has 3 day(s) left (< 30)"]


def test_description():
    assert seen(80).describe() == ("80 day(s) left (expires 2031-01-01 00:00 UTC), chain verified, "
                                   "names test-technicia.exemple.fr")
