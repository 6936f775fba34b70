"""The certificate an environment serves, seen from outside, and what the certificates maintenance makes of it.

The served certificate is read the way a visitor gets it (checks.target: the domain's address, its name as SNI),
through ``security.inspect_tls`` (chain verified against the system store plus the environment's issuer, names,
days left) plus its fingerprint, so that "the new one is served" is a fact and not an assumption.
"""

from __future__ import annotations

import hashlib
import socket
from dataclasses import dataclass

from .security import TlsFacts, _name_matches, inspect_tls
from .target import Target


@dataclass(frozen=True)
class Served:
    tls: TlsFacts
    fingerprint: str  # sha256 of the DER certificate, hex

    @property
    def expires(self) -> str:
        return self.tls.not_after.strftime("%Y-%m-%d %H:%M UTC") if self.tls.not_after else "?"

    def describe(self) -> str:
        chain = "chain verified" if self.tls.verified else f"chain NOT verified ({self.tls.verify_error})"
        return (f"{self.tls.days_left} day(s) left (expires {self.expires}), {chain}, "
                f"names {', '.join(self.tls.names) or 'none'}")


def fingerprint(target: Target, timeout: float = 5.0) -> str:
    """The sha256 of the certificate the target serves for its name (whatever its chain)."""
    sock = socket.create_connection((target.address, target.https_port), timeout)
    try:
        with target.ssl_context(verify=False).wrap_socket(sock, server_hostname=target.domain) as tls:
            der = tls.getpeercert(binary_form=True)
    finally:
        sock.close()
    return hashlib.sha256(der).hexdigest()


def served(target: Target, timeout: float = 5.0) -> Served:
    return Served(inspect_tls(target, timeout), fingerprint(target, timeout))


def reasons_to_renew(domain: str, seen: Served, renew_below_days: int) -> list[str]:
    """Why the served certificate must be replaced now; [] when it can stay."""
    reasons = []
    if seen.tls.days_left is not None and seen.tls.days_left < renew_below_days:
        reasons.append(f"{seen.tls.days_left} day(s) left (< {renew_below_days})")
    if not _name_matches(domain, seen.tls.names):
        reasons.append(f"not valid for {domain} (names: {', '.join(seen.tls.names) or 'none'})")
    return reasons


def problems(domain: str, seen: Served, min_days_left: int) -> list[str]:
    """What is wrong with the served certificate once the maintenance is done (renewal included): each one fails
    the run. ``min_days_left``: the environment's threshold (tls.min_days_left)."""
    found = []
    if not seen.tls.verified:
        found.append(f"certificate does not verify: {seen.tls.verify_error}")
    if not _name_matches(domain, seen.tls.names):
        found.append(f"certificate is not valid for {domain} (names: {', '.join(seen.tls.names) or 'none'})")
    if seen.tls.days_left is not None and seen.tls.days_left < min_days_left:
        found.append(f"certificate has {seen.tls.days_left} day(s) left (< {min_days_left})")
    return found
