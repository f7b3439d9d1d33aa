"""dns_records: the Kubernetes DNS records a NATS cluster depends on, checked from inside the cluster network.

Expected answers come from the observed Services and EndpointSlices (Kubernetes DNS spec 1.1.0); the probe asks
over UDP and TCP like the upstream DNS e2e tests; answers are compared as sets, never in order.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import Any

import pytest

from pytest_natsnet import applicability, kube
from pytest_natsnet.expect.dns import DnsExpectation, compare, expected_records, fqdn
from pytest_natsnet.prober import Prober
from pytest_natsnet.providers.base import POD_GATE_CONDITION, Deployment
from pytest_natsnet.session import Cell
from pytest_natsnet.suitekit import (
    CONTROLLER_LAG,
    DNS_BLOCKED,
    applies,
    dns_change_timeout,
    eventually,
    headless_service,
    not_declared,
    require,
    servers,
)
from pytest_natsnet.table import Comparison


def _other_namespace(deployment: Deployment) -> str:
    return kube.sibling_namespace(deployment.namespace, "other")


def _expectations(deployment: Deployment, other: str | None = None) -> list[DnsExpectation]:
    return expected_records(
        deployment.namespace,
        deployment.objects("Service"),
        deployment.objects("EndpointSlice"),
        deployment.objects("Pod"),
        deployment.info.cluster_domain,
        other,
    )


def _check(probe: Prober, rows: list[DnsExpectation], transport: str, namespace: str | None = None) -> Comparison:
    return _ask(probe, rows, transport, namespace)[0]


def _ask(probe: Prober, rows: list[DnsExpectation], transport: str,
         namespace: str | None = None) -> tuple[Comparison, Mapping[str, Any]]:
    requests = [row.request(transport) for row in rows]  # type: ignore[arg-type]
    results = probe.run(requests, namespace=namespace)
    return compare(rows, results, transport), results  # type: ignore[arg-type]


def _settled(deployment: Deployment, probe: Prober, rows: list[DnsExpectation], transport: str,
             namespace: str | None = None) -> tuple[Comparison, Mapping[str, Any], float]:
    """Asks until the answers match ``rows``, bounded by how long the cluster's DNS cache may answer the old way
    (a per-pod name a peer looked up before the pod was Ready stays NXDOMAIN for up to 30 s on kind 1.31); returns
    the last comparison, its results and the seconds it took."""
    bound = dns_change_timeout(deployment, [r.query[0] for r in _expectations(deployment) if not r.search])

    def matches() -> tuple[bool, tuple[Comparison, Mapping[str, Any]]]:
        comparison, results = _ask(probe, rows, transport, namespace)
        return comparison.is_same, (comparison, results)

    _, (comparison, results), seconds = eventually(matches, bound, interval=1.0)
    return comparison, results, seconds


@applies(not_declared(DNS_BLOCKED))
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_records_from_the_cells_namespace(
    natsnet_cell: Cell, natsnet_probe: Prober, transport: str, record_property: pytest.RecordProperty
) -> None:
    """ClusterIP A/SRV/PTR, headless A per ready endpoint, per-pod names, SRV per named port, the schema TXT,
    and the short names the chart's routes use, resolved through the pod's search path; within the bound of the
    cluster's DNS cache (``_settled``)."""
    deployment = natsnet_cell.deployment
    rows = [r for r in _expectations(deployment) if not r.search or r.client_namespace == deployment.namespace]
    comparison, results, seconds = _settled(deployment, natsnet_probe, rows, transport)
    record_property(f"dns_records_settled_{transport}_seconds", round(seconds, 2))
    latencies = [float(r.detail.get("latency_ms") or 0) for r in results.values() if r.detail.get("latency_ms")]
    if latencies:
        record_property(f"dns_latency_ms_{transport}_median", round(statistics.median(latencies), 2))
    comparison.assert_same(f"DNS records of {deployment.namespace} over {transport.upper()}")


@applies(not_declared(DNS_BLOCKED))
def test_short_names_do_not_cross_namespaces(natsnet_cell: Cell, natsnet_probe: Prober) -> None:
    """From another namespace the short names (``nats``, ``nats-0.nats-headless``) give NXDOMAIN while the
    FQDNs resolve: why route URLs made of short names only work inside the release's namespace."""
    deployment = natsnet_cell.deployment
    other = _other_namespace(deployment)
    deployment.create_namespace(other)
    rows = [r for r in _expectations(deployment, other) if r.search and r.client_namespace == other]
    assert rows, "no cross-namespace expectations: the cell has no Services"
    comparison, _, _ = _settled(deployment, natsnet_probe, rows, "udp", namespace=other)
    comparison.assert_same(f"names of {deployment.namespace} resolved from {other}")


