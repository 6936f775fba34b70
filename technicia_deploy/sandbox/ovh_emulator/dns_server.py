"""Authoritative DNS for the emulated zone, answering from the last *refreshed* records (like OVH's name servers).

The API changes records in the store; only ``POST /domain/zone/{zone}/refresh``
copies them to ``published``, which is what this server answers from. With the
``dns-delay`` test control set, a refresh is published only that many seconds
later (``store.publish``): until then this server answers the previous records,
as a name server that has not caught up yet would.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

from dnslib import AAAA, CAA, CNAME, MX, NS, QTYPE, RCODE, RR, SOA, TXT, A, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from technicia_deploy.sandbox.ovh_emulator.store import Store, publish_due

log = logging.getLogger(__name__)

SOA_TIMES = (86400, 3600, 3600000, 60)  # refresh, retry, expire, minimum (negative-answer TTL)
DEFAULT_TTL = 3600
POLL_S = 0.05  # how often the serving threads look for a stop request  # OVH's zone default when a record's ttl is 0


class ZoneResolver(BaseResolver):
    def __init__(self, store: Store, zone: str) -> None:
        self.store = store
        self.zone = zone.lower().rstrip(".")

    def _absolute(self, name: str) -> str:
        """OVH targets without a final dot are relative to the zone."""
        if name.endswith("."):
            return name
        return f"{name}.{self.zone}." if name else f"{self.zone}."

    def _soa(self, serial: int) -> RR:
        return RR(
            self.zone + ".",
            QTYPE.SOA,
            ttl=SOA_TIMES[3],
            rdata=SOA(f"ns1.{self.zone}.", f"hostmaster.{self.zone}.", (serial, *SOA_TIMES)),
        )

    def _rr(self, name: str, record: dict[str, Any]) -> RR | None:
        kind, target = record["fieldType"], record["target"]
        ttl = record.get("ttl") or DEFAULT_TTL
        if kind == "A":
            rdata = A(target)
        elif kind == "AAAA":
            rdata = AAAA(target)
        elif kind == "TXT":
            rdata = TXT(target[1:-1] if len(target) > 1 and target[0] == target[-1] == '"' else target)
        elif kind == "CNAME":
            rdata = CNAME(self._absolute(target))
        elif kind == "NS":
            rdata = NS(self._absolute(target))
        elif kind == "MX":
            preference, _, host = target.partition(" ")
            rdata = MX(self._absolute(host), int(preference))
        elif kind == "CAA":  # '0 issue "letsencrypt.org"', as OVH stores it
            flags, tag, value = (target.split(" ", 2) + ["", ""])[:3]
            rdata = CAA(int(flags), tag, value.strip('"'))
        else:  # the pipeline uses none of the other types
            return None
        return RR(name, getattr(QTYPE, kind), ttl=ttl, rdata=rdata)

    def _relative(self, name: str) -> str | None:
        name = name.lower().rstrip(".")
        if name == self.zone:
            return ""
        if name.endswith("." + self.zone):
            return name[: -len(self.zone) - 1]
        return None

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()  # aa=1: we are the authority
        qname = str(request.q.qname)
        qtype = QTYPE[request.q.qtype]
        sub = self._relative(qname)
        if sub is None:
            reply.header.rcode = RCODE.REFUSED
            return reply
        with self.store.read() as data:
            due = "pending" in data["zones"][self.zone]
        if due:
            with self.store.change() as data:
                publish_due(data["zones"][self.zone])
        with self.store.read() as data:
            zone = data["zones"][self.zone]
            published = list(zone["published"])
            serial = zone["serial"]
        name, seen = qname, set()
        while True:  # follow in-zone CNAMEs, like an authoritative server does
            here = [r for r in published if r["subDomain"].lower() == sub]
            cname = next((r for r in here if r["fieldType"] == "CNAME"), None)
            if cname and qtype not in ("CNAME", "ANY") and sub not in seen:
                seen.add(sub)
                reply.add_answer(self._rr(name, cname))
                name = self._absolute(cname["target"])
                sub = self._relative(name)
                if sub is None:
                    return reply
                continue
            break
        if sub == "" and qtype in ("SOA", "ANY"):
            reply.add_answer(self._soa(serial))
        for record in here:
            if qtype == "ANY" or record["fieldType"] == qtype:
                rr = self._rr(name, record)
                if rr is not None:
                    reply.add_answer(rr)
        if not reply.rr:
            exists = sub == "" or any(
                r["subDomain"].lower() == sub or r["subDomain"].lower().endswith("." + sub) for r in published
            )
            if not exists:
                reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(self._soa(serial))
        return reply


class DnsServers:
    """The same resolver on UDP and TCP, one port number."""

    def __init__(self, store: Store, zone: str, host: str = "127.0.0.1", port: int = 0) -> None:
        resolver = ZoneResolver(store, zone)
        quiet = DNSLogger("-request,-reply,-truncated,+error", logf=log.info)
        for _ in range(20):
            udp = DNSServer(resolver, address=host, port=port, logger=quiet)
            chosen = udp.server.server_address[1]
            try:
                tcp = DNSServer(resolver, address=host, port=chosen, tcp=True, logger=quiet)
            except OSError:
                udp.server.server_close()
                if port:  # a fixed port that is taken: nothing to retry
                    raise
                continue
            break
        else:
            raise OSError("no port free on both UDP and TCP")
        self.udp, self.tcp, self.port = udp, tcp, chosen

    def start(self) -> None:
        for server in (self.udp, self.tcp):
            # A short poll interval: stop() waits for it (dnslib's start_thread would use 0.5 s).
            threading.Thread(target=server.server.serve_forever, kwargs={"poll_interval": POLL_S}, daemon=True).start()

    def stop(self) -> None:
        for server in (self.udp, self.tcp):
            server.server.shutdown()
            server.server.server_close()


def port_is_free_for_udp(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True
