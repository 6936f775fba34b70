"""The OVH v1 routes the pipeline uses: a route table and one handler per route.

Field names, enums and shapes follow OVH's own schemas (vps.json, domain.json,
ip.json, auth.json). Handlers get the emulator and the request, return the JSON
answer (None is OVH's ``null`` for void calls) or raise an ApiError.
"""

from __future__ import annotations

import ipaddress
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

from technicia_deploy.sandbox.ovh_emulator import errors

if TYPE_CHECKING:
    from technicia_deploy.sandbox.ovh_emulator.server import Emulator

RECORD_TYPES = {
    "A",
    "AAAA",
    "CAA",
    "CNAME",
    "DKIM",
    "DMARC",
    "DNAME",
    "LOC",
    "MX",
    "NAPTR",
    "NS",
    "PTR",
    "SPF",
    "SRV",
    "SSHFP",
    "TLSA",
    "TXT",
}
FIREWALL_ACTIONS = {"deny", "permit"}
FIREWALL_PROTOCOLS = {"ah", "esp", "gre", "icmp", "ipv4", "tcp", "udp"}
TCP_OPTIONS = {"established", "syn"}
# Images every emulated VPS can be rebuilt with (the VPS's own OS is added in front).
IMAGE_CATALOGUE = ["Debian 12", "Debian 11", "Ubuntu 24.04", "Ubuntu 22.04", "AlmaLinux 9"]


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    body: dict[str, Any] = field(default_factory=dict)


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --- auth -------------------------------------------------------------------------------------


def auth_time(emu: "Emulator", req: Request) -> int:
    return int(time.time())


def current_credential(emu: "Emulator", req: Request) -> dict[str, Any]:
    consumer_key = req.params["_consumer_key"]
    with emu.store.read() as data:
        credential = data["credentials"][consumer_key]
        return {
            "allowedIPs": None,
            "applicationId": emu.application_id,
            "creation": credential["creation"],
            "credentialId": credential["credentialId"],
            "expiration": None,
            "lastUse": _now_iso(),
            "ovhSupport": False,
            "rules": credential["rules"],
            "status": credential["status"],
        }


# --- vps --------------------------------------------------------------------------------------


def _vps(emu: "Emulator", service_name: str) -> tuple[str, dict[str, Any]]:
    """(environment, inventory entry) of a service name, or OVH's 404."""
    for env, entry in emu.inventory().items():
        if isinstance(entry, dict) and entry.get("service_name") == service_name:
            return env, entry
    raise errors.object_not_found(serviceName=service_name)


def _images(entry: dict[str, Any]) -> list[dict[str, str]]:
    names = [entry["spec"]["os"], *IMAGE_CATALOGUE]
    unique = list(dict.fromkeys(names))
    return [{"id": str(uuid.uuid5(uuid.NAMESPACE_URL, "ovh-image:" + n)), "name": n} for n in unique]


def vps_get(emu: "Emulator", req: Request) -> dict[str, Any]:
    sn = req.params["serviceName"]
    _, entry = _vps(emu, sn)
    spec = entry["spec"]
    with emu.store.read() as data:
        state = data["vps"].get(sn, {}).get("state", "running")
    memory_mb = int(spec["ram_gb"]) * 1024
    return {
        "cluster": "",
        "displayName": sn,
        "iam": {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, sn)), "urn": f"urn:v1:eu:resource:vps:{sn}"},
        "keymap": None,
        "memoryLimit": memory_mb,
        "model": {
            "availableOptions": [],
            "datacenter": [],
            "disk": int(spec["disk_gb"]),
            "maximumAdditionnalIp": 16,
            "memory": memory_mb,
            "name": str(spec["model"]).lower(),
            "offer": str(spec["model"]).replace("-", " "),
            "vcore": int(spec["vcores"]),
            "version": "2019v1",
        },
        "monitoringIpBlocks": [],
        "name": sn,
        "netbootMode": "local",
        "offerType": "ssd",
        "slaMonitoring": False,
        "state": state,
        "vcore": int(spec["vcores"]),
        "zone": f"Region OpenStack: os-{str(spec['zone']).lower()}",
    }


def vps_ips(emu: "Emulator", req: Request) -> list[str]:
    """OVH's ``ip[]``: the VPS's IPv4 and, when it has one (a dual-stack sandbox network), its IPv6 address."""
    _, entry = _vps(emu, req.params["serviceName"])
    return [entry["ip"], *([entry["ipv6"]] if entry.get("ipv6") else [])]


