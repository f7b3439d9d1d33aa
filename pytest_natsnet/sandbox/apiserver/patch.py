"""Patches as the API server applies them, as pure functions of (object, patch).

- JSON patch (RFC 6902) and JSON merge patch (RFC 7386);
- strategic merge patch for the built-in kinds: lists merge by their ``patchMergeKey`` (the table below, from
  k8s.io/api's ``patchStrategy:"merge"`` tags), other lists are replaced; the directives ``$patch``
  (replace, delete, merge), ``$retainKeys``, ``$deleteFromPrimitiveList/<field>`` and
  ``$setElementOrder/<field>`` that kubectl sends;
- server-side apply: the applied configuration merged into the live object (associative lists by the same
  keys, maps by key, atomic lists replaced); fields the same manager applied before and no longer applies are
  removed. Ownership is per manager and simplified: no conflicts are raised between managers.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pytest_natsnet.sandbox.store import BadRequest, Invalid

Path = tuple[str, ...]

CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "imagePullSecrets": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "conditions": "type",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "secrets": "name",
}
PRIMITIVE_MERGE = frozenset({"finalizers"})


def list_merge_key(kind: str, path: Path) -> str | None:
    """The merge key of the list at ``path`` (field names from the object root; list positions omitted),
    "" for a list of primitives merged as a set, None for a list that is replaced."""
    if not path:
        return None
    field, parent = path[-1], (path[-2] if len(path) > 1 else "")
    if field == "ports":
        if parent in CONTAINER_LISTS:
            return "containerPort"
        if kind == "Service" and path == ("spec", "ports"):
            return "port"
        return None
    if field == "addresses" and kind == "Node":
        return "type"
    if field in PRIMITIVE_MERGE:
        return ""
    if field == "secrets" and kind != "ServiceAccount":
        return None
    return MERGE_KEYS.get(field)


# -- JSON patch ------------------------------------------------------------------------------------------


def _pointer(text: str) -> list[str]:
    if text == "":
        return []
    if not text.startswith("/"):
        raise BadRequest(f"json patch: path {text!r} does not start with /")
    return [part.replace("~1", "/").replace("~0", "~") for part in text[1:].split("/")]


def _parent(doc: Any, parts: list[str], op: str) -> tuple[Any, str]:
    target = doc
    for part in parts[:-1]:
        if isinstance(target, dict) and part in target:
            target = target[part]
        elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
            target = target[int(part)]
        else:
            raise Invalid(f"json patch {op} operation does not apply: doc is missing path: "
                          f"/{'/'.join(parts)}")
    return target, parts[-1]


def _get(doc: Any, parts: list[str], op: str) -> Any:
    if not parts:
        return doc
    parent, last = _parent(doc, parts, op)
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent[int(last)]
    raise Invalid(f"json patch {op} operation does not apply: doc is missing key: /{'/'.join(parts)}")


def _remove(doc: Any, parts: list[str], op: str) -> Any:
    parent, last = _parent(doc, parts, op)
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent.pop(int(last))
    raise Invalid(f"json patch {op} operation does not apply: doc is missing path: /{'/'.join(parts)}")


def _add(doc: Any, parts: list[str], value: Any, op: str, replace: bool = False) -> Any:
    if not parts:
        return value
    parent, last = _parent(doc, parts, op)
    if isinstance(parent, dict):
        if replace and last not in parent:
            raise Invalid(f"json patch replace operation does not apply: doc is missing key: /{'/'.join(parts)}")
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent) - (1 if replace else 0):
            if replace:
                parent[int(last)] = value
            else:
                parent.insert(int(last), value)
        else:
            raise Invalid(f"json patch {op} operation does not apply: index {last} is out of range")
    else:
        raise Invalid(f"json patch {op} operation does not apply: /{'/'.join(parts[:-1])} is not a container")
    return doc


def json_patch(obj: Any, operations: Any) -> Any:
    """RFC 6902 on a copy of ``obj``."""
    if not isinstance(operations, list):
        raise BadRequest("json patch: the body must be a list of operations")
    doc = copy.deepcopy(obj)
    for operation in operations:
        if not isinstance(operation, Mapping) or "op" not in operation or "path" not in operation:
            raise BadRequest(f"json patch: malformed operation {operation!r}")
        op, parts = str(operation["op"]), _pointer(str(operation["path"]))
        if op == "add":
            doc = _add(doc, parts, copy.deepcopy(operation.get("value")), op)
        elif op == "remove":
            _remove(doc, parts, op)
        elif op == "replace":
            doc = _add(doc, parts, copy.deepcopy(operation.get("value")), op, replace=True)
        elif op in ("move", "copy"):
            source = _pointer(str(operation.get("from", "")))
            value = _remove(doc, source, op) if op == "move" else copy.deepcopy(_get(doc, source, op))
            doc = _add(doc, parts, value, op)
        elif op == "test":
            if _get(doc, parts, op) != operation.get("value"):
                raise Invalid(f"json patch test operation failed: {operation['path']} is not "
                              f"{json.dumps(operation.get('value'))}")
        else:
            raise BadRequest(f"json patch: unknown operation {op!r}")
    return doc


# -- merge patch -----------------------------------------------------------------------------------------


def merge_patch(obj: Any, patch: Any) -> Any:
    """RFC 7386: maps merge, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = copy.deepcopy(obj) if isinstance(obj, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# -- strategic merge patch -------------------------------------------------------------------------------

DIRECTIVE = "$patch"
RETAIN_KEYS = "$retainKeys"
DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"
ELEMENT_ORDER = "$setElementOrder/"


def _strip(value: Any) -> Any:
    """A patch value with its directives removed (what lands in the object when there is nothing to merge)."""
    if isinstance(value, Mapping):
        return {k: _strip(v) for k, v in value.items() if not str(k).startswith("$") and v is not None}
    if isinstance(value, list):
        return [_strip(v) for v in value if not (isinstance(v, Mapping) and DIRECTIVE in v and len(v) <= 2
                                                 and v.get(DIRECTIVE) in ("delete", "replace"))]
    return value


def _order(items: list[Any], order: Sequence[Any], key: str | None) -> list[Any]:
    def identity(item: Any) -> Any:
        return item.get(key) if key and isinstance(item, Mapping) else item

    wanted = [identity(o) if key else o for o in order]
    placed = [i for w in wanted for i in items if identity(i) == w]
    return placed + [i for i in items if identity(i) not in wanted]


def _merge_list(kind: str, original: list[Any], patch: list[Any], path: Path) -> list[Any]:
    key = list_merge_key(kind, path)
    if key is None:
        return _strip(patch)  # type: ignore[no-any-return]
    if key == "":
        return list(original) + [p for p in patch if p not in original]
    if any(isinstance(p, Mapping) and p.get(DIRECTIVE) == "replace" for p in patch):
        return list(_strip([p for p in patch if not (isinstance(p, Mapping) and p.get(DIRECTIVE) == "replace")]))
    result = [copy.deepcopy(o) for o in original]
    for item in patch:
        if not isinstance(item, Mapping):
            raise BadRequest(f"strategic merge patch: {'.'.join(path)} items must be objects with {key}")
        positions = [i for i, o in enumerate(result) if isinstance(o, Mapping) and o.get(key) == item.get(key)]
        if item.get(DIRECTIVE) == "delete":
            result = [o for i, o in enumerate(result) if i not in positions]
        elif positions:
            merged = _merge_map(kind, result[positions[0]], item, path)
            if merged is None:
                result.pop(positions[0])
            else:
                result[positions[0]] = merged
        else:
            result.append(_strip(item))
    return result


def _merge_map(kind: str, original: Mapping[str, Any], patch: Mapping[str, Any], path: Path) -> dict[str, Any] | None:
    directive = patch.get(DIRECTIVE)
    if directive == "delete":
        return None
    if directive == "replace":
        return _strip(patch)  # type: ignore[no-any-return]
    result = copy.deepcopy(dict(original))
    for field, value in patch.items():
        if field in (DIRECTIVE, RETAIN_KEYS) or field.startswith(ELEMENT_ORDER):
            continue
        if field.startswith(DELETE_PRIMITIVE):
            target = field[len(DELETE_PRIMITIVE):]
            result[target] = [v for v in result.get(target) or [] if v not in (value or [])]
            continue
        if value is None:
            result.pop(field, None)
        elif isinstance(value, Mapping):
            current = result.get(field)
            merged = _merge_map(kind, current if isinstance(current, Mapping) else {}, value, (*path, field))
            if merged is None:
                result.pop(field, None)
            else:
                result[field] = merged
        elif isinstance(value, list):
            current = result.get(field)
            result[field] = _merge_list(kind, current if isinstance(current, list) else [], value, (*path, field))
        else:
            result[field] = value
    for field, order in patch.items():
        if field.startswith(ELEMENT_ORDER) and isinstance(result.get(field[len(ELEMENT_ORDER):]), list):
            target = field[len(ELEMENT_ORDER):]
            key = list_merge_key(kind, (*path, target))
            result[target] = _order(result[target], order or [], key or None)
    retain = patch.get(RETAIN_KEYS)
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain or k not in original or k in patch}
        for field in list(result):
            if field not in retain and field in original and field not in patch:
                result.pop(field)
    return result


