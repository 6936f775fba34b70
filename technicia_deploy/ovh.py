"""The deploy flow's OVH client: a thin layer over python-ovh.

What it adds to python-ovh: a timeout (python-ovh waits 180 s by default), one
error type whose ``kind`` says what went wrong (bad credential, permission, not
found, conflict, transient, other) and whose message names the call but never a
key, bounded retries with backoff for transient faults only, and the idempotent
helpers the flow needs (VPS facts, rebuild + wait, DNS record, network firewall).

Retries are not silent: each one is recorded (:class:`Retry`: the call, the
status, the attempt) on the client (``OvhApi.retried``) and in every
:func:`retries_recorded` block around it, so a step can say which of its calls
it had to retry (:func:`retry_note`); an error after the last retry says how many
attempts it made.

python-ovh only accepts endpoint *names*; a custom API URL (the sandbox
emulator) is registered in ``ovh.client.ENDPOINTS`` under a local name.
"""

from __future__ import annotations

import contextlib
import contextvars
import fnmatch
import hashlib
import ipaddress
import re
import time
from collections import Counter
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Iterable, Literal, Mapping
from urllib.parse import quote

import ovh
import ovh.client
import ovh.exceptions as ovh_errors
import requests

Outcome = Literal["changed", "unchanged"]

DEFAULT_TIMEOUT_S = 20.0
CONNECT_TIMEOUT_S = 5.0
MAX_BACKOFF_S = 30.0


class OvhErrorKind(str, Enum):
    INVALID_CREDENTIAL = "invalid credential"
    PERMISSION = "permission denied"
    NOT_FOUND = "not found"
    CONFLICT = "conflict"
    TRANSIENT = "transient failure"
    OTHER = "error"


class OvhError(Exception):
    """An OVH API call failed. ``call`` is "METHOD /path"; the message never holds a key.

    ``attempts``: how many times the call was made (more than 1: it was retried, and the message says so).
    """

    def __init__(self, call: str, kind: OvhErrorKind, detail: str, status: int | None = None,
                 attempts: int = 1) -> None:
        self.call, self.kind, self.detail, self.status, self.attempts = call, kind, detail, status, attempts
        http = f"HTTP {status}: " if status else ""
        tries = f"; gave up after {attempts} attempts" if attempts > 1 else ""
        super().__init__(f"OVH API {call}: {kind.value} ({http}{detail}{tries})")

    def __reduce__(self):  # Prefect pickles a failed task's exception: keep every field
        return (type(self), (self.call, self.kind, self.detail, self.status, self.attempts))


@dataclass(frozen=True)
class Retry:
    """One retried call: ``attempt`` (1-based) failed with a transient error and the call was made again."""

    call: str  # "METHOD /path", no key in it
    status: int | None  # the HTTP status, None for a network error or a timeout
    attempt: int
    wait_s: float

    def as_dict(self) -> dict[str, Any]:
        return {"call": self.call, "status": self.status, "attempt": self.attempt, "wait_s": self.wait_s}


_recorders: contextvars.ContextVar[tuple[list[Retry], ...]] = contextvars.ContextVar("ovh_retry_recorders", default=())


@contextlib.contextmanager
def retries_recorded():
    """Collect every retry any :class:`OvhApi` makes in this block (this thread/context): ``with ... as retried``."""
    retried: list[Retry] = []
    token = _recorders.set(_recorders.get() + (retried,))
    try:
        yield retried
    finally:
        _recorders.reset(token)


def retry_note(retried: Iterable[Retry]) -> str:
    """ "OVH API retried 2 transient error(s): GET /vps/x HTTP 500 ×2", or "" when nothing was retried."""
    counts = Counter((r.call, r.status) for r in retried)
    if not counts:
        return ""
    parts = [f"{call} {f'HTTP {status}' if status else 'network error'} ×{n}" for (call, status), n in counts.items()]
    return f"OVH API retried {sum(counts.values())} transient error(s): {', '.join(parts)}"


def _path_part(value: object) -> str:
    """One path parameter, percent-encoded (an IP block "1.2.3.4/32" becomes "1.2.3.4%2F32")."""
    return quote(str(value), safe="")


