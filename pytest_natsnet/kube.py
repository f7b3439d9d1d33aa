"""Plain-dict Kubernetes objects: typed accessors and label-selector semantics shared by every module."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Obj = dict[str, Any]
"""A Kubernetes object as parsed from YAML/JSON (apiVersion, kind, metadata, spec, ...)."""

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "pytest-natsnet"
RUN_ID_LABEL = "natsnet.io/run-id"
SCENARIO_LABEL = "natsnet.io/scenario"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def kind(obj: Mapping[str, Any]) -> str:
    return str(obj.get("kind", ""))


def name(obj: Mapping[str, Any]) -> str:
    return str(obj.get("metadata", {}).get("name", ""))


def namespace_of(obj: Mapping[str, Any], default: str = "") -> str:
    return str(obj.get("metadata", {}).get("namespace") or default)


def labels(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict(obj.get("metadata", {}).get("labels") or {})


def spec(obj: Mapping[str, Any]) -> dict[str, Any]:
    return dict(obj.get("spec") or {})


def of_kind(objects: Iterable[Mapping[str, Any]], wanted: str) -> list[Obj]:
    """The objects whose ``kind`` is ``wanted``, in input order."""
    return [dict(o) for o in objects if kind(o) == wanted]


def find(objects: Iterable[Mapping[str, Any]], wanted_kind: str, wanted_name: str) -> Obj | None:
    for o in objects:
        if kind(o) == wanted_kind and name(o) == wanted_name:
            return dict(o)
    return None


def _expression_matches(expr: Mapping[str, Any], have: Mapping[str, str]) -> bool:
    key = str(expr["key"])
    operator = str(expr["operator"])
    values = [str(v) for v in expr.get("values") or []]
    if operator == "In":
        return key in have and have[key] in values
    if operator == "NotIn":
        return key not in have or have[key] not in values
    if operator == "Exists":
        return key in have
    if operator == "DoesNotExist":
        return key not in have
    raise ValueError(f"unknown label selector operator {operator!r}")


def selector_matches(selector: Mapping[str, Any] | None, have: Mapping[str, str]) -> bool:
    """LabelSelector semantics: ``{}`` selects everything; ``None`` selects nothing.

    ``matchLabels`` and ``matchExpressions`` are ANDed.
    """
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if have.get(key) != str(value):
            return False
    return all(_expression_matches(e, have) for e in selector.get("matchExpressions") or [])


def service_selector_matches(selector: Mapping[str, str] | None, have: Mapping[str, str]) -> bool:
    """Service ``spec.selector`` semantics: a plain map; empty or missing selects no pods."""
    if not selector:
        return False
    return all(have.get(k) == str(v) for k, v in selector.items())


def sibling_namespace(namespace: str, suffix: str) -> str:
    """A valid, distinct namespace name ``<namespace>-<suffix>`` (≤ 63 chars: shortened with a hash, never cut)."""
    import hashlib

    wanted = f"{namespace}-{suffix}"
    if len(wanted) <= 63:
        return wanted
    digest = hashlib.sha256(wanted.encode()).hexdigest()[:8]
    head = namespace[: 63 - len(suffix) - len(digest) - 2].rstrip("-")
    return f"{head}-{digest}-{suffix}"
