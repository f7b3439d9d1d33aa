"""Admission: what the API server does to every object it stores, on create and update: name validation and
the defaults the sandbox's controllers and clients rely on (Service ClusterIPs, pod and workload defaults,
Namespace labels, Secret ``stringData``, a claim's default StorageClass and protection finalizer)."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable

from pytest_natsnet.kube import NAMESPACE_NAME_LABEL, Obj, kind
from pytest_natsnet.sandbox.storage import admit_claim
from pytest_natsnet.sandbox.store import Invalid

NODE_NAME = "sandbox-node"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class Admission:
    """The store's ``admit`` hook; ``allocate_service_ip`` hands out ClusterIPs, ``allocate_node_port`` NodePorts,
    ``default_storage_class`` names the default StorageClass (None: there is none)."""

    def __init__(self, allocate_service_ip: Callable[[], str],
                 allocate_node_port: Callable[[], int] | None = None,
                 default_storage_class: Callable[[], str | None] = lambda: None) -> None:
        self._allocate_service_ip = allocate_service_ip
        self._allocate_node_port = allocate_node_port
        self._default_storage_class = default_storage_class

    def __call__(self, obj: Obj, old: Obj | None) -> None:
        """Defaulting and the little validation the sandbox does (names), on every create and update."""
        meta = obj["metadata"]
        obj_kind, obj_name = kind(obj), str(meta.get("name", ""))
        pattern = DNS_LABEL if obj_kind in ("Namespace", "Service") else DNS_SUBDOMAIN
        if old is None and (len(obj_name) > (63 if pattern is DNS_LABEL else 253) or not pattern.match(obj_name)):
            rule = "RFC 1123 label" if pattern is DNS_LABEL else "RFC 1123 subdomain"
            raise Invalid(
                f'{obj_kind} "{obj_name}" is invalid: metadata.name: Invalid value: "{obj_name}": a lowercase '
                f"{rule} must consist of lower case alphanumeric characters, '-' or '.'",
                kind=obj_kind, name=obj_name,
                causes=[{"reason": "FieldValueInvalid", "message": f"Invalid value: {obj_name!r}",
                         "field": "metadata.name"}])
        if obj_kind == "Namespace":
            meta.setdefault("labels", {})[NAMESPACE_NAME_LABEL] = obj_name
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            if not meta.get("deletionTimestamp"):
                obj.setdefault("status", {})["phase"] = "Active"
        elif obj_kind == "Service":
            spec = obj.setdefault("spec", {})
            spec.setdefault("type", "ClusterIP")
            if spec.get("type") != "ExternalName":
                if not spec.get("clusterIP"):
                    spec["clusterIP"] = (old or {}).get("spec", {}).get("clusterIP") or self._allocate_service_ip()
                spec["clusterIPs"] = [spec["clusterIP"]]
                spec.setdefault("sessionAffinity", "None")
                spec.setdefault("ipFamilies", ["IPv4"])
                spec.setdefault("ipFamilyPolicy", "SingleStack")
                spec.setdefault("internalTrafficPolicy", "Cluster")
            for port in spec.get("ports") or []:
                port.setdefault("protocol", "TCP")
                port.setdefault("targetPort", port.get("port"))
            if spec.get("type") in ("NodePort", "LoadBalancer"):
                self._node_ports(spec, old)
            obj.setdefault("status", {"loadBalancer": {}})
        elif obj_kind == "Pod":
            spec = obj.setdefault("spec", {})
            spec.setdefault("restartPolicy", "Always")
            spec.setdefault("dnsPolicy", "ClusterFirst")
            spec.setdefault("terminationGracePeriodSeconds", 30)
            spec.setdefault("schedulerName", "default-scheduler")
            spec.setdefault("serviceAccountName", "default")
            spec.setdefault("nodeName", NODE_NAME)
            if old is None:
                obj.setdefault("status", {"phase": "Pending", "conditions": []})
                obj["status"].setdefault("phase", "Pending")
                obj["status"].setdefault("qosClass", "BestEffort")
        elif obj_kind == "StatefulSet":
            spec = obj.setdefault("spec", {})
            spec.setdefault("replicas", 1)
            spec.setdefault("podManagementPolicy", "OrderedReady")
            spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
            spec.setdefault("revisionHistoryLimit", 10)
            if old is None:
                obj.setdefault("status", {"replicas": 0, "availableReplicas": 0})
        elif obj_kind == "Deployment":
            spec = obj.setdefault("spec", {})
            spec.setdefault("replicas", 1)
            spec.setdefault("strategy", {"type": "RollingUpdate",
                                         "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("progressDeadlineSeconds", 600)
            if old is None:
                obj.setdefault("status", {})
        elif obj_kind == "PersistentVolumeClaim" and old is None:
            admit_claim(obj, self._default_storage_class())
        elif obj_kind == "Secret":
            obj.setdefault("type", "Opaque")
            if obj.get("stringData"):
                data = obj.setdefault("data", {})
                for k, v in obj.pop("stringData").items():
                    data[k] = base64.b64encode(str(v).encode()).decode()


    def _node_ports(self, spec: Obj, old: Obj | None) -> None:
        """NodePort and LoadBalancer Services: ``externalTrafficPolicy`` defaults to Cluster and every port gets a
        ``nodePort`` (kept across updates, as the API server's allocator does; a LoadBalancer Service may opt out
        with ``allocateLoadBalancerNodePorts: false``)."""
        spec.setdefault("externalTrafficPolicy", "Cluster")
        if spec.get("type") == "LoadBalancer":
            spec.setdefault("allocateLoadBalancerNodePorts", True)
            if not spec["allocateLoadBalancerNodePorts"]:
                return
        if self._allocate_node_port is None:
            return
        allocated = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
                     for p in ((old or {}).get("spec") or {}).get("ports") or []}
        for port in spec.get("ports") or []:
            if not port.get("nodePort"):
                port["nodePort"] = allocated.get((port.get("port"), port["protocol"])) or self._allocate_node_port()