def strategic_merge_patch(obj: Mapping[str, Any], patch: Any) -> dict[str, Any]:
    """The strategic merge of ``patch`` into ``obj`` (kind from the object)."""
    if not isinstance(patch, Mapping):
        raise BadRequest("strategic merge patch: the body must be an object")
    merged = _merge_map(str(obj.get("kind", "")), obj, patch, ())
    if merged is None:
        raise Invalid("strategic merge patch: $patch: delete on the whole object")
    return merged


# -- server-side apply -----------------------------------------------------------------------------------

IGNORED_FOR_OWNERSHIP = frozenset({("apiVersion",), ("kind",), ("metadata", "name"), ("metadata", "namespace"),
                                   ("metadata", "uid"), ("metadata", "resourceVersion"),
                                   ("metadata", "creationTimestamp"), ("metadata", "managedFields"),
                                   ("metadata", "generation")})


def _item_key(key: str, value: Any) -> str:
    return f"k:{json.dumps({key: value}, separators=(',', ':'))}"


def field_set(kind: str, applied: Mapping[str, Any], path: Path = ()) -> set[Path]:
    """The fields an applied configuration sets: leaves, map keys, and associative-list items (``k:{...}``)."""
    found: set[Path] = set()
    for field, value in applied.items():
        here = (*path, f"f:{field}")
        plain = tuple(p[2:] for p in here if p.startswith("f:"))
        if plain in IGNORED_FOR_OWNERSHIP or value is None:
            continue
        found.add(here)
        if isinstance(value, Mapping):
            found |= field_set(kind, value, here)
        elif isinstance(value, list):
            key = list_merge_key(kind, _plain_path(here))
            if key:
                for item in value:
                    if isinstance(item, Mapping) and key in item:
                        item_path = (*here, _item_key(key, item[key]))
                        found.add(item_path)
                        found |= field_set(kind, item, item_path)
    return found


