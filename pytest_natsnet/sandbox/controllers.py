"""The controllers the suites depend on, as pure functions: StatefulSet pods and EndpointSlices.

They follow kubernetes/kubernetes: ``stateful_set_utils.go`` (identity) and ``endpointslice/utils.go``
(``podToEndpoint``: serving = pod Ready, terminating = deletionTimestamp set,
ready = publishNotReadyAddresses or (serving and not terminating); hostname only for the governing Service).
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_natsnet.kube import Obj, labels, name, namespace_of, service_selector_matches, spec


def pod_is_ready(pod: Mapping[str, Any]) -> bool:
    for cond in pod.get("status", {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def pod_from_template(
    template: Mapping[str, Any], pod_name: str, namespace: str, owner: Mapping[str, Any]
) -> Obj:
    """A Pod object from a workload's pod template (labels, annotations, spec), owned by ``owner``."""
    meta = template.get("metadata") or {}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name,
            "namespace": namespace,
            "labels": dict(meta.get("labels") or {}),
            "annotations": dict(meta.get("annotations") or {}),
            "ownerReferences": [{"kind": owner.get("kind"), "name": name(owner), "controller": True}],
        },
        "spec": copy.deepcopy(dict(template.get("spec") or {})),
        "status": {"phase": "Pending", "conditions": []},
    }


def statefulset_pod(sts: Mapping[str, Any], ordinal: int) -> Obj:
    """The pod for ``ordinal``: name ``<sts>-<i>``, hostname = name, subdomain = serviceName."""
    sts_spec = spec(sts)
    pod_name = f"{name(sts)}-{ordinal}"
    pod = pod_from_template(sts_spec.get("template") or {}, pod_name, namespace_of(sts), sts)
    pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] = pod_name
    pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"] = str(ordinal)
    pod["spec"]["hostname"] = pod_name
    if sts_spec.get("serviceName"):
        pod["spec"]["subdomain"] = sts_spec["serviceName"]
    return pod


def statefulset_wanted(sts: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> list[int]:
    """Ordinals to create now: every missing one (Parallel), or the next one once all before it are Ready."""
    sts_spec = spec(sts)
    replicas = int(sts_spec.get("replicas", 1))
    by_name = {name(p): p for p in pods}
    missing = [i for i in range(replicas) if f"{name(sts)}-{i}" not in by_name]
    if sts_spec.get("podManagementPolicy", "OrderedReady") == "Parallel":
        return missing
    for i in range(replicas):
        pod = by_name.get(f"{name(sts)}-{i}")
        if pod is None:
            return [i]
        if not pod_is_ready(pod) or pod["metadata"].get("deletionTimestamp"):
            return []
    return []


def _resolve_target_port(port: Mapping[str, Any], pod: Mapping[str, Any]) -> int | None:
    target = port.get("targetPort", port.get("port"))
    if isinstance(target, int) or (isinstance(target, str) and target.isdigit()):
        return int(target)
    for container in pod.get("spec", {}).get("containers") or []:
        for cport in container.get("ports") or []:
            if cport.get("name") == target and cport.get("protocol", "TCP") == port.get("protocol", "TCP"):
                return int(cport["containerPort"])
    return None


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:5]


def endpointslices_for(service: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> list[Obj]:
    """The EndpointSlices the controller would publish for ``service`` over ``pods`` (one namespace)."""
    svc_spec = spec(service)
    selector = svc_spec.get("selector")
    if not selector or svc_spec.get("type") == "ExternalName":
        return []
    svc_name, ns = name(service), namespace_of(service)
    pnra = bool(svc_spec.get("publishNotReadyAddresses", False))
    groups: dict[tuple[tuple[str, int, str], ...], list[Obj]] = {}
    for pod in sorted(pods, key=name):
        status = pod.get("status", {})
        if namespace_of(pod) != ns or not service_selector_matches(selector, labels(pod)):
            continue
        if not status.get("podIP") or status.get("phase") in ("Failed", "Succeeded"):
            continue
        resolved = []
        for port in svc_spec.get("ports") or []:
            number = _resolve_target_port(port, pod)
            if number is not None:
                resolved.append((str(port.get("name", "")), number, str(port.get("protocol", "TCP"))))
        serving = pod_is_ready(pod)
        terminating = bool(pod["metadata"].get("deletionTimestamp"))
        endpoint: Obj = {
            "addresses": [status["podIP"]],
            "conditions": {
                "ready": pnra or (serving and not terminating),
                "serving": serving,
                "terminating": terminating,
            },
            "targetRef": {"kind": "Pod", "name": name(pod), "namespace": ns},
        }
        pod_spec = pod.get("spec", {})
        if pod_spec.get("hostname") and pod_spec.get("subdomain") == svc_name:
            endpoint["hostname"] = pod_spec["hostname"]
        groups.setdefault(tuple(resolved), []).append(endpoint)
    slices = []
    for ports, endpoints in groups.items():
        slices.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{svc_name}-{_short_hash(repr(ports))}",
                    "namespace": ns,
                    "labels": {
                        "kubernetes.io/service-name": svc_name,
                        "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                    },
                },
                "addressType": "IPv4",
                "endpoints": endpoints,
                "ports": [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports],
            }
        )
    if not slices:
        slices.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{svc_name}-{_short_hash('empty')}",
                    "namespace": ns,
                    "labels": {
                        "kubernetes.io/service-name": svc_name,
                        "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                    },
                },
                "addressType": "IPv4",
                "endpoints": [],
                "ports": [],
            }
        )
    return slices
