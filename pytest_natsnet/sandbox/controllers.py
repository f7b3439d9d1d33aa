"""The controllers the suites depend on, as pure functions: StatefulSet pods and claims, EndpointSlices.

They follow kubernetes/kubernetes: ``stateful_set_utils.go`` (identity, ``getPersistentVolumeClaims``,
``updateStorage``) and ``endpointslice/utils.go``
(``podToEndpoint``: serving = pod Ready, terminating = deletionTimestamp set,
ready = publishNotReadyAddresses or (serving and not terminating); hostname only for the governing Service).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_natsnet.kube import Obj, labels, name, namespace_of, service_selector_matches, spec


def pod_is_ready(pod: Mapping[str, Any]) -> bool:
    for cond in pod.get("status", {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def owner_reference(owner: Mapping[str, Any]) -> Obj:
    """The controller reference a workload puts on the pods it creates."""
    ref: Obj = {"apiVersion": owner.get("apiVersion", "apps/v1"), "kind": owner.get("kind"), "name": name(owner)}
    uid = (owner.get("metadata") or {}).get("uid")
    if uid:
        ref["uid"] = uid
    ref.update({"controller": True, "blockOwnerDeletion": True})
    return ref


def controller_of(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def template_hash(workload: Mapping[str, Any]) -> str:
    """A stable hash of the pod template (the ``controller-revision-hash`` / ``pod-template-hash``)."""
    template = json.dumps(spec(workload).get("template") or {}, sort_keys=True)
    return hashlib.sha256(template.encode()).hexdigest()[:10]


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
            "ownerReferences": [owner_reference(owner)],
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
    pod["metadata"]["labels"]["controller-revision-hash"] = f"{name(sts)}-{template_hash(sts)}"
    pod["spec"]["hostname"] = pod_name
    if sts_spec.get("serviceName"):
        pod["spec"]["subdomain"] = sts_spec["serviceName"]
    claims = {str((t.get("metadata") or {}).get("name")): claim for t, claim in
              zip(sts_spec.get("volumeClaimTemplates") or [], statefulset_claims(sts, ordinal), strict=True)}
    if claims:  # updateStorage: a template's volume replaces a template volume of the same name
        volumes = [v for v in pod["spec"].get("volumes") or [] if v.get("name") not in claims]
        volumes += [{"name": template, "persistentVolumeClaim": {"claimName": name(claim)}}
                    for template, claim in claims.items()]
        pod["spec"]["volumes"] = volumes
    return pod


def claim_name(template: str, sts_name: str, ordinal: int) -> str:
    """``<template>-<statefulset>-<ordinal>``: the name a replaced pod finds its claim by."""
    return f"{template}-{sts_name}-{ordinal}"


def statefulset_claims(sts: Mapping[str, Any], ordinal: int) -> list[Obj]:
    """The PersistentVolumeClaims of ``ordinal``, one per ``volumeClaimTemplates`` entry: the template's metadata
    and spec, named by :func:`claim_name`, labelled with the template's labels and the selector's matchLabels.
    No owner: the default retention policy (Retain) keeps them after their pod and StatefulSet."""
    sts_spec = spec(sts)
    match_labels = dict((sts_spec.get("selector") or {}).get("matchLabels") or {})
    claims = []
    for template in sts_spec.get("volumeClaimTemplates") or []:
        meta = dict(template.get("metadata") or {})
        template_name = str(meta.get("name", ""))
        claim: Obj = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {
                "name": claim_name(template_name, name(sts), ordinal),
                "namespace": namespace_of(sts),
                "labels": {**dict(meta.get("labels") or {}), **match_labels},
            },
            "spec": copy.deepcopy(dict(template.get("spec") or {})),
        }
        if meta.get("annotations"):
            claim["metadata"]["annotations"] = dict(meta["annotations"])
        claims.append(claim)
    return claims


def claims_in_use(pods: Sequence[Mapping[str, Any]]) -> set[tuple[str, str]]:
    """(namespace, claim) of every claim a pod that has not finished mounts: what pvc-protection waits for."""
    used = set()
    for pod in pods:
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        for volume in (pod.get("spec") or {}).get("volumes") or []:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if claim:
                used.add((namespace_of(pod), str(claim)))
    return used


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


# --- pod conditions and workload status (what kstatus and helm --wait read) ------------------------------


def _container_counts_ready(status: Mapping[str, Any]) -> bool:
    waiting = (status.get("state") or {}).get("waiting") or {}
    return bool(status.get("ready")) or waiting.get("reason") == "ImageNotEmulated"


def refresh_pod_conditions(pod: Obj, now: str) -> None:
    """Recomputes PodScheduled, Initialized, ContainersReady and Ready from the pod's own status and
    readiness gates (keeps every other condition, and lastTransitionTime when a status does not change)."""
    status = pod.setdefault("status", {})
    statuses = status.get("containerStatuses") or []
    running = any("running" in (s.get("state") or {}) for s in statuses)
    containers_ready = bool(statuses) and all(_container_counts_ready(s) for s in statuses)
    by_type = {c["type"]: c for c in status.get("conditions") or []}
    gates = [g.get("conditionType") for g in (pod.get("spec") or {}).get("readinessGates") or []]
    gates_ok = all(by_type.get(g, {}).get("status") == "True" for g in gates)
    finished = status.get("phase") in ("Succeeded", "Failed")
    # No deletionTimestamp term: a terminating pod stays Ready while readiness passes (kubelet
    # pkg/kubelet/status/generate.go GeneratePodReadyCondition; the prober keeps running readiness).
    ready = containers_ready and gates_ok and running and not finished
    wanted = {"PodScheduled": True, "Initialized": True, "ContainersReady": containers_ready and not finished,
              "Ready": ready}
    for cond_type, value in wanted.items():
        old = by_type.get(cond_type)
        text = "True" if value else "False"
        if old is None or old.get("status") != text:
            condition: Obj = {"type": cond_type, "status": text, "lastTransitionTime": now}
            if finished and not value:
                condition["reason"] = "PodCompleted"
            by_type[cond_type] = condition
    status["conditions"] = list(by_type.values())


def statefulset_status(sts: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> Obj:
    """The StatefulSet status kstatus counts as Current once every replica is ready."""
    revision = f"{name(sts)}-{template_hash(sts)}"
    ready = sum(1 for p in pods if pod_is_ready(p))
    return {
        "observedGeneration": (sts.get("metadata") or {}).get("generation", 1),
        "replicas": len(pods),
        "readyReplicas": ready,
        "currentReplicas": len(pods),
        "updatedReplicas": len(pods),
        "availableReplicas": ready,
        "currentRevision": revision,
        "updateRevision": revision,
        "collisionCount": 0,
    }


def _condition(old: Sequence[Mapping[str, Any]], cond_type: str, value: bool, reason: str, message: str,
               now: str) -> Obj:
    for condition in old:
        if (condition.get("type") == cond_type and condition.get("status") == ("True" if value else "False")
                and condition.get("reason") == reason):
            return dict(condition)
    return {"type": cond_type, "status": "True" if value else "False", "reason": reason, "message": message,
            "lastUpdateTime": now, "lastTransitionTime": now}


def deployment_status(deploy: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], now: str) -> Obj:
    """Deployment status with the conditions kstatus wants (Available, Progressing/NewReplicaSetAvailable)."""
    wanted = int(spec(deploy).get("replicas", 1))
    ready = sum(1 for p in pods if pod_is_ready(p))
    old = (deploy.get("status") or {}).get("conditions") or []
    available = ready >= wanted
    status: Obj = {
        "observedGeneration": (deploy.get("metadata") or {}).get("generation", 1),
        "replicas": len(pods),
        "updatedReplicas": len(pods),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "conditions": [
            _condition(old, "Available", available,
                       "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                       "Deployment has minimum availability." if available
                       else "Deployment does not have minimum availability.", now),
            _condition(old, "Progressing", True,
                       "NewReplicaSetAvailable" if available and len(pods) == wanted else "ReplicaSetUpdated",
                       f'ReplicaSet "{name(deploy)}-{template_hash(deploy)}" has '
                       + ("successfully progressed." if available else "is progressing."), now),
        ],
    }
    if len(pods) > ready:
        status["unavailableReplicas"] = len(pods) - ready
    return status
