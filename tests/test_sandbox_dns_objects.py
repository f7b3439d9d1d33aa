"""Kubernetes objects shared by the DNS tests (no tests here): golden Services plus EndpointSlices."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from golden_data import rendered_path

GOLDEN = rendered_path("default")
NAMESPACE = "natsnet"
NATS_CLUSTER_IP = "198.18.128.20"
KUBE_DNS_IP = "198.18.128.10"
POD_IPS = {"nats-0": "198.18.0.10", "nats-1": "198.18.0.11", "nats-2": "198.18.0.12"}
NATS_PORTS = [
    {"name": "nats", "port": 4222, "protocol": "TCP"},
    {"name": "cluster", "port": 6222, "protocol": "TCP"},
    {"name": "monitor", "port": 8222, "protocol": "TCP"},
]

Obj = dict[str, Any]


def golden_services() -> list[Obj]:
    """The chart's Services in namespace ``natsnet``; the ClusterIP one gets ``NATS_CLUSTER_IP``."""
    services = []
    for doc in yaml.safe_load_all(GOLDEN.read_text()):
        if doc and doc["kind"] == "Service":
            doc["metadata"]["namespace"] = NAMESPACE
            if doc["spec"].get("clusterIP") != "None":
                doc["spec"]["clusterIP"] = NATS_CLUSTER_IP
            services.append(doc)
    return services


def endpoint(pod: str, ready: bool | None = True, serving: bool | None = None, hostname: bool = True) -> Obj:
    conditions: dict[str, bool] = {}
    if ready is not None:
        conditions["ready"] = ready
    if serving is not None:
        conditions["serving"] = serving
    result: Obj = {
        "addresses": [POD_IPS[pod]],
        "conditions": conditions,
        "targetRef": {"kind": "Pod", "name": pod},
    }
    if hostname:
        result["hostname"] = pod
    return result


def endpoint_slice(service: str, name: str, endpoints: list[Obj], ports: list[Obj] | None = None) -> Obj:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": copy.deepcopy(NATS_PORTS if ports is None else ports),
    }


def namespaces() -> list[Obj]:
    """The Namespace objects: CoreDNS answers for a namespace only when its Namespace exists."""
    return [
        {"kind": "Namespace", "metadata": {"name": "kube-system"}},
        {"kind": "Namespace", "metadata": {"name": NAMESPACE}},
    ]


def kube_dns_objects() -> list[Obj]:
    return [
        *namespaces(),
        {
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
            "spec": {
                "clusterIP": KUBE_DNS_IP,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                ],
            },
        },
    ]


def cluster(headless_endpoints: list[Obj] | None = None) -> list[Obj]:
    """Three ready pods behind ``nats-headless`` (with hostnames) and ``nats`` (without), plus kube-dns."""
    if headless_endpoints is None:
        headless_endpoints = [endpoint(pod) for pod in POD_IPS]
    client_endpoints = [endpoint(pod, hostname=False) for pod in POD_IPS]
    return [
        *kube_dns_objects(),
        *golden_services(),
        endpoint_slice("nats-headless", "nats-headless-abcde", headless_endpoints),
        endpoint_slice("nats", "nats-fghij", client_endpoints, ports=[NATS_PORTS[0]]),
    ]
