"""Every request checked against OVH's own declaration of its parameters, before any handler runs.

``schemas/operations.json`` is an extract of OVH's API v1 schemas: for each route the
emulator serves, its path, query and body parameters (type, required) and the models
they name (properties with type, required, canBeNull, readOnly; enums). What OVH refuses
is refused here with a 400 ``Client::BadRequest`` whose message names the parameter, in
OVH's words:

- a parameter nobody declared (body or query): ``Received not described parameters: (foo) while calling ...``
- a missing required one: ``[target] Property is mandatory``
- a value of the wrong type, including IPs and IP blocks:
  ``[ttl] Given data (abc) is not valid for type long``, ``[ip] Given data (1.2.3) is not valid for type ipBlock``
- a value outside an enum: ``[fieldType] Given data (XYZ) does not belong to the RecordTypeEnum enumeration``
- a null where the model forbids it: ``[ttl] Given data (null) is not valid for type long``
- a number outside its range (``RANGES``: ports, DNS TTLs; every ``long`` is a signed 64-bit integer).

Path and query parameters arrive as text (python-ovh sends booleans as ``true``/``false``)
and are parsed as OVH would; body values are JSON and must have the JSON type (a ``long``
sent as ``"60"`` is refused, as OVH does). Read-only model properties (a record's ``id``,
a firewall IP's ``state``) are type-checked and otherwise ignored by the handlers.
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Any, Callable

from technicia_deploy.sandbox.ovh_emulator import errors

_SCHEMA = json.loads((Path(__file__).parent / "schemas" / "operations.json").read_text())
MODELS: dict[str, dict[str, Any]] = _SCHEMA["models"]
OPERATIONS: dict[tuple[str, str], list[dict[str, Any]]] = {
    (op["method"], op["path"]): op["parameters"] for op in _SCHEMA["operations"]
}

LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
# Ranges OVH enforces beyond the declared type, by parameter name (the names are unique among the routes served).
RANGES: dict[str, tuple[int, int]] = {
    "destinationPort": (1, 65535),
    "sourcePort": (1, 65535),
    "ttl": (0, 2**31 - 1),  # RFC 2181; 0 is OVH's "zone default"
}
_INTEGER = re.compile(r"-?[0-9]+")


def _network(value: str, cls: Callable[..., Any]) -> bool:
    try:
        cls(value, strict=True)  # a block with host bits set ("10.0.0.1/24") is no block
    except ValueError:
        return False
    return True


def _address(value: str, cls: Callable[..., Any]) -> bool:
    try:
        cls(value)
    except ValueError:
        return False
    return True


# type -> check(value, as_text): as_text for path and query parameters (always strings).
PRIMITIVES: dict[str, Callable[[Any, bool], bool]] = {
    "string": lambda v, text: isinstance(v, str),
    "long": lambda v, text: (
        bool(_INTEGER.fullmatch(v)) and LONG_MIN <= int(v) <= LONG_MAX
        if text
        else isinstance(v, int) and not isinstance(v, bool) and LONG_MIN <= v <= LONG_MAX
    ),
    "boolean": lambda v, text: v in ("true", "false") if text else isinstance(v, bool),
    "ip": lambda v, text: isinstance(v, str) and _address(v, ipaddress.ip_address),
    "ipv4": lambda v, text: isinstance(v, str) and _address(v, ipaddress.IPv4Address),
    "ipBlock": lambda v, text: isinstance(v, str) and _network(v, ipaddress.ip_network),
    "ipv4Block": lambda v, text: isinstance(v, str) and _network(v, ipaddress.IPv4Network),
}


def shown(value: Any) -> str:
    """A value the way OVH quotes it in a message: text as is, anything else as compact JSON."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def not_valid(name: str, value: Any, type_: str) -> errors.ApiError:
    return errors.bad_request(f"[{name}] Given data ({shown(value)}) is not valid for type {type_}")


def mandatory(name: str) -> errors.ApiError:
    return errors.bad_request(f"[{name}] Property is mandatory")


