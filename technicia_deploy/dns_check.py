"""Has a DNS change propagated? Ask the zone's authoritative servers directly.

Recursive resolvers cache; the authoritative servers are the truth the ACME
server will see first. Each is queried without recursion until all of them
answer the wanted address, or the deadline passes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Nameserver:
    host: str
    port: int = 53

    @classmethod
    def parse(cls, text: str) -> "Nameserver":
        host, _, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
        return cls(host or text, int(port) if port else 53)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def authoritative_servers(zone: str, declared: list[str]) -> list[Nameserver]:
    """The declared servers, else the zone's NS records resolved to addresses."""
    if declared:
        return [Nameserver.parse(item) for item in declared]
    import dns.resolver

    servers = []
    for ns in dns.resolver.resolve(zone, "NS"):
        for address in dns.resolver.resolve(str(ns.target), "A"):
            servers.append(Nameserver(str(address)))
    return servers


def answers(server: Nameserver, name: str, rdtype: str = "A", timeout: float = 2.0) -> set[str]:
    """What ``server`` answers for ``name`` (empty on NXDOMAIN / no answer / timeout)."""
    import dns.exception
    import dns.message
    import dns.query
    import dns.rcode
    import dns.rdatatype

    query = dns.message.make_query(name, rdtype)
    query.flags &= ~0x0100  # no recursion: we want this server's own data
    try:
        response = dns.query.udp(query, server.host, port=server.port, timeout=timeout)
        if response.flags & 0x0200:  # truncated: retry over TCP
            response = dns.query.tcp(query, server.host, port=server.port, timeout=timeout)
    except (dns.exception.Timeout, OSError):
        return set()
    if response.rcode() != dns.rcode.NOERROR:
        return set()
    return {item.to_text() for rrset in response.answer if rrset.rdtype == dns.rdatatype.from_text(rdtype) for item in rrset}


@dataclass(frozen=True)
class Propagation:
    """What :func:`wait_propagated` saw: each server's final answer, how long it waited and how many rounds it asked."""

    seen: dict[str, set[str]]
    waited_s: float
    polls: int

    @property
    def waited(self) -> bool:
        """True when the first round was not already the answer (the change had to propagate)."""
        return self.polls > 1


def wait_propagated(servers: list[Nameserver], name: str, value: str, rdtype: str = "A",
                    deadline_s: float = 300.0, poll_s: float = 2.0) -> Propagation:
    """Poll until every server answers exactly ``value``; TimeoutError naming the laggards otherwise.

    Bounded: at most ``deadline_s`` seconds (one more round after it), a round every ``poll_s`` seconds.
    """
    start = time.monotonic()
    deadline = start + deadline_s
    polls = 0
    while True:
        polls += 1
        seen = {str(server): answers(server, name, rdtype) for server in servers}
        if all(found == {value} for found in seen.values()):
            return Propagation(seen, round(time.monotonic() - start, 1), polls)
        if time.monotonic() > deadline:
            lagging = ", ".join(f"{s} answers {sorted(v) or 'nothing'}" for s, v in seen.items() if v != {value})
            raise TimeoutError(f"{name} {rdtype} not yet {value} after {deadline_s:.0f}s ({polls} rounds): {lagging}")
        time.sleep(poll_s)