def endpoint_name(endpoint: str, api_url: str | None) -> str:
    """The python-ovh endpoint name to use; registers ``api_url`` under a local name if given."""
    if not api_url:
        if endpoint not in ovh.client.ENDPOINTS:
            known = ", ".join(sorted(ovh.client.ENDPOINTS))
            raise ValueError(f"unknown OVH endpoint {endpoint!r} (known: {known}); set api_url for a custom one")
        return endpoint
    name = "technicia-" + hashlib.sha1(api_url.encode()).hexdigest()[:10]
    ovh.client.ENDPOINTS[name] = api_url.rstrip("/")
    return name


# --- what the flow reads and writes -----------------------------------------------------------


@dataclass(frozen=True)
class VpsDetails:
    service_name: str
    model: str
    vcores: int
    ram_gb: int
    disk_gb: int
    zone: str  # as OVH says it, e.g. "Region OpenStack: os-gra11"
    datacentre: str  # the datacentre part, upper case, e.g. "GRA11"
    state: str  # running, installing, stopped, ...
    os: str | None  # name of the installed image, when OVH tells it

    def differences(self, spec: Any) -> list[str]:
        """What differs from the expected server (an object with model, vcores, ram_gb, disk_gb, zone)."""

        def norm(text: str) -> str:
            return re.sub(r"[\s_-]+", "-", text.strip().lower())

        found = []
        if norm(self.model) != norm(spec.model):
            found.append(f"model is {self.model}, expected {spec.model}")
        for name in ("vcores", "ram_gb", "disk_gb"):
            if getattr(self, name) != getattr(spec, name):
                found.append(f"{name} is {getattr(self, name)}, expected {getattr(spec, name)}")
        if self.datacentre.upper() != str(spec.zone).upper():
            found.append(f"zone is {self.datacentre}, expected {spec.zone}")
        return found


def _datacentre(zone: str) -> str:
    """ "Region OpenStack: os-gra11" -> "GRA11"; anything else is returned upper-cased."""
    match = re.search(r"os-([a-z]+\d*)\s*$", zone, re.IGNORECASE)
    return (match.group(1) if match else zone).upper()


@dataclass(frozen=True)
class FirewallRule:
    """One rule of OVH's network firewall (sequence 0 is evaluated first, 19 last)."""

    sequence: int
    action: Literal["permit", "deny"]
    protocol: str  # tcp, udp, icmp, ipv4, ...
    port: int | None = None  # destination port (tcp/udp)
    source: str | None = None  # an IPv4 block; None = any
    tcp_option: str | None = None  # "established" or "syn"

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"sequence": self.sequence, "action": self.action, "protocol": self.protocol}
        if self.port is not None:
            body["destinationPort"] = self.port
        if self.source:
            body["source"] = self.source
        if self.tcp_option:
            body["tcpOption"] = {"option": self.tcp_option}
        return body

    @classmethod
    def from_api(cls, rule: dict[str, Any]) -> "FirewallRule":
        port = re.search(r"\d+", rule.get("destinationPort") or "")
        source = rule.get("source")
        return cls(
            sequence=int(rule["sequence"]),
            action=rule["action"],
            protocol=rule["protocol"],
            port=int(port.group()) if port else None,
            source=None if source in (None, "any") else source,
            tcp_option=rule.get("tcpOption") or None,
        )


def network_firewall_rules(public: Iterable[tuple[int, str]]) -> list[FirewallRule]:
    """OVH network firewall rules for a VPS whose only public ports are ``public`` ((port, protocol) pairs).

    Replies to the VPS's own outgoing TCP connections and ICMP are let in, the
    public ports are open, everything else is dropped by the last rule.
    """
    ports = sorted(set(public))
    if len(ports) > 17:
        raise ValueError(f"OVH's network firewall has 20 rules; {len(ports)} public ports do not fit")
    rules = [
        FirewallRule(0, "permit", "tcp", tcp_option="established"),
        FirewallRule(1, "permit", "icmp"),
    ]
    rules += [FirewallRule(2 + i, "permit", proto, port=port) for i, (port, proto) in enumerate(ports)]
    rules.append(FirewallRule(19, "deny", "ipv4"))
    return rules