def vps_images(emu: "Emulator", req: Request) -> list[str]:
    _, entry = _vps(emu, req.params["serviceName"])
    return [image["id"] for image in _images(entry)]


def vps_image(emu: "Emulator", req: Request) -> dict[str, str]:
    sn, image_id = req.params["serviceName"], req.params["id"]
    _, entry = _vps(emu, sn)
    for image in _images(entry):
        if image["id"] == image_id:
            return image
    raise errors.object_not_found(serviceName=sn, id=image_id)


def vps_current_image(emu: "Emulator", req: Request) -> dict[str, str]:
    sn = req.params["serviceName"]
    _, entry = _vps(emu, sn)
    with emu.store.read() as data:
        name = data["vps"].get(sn, {}).get("image", entry["spec"]["os"])
    return next(image for image in _images(entry) if image["name"] == name)


def _public_task(task: dict[str, Any]) -> dict[str, Any]:
    return {k: task[k] for k in ("date", "id", "progress", "state", "type")}


def vps_rebuild(emu: "Emulator", req: Request) -> dict[str, Any]:
    sn = req.params["serviceName"]
    env, entry = _vps(emu, sn)
    image_id = req.body.get("imageId")
    if not image_id:
        raise errors.bad_request("[imageId] Property is mandatory")
    image = next((i for i in _images(entry) if i["id"] == image_id), None)
    if image is None:
        raise errors.bad_request(f"[imageId] Image {image_id} is not available for this VPS")
    public_key = req.body.get("publicSshKey") or ""
    if not public_key:  # the sandbox mails no password: without a key the VPS would be unreachable
        raise errors.bad_request("[publicSshKey] The sandbox can only rebuild with a public SSH key")
    with emu.store.change() as data:
        busy = [t for t in data["tasks"].values() if t["serviceName"] == sn and t["state"] in ("todo", "doing")]
        if busy:
            raise errors.conflict(f"A task is already in progress on this VPS (task {busy[0]['id']})")
        task_id = data["next_task_id"]
        data["next_task_id"] += 1
        task = {
            "id": task_id,
            "date": _now_iso(),
            "progress": 0,
            "state": "todo",
            "type": "reinstallVm",
            "serviceName": sn,
        }
        data["tasks"][str(task_id)] = task
        answer = _public_task(task)
    threading.Thread(
        target=_run_rebuild, args=(emu, sn, env, task_id, image["name"], public_key), name=f"rebuild-{sn}", daemon=True
    ).start()
    return answer


def _run_rebuild(emu: "Emulator", sn: str, env: str, task_id: int, image_name: str, public_key: str) -> None:
    def update(task_state: str, progress: int, vps_state: str, **vps_extra: str) -> None:
        with emu.store.change() as data:
            data["tasks"][str(task_id)].update(state=task_state, progress=progress)
            data["vps"].setdefault(sn, {}).update(state=vps_state, **vps_extra)

    update("doing", 10, "installing")
    try:
        emu.rebuild(env, public_key)
    except Exception:
        emu.log.exception("rebuild of %s (%s) failed", sn, env)
        update("error", 10, "stopped")
    else:
        update("done", 100, "running", image=image_name)


def vps_task(emu: "Emulator", req: Request) -> dict[str, Any]:
    sn, task_id = req.params["serviceName"], req.params["id"]
    _vps(emu, sn)
    with emu.store.read() as data:
        task = data["tasks"].get(task_id)
        if task is None or task["serviceName"] != sn:
            raise errors.object_not_found(serviceName=sn, id=task_id)
        return _public_task(task)


# --- domain zone ------------------------------------------------------------------------------


def _zone(emu: "Emulator", req: Request) -> str:
    zone = req.params["zoneName"]
    if zone != emu.zone:
        raise errors.not_found("This service does not exist")
    return zone


def _check_target(kind: str, target: str) -> None:
    try:
        if kind == "A":
            ipaddress.IPv4Address(target)
        elif kind == "AAAA":
            ipaddress.IPv6Address(target)
    except ValueError:
        raise errors.bad_request(f"Invalid target '{target}' for a {kind} record") from None