def _plain_path(path: Path) -> Path:
    return tuple(p[2:] for p in path if p.startswith("f:"))


def fields_v1(paths: Iterable[Path]) -> dict[str, Any]:
    """A field set in the managedFields ``FieldsV1`` shape (``{"f:spec": {"f:replicas": {}}}``)."""
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        node = tree
        for part in path:
            node = node.setdefault(part, {})
        if path and path[-1].startswith("k:"):
            node.setdefault(".", {})
    return tree


def paths_of(fields: Mapping[str, Any], prefix: Path = ()) -> set[Path]:
    """The inverse of :func:`fields_v1`."""
    found: set[Path] = set()
    for part, sub in fields.items():
        if part == ".":
            continue
        here = (*prefix, part)
        found.add(here)
        if isinstance(sub, Mapping):
            found |= paths_of(sub, here)
    return found


def _remove_path(kind: str, obj: Any, path: Path) -> None:
    node = obj
    for i, part in enumerate(path):
        last = i == len(path) - 1
        if part.startswith("f:"):
            if not isinstance(node, dict) or part[2:] not in node:
                return
            if last:
                node.pop(part[2:])
                return
            node = node[part[2:]]
        elif part.startswith("k:"):
            if not isinstance(node, list):
                return
            key, value = next(iter(json.loads(part[2:]).items()))
            matches = [j for j, item in enumerate(node) if isinstance(item, Mapping) and item.get(key) == value]
            if not matches:
                return
            if last:
                node.pop(matches[0])
                return
            node = node[matches[0]]