# --- the routes the pipeline calls ------------------------------------------------------------
#
# Every helper reaches OVH through one of these routes, and ``OvhApi.call`` refuses a path that matches none
# of them: this table is the complete list of what the pipeline may call, so the consumer key's minimum access
# rules (``access_rules``, `technicia-deploy ovh access-rules`) and the doctor's coverage check derive from it.
# ``GET /auth/time`` is not here: python-ovh calls it itself, unsigned, and it needs no access rule.


@dataclass(frozen=True)
class Route:
    """One OVH API route: an HTTP method and OVH's own path template, e.g. ``/vps/{serviceName}/ips``."""

    method: Literal["GET", "POST", "PUT", "DELETE"]
    template: str

    @property
    def parameters(self) -> tuple[str, ...]:
        return tuple(re.findall(r"\{(\w+)\}", self.template))

    def path(self, **values: object) -> str:
        """The path with each parameter percent-encoded (OVH's ``{ip}`` "1.2.3.4/32" becomes "1.2.3.4%2F32")."""
        if set(values) != set(self.parameters):
            raise ValueError(f"{self}: path parameters are {', '.join(self.parameters) or 'none'}, got {', '.join(values) or 'none'}")
        return re.sub(r"\{(\w+)\}", lambda m: _path_part(values[m.group(1)]), self.template)

    def rule(self, values: Mapping[str, str] | None = None) -> dict[str, str]:
        """The access rule that grants this route: ``*`` for each path parameter unless ``values`` names it."""
        values = values or {}
        path = re.sub(r"\{(\w+)\}", lambda m: str(values.get(m.group(1), "*")), self.template)
        return {"method": self.method, "path": path}

    def matches(self, method: str, path: str) -> bool:
        """Whether a concrete call (percent-encoded path, no query string) is this route."""
        pattern = "^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(self.template)) + "$"
        return method.upper() == self.method and re.match(pattern, path) is not None

    def __str__(self) -> str:
        return f"{self.method} {self.template}"


CURRENT_CREDENTIAL = Route("GET", "/auth/currentCredential")
VPS = Route("GET", "/vps/{serviceName}")
VPS_CURRENT_IMAGE = Route("GET", "/vps/{serviceName}/images/current")
VPS_IPS = Route("GET", "/vps/{serviceName}/ips")
VPS_IMAGES = Route("GET", "/vps/{serviceName}/images/available")
VPS_IMAGE = Route("GET", "/vps/{serviceName}/images/available/{id}")
VPS_REBUILD = Route("POST", "/vps/{serviceName}/rebuild")
VPS_TASK = Route("GET", "/vps/{serviceName}/tasks/{id}")
RECORDS = Route("GET", "/domain/zone/{zoneName}/record")
RECORD_CREATE = Route("POST", "/domain/zone/{zoneName}/record")
RECORD = Route("GET", "/domain/zone/{zoneName}/record/{id}")
RECORD_UPDATE = Route("PUT", "/domain/zone/{zoneName}/record/{id}")
RECORD_DELETE = Route("DELETE", "/domain/zone/{zoneName}/record/{id}")
ZONE_REFRESH = Route("POST", "/domain/zone/{zoneName}/refresh")
FIREWALLS = Route("GET", "/ip/{ip}/firewall")
FIREWALL_CREATE = Route("POST", "/ip/{ip}/firewall")
FIREWALL = Route("GET", "/ip/{ip}/firewall/{ipOnFirewall}")
FIREWALL_UPDATE = Route("PUT", "/ip/{ip}/firewall/{ipOnFirewall}")
FIREWALL_RULES = Route("GET", "/ip/{ip}/firewall/{ipOnFirewall}/rule")
FIREWALL_RULE_CREATE = Route("POST", "/ip/{ip}/firewall/{ipOnFirewall}/rule")
FIREWALL_RULE = Route("GET", "/ip/{ip}/firewall/{ipOnFirewall}/rule/{sequence}")
FIREWALL_RULE_DELETE = Route("DELETE", "/ip/{ip}/firewall/{ipOnFirewall}/rule/{sequence}")