def record_list(emu: "Emulator", req: Request) -> list[int]:
    zone = _zone(emu, req)
    kind, sub = req.query.get("fieldType"), req.query.get("subDomain")
    with emu.store.read() as data:
        records = data["zones"][zone]["records"].values()
        return sorted(
            r["id"]
            for r in records
            if (kind is None or r["fieldType"] == kind) and (sub is None or r["subDomain"].lower() == sub.lower())
        )


def record_create(emu: "Emulator", req: Request) -> dict[str, Any]:
    zone = _zone(emu, req)
    kind, target = req.body.get("fieldType"), req.body.get("target")
    if kind not in RECORD_TYPES:
        raise errors.bad_request(f"[fieldType] Invalid value '{kind}'")
    if not isinstance(target, str) or not target:
        raise errors.bad_request("[target] Property is mandatory")
    _check_target(kind, target)
    with emu.store.change() as data:
        record_id = data["next_record_id"]
        data["next_record_id"] += 1
        record = {
            "fieldType": kind,
            "id": record_id,
            "subDomain": req.body.get("subDomain") or "",
            "target": target,
            "ttl": int(req.body.get("ttl") or 0),
            "zone": zone,
        }
        data["zones"][zone]["records"][str(record_id)] = record
        return dict(record)


def _record(data: dict[str, Any], zone: str, record_id: str) -> dict[str, Any]:
    record = data["zones"][zone]["records"].get(record_id)
    if record is None:
        raise errors.object_not_found(zoneName=zone, id=record_id)
    return record


def record_get(emu: "Emulator", req: Request) -> dict[str, Any]:
    zone = _zone(emu, req)
    with emu.store.read() as data:
        return dict(_record(data, zone, req.params["id"]))


def record_update(emu: "Emulator", req: Request) -> None:
    zone = _zone(emu, req)
    with emu.store.change() as data:
        record = _record(data, zone, req.params["id"])
        if "target" in req.body:
            _check_target(record["fieldType"], req.body["target"])
            record["target"] = req.body["target"]
        if "subDomain" in req.body:
            record["subDomain"] = req.body["subDomain"] or ""
        if "ttl" in req.body:
            record["ttl"] = int(req.body["ttl"] or 0)
    return None


def record_delete(emu: "Emulator", req: Request) -> None:
    zone = _zone(emu, req)
    with emu.store.change() as data:
        _record(data, zone, req.params["id"])
        del data["zones"][zone]["records"][req.params["id"]]
    return None


def zone_refresh(emu: "Emulator", req: Request) -> None:
    from technicia_deploy.sandbox.ovh_emulator.store import publish

    zone = _zone(emu, req)
    with emu.store.change() as data:
        # Immediate unless a test asked for slow propagation (the dns-delay admin control).
        publish(data["zones"][zone], float(data.get("dns_delay_s") or 0))
    return None


# --- ip network firewall ----------------------------------------------------------------------


def _ip_block(emu: "Emulator", req: Request) -> str:
    """The {ip} path parameter: a block the account owns (a VPS's IPv4 as /32)."""
    raw = req.params["ip"]
    try:
        block = str(ipaddress.ip_network(raw, strict=False))
    except ValueError:
        raise errors.bad_request(f"[ip] Invalid IP block '{raw}'") from None
    owned = {f"{e['ip']}/32" for e in emu.inventory().values() if isinstance(e, dict) and e.get("ip")}
    if block not in owned:
        raise errors.object_not_found(ip=raw)
    return block


def _settle(emu: "Emulator", firewall: dict[str, Any]) -> None:
    """OVH applies firewall changes asynchronously: pending states end after ``settle_s``."""
    now = time.time()
    if firewall.get("pending_until", 0) <= now and firewall["state"] != "ok":
        firewall["state"] = "ok"
    for seq, rule in list(firewall["rules"].items()):
        if rule["state"] != "ok" and rule["pending_until"] <= now:
            if rule["state"] == "removalPending":
                del firewall["rules"][seq]
            else:
                rule["state"] = "ok"


def _firewall(emu: "Emulator", data: dict[str, Any], block: str, ip_on_firewall: str) -> dict[str, Any]:
    firewall = data["firewalls"].get(block, {}).get(ip_on_firewall)
    if firewall is None:
        raise errors.object_not_found(ip=block, ipOnFirewall=ip_on_firewall)
    _settle(emu, firewall)
    return firewall


