"""Pure tests of the sandbox controllers: StatefulSet identity, ordering and claims, EndpointSlice contents."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_natsnet.kube import Obj
from pytest_natsnet.sandbox.controllers import (
    claim_name,
    claims_in_use,
    endpointslices_for,
    pod_from_template,
    pod_is_ready,
    statefulset_claims,
    statefulset_pod,
    statefulset_wanted,
    template_hash,
)

NS = "natsnet"
APP = {"app": "nats"}


def statefulset(replicas: int, policy: str | None = None, service_name: str | None = "nats-headless") -> Obj:
    sts_spec: dict[str, Any] = {
        "replicas": replicas,
        "template": {
            "metadata": {"labels": dict(APP), "annotations": {"checksum": "abc"}},
            "spec": {"containers": [{"name": "nats", "image": "nats:2.14.2"}]},
        },
    }
    if policy is not None:
        sts_spec["podManagementPolicy"] = policy
    if service_name is not None:
        sts_spec["serviceName"] = service_name
    return {"kind": "StatefulSet", "metadata": {"name": "nats", "namespace": NS}, "spec": sts_spec}


def pod(
    pod_name: str,
    *,
    ready: bool = True,
    ip: str | None = "198.18.0.10",
    phase: str = "Running",
    terminating: bool = False,
    pod_labels: dict[str, str] | None = None,
    namespace: str = NS,
    hostname: str | None = None,
    subdomain: str | None = None,
    ports: list[dict[str, Any]] | None = None,
) -> Obj:
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    if ip is not None:
        status["podIP"] = ip
    meta: dict[str, Any] = {"name": pod_name, "namespace": namespace, "labels": pod_labels or dict(APP)}
    if terminating:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    pod_spec: dict[str, Any] = {
        "containers": [{"name": "nats", "ports": ports if ports is not None else [
            {"name": "client", "containerPort": 4222},
            {"name": "monitor", "containerPort": 8222},
        ]}]
    }
    if hostname:
        pod_spec["hostname"] = hostname
    if subdomain:
        pod_spec["subdomain"] = subdomain
    return {"kind": "Pod", "metadata": meta, "spec": pod_spec, "status": status}


def service(
    svc_name: str = "nats",
    *,
    pnra: bool | None = None,
    selector: dict[str, str] | None = None,
    ports: list[dict[str, Any]] | None = None,
    svc_type: str | None = None,
    namespace: str = NS,
) -> Obj:
    svc_spec: dict[str, Any] = {
        "selector": dict(APP) if selector is None else selector,
        "ports": ports if ports is not None else [{"name": "client", "port": 4222, "targetPort": "client"}],
    }
    if pnra is not None:
        svc_spec["publishNotReadyAddresses"] = pnra
    if svc_type is not None:
        svc_spec["type"] = svc_type
    return {"kind": "Service", "metadata": {"name": svc_name, "namespace": namespace}, "spec": svc_spec}


def endpoints(slices: list[Obj]) -> dict[str, dict[str, Any]]:
    """Pod name -> its endpoint, over all slices."""
    return {e["targetRef"]["name"]: e for s in slices for e in s["endpoints"]}


# --- StatefulSet -------------------------------------------------------------------------------------


def test_statefulset_pod_identity() -> None:
    sts = statefulset(3)
    made = statefulset_pod(sts, 2)
    assert made["metadata"]["name"] == "nats-2"
    assert made["metadata"]["namespace"] == NS
    assert made["metadata"]["labels"] == {
        "app": "nats",
        "statefulset.kubernetes.io/pod-name": "nats-2",
        "apps.kubernetes.io/pod-index": "2",
        "controller-revision-hash": f"nats-{template_hash(sts)}",
    }
    assert made["metadata"]["annotations"] == {"checksum": "abc"}
    owner = {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "nats", "controller": True,
             "blockOwnerDeletion": True}
    assert made["metadata"]["ownerReferences"] == [owner]
    assert made["spec"]["hostname"] == "nats-2"
    assert made["spec"]["subdomain"] == "nats-headless"
    assert made["status"] == {"phase": "Pending", "conditions": []}


def test_statefulset_pod_without_service_name_has_no_subdomain() -> None:
    assert "subdomain" not in statefulset_pod(statefulset(1, service_name=None), 0)["spec"]


def test_pods_do_not_share_the_template() -> None:
    sts = statefulset(2)
    first = statefulset_pod(sts, 0)
    first["spec"]["containers"][0]["image"] = "changed"
    first["metadata"]["labels"]["extra"] = "x"
    second = statefulset_pod(sts, 1)
    assert second["spec"]["containers"][0]["image"] == "nats:2.14.2"
    assert "extra" not in second["metadata"]["labels"]
    assert sts["spec"]["template"]["metadata"]["labels"] == APP


def with_claim_template(sts: Obj, volumes: list[Obj] | None = None) -> Obj:
    """The chart's JetStream shape: a ``nats-js`` template (labels of its own) mounted at /data."""
    sts["spec"]["selector"] = {"matchLabels": dict(APP)}
    sts["spec"]["volumeClaimTemplates"] = [{
        "metadata": {"name": "nats-js", "labels": {"tier": "store"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }]
    if volumes is not None:
        sts["spec"]["template"]["spec"]["volumes"] = volumes
    return sts


def test_claims_are_named_per_template_and_ordinal_with_the_selector_labels() -> None:
    """stateful_set_utils.go getPersistentVolumeClaims: ``<template>-<set>-<ordinal>``, the template's labels plus
    the selector's matchLabels, the template's spec; no owner (retention policy Retain)."""
    sts = with_claim_template(statefulset(3))
    [claim] = statefulset_claims(sts, 1)
    assert claim == {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "nats-js-nats-1", "namespace": NS, "labels": {"tier": "store", "app": "nats"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    assert claim_name("nats-js", "nats", 1) == "nats-js-nats-1"
    assert statefulset_claims(statefulset(3), 0) == []


def test_a_pod_mounts_its_ordinals_claims_which_replace_a_template_volume_of_that_name() -> None:
    """updateStorage: the claim volume wins over a pod-template volume of the same name; others stay."""
    sts = with_claim_template(statefulset(3), [{"name": "nats-js", "emptyDir": {}}, {"name": "pid", "emptyDir": {}}])
    volumes = statefulset_pod(sts, 2)["spec"]["volumes"]
    assert volumes == [{"name": "pid", "emptyDir": {}},
                       {"name": "nats-js", "persistentVolumeClaim": {"claimName": "nats-js-nats-2"}}]
    assert "volumes" not in statefulset_pod(statefulset(1), 0)["spec"]


def test_claims_in_use_are_those_of_pods_that_have_not_finished() -> None:
    sts = with_claim_template(statefulset(3))
    running, done = statefulset_pod(sts, 0), statefulset_pod(sts, 1)
    running["status"]["phase"], done["status"]["phase"] = "Running", "Succeeded"
    terminating = statefulset_pod(sts, 2)
    terminating["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert claims_in_use([running, done, terminating]) == {(NS, "nats-js-nats-0"), (NS, "nats-js-nats-2")}


def test_pod_from_template_tolerates_an_empty_template() -> None:
    owner = {"kind": "Deployment", "metadata": {"name": "box"}}
    made = pod_from_template({}, "box-abcde", NS, owner)
    assert made["metadata"]["labels"] == {}
    assert made["spec"] == {}
    assert made["metadata"]["ownerReferences"][0]["kind"] == "Deployment"


@pytest.mark.parametrize(
    ("policy", "existing", "wanted"),
    [
        # Parallel: every missing ordinal at once, whatever the readiness of the others.
        ("Parallel", {}, [0, 1, 2]),
        ("Parallel", {"nats-1": False}, [0, 2]),
        ("Parallel", {"nats-0": True, "nats-1": True, "nats-2": True}, []),
        # OrderedReady (also the default): one at a time, each after all lower ordinals are Ready.
        ("OrderedReady", {}, [0]),
        (None, {}, [0]),
        ("OrderedReady", {"nats-0": False}, []),
        ("OrderedReady", {"nats-0": True}, [1]),
        (None, {"nats-0": True, "nats-1": True}, [2]),
        ("OrderedReady", {"nats-0": True, "nats-1": False}, []),
        ("OrderedReady", {"nats-1": True}, [0]),
        ("OrderedReady", {"nats-0": "terminating"}, []),
        ("OrderedReady", {"nats-0": True, "nats-1": True, "nats-2": True}, []),
    ],
)
def test_statefulset_wanted_ordinals(policy: str | None, existing: dict[str, Any], wanted: list[int]) -> None:
    pods = [
        pod(n, ready=state is True, terminating=state == "terminating") for n, state in existing.items()
    ]
    assert statefulset_wanted(statefulset(3, policy), pods) == wanted


def test_statefulset_without_replicas_wants_one_pod() -> None:
    sts = statefulset(1, "Parallel")
    del sts["spec"]["replicas"]
    assert statefulset_wanted(sts, []) == [0]


@pytest.mark.parametrize(
    ("conditions", "ready"),
    [
        ([{"type": "Ready", "status": "True"}], True),
        ([{"type": "Ready", "status": "False"}], False),
        ([{"type": "ContainersReady", "status": "True"}], False),
        ([], False),
        (None, False),
    ],
)
def test_pod_is_ready(conditions: list[dict[str, str]] | None, ready: bool) -> None:
    assert pod_is_ready({"status": {"conditions": conditions}}) is ready


# --- EndpointSlices ----------------------------------------------------------------------------------

# (pod ready, terminating, publishNotReadyAddresses) -> (ready, serving, terminating), per podToEndpoint.
CONDITIONS = [
    (True, False, False, (True, True, False)),
    (False, False, False, (False, False, False)),
    (False, False, True, (True, False, False)),
    (True, False, True, (True, True, False)),
    (True, True, False, (False, True, True)),
    (False, True, False, (False, False, True)),
    (True, True, True, (True, True, True)),
    (False, True, True, (True, False, True)),
]


@pytest.mark.parametrize(("pod_ready", "terminating", "pnra", "expected"), CONDITIONS)
def test_endpoint_conditions(
    pod_ready: bool, terminating: bool, pnra: bool, expected: tuple[bool, bool, bool]
) -> None:
    slices = endpointslices_for(service(pnra=pnra), [pod("nats-0", ready=pod_ready, terminating=terminating)])
    endpoint = endpoints(slices)["nats-0"]
    assert endpoint["addresses"] == ["198.18.0.10"]
    assert endpoint["targetRef"] == {"kind": "Pod", "name": "nats-0", "namespace": NS}
    conditions = endpoint["conditions"]
    assert (conditions["ready"], conditions["serving"], conditions["terminating"]) == expected


@pytest.mark.parametrize(
    ("candidate", "included"),
    [
        (pod("nats-0"), True),
        (pod("nats-0", ip=None), False),
        (pod("nats-0", phase="Failed"), False),
        (pod("nats-0", phase="Succeeded"), False),
        (pod("nats-0", phase="Pending", ready=False), True),
        (pod("nats-0", pod_labels={"app": "other"}), False),
        (pod("nats-0", pod_labels={"app": "nats", "extra": "yes"}), True),
        (pod("nats-0", namespace="elsewhere"), False),
    ],
)
def test_which_pods_become_endpoints(candidate: Obj, included: bool) -> None:
    assert ("nats-0" in endpoints(endpointslices_for(service(pnra=True), [candidate]))) is included


def test_hostname_only_for_the_governing_service() -> None:
    pods = [
        pod("nats-0", hostname="nats-0", subdomain="nats-headless"),
        pod("nats-1", ip="198.18.0.11", hostname="nats-1"),
        pod("box", ip="198.18.0.12"),
    ]
    governing = endpoints(endpointslices_for(service("nats-headless"), pods))
    other = endpoints(endpointslices_for(service("nats"), pods))
    assert governing["nats-0"]["hostname"] == "nats-0"
    assert "hostname" not in governing["nats-1"]
    assert "hostname" not in governing["box"]
    assert all("hostname" not in e for e in other.values())


@pytest.mark.parametrize(
    ("svc_port", "container_ports", "resolved"),
    [
        ({"name": "client", "port": 4222, "targetPort": "client"},
         [{"name": "client", "containerPort": 4333}], 4333),
        ({"name": "client", "port": 4222, "targetPort": 4444}, [], 4444),
        ({"name": "client", "port": 4222, "targetPort": "4555"}, [], 4555),
        ({"name": "client", "port": 4222}, [], 4222),
        # a named target with another protocol does not match
        ({"name": "dns", "port": 53, "targetPort": "dns", "protocol": "UDP"},
         [{"name": "dns", "containerPort": 5353, "protocol": "TCP"}], None),
        ({"name": "dns", "port": 53, "targetPort": "dns", "protocol": "UDP"},
         [{"name": "dns", "containerPort": 5353, "protocol": "UDP"}], 5353),
        ({"name": "client", "port": 4222, "targetPort": "nope"}, [{"name": "client", "containerPort": 4222}],
         None),
    ],
)
def test_target_port_resolution(
    svc_port: dict[str, Any], container_ports: list[dict[str, Any]], resolved: int | None
) -> None:
    slices = endpointslices_for(service(ports=[svc_port]), [pod("nats-0", ports=container_ports)])
    assert len(slices) == 1
    protocol = svc_port.get("protocol", "TCP")
    expected = [{"name": svc_port["name"], "port": resolved, "protocol": protocol}] if resolved else []
    assert slices[0]["ports"] == expected
    assert [e["targetRef"]["name"] for e in slices[0]["endpoints"]] == ["nats-0"]


def test_pods_with_different_port_numbers_get_separate_slices() -> None:
    pods = [
        pod("a", ports=[{"name": "client", "containerPort": 4222}]),
        pod("b", ip="198.18.0.11", ports=[{"name": "client", "containerPort": 4333}]),
        pod("c", ip="198.18.0.12", ports=[{"name": "client", "containerPort": 4222}]),
    ]
    slices = endpointslices_for(service(), pods)
    by_port = {s["ports"][0]["port"]: sorted(e["targetRef"]["name"] for e in s["endpoints"]) for s in slices}
    assert by_port == {4222: ["a", "c"], 4333: ["b"]}
    assert len({s["metadata"]["name"] for s in slices}) == 2
    for s in slices:
        assert s["metadata"]["labels"]["kubernetes.io/service-name"] == "nats"
        assert s["metadata"]["namespace"] == NS
        assert s["addressType"] == "IPv4"


def test_a_service_without_matching_pods_gets_one_empty_slice() -> None:
    slices = endpointslices_for(service(), [pod("x", pod_labels={"app": "other"})])
    assert [(s["endpoints"], s["ports"]) for s in slices] == [([], [])]
    assert slices[0]["metadata"]["labels"]["kubernetes.io/service-name"] == "nats"


@pytest.mark.parametrize(
    "svc",
    [service(selector={}), service(svc_type="ExternalName"), {"kind": "Service", "metadata": {"name": "s"}}],
    ids=["empty-selector", "external-name", "no-spec"],
)
def test_services_without_selector_get_no_slices(svc: Obj) -> None:
    assert endpointslices_for(svc, [pod("nats-0")]) == []


def test_slices_are_deterministic_and_sorted_by_pod_name() -> None:
    pods = [pod(f"nats-{i}", ip=f"198.18.0.{10 + i}") for i in (2, 0, 1)]
    first = endpointslices_for(service(), pods)
    assert first == endpointslices_for(service(), list(reversed(pods)))
    assert [e["targetRef"]["name"] for e in first[0]["endpoints"]] == ["nats-0", "nats-1", "nats-2"]
