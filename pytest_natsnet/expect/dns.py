"""Expected DNS answers from observed objects (Kubernetes DNS spec 1.1.0), and their comparison with probes.

Pure: Services, EndpointSlices and Pods of one namespace in, :class:`DnsExpectation` rows out. Answers use the
probe's normalised text: addresses, lowercase absolute names, SRV as ``<port> <target>``, TXT unquoted.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pytest_natsnet import kube
from pytest_natsnet.kube import Obj
from pytest_natsnet.probe.model import DnsRequest, ProbeResult, RdType, Transport
from pytest_natsnet.table import Comparison

SCHEMA_VERSION = "1.1.0"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
Match = Literal["exact", "contains"]
_RDTYPES: dict[str, RdType] = {"A": "A", "AAAA": "AAAA", "SRV": "SRV", "PTR": "PTR", "TXT": "TXT"}


@dataclass(frozen=True)
class DnsExpectation:
    query: tuple[str, str]
    """``(qname, rdtype)``; qname absolute unless ``search``."""
    rcode: str
    answers: frozenset[str]
    reason: str
    match: Match = "exact"
    """``contains``: the observed answers must include these (PTR: one IP may have several names)."""
    search: bool = False
    client_namespace: str = ""
    """Where the asking pod runs (matters only for names resolved through the search path)."""

    @property
    def key(self) -> str:
        qname, rdtype = self.query
        where = f" from {self.client_namespace}" if self.search else ""
        return f"{qname} {rdtype}{where}"

    def request(self, transport: Transport = "udp", timeout: float = 3.0) -> DnsRequest:
        qname, rdtype = self.query
        key = request_key(self, transport)
        return DnsRequest(key, qname, _RDTYPES[rdtype], transport, self.search, timeout)


@dataclass(frozen=True)
class DnsObservation:
    rcode: str
    answers: frozenset[str]
    match: Match = "exact"

    def __str__(self) -> str:
        shown = ", ".join(sorted(self.answers)) or "-"
        prefix = "⊇ " if self.match == "contains" else ""
        return f"{self.rcode} {prefix}{{{shown}}}"


@dataclass(frozen=True)
class _Endpoint:
    addresses: tuple[str, ...]
    hostname: str | None
    ready: bool
    ports: Mapping[str, tuple[int, str]]


def fqdn(*labels: str) -> str:
    return ".".join(label.strip(".") for label in labels).lower() + "."


def address_rdtype(ip: str) -> str:
    return "AAAA" if ipaddress.ip_address(ip).version == 6 else "A"


def reverse_name(ip: str) -> str:
    return ipaddress.ip_address(ip).reverse_pointer + "."


def is_headless(service: Mapping[str, Any]) -> bool:
    return str(kube.spec(service).get("clusterIP") or "") == "None"


def endpoint_ready(endpoint: Mapping[str, Any]) -> bool:
    """EndpointSlice ``conditions.ready``: nil means true (what CoreDNS publishes)."""
    return (endpoint.get("conditions") or {}).get("ready") is not False


def endpoints_of(service_name: str, endpointslices: Iterable[Mapping[str, Any]]) -> list[_Endpoint]:
    found: list[_Endpoint] = []
    for slice_ in endpointslices:
        if kube.labels(slice_).get(SERVICE_NAME_LABEL) != service_name:
            continue
        ports = {str(p["name"]): (int(p["port"]), str(p.get("protocol") or "TCP"))
                 for p in slice_.get("ports") or [] if p.get("name") and p.get("port") is not None}
        for endpoint in slice_.get("endpoints") or []:
            found.append(_Endpoint(tuple(str(a) for a in endpoint.get("addresses") or []),
                                   endpoint.get("hostname"), endpoint_ready(endpoint), ports))
    return found


def endpoint_hostname(endpoint: _Endpoint, address: str) -> str:
    """The endpoint's hostname, else CoreDNS's dashed address."""
    return endpoint.hostname or address.replace(".", "-").replace(":", "-")


def named_ports(service: Mapping[str, Any]) -> list[tuple[str, int, str]]:
    return [(str(p["name"]), int(p["port"]), str(p.get("protocol") or "TCP"))
            for p in kube.spec(service).get("ports") or [] if p.get("name")]


def _clusterip_expectations(service: Obj, ns: str, zone: str) -> list[DnsExpectation]:
    name = kube.name(service)
    host = fqdn(name, ns, "svc", zone)
    ip = str(kube.spec(service)["clusterIP"])
    rows = [
        DnsExpectation((host, address_rdtype(ip)), "NOERROR", frozenset({ip}), f"spec.clusterIP of {name}"),
        DnsExpectation((reverse_name(ip), "PTR"), "NOERROR", frozenset({host}),
                       f"PTR of ClusterIP of Service {name}", match="contains"),
    ]
    for port_name, port, protocol in named_ports(service):
        srv = fqdn(f"_{port_name}", f"_{protocol.lower()}", host)
        rows.append(DnsExpectation((srv, "SRV"), "NOERROR", frozenset({f"{port} {host}"}),
                                   f"SRV of named port {port_name} → Service name"))
    return rows


def _headless_expectations(service: Obj, ns: str, zone: str, slices: Sequence[Obj]) -> list[DnsExpectation]:
    name = kube.name(service)
    host = fqdn(name, ns, "svc", zone)
    endpoints = endpoints_of(name, slices)
    ready = [e for e in endpoints if e.ready]
    ready_ips = sorted({a for e in ready for a in e.addresses})
    rows: list[DnsExpectation] = []
    for rdtype in sorted({address_rdtype(ip) for ip in ready_ips}) or ["A"]:
        ips = frozenset(ip for ip in ready_ips if address_rdtype(ip) == rdtype)
        rcode = "NOERROR" if ips else "NXDOMAIN"
        why = f"headless Service {name}: ready endpoints" + ("" if ips else " (none ready → NXDOMAIN)")
        rows.append(DnsExpectation((host, rdtype), rcode, ips, why))
    for endpoint in endpoints:
        for address in endpoint.addresses:
            pod_host = fqdn(endpoint_hostname(endpoint, address), host)
            if endpoint.ready:
                rows.append(DnsExpectation((pod_host, address_rdtype(address)), "NOERROR",
                                           frozenset({address}), f"endpoint of {name} with ready != false"))
                rows.append(DnsExpectation((reverse_name(address), "PTR"), "NOERROR", frozenset({pod_host}),
                                           f"PTR of ready endpoint of {name}", match="contains"))
            elif endpoint.hostname:
                rows.append(DnsExpectation((pod_host, address_rdtype(address)), "NXDOMAIN", frozenset(),
                                           f"endpoint of {name} has ready=false"))
    for port_name, port, protocol in named_ports(service):
        targets = frozenset(
            f"{e.ports.get(port_name, (port, protocol))[0]} {fqdn(endpoint_hostname(e, a), host)}"
            for e in ready for a in e.addresses
        )
        rows.append(DnsExpectation((fqdn(f"_{port_name}", f"_{protocol.lower()}", host), "SRV"),
                                   "NOERROR" if targets else "NXDOMAIN", targets,
                                   f"SRV of named port {port_name}: one per ready endpoint"))
    return rows


def _short_name_expectations(rows: Sequence[DnsExpectation], ns: str, zone: str,
                             other_namespace: str | None) -> list[DnsExpectation]:
    """Names relative to the namespace (``nats``, ``nats-0.nats-headless``) through the search path."""
    suffix = f".{ns}.svc.{zone}.".lower()
    short: list[DnsExpectation] = []
    for row in rows:
        qname, rdtype = row.query
        if rdtype not in ("A", "AAAA") or not qname.endswith(suffix):
            continue
        relative = qname[: -len(suffix)]
        short.append(DnsExpectation((relative, rdtype), row.rcode, row.answers,
                                    f"search path of {ns}: {row.reason}", search=True, client_namespace=ns))
        if other_namespace:
            short.append(DnsExpectation((relative, rdtype), "NXDOMAIN", frozenset(),
                                        f"short name does not resolve outside {ns}", search=True,
                                        client_namespace=other_namespace))
            if row.rcode == "NOERROR":
                short.append(DnsExpectation(row.query, row.rcode, row.answers,
                                            f"FQDN resolves from {other_namespace}: {row.reason}",
                                            search=True, client_namespace=other_namespace))
    return short


def expected_records(
    namespace: str,
    services: Sequence[Obj],
    endpointslices: Sequence[Obj],
    pods: Sequence[Obj] = (),
    zone: str = "cluster.local",
    other_namespace: str | None = None,
) -> list[DnsExpectation]:
    """Every record the dns_records suite checks for ``namespace`` (and from ``other_namespace``)."""
    del pods  # DNS publishes endpoints; pods only explain them (kept for a uniform signature)
    rows = [DnsExpectation((fqdn("dns-version", zone), "TXT"), "NOERROR", frozenset({SCHEMA_VERSION}),
                           "schema version TXT record")]
    for service in services:
        external = kube.spec(service).get("type") == "ExternalName"
        if kube.namespace_of(service, namespace) != namespace or external:
            continue
        if is_headless(service):
            rows += _headless_expectations(service, namespace, zone, endpointslices)
        elif kube.spec(service).get("clusterIP"):
            rows += _clusterip_expectations(service, namespace, zone)
    return rows + _short_name_expectations(rows, namespace, zone, other_namespace)


def request_key(expectation: DnsExpectation, transport: Transport) -> str:
    return f"{transport}:{expectation.key}"


def observation_of(result: ProbeResult | None, match: Match = "exact") -> DnsObservation:
    if result is None:
        return DnsObservation("missing", frozenset(), match)
    return DnsObservation(result.raw_outcome, frozenset(str(a) for a in result.detail.get("answers") or ()),
                          match)


def matches(expected: DnsObservation, observed: DnsObservation) -> bool:
    if expected.rcode != observed.rcode:
        return False
    if expected.match == "contains":
        return expected.answers <= observed.answers
    return expected.answers == observed.answers


def compare(
    expectations: Sequence[DnsExpectation],
    observed_results: Iterable[ProbeResult] | Mapping[str, ProbeResult],
    transport: Transport = "udp",
) -> Comparison[DnsObservation]:
    """Expected vs observed per expectation; results are found by :func:`request_key`."""
    results = dict(observed_results) if isinstance(observed_results, Mapping) else {
        r.key: r for r in observed_results}
    expected: dict[Any, DnsObservation] = {}
    observed: dict[Any, DnsObservation] = {}
    reasons: dict[Any, str] = {}
    for row in expectations:
        key = request_key(row, transport)
        expected[key] = DnsObservation(row.rcode, row.answers, row.match)
        observed[key] = observation_of(results.get(key), row.match)
        reasons[key] = row.reason
    return Comparison.from_dicts(expected, observed, reasons, same=matches)
