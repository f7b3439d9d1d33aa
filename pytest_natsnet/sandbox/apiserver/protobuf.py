"""Decoder of Kubernetes protobuf request bodies (``application/vnd.kubernetes.protobuf``).

Typed clients (helm's release storage, ``kubectl create``) send protobuf with no JSON fallback. A body is the
magic ``k8s\\0`` followed by a ``runtime.Unknown``: 1 = TypeMeta {1 apiVersion, 2 kind}, 2 = raw (the object's
message). The kinds decoded here are Secret, ConfigMap, Namespace and DeleteOptions, to the same plain dicts
their JSON would give, and SelfSubjectAccessReview (``kubectl auth can-i``). Field numbers are those of
k8s.io/api core/v1, authorization/v1 and apimachinery meta/v1 ``generated.proto``.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Callable
from typing import Any

MAGIC = b"k8s\x00"

Schema = dict[int, tuple[str, Any]]
"""field number → (JSON name, type); a type is a scalar name, a Schema (message), ("map", key, value),
("repeated", type)."""


class ProtobufError(ValueError):
    """The body is not a protobuf object the sandbox can decode."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ProtobufError("varint too long")


def fields(data: bytes) -> list[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) in order: varints as int, length-delimited as bytes; fixed-width
    fields are skipped over (returned as their raw bytes)."""
    out: list[tuple[int, int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            out.append((number, wire, value))
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ProtobufError(f"field {number}: length {length} past the end")
            out.append((number, wire, data[pos:pos + length]))
            pos += length
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            out.append((number, wire, data[pos:pos + width]))
            pos += width
        else:
            raise ProtobufError(f"field {number}: unsupported wire type {wire}")
    return out


def _time(data: bytes) -> str:
    seconds = 0
    for number, _, value in fields(data):
        if number == 1 and isinstance(value, int):
            seconds = value
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _int64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


SCALARS: dict[str, Callable[[int | bytes], Any]] = {
    "string": lambda v: v.decode() if isinstance(v, bytes) else str(v),
    "bytes": lambda v: base64.b64encode(v).decode() if isinstance(v, bytes) else "",
    "int": lambda v: _int64(v) if isinstance(v, int) else 0,
    "bool": lambda v: bool(v),
    "time": lambda v: _time(v) if isinstance(v, bytes) else "",
}


def _decode_value(kind: Any, value: int | bytes) -> Any:
    if isinstance(kind, str):
        return SCALARS[kind](value)
    if isinstance(kind, dict):
        if not isinstance(value, bytes):
            raise ProtobufError("a message field is not length-delimited")
        return message(value, kind)
    raise ProtobufError(f"bad schema type {kind!r}")


def message(data: bytes, schema: Schema) -> dict[str, Any]:
    """Decodes ``data`` with ``schema``; unknown fields are ignored (as a decoder of an older schema does)."""
    out: dict[str, Any] = {}
    for number, _, value in fields(data):
        if number not in schema:
            continue
        name, kind = schema[number]
        if isinstance(kind, tuple) and kind[0] == "map":
            if not isinstance(value, bytes):
                raise ProtobufError(f"{name}: a map entry is not length-delimited")
            entry = {n: v for n, _, v in fields(value)}
            key = _decode_value(kind[1], entry.get(1, b""))
            out.setdefault(name, {})[key] = _decode_value(kind[2], entry.get(2, b""))
        elif isinstance(kind, tuple) and kind[0] == "repeated":
            out.setdefault(name, []).append(_decode_value(kind[1], value))
        else:
            decoded = _decode_value(kind, value)
            if decoded == "" and kind in ("string", "time"):
                continue  # gogo-protobuf writes empty optional strings; JSON omits them
            out[name] = decoded
    return {k: v for k, v in out.items() if v != {} or k in ("data", "labels", "annotations")}


OWNER_REFERENCE: Schema = {1: ("kind", "string"), 3: ("name", "string"), 4: ("uid", "string"),
                           5: ("apiVersion", "string"), 6: ("controller", "bool"),
                           7: ("blockOwnerDeletion", "bool")}
OBJECT_META: Schema = {
    1: ("name", "string"), 2: ("generateName", "string"), 3: ("namespace", "string"), 5: ("uid", "string"),
    6: ("resourceVersion", "string"), 7: ("generation", "int"), 8: ("creationTimestamp", "time"),
    9: ("deletionTimestamp", "time"), 10: ("deletionGracePeriodSeconds", "int"),
    11: ("labels", ("map", "string", "string")), 12: ("annotations", ("map", "string", "string")),
    13: ("ownerReferences", ("repeated", OWNER_REFERENCE)), 14: ("finalizers", ("repeated", "string")),
}
SECRET: Schema = {1: ("metadata", OBJECT_META), 2: ("data", ("map", "string", "bytes")), 3: ("type", "string"),
                  4: ("stringData", ("map", "string", "string")), 5: ("immutable", "bool")}
CONFIG_MAP: Schema = {1: ("metadata", OBJECT_META), 2: ("data", ("map", "string", "string")),
                      3: ("binaryData", ("map", "string", "bytes")), 4: ("immutable", "bool")}
NAMESPACE: Schema = {1: ("metadata", OBJECT_META), 2: ("spec", {1: ("finalizers", ("repeated", "string"))}),
                     3: ("status", {1: ("phase", "string")})}
DELETE_OPTIONS: Schema = {
    1: ("gracePeriodSeconds", "int"),
    2: ("preconditions", {1: ("uid", "string"), 2: ("resourceVersion", "string")}),
    3: ("orphanDependents", "bool"), 4: ("propagationPolicy", "string"), 5: ("dryRun", ("repeated", "string")),
}
RESOURCE_ATTRIBUTES: Schema = {1: ("namespace", "string"), 2: ("verb", "string"), 3: ("group", "string"),
                               4: ("version", "string"), 5: ("resource", "string"), 6: ("subresource", "string"),
                               7: ("name", "string")}
SELF_SUBJECT_ACCESS_REVIEW: Schema = {
    1: ("metadata", OBJECT_META),
    2: ("spec", {1: ("resourceAttributes", RESOURCE_ATTRIBUTES),
                 2: ("nonResourceAttributes", {1: ("path", "string"), 2: ("verb", "string")})}),
}
KINDS: dict[str, Schema] = {"Secret": SECRET, "ConfigMap": CONFIG_MAP, "Namespace": NAMESPACE,
                            "DeleteOptions": DELETE_OPTIONS, "SelfSubjectAccessReview": SELF_SUBJECT_ACCESS_REVIEW}
TYPE_META: Schema = {1: ("apiVersion", "string"), 2: ("kind", "string")}

ZERO_TIME = "0001-01-01T00:00:00Z"


def _drop_zero_values(obj: dict[str, Any]) -> dict[str, Any]:
    """gogo-protobuf writes zero creationTimestamp and generation; JSON would omit them."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        for field in ("creationTimestamp", "deletionTimestamp"):
            if meta.get(field) in (ZERO_TIME, "1970-01-01T00:00:00Z") or meta.get(field, None) == "":
                meta.pop(field, None)
        if meta.get("generation") == 0:
            meta.pop("generation")
    return obj