ROUTES: tuple[Route, ...] = (
    CURRENT_CREDENTIAL,
    VPS, VPS_CURRENT_IMAGE, VPS_IPS, VPS_IMAGES, VPS_IMAGE, VPS_REBUILD, VPS_TASK,
    RECORDS, RECORD_CREATE, RECORD, RECORD_UPDATE, RECORD_DELETE, ZONE_REFRESH,
    FIREWALLS, FIREWALL_CREATE, FIREWALL, FIREWALL_UPDATE,
    FIREWALL_RULES, FIREWALL_RULE_CREATE, FIREWALL_RULE, FIREWALL_RULE_DELETE,
)


def route_of(method: str, path: str) -> Route | None:
    return next((route for route in ROUTES if route.matches(method, path)), None)


def access_rules(values: Mapping[str, str] | None = None, routes: Iterable[Route] = ROUTES) -> list[dict[str, str]]:
    """The ``accessRules`` of ``POST /auth/credential`` that grant exactly ``routes``.

    ``values`` narrows path parameters to one environment (``{"serviceName": ..., "zoneName": ...}``).
    """
    rules: list[dict[str, str]] = []
    for route in routes:
        if (rule := route.rule(values)) not in rules:
            rules.append(rule)
    return rules


# A path parameter the caller did not give a value for: only a ``*`` in a rule matches it.
_ANY_VALUE = "\x00"


def uncovered_routes(rules: Iterable[Mapping[str, Any]], values: Mapping[str, str] | None = None,
                     routes: Iterable[Route] = ROUTES) -> list[Route]:
    """The routes that no access rule grants, judged as OVH does: same method, and the rule's path (a glob,
    ``*`` matching anything) matches the path. ``values`` fills path parameters with the environment's own
    (service name, zone), so rules scoped to them count; a parameter without a value needs a ``*``."""
    values = values or {}
    granted = [(str(r.get("method", "")).upper(), str(r.get("path", ""))) for r in rules]
    missing = []
    for route in routes:
        path = re.sub(r"\{(\w+)\}", lambda m: str(values.get(m.group(1), _ANY_VALUE)), route.template)
        if not any(method == route.method and fnmatch.fnmatchcase(path, glob) for method, glob in granted):
            missing.append(route)
    return missing


# --- the client -------------------------------------------------------------------------------