def not_described(names: list[str], where: str) -> errors.ApiError:
    return errors.bad_request(f"Received not described parameters: ({', '.join(names)}) while calling {where}")


def check_type(name: str, value: Any, type_: str, as_text: bool = False) -> None:
    """Raise OVH's 400 unless ``value`` is a ``type_`` (a primitive, an enum, a model or an array of one)."""
    if type_.endswith("[]"):
        if as_text or not isinstance(value, list):
            raise not_valid(name, value, type_)
        for index, item in enumerate(value):
            check_type(f"{name}[{index}]", item, type_[:-2])
        return
    model = MODELS.get(type_)
    if model is None:
        if not PRIMITIVES[type_](value, as_text):
            raise not_valid(name, value, type_)
    elif "enum" in model:
        if model["enumType"] == "long":
            ok = PRIMITIVES["long"](value, as_text)
        else:
            ok = isinstance(value, str)
        if not ok:
            raise not_valid(name, value, model["enumType"])
        if str(value) not in model["enum"]:
            enum = type_.rsplit(".", 1)[-1]
            raise errors.bad_request(f"[{name}] Given data ({shown(value)}) does not belong to the {enum} enumeration")
    else:
        if as_text or not isinstance(value, dict):
            raise not_valid(name, value, type_)
        check_object(value, model, f"{name}.", type_)
    _check_range(name, value)


def _check_range(name: str, value: Any) -> None:
    bounds = RANGES.get(name.rsplit(".", 1)[-1])
    if bounds is None or not isinstance(value, int) or isinstance(value, bool):
        return
    low, high = bounds
    if not low <= value <= high:
        raise errors.bad_request(f"[{name}] Given data ({value}) is out of range ({low} to {high})")


def check_object(value: dict[str, Any], model: dict[str, Any], prefix: str, where: str) -> None:
    """A JSON object against a model: no undeclared property, required ones present, no forbidden null."""
    properties = model["properties"]
    unknown = [key for key in value if key not in properties]
    if unknown:
        raise not_described([prefix + key for key in unknown], where)
    for key, prop in properties.items():
        name = prefix + key
        if key not in value:
            if prop["required"]:
                raise mandatory(name)
            continue
        item = value[key]
        if item is None:
            if prop["required"]:
                raise mandatory(name)
            if not prop["canBeNull"]:
                raise not_valid(name, None, prop["type"])
            continue
        check_type(name, item, prop["type"])


def validate(method: str, template: str, path: dict[str, str], query: dict[str, str], body: dict[str, Any]) -> None:
    """Raise the 400 OVH answers when the request does not match the route's declared parameters."""
    parameters = OPERATIONS[(method, template)]
    where = f"{method} {template}"
    declared_query = [p["name"] for p in parameters if p["paramType"] == "query"]
    unknown = [name for name in query if name not in declared_query]
    if unknown:
        raise not_described(unknown, where)
    named_body = [p["name"] for p in parameters if p["paramType"] == "body" and p["name"]]
    body_is_a_model = any(p["paramType"] == "body" and not p["name"] for p in parameters)
    if not body_is_a_model:
        unknown = [name for name in body if name not in named_body]
        if unknown:
            raise not_described(unknown, where)
    for param in parameters:
        name, kind, type_ = param["name"], param["paramType"], param["fullType"]
        if kind == "path":
            check_type(name, path[name], type_, as_text=True)
        elif kind == "query":
            if name in query:
                check_type(name, query[name], type_, as_text=True)
            elif param["required"]:
                raise mandatory(name)
        elif name is None:  # the whole body is one model
            check_object(body, MODELS[type_], "", where)
        elif body.get(name) is None:  # an optional parameter sent as null is an absent one
            if param["required"]:
                raise mandatory(name)
        else:
            check_type(name, body[name], type_)


def known_types() -> set[str]:
    """Every type the schema extract names (a test checks each one can be validated)."""
    names = set()
    for parameters in OPERATIONS.values():
        names |= {p["fullType"] for p in parameters}
    for model in MODELS.values():
        names |= {p["type"] for p in model.get("properties", {}).values()}
    return {name.removesuffix("[]") for name in names}
