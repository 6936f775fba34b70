"""The emulator's mutable world (DNS records, tasks, firewalls, credentials, faults), persisted as one JSON file.

Every change is written through immediately (atomic replace), so a daemon
restart finds the same records, task ids and firewall rules. One lock guards
everything: the HTTP threads, the DNS threads and the task workers share it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def _empty(zone: str) -> dict[str, Any]:
    return {
        "credentials": {},  # consumer key -> {"status", "rules", "credentialId"}
        "zones": {zone: {"records": {}, "published": [], "serial": 1}},
        "next_record_id": 1,
        "next_task_id": 1,
        "tasks": {},  # str(id) -> task dict (with "serviceName")
        "vps": {},  # service name -> {"state", "image"} overrides of the inventory
        "firewalls": {},  # ip block -> {ipOnFirewall -> {"enabled", "state", "rules": {seq -> rule}}}
        "faults": [],  # [{"method", "path", "status", "count", "delay_s"}]
        "dns_delay_s": 0,  # test control: a refresh reaches the DNS server only this long after it
    }


def publish(zone: dict[str, Any], delay_s: float = 0, now: float | None = None) -> None:
    """What ``POST /domain/zone/{zone}/refresh`` does: the records go to the DNS server, at once or ``delay_s`` later.

    A delayed publication is kept as ``zone["pending"]`` (a later refresh replaces it, its delay counted anew)
    until :func:`publish_due` sees it due; until then the DNS server answers from the previous publication.
    """
    records = [dict(r) for r in zone["records"].values()]
    if delay_s > 0:
        zone["pending"] = {"records": records, "due": (now or time.time()) + delay_s}
        return
    zone.pop("pending", None)
    zone["published"] = records
    zone["serial"] += 1


def publish_due(zone: dict[str, Any], now: float | None = None, force: bool = False) -> bool:
    """Publish the zone's pending records if their time has come (or ``force``); True if it did."""
    pending = zone.get("pending")
    if not pending or (not force and pending["due"] > (now or time.time())):
        return False
    del zone["pending"]
    zone["published"] = pending["records"]
    zone["serial"] += 1
    return True


class Store:
    def __init__(self, file: Path, zone: str) -> None:
        self.file = file
        self.lock = threading.RLock()
        if file.exists():
            self.data = json.loads(file.read_text())
        else:
            self.data = _empty(zone)
        self.data["zones"].setdefault(zone, _empty(zone)["zones"][zone])

    @contextmanager
    def change(self) -> Iterator[dict[str, Any]]:
        """Mutate the data under the lock; it is saved when the block ends."""
        with self.lock:
            yield self.data
            self._save()

    @contextmanager
    def read(self) -> Iterator[dict[str, Any]]:
        with self.lock:
            yield self.data

    def _save(self) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True))
        os.replace(tmp, self.file)