def _apply_merge(kind: str, live: Any, applied: Any, path: Path) -> Any:
    if isinstance(applied, Mapping):
        result = copy.deepcopy(dict(live)) if isinstance(live, Mapping) else {}
        for field, value in applied.items():
            if value is None:
                continue
            result[field] = _apply_merge(kind, result.get(field), value, (*path, field))
        return result
    if isinstance(applied, list):
        key = list_merge_key(kind, path)
        if not key or not isinstance(live, list):
            if key == "" and isinstance(live, list):
                return list(live) + [v for v in applied if v not in live]
            return copy.deepcopy(applied)
        result_list = [copy.deepcopy(item) for item in live]
        for item in applied:
            if not isinstance(item, Mapping):
                continue
            matches = [i for i, o in enumerate(result_list) if isinstance(o, Mapping) and o.get(key) == item.get(key)]
            if matches:
                result_list[matches[0]] = _apply_merge(kind, result_list[matches[0]], item, path)
            else:
                result_list.append(_apply_merge(kind, {}, item, path))
        return result_list
    return copy.deepcopy(applied)


def server_side_apply(
    live: Mapping[str, Any] | None, applied: Mapping[str, Any], manager: str, now: str
) -> dict[str, Any]:
    """The object after ``manager`` applies ``applied`` (nulls mean "not set"), with its managedFields entry.

    Fields the manager's previous apply set and this one does not are removed from the live object."""
    if not isinstance(applied, Mapping):
        raise BadRequest("apply: the body must be an object")
    kind = str(applied.get("kind") or (live or {}).get("kind", ""))
    new_fields = field_set(kind, applied)
    managed = [dict(e) for e in ((live or {}).get("metadata") or {}).get("managedFields") or []]
    previous: set[Path] = set()
    for entry in managed:
        if entry.get("manager") == manager and entry.get("operation") == "Apply":
            previous = paths_of(entry.get("fieldsV1") or {})
    base = copy.deepcopy(dict(live)) if live else {}
    for path in sorted(previous - new_fields, key=len, reverse=True):
        if not any(other[:len(path)] == path for other in new_fields):
            _remove_path(kind, base, path)
    merged: dict[str, Any] = _apply_merge(kind, base, applied, ())
    entry = {"manager": manager, "operation": "Apply", "apiVersion": applied.get("apiVersion", ""), "time": now,
             "fieldsType": "FieldsV1", "fieldsV1": fields_v1(new_fields)}
    others = [e for e in managed if not (e.get("manager") == manager and e.get("operation") == "Apply")]
    merged.setdefault("metadata", {})["managedFields"] = [*others, entry]
    return merged


def update_managed_fields(obj: dict[str, Any], manager: str, operation: str, api_version: str, now: str,
                          subresource: str = "") -> None:
    """Records that ``manager`` updated the object (an ``Update`` entry; its fields are not tracked)."""
    if not manager:
        return
    managed = [e for e in (obj.get("metadata") or {}).get("managedFields") or []
               if not (e.get("manager") == manager and e.get("operation") == operation
                       and e.get("subresource", "") == subresource)]
    entry: dict[str, Any] = {"manager": manager, "operation": operation, "apiVersion": api_version, "time": now,
                             "fieldsType": "FieldsV1", "fieldsV1": {}}
    if subresource:
        entry["subresource"] = subresource
    obj.setdefault("metadata", {})["managedFields"] = [*managed, entry]
