"""Observations of a 3-server NATS deployment, built by hand for the pure evidence tests: ``healthy()`` is what a
fully meshed, reachable cell looks like; the tests change one thing at a time."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pytest_natsnet.evidence import plan
from pytest_natsnet.evidence.model import Check, Observations, ProbeSite
from pytest_natsnet.expect.nats import ServerConf
from pytest_natsnet.kube import Obj
from pytest_natsnet.probe.model import ProbeResult, outcome_of

NS = "shop"
ZONE = "cluster.local"
SERVER_LABELS = {"app.kubernetes.io/name": "nats", "app.kubernetes.io/instance": "nats",
                 "app.kubernetes.io/component": "nats"}
PORTS = [{"name": "nats", "containerPort": 4222}, {"name": "cluster", "containerPort": 6222},
         {"name": "monitor", "containerPort": 8222}]
NAMES = ("nats-0", "nats-1", "nats-2")
IPS = {"nats-0": "10.0.0.10", "nats-1": "10.0.0.11", "nats-2": "10.0.0.12"}
RESOLV = f"search {NS}.svc.{ZONE} svc.{ZONE} {ZONE}\nnameserver 10.96.0.10\noptions ndots:5\n"


def pod(name: str, *, ready: bool = True, restarts: int = 0, gate: bool | None = None,
        labels: Mapping[str, str] | None = None) -> Obj:
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    if gate is not None:
        conditions.append({"type": "natsnet.io/ready", "status": "True" if gate else "False"})
    statuses = [{"name": "nats", "restartCount": restarts,
                 **({"lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}} if restarts else {})}]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": dict(SERVER_LABELS if labels is None else labels)},
            "spec": {"hostname": name, "subdomain": "nats-headless",
                     "containers": [{"name": "nats", "image": "nats:2.14.2-alpine", "ports": PORTS}],
                     "readinessGates": [{"conditionType": "natsnet.io/ready"}] if gate is not None else []},
            "status": {"phase": "Running", "podIP": IPS.get(name, "10.0.0.99"), "conditions": conditions,
                       "containerStatuses": statuses}}


def service(name: str, *, headless: bool = False, pnra: bool | None = None) -> Obj:
    spec: dict[str, Any] = {"selector": dict(SERVER_LABELS), "clusterIP": "None" if headless else "10.96.1.1",
                            "ports": [{"name": "nats", "port": 4222}] + (
                                [{"name": "cluster", "port": 6222}, {"name": "monitor", "port": 8222}]
                                if headless else [])}
    if pnra is not None:
        spec["publishNotReadyAddresses"] = pnra
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS}, "spec": spec}


def endpointslice(service_name: str, pods: Iterable[Obj], pnra: bool) -> Obj:
    endpoints = []
    for p in pods:
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"]["conditions"])
        endpoints.append({"addresses": [p["status"]["podIP"]], "hostname": p["metadata"]["name"],
                          "targetRef": {"kind": "Pod", "name": p["metadata"]["name"]},
                          "conditions": {"ready": ready or pnra, "serving": ready, "terminating": False}})
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{service_name}-abc", "namespace": NS,
                         "labels": {"kubernetes.io/service-name": service_name}},
            "endpoints": endpoints}


def statefulset() -> Obj:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "nats", "namespace": NS, "labels": {"helm.sh/chart": "nats-2.14.2"}},
            "spec": {"replicas": 3, "serviceName": "nats-headless", "selector": {"matchLabels": dict(SERVER_LABELS)},
                     "template": {"spec": {"containers": [{"name": "nats", "image": "nats:2.14.2-alpine"}],
                                           "volumes": [{"name": "config",
                                                        "configMap": {"name": "nats-config"}}]}}}}


def policy(name: str, spec: Mapping[str, Any]) -> Obj:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": NS}, "spec": dict(spec)}


EGRESS_NATS_PORTS = {"to": [{"podSelector": {}}], "ports": [{"port": 4222}, {"port": 6222}, {"port": 8222}]}
EGRESS_DNS = {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                      "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
              "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}


def server(name: str, *, routes: Sequence[str] | None = None, **config: Any) -> ServerConf:
    cluster = {"name": "nats", "port": 6222, "no_advertise": True,
               "routes": list(routes if routes is not None else
                              [f"nats://{n}.nats-headless:6222" for n in NAMES])}
    cluster.update(config.pop("cluster", {}))
    return ServerConf(name, IPS[name], {"server_name": name, "port": 4222, "http_port": 8222, "cluster": cluster,
                                        **config})


def result(key: str, kind: str, outcome: str, **detail: Any) -> ProbeResult:
    return ProbeResult(key, kind, outcome_of(outcome), detail, 1.0, outcome)


def routez(name: str, peers: Iterable[str]) -> dict[str, Any]:
    return {"server_name": name, "routes": [{"remote_name": p, "did_solicit": True} for p in peers]}


def with_results(obs: Observations, outcomes: Mapping[str, tuple[str, Mapping[str, Any]]]) -> Observations:
    """The first batch (and second) planned for ``obs``, each check answered ``NOERROR``/``allowed``/``ok``
    unless ``outcomes`` says otherwise (key -> (outcome, detail))."""
    checks: dict[str, Check] = {}
    base = dataclasses.replace(obs, checks={})
    for check in plan.first_batch(base):
        checks[check.key] = _answer(check, outcomes)
    obs = dataclasses.replace(obs, checks=checks)
    for check in plan.second_batch(obs, None):
        checks[check.key] = check if check.skipped else _answer(check, outcomes)
    return dataclasses.replace(obs, checks=checks)


def _answer(check: Check, outcomes: Mapping[str, tuple[str, Mapping[str, Any]]]) -> Check:
    kind = str(check.request["kind"])
    default = {"dns": "NOERROR", "tcp": "allowed", "http": "ok", "nats": "ok", "relay": "ok"}[kind]
    outcome, detail = outcomes.get(check.key, (default, {}))
    if kind == "dns" and outcome == "NOERROR" and "answers" not in detail:
        detail = {**detail, "answers": ["10.0.0.10"]}
    return dataclasses.replace(check, result=result(check.key, kind, outcome, **detail))


def healthy(**changes: Any) -> Observations:
    """A 3-server cell, fully meshed, every probe answering; ``changes`` replace fields before the probes are
    planned and answered (``outcomes=`` answers chosen checks differently)."""
    outcomes = changes.pop("outcomes", {})
    pods = changes.pop("pods", [pod(n) for n in NAMES])
    pnra = changes.pop("pnra", True)
    services = [service("nats"), service("nats-headless", headless=True, pnra=pnra)]
    objects = {"Pod": pods, "Service": services, "StatefulSet": [statefulset()],
               "EndpointSlice": [endpointslice("nats", pods, False), endpointslice("nats-headless", pods, pnra)],
               "NetworkPolicy": changes.pop("policies", []), "Event": changes.pop("events", []), "ConfigMap": []}
    servers = changes.pop("servers", [server(n) for n in NAMES])
    mesh = changes.pop("mesh", {n: [p for p in NAMES if p != n] for n in NAMES})
    varz = changes.pop("varz", {n: {"server_name": n, "version": "2.14.2"} for n in NAMES})
    obs = Observations(
        namespace=NS, release="nats", zone=ZONE, objects=objects,
        namespace_labels={NS: {"kubernetes.io/metadata.name": NS},
                          "kube-system": {"kubernetes.io/metadata.name": "kube-system"}},
        dns_pods=[{"metadata": {"name": "coredns-1", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
                   "spec": {"containers": [{"name": "coredns", "ports": [
                       {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                       {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"}]}]},
                   "status": {"podIP": "10.0.5.5"}}],
        statefulset="nats", servers=servers,
        probe=ProbeSite("natsnet-probe", NS, {"app.kubernetes.io/name": "natsnet-client"}, RESOLV),
        monitor={n: {"/varz": varz[n], "/routez": routez(n, mesh.get(n, []))} for n in NAMES if n in varz},
    )
    obs = dataclasses.replace(obs, **changes)
    return with_results(obs, outcomes)
