"""Expected DNS answers from objects (spec 1.1.0) and their comparison with probe results."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_natsnet.expect.dns import DnsExpectation, compare, expected_records, request_key
from pytest_natsnet.probe.model import ProbeResult, outcome_of

NS, OTHER, ZONE = "natsnet", "natsnet-other", "cluster.local"
PORTS = [{"name": "nats", "port": 4222}, {"name": "cluster", "port": 6222}, {"name": "monitor", "port": 8222},
         {"port": 9999}]


def service(name: str, cluster_ip: str, ports: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"kind": "Service", "metadata": {"name": name, "namespace": NS},
            "spec": {"clusterIP": cluster_ip, "ports": ports if ports is not None else PORTS}}


def endpoint(ip: str, hostname: str | None, ready: bool | None) -> dict[str, Any]:
    conditions = {} if ready is None else {"ready": ready}
    data: dict[str, Any] = {"addresses": [ip], "conditions": conditions}
    if hostname:
        data["hostname"] = hostname
    return data


def endpointslice(service_name: str, *endpoints: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "EndpointSlice", "metadata": {"name": f"{service_name}-abc", "namespace": NS,
                                                  "labels": {"kubernetes.io/service-name": service_name}},
            "ports": [{"name": "nats", "port": 4222}, {"name": "cluster", "port": 6222},
                      {"name": "monitor", "port": 8222}],
            "endpoints": list(endpoints)}


SERVICES = [service("nats", "198.18.128.20", [{"name": "nats", "port": 4222}]),
            service("nats-headless", "None")]
SLICES = [endpointslice("nats-headless", endpoint("198.18.0.10", "nats-0", True),
                        endpoint("198.18.0.11", "nats-1", None), endpoint("198.18.0.12", "nats-2", False))]
H = "nats-headless.natsnet.svc.cluster.local."


def table(rows: list[DnsExpectation]) -> dict[str, tuple[str, frozenset[str], str]]:
    return {r.key: (r.rcode, r.answers, r.match) for r in rows}


def test_records_for_chart_services() -> None:
    got = table(expected_records(NS, SERVICES, SLICES, zone=ZONE))
    expected = {
        "dns-version.cluster.local. TXT": ("NOERROR", frozenset({"1.1.0"}), "exact"),
        "nats.natsnet.svc.cluster.local. A": ("NOERROR", frozenset({"198.18.128.20"}), "exact"),
        "20.128.18.198.in-addr.arpa. PTR": (
            "NOERROR", frozenset({"nats.natsnet.svc.cluster.local."}), "contains"),
        "_nats._tcp.nats.natsnet.svc.cluster.local. SRV": (
            "NOERROR", frozenset({"4222 nats.natsnet.svc.cluster.local."}), "exact"),
        f"{H} A": ("NOERROR", frozenset({"198.18.0.10", "198.18.0.11"}), "exact"),
        f"nats-0.{H} A": ("NOERROR", frozenset({"198.18.0.10"}), "exact"),
        f"nats-1.{H} A": ("NOERROR", frozenset({"198.18.0.11"}), "exact"),
        f"nats-2.{H} A": ("NXDOMAIN", frozenset(), "exact"),
        "10.0.18.198.in-addr.arpa. PTR": ("NOERROR", frozenset({f"nats-0.{H}"}), "contains"),
        "11.0.18.198.in-addr.arpa. PTR": ("NOERROR", frozenset({f"nats-1.{H}"}), "contains"),
        **{f"_{port}._tcp.{H} SRV": (
            "NOERROR", frozenset({f"{number} nats-0.{H}", f"{number} nats-1.{H}"}), "exact")
           for port, number in (("nats", 4222), ("cluster", 6222), ("monitor", 8222))},
        "nats A from natsnet": ("NOERROR", frozenset({"198.18.128.20"}), "exact"),
        "nats-headless A from natsnet": ("NOERROR", frozenset({"198.18.0.10", "198.18.0.11"}), "exact"),
        "nats-0.nats-headless A from natsnet": ("NOERROR", frozenset({"198.18.0.10"}), "exact"),
        "nats-1.nats-headless A from natsnet": ("NOERROR", frozenset({"198.18.0.11"}), "exact"),
        "nats-2.nats-headless A from natsnet": ("NXDOMAIN", frozenset(), "exact"),
    }
    assert got == expected


def test_unnamed_port_has_no_srv_and_not_ready_has_no_ptr() -> None:
    keys = {r.key for r in expected_records(NS, SERVICES, SLICES)}
    assert not any("9999" in k or "__tcp" in k for k in keys)
    assert "12.0.18.198.in-addr.arpa. PTR" not in keys


def test_headless_with_no_ready_endpoints_is_nxdomain() -> None:
    slices = [endpointslice("nats-headless", endpoint("198.18.0.10", "nats-0", False))]
    got = table(expected_records(NS, [service("nats-headless", "None")], slices))
    assert got[f"{H} A"] == ("NXDOMAIN", frozenset(), "exact")
    assert got[f"_cluster._tcp.{H} SRV"] == ("NXDOMAIN", frozenset(), "exact")


def test_slices_of_other_services_and_namespaces_are_ignored() -> None:
    foreign = endpointslice("other", endpoint("198.18.0.99", "x", True))
    elsewhere = service("nats", "198.18.128.99")
    elsewhere["metadata"]["namespace"] = "elsewhere"
    got = table(expected_records(NS, [*SERVICES, elsewhere], [*SLICES, foreign]))
    assert "198.18.0.99" not in str(got) and "198.18.128.99" not in str(got)


def test_endpoint_without_hostname_uses_dashed_ip_in_srv() -> None:
    slices = [endpointslice("nats-headless", endpoint("198.18.0.10", None, True))]
    got = table(expected_records(NS, [service("nats-headless", "None")], slices))
    assert got[f"_cluster._tcp.{H} SRV"][1] == frozenset({f"6222 198-18-0-10.{H}"})


def test_short_names_fail_from_another_namespace_where_fqdn_resolves() -> None:
    got = table(expected_records(NS, SERVICES, SLICES, other_namespace=OTHER))
    assert got["nats-0.nats-headless A from natsnet-other"] == ("NXDOMAIN", frozenset(), "exact")
    assert got["nats A from natsnet-other"] == ("NXDOMAIN", frozenset(), "exact")
    assert got[f"nats-0.{H} A from natsnet-other"] == ("NOERROR", frozenset({"198.18.0.10"}), "exact")


def result(key: str, outcome: str, answers: list[str]) -> ProbeResult:
    return ProbeResult(key, "dns", outcome_of(outcome), {"answers": answers}, 1.0, outcome)


def test_compare_same_contains_and_missing() -> None:
    rows = [r for r in expected_records(NS, SERVICES, SLICES) if r.key in (
        f"{H} A", "10.0.18.198.in-addr.arpa. PTR", f"nats-2.{H} A")]
    key = {r.key: request_key(r, "tcp") for r in rows}
    observed = [
        result(key[f"{H} A"], "NOERROR", ["198.18.0.11", "198.18.0.10"]),
        result(key["10.0.18.198.in-addr.arpa. PTR"], "NOERROR",
               [f"nats-0.{H}", "nats.natsnet.svc.cluster.local."]),
    ]
    comparison = compare(rows, observed, transport="tcp")
    assert comparison.counts == (2, 1)
    missing = comparison.cells[key[f"nats-2.{H} A"]]
    assert (missing.observed.rcode, missing.same) == ("missing", False)


@pytest.mark.parametrize(("outcome", "answers", "same"), [
    ("NOERROR", ["198.18.0.10", "198.18.0.11"], True),
    ("NOERROR", ["198.18.0.10"], False),
    ("NOERROR", ["198.18.0.10", "198.18.0.11", "198.18.0.12"], False),
    ("NXDOMAIN", [], False),
    ("timeout", [], False),
])
def test_compare_headless_set_exactly(outcome: str, answers: list[str], same: bool) -> None:
    (row,) = [r for r in expected_records(NS, SERVICES, SLICES) if r.key == f"{H} A"]
    comparison = compare([row], [result(request_key(row, "udp"), outcome, answers)])
    assert comparison.is_same is same


def test_requests_carry_search_and_transport() -> None:
    row = next(r for r in expected_records(NS, SERVICES, SLICES) if r.search)
    request = row.request("tcp")
    assert (request.transport, request.search, request.name) == ("tcp", True, row.query[0])
    assert request.key == request_key(row, "tcp")


def test_failure_text_shows_both_sides() -> None:
    (row,) = [r for r in expected_records(NS, SERVICES, SLICES) if r.key == f"{H} A"]
    text = compare([row], [result(request_key(row, "udp"), "NXDOMAIN", [])]).render_rows("dns")
    assert "NOERROR {198.18.0.10, 198.18.0.11}" in text and "NXDOMAIN {-}" in text and "✗" in text