def decode(body: bytes) -> dict[str, Any]:
    """A ``k8s\\0``-prefixed body → the object as JSON would have it (with apiVersion and kind)."""
    if not body.startswith(MAGIC):
        raise ProtobufError("missing the k8s\\0 prefix")
    type_meta: dict[str, Any] = {}
    raw = b""
    for number, _, value in fields(body[len(MAGIC):]):
        if number == 1 and isinstance(value, bytes):
            type_meta = message(value, TYPE_META)
        elif number == 2 and isinstance(value, bytes):
            raw = value
        elif number == 3 and value:
            raise ProtobufError("compressed protobuf bodies are not supported")
    kind = type_meta.get("kind", "")
    if kind not in KINDS:
        raise ProtobufError(f"kind {kind or '(none)'} is not decoded by the sandbox (it decodes "
                            f"{', '.join(sorted(KINDS))}); send JSON")
    obj = _drop_zero_values(message(raw, KINDS[kind]))
    return {"apiVersion": type_meta.get("apiVersion", "v1"), "kind": kind, **obj}


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def encode_field(number: int, value: int | bytes | str) -> bytes:
    """One protobuf field (varint for int, length-delimited for bytes/str): for tests."""
    if isinstance(value, int):
        return _encode_varint(number << 3) + _encode_varint(value)
    data = value.encode() if isinstance(value, str) else value
    return _encode_varint(number << 3 | 2) + _encode_varint(len(data)) + data