class OvhApi:
    def __init__(
        self,
        *,
        application_key: str,
        application_secret: str,
        consumer_key: str,
        endpoint: str = "ovh-eu",
        api_url: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retries: int = 3,
        backoff_s: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._secrets = tuple(s for s in (application_key, application_secret, consumer_key) if s)
        self._client = ovh.Client(
            endpoint=endpoint_name(endpoint, api_url),
            application_key=application_key,
            application_secret=application_secret,
            consumer_key=consumer_key,
            timeout=(min(CONNECT_TIMEOUT_S, timeout_s), timeout_s),
        )
        self.retries = retries
        self.backoff_s = backoff_s
        self._sleep = sleep
        self.retried: list[Retry] = []  # every retry this client made, oldest first

    def __repr__(self) -> str:
        return f"OvhApi({self._client._endpoint})"

    @classmethod
    def from_block(cls, block: Any, **options: Any) -> "OvhApi":
        """From an ``OvhCredentials`` block (SecretStr fields)."""
        return cls(
            endpoint=block.endpoint,
            api_url=block.api_url,
            application_key=block.application_key.get_secret_value(),
            application_secret=block.application_secret.get_secret_value(),
            consumer_key=block.consumer_key.get_secret_value(),
            **options,
        )

    # --- calls, errors, retries

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _classify(self, call: str, exc: ovh_errors.APIError) -> OvhError:
        response = getattr(exc, "response", None)
        status = response.status_code if response is not None else None
        body: dict[str, Any] = {}
        if response is not None:
            try:
                body = response.json() or {}
            except ValueError:
                body = {}
        detail = self._scrub(str(exc.args[0]) if exc.args else type(exc).__name__)
        if isinstance(exc, (ovh_errors.InvalidKey, ovh_errors.InvalidCredential, ovh_errors.NotCredential)):
            kind = OvhErrorKind.INVALID_CREDENTIAL
        elif isinstance(exc, ovh_errors.BadParametersError) and body.get("errorCode") in (
            "INVALID_SIGNATURE",
            "QUERY_TIME_OUT",
        ):
            # A wrong application secret only shows as a bad signature.
            kind = OvhErrorKind.INVALID_CREDENTIAL
        elif isinstance(exc, (ovh_errors.NotGrantedCall, ovh_errors.Forbidden)):
            kind = OvhErrorKind.PERMISSION
        elif isinstance(exc, ovh_errors.ResourceNotFoundError):
            kind = OvhErrorKind.NOT_FOUND
        elif isinstance(exc, ovh_errors.ResourceConflictError):
            kind = OvhErrorKind.CONFLICT
        elif isinstance(exc, (ovh_errors.HTTPError, ovh_errors.NetworkError)):
            kind = OvhErrorKind.TRANSIENT
            cause = exc.args[1] if len(exc.args) > 1 else None
            detail = f"{type(cause).__name__}: connection failed or timed out" if cause is not None else "network error"
        elif isinstance(exc, ovh_errors.InvalidResponse):
            kind = OvhErrorKind.TRANSIENT  # a non-JSON answer comes from a proxy or gateway in trouble
        elif status is not None and (status >= 500 or status == 429):
            kind = OvhErrorKind.TRANSIENT
        else:
            kind = OvhErrorKind.OTHER
        return OvhError(call, kind, detail, status)

    @staticmethod
    def _may_have_run(exc: ovh_errors.APIError) -> bool:
        """A read timeout on a POST may have created something: retrying could do it twice."""
        cause = exc.args[1] if isinstance(exc, ovh_errors.HTTPError) and len(exc.args) > 1 else None
        return isinstance(cause, requests.exceptions.ReadTimeout)

    def request(self, route: Route, path: Mapping[str, object] | None = None, **params: Any) -> Any:
        """:meth:`call` on ``route``, its path parameters filled from ``path``."""
        return self.call(route.method, route.path(**(path or {})), **params)

    def call(self, method: str, path: str, **params: Any) -> Any:
        """One API call (query parameters for GET/DELETE, JSON body for POST/PUT), retried if transient.

        Only the routes of :data:`ROUTES` are called: a call outside them would be missing from the
        consumer key's generated access rules, so it is refused here rather than by OVH in production.
        """
        if route_of(method, path) is None:
            raise ValueError(f"{method} {path} is not in technicia_deploy.ovh.ROUTES: declare its route there")
        call = f"{method} {path}"
        attempt = 0
        while True:
            try:
                return getattr(self._client, method.lower())(path, **params)
            except ovh_errors.APIError as exc:
                error = self._classify(call, exc)
                retry = error.kind is OvhErrorKind.TRANSIENT and attempt < self.retries
                if method == "POST" and self._may_have_run(exc):
                    retry = False
                if not retry:
                    if attempt:
                        error = OvhError(error.call, error.kind, error.detail, error.status, attempts=attempt + 1)
                    raise error from None
            wait = min(self.backoff_s * 2**attempt, MAX_BACKOFF_S)
            self._record(Retry(call, error.status, attempt + 1, wait))
            self._sleep(wait)
            attempt += 1

    def _record(self, retry: Retry) -> None:
        self.retried.append(retry)
        for recorder in _recorders.get():
            recorder.append(retry)

    # --- credentials

    def check_credentials(self) -> dict[str, Any]:
        """The consumer key's credential; raises OvhError(INVALID_CREDENTIAL) unless it is validated."""
        credential = self.request(CURRENT_CREDENTIAL)
        if credential.get("status") != "validated":
            raise OvhError(
                "GET /auth/currentCredential",
                OvhErrorKind.INVALID_CREDENTIAL,
                f"credential is {credential.get('status')}",
            )
        return credential

    # --- VPS

    def vps_details(self, service_name: str) -> VpsDetails:
        sn = {"serviceName": service_name}
        vps = self.request(VPS, sn)
        try:
            os_name = self.request(VPS_CURRENT_IMAGE, sn).get("name")
        except OvhError as error:
            if error.kind is not OvhErrorKind.NOT_FOUND:
                raise
            os_name = None
        model = vps["model"]
        return VpsDetails(
            service_name=service_name,
            model=model["name"],
            vcores=int(vps.get("vcore") or model["vcore"]),
            ram_gb=int(model["memory"]) // 1024,
            disk_gb=int(model["disk"]),
            zone=vps["zone"],
            datacentre=_datacentre(vps["zone"]),
            state=vps["state"],
            os=os_name,
        )

    def vps_ipv4(self, service_name: str) -> str:
        ips = self.request(VPS_IPS, {"serviceName": service_name})
        ipv4 = [ip for ip in ips if ":" not in ip]
        if not ipv4:
            raise OvhError(f"GET /vps/{service_name}/ips", OvhErrorKind.OTHER, "the VPS has no IPv4 address")
        return ipv4[0]

    def vps_ipv6(self, service_name: str) -> str | None:
        """The VPS's IPv6 address (compressed form, as DNS answers it), or None when OVH lists none.

        OVH lists a VPS's addresses of both families in ``GET /vps/{serviceName}/ips`` (plain addresses, the
        IPv6 possibly in full form): the same route as :meth:`vps_ipv4`, so no access rule is added for it.
        """
        for ip in self.request(VPS_IPS, {"serviceName": service_name}):
            try:
                address = ipaddress.ip_interface(str(ip)).ip  # a "/128" or "/64" suffix is tolerated
            except ValueError:
                continue
            if address.version == 6 and not address.is_link_local:
                return str(address)
        return None

    def find_image(self, service_name: str, name: str) -> str:
        """The id of the image named ``name`` (case-insensitive) among those the VPS can be rebuilt with."""
        names = []
        for image_id in self.request(VPS_IMAGES, {"serviceName": service_name}):
            image = self.request(VPS_IMAGE, {"serviceName": service_name, "id": image_id})
            if image["name"].lower() == name.lower():
                return image["id"]
            names.append(image["name"])
        raise OvhError(
            f"GET /vps/{service_name}/images/available",
            OvhErrorKind.NOT_FOUND,
            f"no image {name!r} (available: {', '.join(names)})",
        )

    def rebuild(self, service_name: str, image_id: str, public_key: str) -> int:
        """Start reinstalling the VPS with ``image_id``, authorizing ``public_key``; returns the task id."""
        task = self.request(
            VPS_REBUILD,
            {"serviceName": service_name},
            imageId=image_id,
            publicSshKey=public_key,
            doNotSendPassword=True,
        )
        return int(task["id"])

    def wait_task(
        self, service_name: str, task_id: int, timeout_s: float = 1800, poll_s: float = 5.0
    ) -> dict[str, Any]:
        """Poll a VPS task until it is done; OvhError if it fails or the deadline passes."""
        path = VPS_TASK.path(serviceName=service_name, id=task_id)
        deadline = time.monotonic() + timeout_s
        while True:
            task = self.call(VPS_TASK.method, path)
            if task["state"] == "done":
                return task
            if task["state"] in ("error", "cancelled"):
                raise OvhError(
                    f"GET {path}", OvhErrorKind.OTHER, f"task {task_id} ({task['type']}) ended {task['state']}"
                )
            if time.monotonic() >= deadline:
                raise OvhError(
                    f"GET {path}",
                    OvhErrorKind.TRANSIENT,
                    f"task {task_id} still {task['state']} after {timeout_s:.0f}s",
                )
            time.sleep(poll_s)

    def rebuild_and_wait(
        self, service_name: str, image_id: str, public_key: str, timeout_s: float = 1800, poll_s: float = 5.0
    ) -> dict[str, Any]:
        return self.wait_task(service_name, self.rebuild(service_name, image_id, public_key), timeout_s, poll_s)

    # --- DNS

    @staticmethod
    def caa_target(issuer: str) -> str:
        """A CAA record's target as OVH stores it (and DNS presents it): 'FLAGS TAG "VALUE"', RFC 8659."""
        return f'0 issue "{issuer}"'

    def records(self, zone: str, subdomain: str, field_type: str) -> list[dict[str, Any]]:
        """The zone's ``field_type`` records for ``subdomain`` (read only)."""
        ids = self.request(RECORDS, {"zoneName": zone}, fieldType=field_type, subDomain=subdomain)
        return [self.request(RECORD, {"zoneName": zone, "id": i}) for i in ids]

    def ensure_record(self, zone: str, subdomain: str, field_type: str, target: str, ttl: int) -> Outcome:
        """Exactly one ``field_type`` record for ``subdomain`` pointing at ``target``.

        The zone is refreshed (made visible in DNS) only when something changed.
        """
        records = self.records(zone, subdomain, field_type)
        keep = next((r for r in records if r["target"] == target and r.get("ttl") == ttl), None)
        changed = False
        if keep is None and records:
            keep = records[0]
            self.request(RECORD_UPDATE, {"zoneName": zone, "id": keep["id"]}, target=target, ttl=ttl)
            changed = True
        elif keep is None:
            keep = self.request(
                RECORD_CREATE, {"zoneName": zone}, fieldType=field_type, subDomain=subdomain, target=target, ttl=ttl
            )
            changed = True
        for record in records:
            if record["id"] != keep["id"]:
                self.request(RECORD_DELETE, {"zoneName": zone, "id": record["id"]})
                changed = True
        if changed:
            self.request(ZONE_REFRESH, {"zoneName": zone})
        return "changed" if changed else "unchanged"

    def ensure_no_record(self, zone: str, subdomain: str, field_type: str) -> Outcome:
        """No ``field_type`` record for ``subdomain`` (e.g. an AAAA left pointing at a server that has no IPv6 now:
        visitors over IPv6 would reach someone else). The zone is refreshed only when something was deleted."""
        records = self.records(zone, subdomain, field_type)
        for record in records:
            self.request(RECORD_DELETE, {"zoneName": zone, "id": record["id"]})
        if records:
            self.request(ZONE_REFRESH, {"zoneName": zone})
        return "changed" if records else "unchanged"

    # --- network firewall

    def ensure_firewall(
        self, ip: str, rules: list[FirewallRule], timeout_s: float = 120, poll_s: float = 1.0
    ) -> Outcome:
        """OVH's network firewall of ``ip`` holds exactly ``rules`` and is enabled.

        OVH applies rule changes asynchronously (creationPending / removalPending):
        a rule is replaced by deleting it, waiting until its sequence is free, then creating it.
        """
        block = {"ip": ip + "/32"}
        on = {**block, "ipOnFirewall": ip}
        changed = False
        if ip not in self.request(FIREWALLS, block):
            self.request(FIREWALL_CREATE, block, ipOnFirewall=ip)
            changed = True
        deadline = time.monotonic() + timeout_s
        wanted = {r.sequence: r for r in rules}
        current = {int(s): self.request(FIREWALL_RULE, {**on, "sequence": s}) for s in self.request(FIREWALL_RULES, on)}
        freeing = set()
        for seq, rule in current.items():
            if rule["state"] == "removalPending":
                freeing.add(seq)
            elif wanted.get(seq) != FirewallRule.from_api(rule):
                self._wait_rule_settled(on, seq, deadline, poll_s)
                self.request(FIREWALL_RULE_DELETE, {**on, "sequence": seq})
                freeing.add(seq)
                changed = True
        while freeing & {int(s) for s in self.request(FIREWALL_RULES, on)}:
            self._check_deadline(f"GET {FIREWALL_RULES.path(**on)}", deadline, "rules still being removed")
            time.sleep(poll_s)
        for seq, rule in sorted(wanted.items()):
            if seq in freeing or seq not in current:
                self.request(FIREWALL_RULE_CREATE, on, **rule.body())
                changed = True
        if not self.request(FIREWALL, on)["enabled"]:
            self.request(FIREWALL_UPDATE, on, enabled=True)
            changed = True
        return "changed" if changed else "unchanged"

    def _wait_rule_settled(self, on: dict[str, str], seq: int, deadline: float, poll_s: float) -> None:
        at = {**on, "sequence": seq}
        while self.request(FIREWALL_RULE, at)["state"] != "ok":
            self._check_deadline(f"GET {FIREWALL_RULE.path(**at)}", deadline, "rule still pending")
            time.sleep(poll_s)

    @staticmethod
    def _check_deadline(call: str, deadline: float, what: str) -> None:
        if time.monotonic() >= deadline:
            raise OvhError(call, OvhErrorKind.TRANSIENT, what)
