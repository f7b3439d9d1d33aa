"""``meta.k8s.io/v1`` Tables: what ``kubectl get`` asks for (``Accept: …;as=Table``) and prints as columns."""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Column = tuple[str, str, int, Callable[[Mapping[str, Any], float], Any]]
"""(name, type, priority, cell(obj, now))."""


def wants_table(accept: str) -> bool:
    return "as=Table" in accept.replace(" ", "")


def short_duration(seconds: float) -> str:
    """kubectl's ``HumanDuration`` shape: 45s, 3m10s, 5h, 2d3h, 400d."""
    seconds = max(int(seconds), 0)
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        rest = seconds % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    return f"{days}d{hours % 24}h" if days < 8 and hours % 24 else f"{days}d"


def _timestamp(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return None


def age(obj: Mapping[str, Any], now: float) -> str:
    created = _timestamp((obj.get("metadata") or {}).get("creationTimestamp"))
    return "<unknown>" if created is None else short_duration(now - created)


def _name(obj: Mapping[str, Any], now: float) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _pod_status(pod: Mapping[str, Any], now: float) -> str:
    status = pod.get("status") or {}
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return "Terminating"
    reason = str(status.get("phase") or "Pending")
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        if "waiting" in state and state["waiting"].get("reason") not in (None, "ContainerCreating"):
            reason = str(state["waiting"]["reason"])
        elif "terminated" in state:
            reason = str(state["terminated"].get("reason") or "Completed")
    if status.get("reason") and reason == "Pending":
        reason = str(status["reason"])
    return reason


def _pod_ready(pod: Mapping[str, Any], now: float) -> str:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    total = len((pod.get("spec") or {}).get("containers") or [])
    return f"{sum(1 for s in statuses if s.get('ready'))}/{total}"


def _pod_restarts(pod: Mapping[str, Any], now: float) -> int:
    return sum(int(s.get("restartCount", 0)) for s in (pod.get("status") or {}).get("containerStatuses") or [])


def _ports(svc: Mapping[str, Any], now: float) -> str:
    ports = (svc.get("spec") or {}).get("ports") or []
    return ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in ports) or "<none>"


def _get(path: str, default: str = "<none>") -> Callable[[Mapping[str, Any], float], Any]:
    def cell(obj: Mapping[str, Any], now: float) -> Any:
        value: Any = obj
        for part in path.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        return default if value in (None, "") else value

    return cell


def _ready_of(spec_path: str, ready_path: str) -> Callable[[Mapping[str, Any], float], str]:
    def cell(obj: Mapping[str, Any], now: float) -> str:
        return f"{_get(ready_path, '0')(obj, now)}/{_get(spec_path, '1')(obj, now)}"

    return cell


def _event_object(event: Mapping[str, Any], now: float) -> str:
    involved = event.get("involvedObject") or {}
    return f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}"


def _last_seen(event: Mapping[str, Any], now: float) -> str:
    seen = _timestamp(event.get("lastTimestamp") or event.get("firstTimestamp"))
    return "<unknown>" if seen is None else short_duration(now - seen)


def _node_status(node: Mapping[str, Any], now: float) -> str:
    for condition in (node.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return "Ready" if condition.get("status") == "True" else "NotReady"
    return "Unknown"


NAME: Column = ("Name", "string", 0, _name)
AGE: Column = ("Age", "string", 0, age)

COLUMNS: dict[str, list[Column]] = {
    "Pod": [NAME, ("Ready", "string", 0, _pod_ready), ("Status", "string", 0, _pod_status),
            ("Restarts", "string", 0, _pod_restarts), AGE, ("IP", "string", 1, _get("status.podIP")),
            ("Node", "string", 1, _get("spec.nodeName"))],
    "Namespace": [NAME, ("Status", "string", 0, _get("status.phase", "Active")), AGE],
    "Service": [NAME, ("Type", "string", 0, _get("spec.type", "ClusterIP")),
                ("Cluster-IP", "string", 0, _get("spec.clusterIP")), ("External-IP", "string", 0, _get("x", "<none>")),
                ("Port(s)", "string", 0, _ports), AGE],
    "StatefulSet": [NAME, ("Ready", "string", 0, _ready_of("spec.replicas", "status.readyReplicas")), AGE],
    "Deployment": [NAME, ("Ready", "string", 0, _ready_of("spec.replicas", "status.readyReplicas")),
                   ("Up-to-date", "integer", 0, _get("status.updatedReplicas", "0")),
                   ("Available", "integer", 0, _get("status.availableReplicas", "0")), AGE],
    "Event": [("Last Seen", "string", 0, _last_seen), ("Type", "string", 0, _get("type")),
              ("Reason", "string", 0, _get("reason")), ("Object", "string", 0, _event_object),
              ("Message", "string", 0, _get("message", ""))],
    "Node": [NAME, ("Status", "string", 0, _node_status), ("Roles", "string", 0, _get("x", "control-plane")), AGE,
             ("Version", "string", 0, _get("status.nodeInfo.kubeletVersion"))],
}


def _row_object(obj: Mapping[str, Any], include: str) -> dict[str, Any] | None:
    if include == "None":
        return None
    if include == "Object":
        return dict(obj)
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata") or {}}


def table(kind: str, objects: Sequence[Mapping[str, Any]], resource_version: str, include: str = "Metadata",
          now: float | None = None) -> dict[str, Any]:
    """The Table of ``objects``; ``include`` is the request's ``includeObject`` (Metadata, Object, None)."""
    now = time.time() if now is None else now
    columns = COLUMNS.get(kind, [NAME, AGE])
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": [cell(obj, now) for _, _, _, cell in columns]}
        embedded = _row_object(obj, include)
        if embedded is not None:
            row["object"] = embedded
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [{"name": n, "type": t, "format": "name" if n == "Name" else "", "description": "",
                               "priority": p} for n, t, p, _ in columns],
        "rows": rows,
    }