def firewall_list(emu: "Emulator", req: Request) -> list[str]:
    block = _ip_block(emu, req)
    enabled, state = req.query.get("enabled"), req.query.get("state")
    with emu.store.change() as data:
        firewalls = data["firewalls"].get(block, {})
        for firewall in firewalls.values():
            _settle(emu, firewall)
        return sorted(
            ip
            for ip, f in firewalls.items()
            if (enabled is None or f["enabled"] == (enabled == "true")) and state in (None, f["state"])
        )


def firewall_create(emu: "Emulator", req: Request) -> dict[str, Any]:
    block = _ip_block(emu, req)
    ip_on_firewall = req.body.get("ipOnFirewall")
    try:
        inside = ipaddress.IPv4Address(ip_on_firewall) in ipaddress.ip_network(block)
    except (ValueError, TypeError):
        inside = False
    if not inside:
        raise errors.bad_request(f"[ipOnFirewall] {ip_on_firewall} is not an IPv4 of {block}")
    with emu.store.change() as data:
        firewalls = data["firewalls"].setdefault(block, {})
        if ip_on_firewall in firewalls:
            raise errors.conflict(f"The IP {ip_on_firewall} is already on the firewall")
        firewalls[ip_on_firewall] = {"enabled": False, "state": "ok", "rules": {}}
    return {"enabled": False, "ipOnFirewall": ip_on_firewall, "state": "ok"}


def firewall_get(emu: "Emulator", req: Request) -> dict[str, Any]:
    block = _ip_block(emu, req)
    with emu.store.change() as data:
        firewall = _firewall(emu, data, block, req.params["ipOnFirewall"])
        return {"enabled": firewall["enabled"], "ipOnFirewall": req.params["ipOnFirewall"], "state": firewall["state"]}


def firewall_update(emu: "Emulator", req: Request) -> None:
    block = _ip_block(emu, req)
    enabled = req.body.get("enabled")  # optional in OVH's model: without it the call changes nothing
    with emu.store.change() as data:
        firewall = _firewall(emu, data, block, req.params["ipOnFirewall"])
        if enabled is not None and firewall["enabled"] != enabled:
            firewall["enabled"] = enabled
            firewall["state"] = "enableFirewallPending" if enabled else "disableFirewallPending"
            firewall["pending_until"] = time.time() + emu.settle_s
    return None


def _rule_view(block: str, rule: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rule.items() if k != "pending_until"}


def rule_list(emu: "Emulator", req: Request) -> list[int]:
    block = _ip_block(emu, req)
    wanted_state = req.query.get("state")
    with emu.store.change() as data:
        firewall = _firewall(emu, data, block, req.params["ipOnFirewall"])
        return sorted(int(s) for s, r in firewall["rules"].items() if wanted_state in (None, r["state"]))