@applies(not_declared(DNS_BLOCKED))
def test_resolv_conf_is_cluster_first(natsnet_cell: Cell, natsnet_probe: Prober) -> None:
    """A ClusterFirst pod's resolv.conf: kube-dns ClusterIP, the namespace's search list, ndots:5."""
    deployment = natsnet_cell.deployment
    kube_dns = kube.find(deployment.objects("Service", "kube-system"), "Service", "kube-dns")
    assert kube_dns is not None, "no kube-system/kube-dns Service: the cluster has no standard DNS Service"
    answer = natsnet_probe.raw([])
    lines = [line.split() for line in str(answer.get("resolv_conf", "")).splitlines() if line.strip()]
    nameservers = [line[1] for line in lines if line[0] == "nameserver"]
    search = next((line[1:] for line in lines if line[0] == "search"), [])
    options = [opt for line in lines if line[0] == "options" for opt in line[1:]]
    ns, zone = deployment.namespace, deployment.info.cluster_domain
    expected = {
        "nameserver": [kube.spec(kube_dns)["clusterIP"]],
        "search (first three)": [f"{ns}.svc.{zone}", f"svc.{zone}", zone],
        "ndots": ["ndots:5"],
    }
    observed = {
        "nameserver": nameservers,
        "search (first three)": search[:3],
        "ndots": [o for o in options if o.startswith("ndots:")],
    }
    Comparison.from_dicts(expected, observed).assert_same("resolv.conf of a ClusterFirst pod")


def _endpoint(deployment: Deployment, pod_name: str) -> dict[str, object] | None:
    for eps in deployment.objects("EndpointSlice"):
        if not kube.labels(eps).get("kubernetes.io/service-name", "").endswith("headless"):
            continue
        for endpoint in eps.get("endpoints") or []:
            if (endpoint.get("targetRef") or {}).get("name") == pod_name:
                return dict(endpoint.get("conditions") or {})
    return None


@applies(not_declared(DNS_BLOCKED))
def test_not_ready_pod_follows_publish_not_ready_addresses(
    natsnet_cell: Cell, natsnet_probe: Prober, record_property: pytest.RecordProperty
) -> None:
    """Force one server not-ready (readinessGate): with publishNotReadyAddresses its EndpointSlice entry is
    ready=true/serving=false and its name resolves; without, ready=false and the name is NXDOMAIN; then back.
    DNS may follow each change only once its cache lets it: the wait is the cluster's DNS profile's bound."""
    deployment = natsnet_cell.deployment
    group = servers(deployment)
    require(applicability.readiness_gate(group.pods, POD_GATE_CONDITION))
    pod_name = group.names[-1]
    headless = kube.find(deployment.objects("Service"), "Service", headless_service(deployment)) or {}
    pnra = bool(kube.spec(headless).get("publishNotReadyAddresses", False))
    qname = fqdn(pod_name, kube.name(headless), deployment.namespace, "svc", deployment.info.cluster_domain)
    dns_wait = dns_change_timeout(deployment, [qname])
    record_property("dns_change_timeout_seconds", dns_wait)

    def expectation() -> DnsExpectation:
        """What the objects (EndpointSlices, the headless Service) say ``qname`` answers now."""
        rows = [r for r in _expectations(deployment) if r.query == (qname, "A") and not r.search]
        assert len(rows) == 1, f"expected one expectation for {qname} A, found {len(rows)}"
        return rows[0]

    def dns_matches_objects() -> tuple[bool, Comparison]:
        comparison = _check(natsnet_probe, [expectation()], "udp")
        return comparison.is_same, comparison

    deployment.set_pod_condition(pod_name, POD_GATE_CONDITION, False)
    try:
        done, conditions, seconds = eventually(
            lambda: ((c := _endpoint(deployment, pod_name)) is not None and c.get("serving") is False, c),
            CONTROLLER_LAG,
        )
        assert done, f"{pod_name} did not turn not-ready in its EndpointSlice; last conditions: {conditions}"
        Comparison.from_dicts(
            {"ready": pnra, "serving": False},
            {k: conditions.get(k) for k in ("ready", "serving")},
            {"ready": f"publishNotReadyAddresses={pnra}", "serving": "pod not Ready"},
        ).assert_same(f"EndpointSlice conditions of not-ready {pod_name}")
        done, comparison, seconds = eventually(dns_matches_objects, dns_wait, interval=1.0)
        record_property("not_ready_dns_seconds", round(seconds, 2))
        expected_rcode = "NOERROR" if pnra else "NXDOMAIN"
        assert expectation().rcode == expected_rcode, (
            f"objects say {qname} answers {expectation().rcode}, but with publishNotReadyAddresses={pnra} the "
            f"spec says {expected_rcode}"
        )
        comparison.assert_same(f"{qname} while {pod_name} is not ready")
    finally:
        deployment.set_pod_condition(pod_name, POD_GATE_CONDITION, True)
    ready_again = {"ready": True, "serving": True, "terminating": False}
    done, conditions, _ = eventually(lambda: ((c := _endpoint(deployment, pod_name)) == ready_again, c), CONTROLLER_LAG)
    assert done, f"{pod_name} did not turn ready again in its EndpointSlice; last conditions: {conditions}"
    done, comparison, seconds = eventually(dns_matches_objects, dns_wait, interval=1.0)
    record_property("ready_again_dns_seconds", round(seconds, 2))
    comparison.assert_same(f"{qname} once {pod_name} is ready again")
