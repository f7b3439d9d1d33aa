"""A container's environment as the kubelet builds it: declaration order, ``$(VAR)``, downward API."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class UnsupportedEnvSource(ValueError):
    """An env entry uses a source the sandbox does not implement (named in the message)."""


def expand(value: str, defined: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: only earlier-declared names expand, ``$$`` escapes, the rest stays."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        var = match.group(1)
        return defined[var] if var in defined else match.group(0)

    return _REFERENCE.sub(replace, value)


def field_value(field_path: str, pod: Mapping[str, Any]) -> str:
    """The downward API ``fieldRef`` values the chart and common manifests use."""
    meta = pod.get("metadata", {})
    status = pod.get("status", {})
    spec = pod.get("spec", {})
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "status.podIP": status.get("podIP"),
        "status.hostIP": status.get("hostIP"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
    }
    if field_path in simple:
        return str(simple[field_path] or "")
    label = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", field_path)
    if label:
        return str((meta.get(label.group(1)) or {}).get(label.group(2), ""))
    raise UnsupportedEnvSource(f"fieldRef {field_path!r} is not supported by the sandbox")


def container_env(container: Mapping[str, Any], pod: Mapping[str, Any]) -> dict[str, str]:
    """The environment of ``container`` in declaration order (dicts keep insertion order)."""
    if container.get("envFrom"):
        raise UnsupportedEnvSource(
            f"container {container.get('name', '?')}: envFrom is not supported by the sandbox"
        )
    env: dict[str, str] = {}
    entries: Sequence[Mapping[str, Any]] = container.get("env") or []
    for entry in entries:
        name = str(entry["name"])
        if "valueFrom" not in entry:
            env[name] = expand(str(entry.get("value") or ""), env)
            continue
        source = entry.get("valueFrom") or {}
        if "fieldRef" in source:
            env[name] = field_value(str(source["fieldRef"]["fieldPath"]), pod)
        else:
            raise UnsupportedEnvSource(
                f"env {name}: valueFrom {sorted(source)} is not supported by the sandbox"
            )
    return env


def expand_args(args: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """``command``/``args`` get the same ``$(VAR)`` expansion from the container's env."""
    return [expand(str(a), env) for a in args]