def _port(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise errors.bad_request(f"[{name}] Invalid port '{value}'")
    return value


def rule_create(emu: "Emulator", req: Request) -> dict[str, Any]:
    block = _ip_block(emu, req)
    ip_on_firewall = req.params["ipOnFirewall"]
    body = req.body
    action, protocol, sequence = body.get("action"), body.get("protocol"), body.get("sequence")
    if action not in FIREWALL_ACTIONS:
        raise errors.bad_request(f"[action] Invalid value '{action}'")
    if protocol not in FIREWALL_PROTOCOLS:
        raise errors.bad_request(f"[protocol] Invalid value '{protocol}'")
    if isinstance(sequence, bool) or not isinstance(sequence, int) or not 0 <= sequence <= 19:
        raise errors.bad_request(f"[sequence] Invalid value '{sequence}' (0 to 19)")
    destination_port = _port(body.get("destinationPort"), "destinationPort")
    source_port = _port(body.get("sourcePort"), "sourcePort")
    if (destination_port or source_port) and protocol not in ("tcp", "udp"):
        raise errors.bad_request("Ports can only be set for tcp or udp rules")
    tcp_option = body.get("tcpOption") or {}
    option = tcp_option.get("option")
    if option is not None and (protocol != "tcp" or option not in TCP_OPTIONS):
        raise errors.bad_request(f"[tcpOption] Invalid option '{option}'")
    source = body.get("source") or "any"
    with emu.store.change() as data:
        firewall = _firewall(emu, data, block, ip_on_firewall)
        if str(sequence) in firewall["rules"]:
            raise errors.conflict(f"A rule already exists at sequence {sequence}")
        destination = f"{ip_on_firewall}/32"
        text = " ".join(
            part
            for part in (
                action,
                protocol,
                source,
                f"eq {source_port}" if source_port else "",
                destination,
                f"eq {destination_port}" if destination_port else "",
                option or "",
            )
            if part
        )
        rule = {
            "action": action,
            "creationDate": _now_iso(),
            "destination": destination,
            "destinationPort": f"eq {destination_port}" if destination_port else None,
            "fragments": tcp_option.get("fragments"),
            "protocol": protocol,
            "rule": text,
            "sequence": sequence,
            "source": source,
            "sourcePort": f"eq {source_port}" if source_port else None,
            "state": "creationPending",
            "tcpOption": option,
            "pending_until": time.time() + emu.settle_s,
        }
        firewall["rules"][str(sequence)] = rule
        return _rule_view(block, rule)


def _rule(emu: "Emulator", data: dict[str, Any], req: Request) -> tuple[dict[str, Any], dict[str, Any]]:
    block = _ip_block(emu, req)
    firewall = _firewall(emu, data, block, req.params["ipOnFirewall"])
    rule = firewall["rules"].get(req.params["sequence"])
    if rule is None:
        raise errors.object_not_found(
            ip=block, ipOnFirewall=req.params["ipOnFirewall"], sequence=req.params["sequence"]
        )
    return firewall, rule


def rule_get(emu: "Emulator", req: Request) -> dict[str, Any]:
    with emu.store.change() as data:
        _, rule = _rule(emu, data, req)
        return _rule_view(req.params["ip"], rule)


def rule_delete(emu: "Emulator", req: Request) -> dict[str, Any]:
    with emu.store.change() as data:
        _, rule = _rule(emu, data, req)
        if rule["state"] != "ok":
            raise errors.bad_request(f"The rule is in state {rule['state']}, retry later")
        rule.update(state="removalPending", pending_until=time.time() + emu.settle_s)
        return _rule_view(req.params["ip"], rule)


# --- the table --------------------------------------------------------------------------------

Handler = Callable[["Emulator", Request], Any]

_TABLE: list[tuple[str, str, Handler, bool]] = [
    # method, path template, handler, signed
    ("GET", "/auth/time", auth_time, False),
    ("GET", "/auth/currentCredential", current_credential, True),
    ("GET", "/vps/{serviceName}", vps_get, True),
    ("GET", "/vps/{serviceName}/ips", vps_ips, True),
    ("GET", "/vps/{serviceName}/images/available", vps_images, True),
    ("GET", "/vps/{serviceName}/images/available/{id}", vps_image, True),
    ("GET", "/vps/{serviceName}/images/current", vps_current_image, True),
    ("POST", "/vps/{serviceName}/rebuild", vps_rebuild, True),
    ("GET", "/vps/{serviceName}/tasks/{id}", vps_task, True),
    ("GET", "/domain/zone/{zoneName}/record", record_list, True),
    ("POST", "/domain/zone/{zoneName}/record", record_create, True),
    ("GET", "/domain/zone/{zoneName}/record/{id}", record_get, True),
    ("PUT", "/domain/zone/{zoneName}/record/{id}", record_update, True),
    ("DELETE", "/domain/zone/{zoneName}/record/{id}", record_delete, True),
    ("POST", "/domain/zone/{zoneName}/refresh", zone_refresh, True),
    ("GET", "/ip/{ip}/firewall", firewall_list, True),
    ("POST", "/ip/{ip}/firewall", firewall_create, True),
    ("GET", "/ip/{ip}/firewall/{ipOnFirewall}", firewall_get, True),
    ("PUT", "/ip/{ip}/firewall/{ipOnFirewall}", firewall_update, True),
    ("GET", "/ip/{ip}/firewall/{ipOnFirewall}/rule", rule_list, True),
    ("POST", "/ip/{ip}/firewall/{ipOnFirewall}/rule", rule_create, True),
    ("GET", "/ip/{ip}/firewall/{ipOnFirewall}/rule/{sequence}", rule_get, True),
    ("DELETE", "/ip/{ip}/firewall/{ipOnFirewall}/rule/{sequence}", rule_delete, True),
]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    signed: bool
    template: str = ""  # OVH's path, the key of its parameter declarations (validation.py)


# Path parameters match one raw (still percent-encoded) segment: "{ip}" is "1.2.3.4%2F32".
ROUTES = [
    Route(
        method,
        re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$"),
        handler,
        signed,
        template,
    )
    for method, template, handler, signed in _TABLE
]
