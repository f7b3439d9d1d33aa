"""Kubernetes DNS (schema 1.1.0) as data: live objects -> an authoritative zone that answers queries.

Pure: no sockets, no files. ``build_zone(objects, zone)`` reads Services, EndpointSlices and Namespaces and
``Zone.answer(qname, qtype)`` returns the sections a server sends. Semantics follow the Kubernetes DNS
specification and CoreDNS's ``kubernetes`` plugin:

- an endpoint is published when its EndpointSlice ``conditions.ready`` is nil or true (``serving`` and
  ``terminating`` are ignored, as in CoreDNS); a headless Service without one has no name (NXDOMAIN);
- an endpoint without ``hostname`` is named by its dashed IP (``198-18-0-10``), as CoreDNS does;
- a name that exists (or is an empty non-terminal such as ``svc.<zone>``) answers other types with NOERROR,
  no answer and the SOA in authority; unknown names in the zones answer NXDOMAIN + SOA; names outside the
  zones answer NXDOMAIN without SOA (a stand-in for an upstream: REFUSED would make glibc retry);
- negative caching is a property of the SOA only: its TTL and ``minimum`` both equal ``negative_ttl``, which
  follows ``ttl`` when not given (CoreDNS: "the SOA minttl follows the ttl option"). 0 disables it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.rrset

from pytest_natsnet import kube

DEFAULT_ZONE = "cluster.local"
DEFAULT_TTL = 5
SCHEMA_VERSION = "1.1.0"
VERSION_TTL = 28800
"""CoreDNS answers ``dns-version`` with this TTL whatever the ``ttl`` option."""
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
REVERSE_ZONES = ("in-addr.arpa.", "ip6.arpa.")

Key = tuple[dns.name.Name, dns.rdatatype.RdataType]


@dataclass(frozen=True)
class Answer:
    """What a server puts in a response: rcode and the three record sections."""

    rcode: dns.rcode.Rcode
    answers: tuple[dns.rrset.RRset, ...] = ()
    additional: tuple[dns.rrset.RRset, ...] = ()
    authority: tuple[dns.rrset.RRset, ...] = ()
    authoritative: bool = True
    """False for names outside the served zones (the stand-in upstream answer)."""

    def answer_texts(self) -> list[str]:
        """The answer section as ``rdata`` strings (for logs and assertions)."""
        return [rd.to_text() for rrset in self.answers for rd in rrset]


@dataclass(frozen=True)
class Endpoint:
    """A published (ready) endpoint of a Service."""

    hostname: str
    addresses: tuple[str, ...]
    ports: tuple[tuple[str, int, str], ...]
    """Named ports of its slice: (name, port, protocol)."""


@dataclass
class Zone:
    """The records of the cluster zone and the reverse zones, with the names that exist."""

    origin: dns.name.Name
    ttl: int
    negative_ttl: int
    records: dict[Key, dns.rrset.RRset] = field(default_factory=dict)
    names: set[dns.name.Name] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    """Objects or fields that were skipped (bad IPs, ...), one line each."""

    @property
    def apexes(self) -> tuple[dns.name.Name, ...]:
        return (self.origin, *(dns.name.from_text(z) for z in REVERSE_ZONES))

    def add(
        self, owner: dns.name.Name, rdtype: dns.rdatatype.RdataType, text: str, ttl: int | None = None
    ) -> None:
        """Adds one record (and makes its owner and every ancestor up to the apex exist)."""
        key = (owner, rdtype)
        rrset = self.records.get(key)
        if rrset is None:
            rrset = dns.rrset.RRset(owner, dns.rdataclass.IN, rdtype)
            self.records[key] = rrset
        rrset.add(dns.rdata.from_text(dns.rdataclass.IN, rdtype, text), self.ttl if ttl is None else ttl)
        self.add_name(owner)

    def add_name(self, owner: dns.name.Name) -> None:
        """Makes ``owner`` and its ancestors up to the apex exist (empty non-terminals answer NODATA)."""
        apex = self._apex_of(owner)
        name = owner
        while apex is not None and name not in self.names and name.is_subdomain(apex):
            self.names.add(name)
            if name == apex:
                break
            name = name.parent()

    def _apex_of(self, qname: dns.name.Name) -> dns.name.Name | None:
        for apex in self.apexes:
            if qname.is_subdomain(apex):
                return apex
        return None

    def soa(self, apex: dns.name.Name) -> dns.rrset.RRset:
        """The SOA of ``apex``; its TTL and minimum are the negative-caching TTL."""
        rrset = dns.rrset.RRset(apex, dns.rdataclass.IN, dns.rdatatype.SOA)
        origin = self.origin.to_text()
        text = f"ns.dns.{origin} hostmaster.{origin} 1 7200 1800 86400 {self.negative_ttl}"
        rrset.add(dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.SOA, text), self.negative_ttl)
        return rrset

    def answer(self, qname: dns.name.Name | str, qtype: dns.rdatatype.RdataType | str) -> Answer:
        """Answers one question; names compare case-insensitively, the answer owner keeps the asked case."""
        name = dns.name.from_text(qname) if isinstance(qname, str) else qname
        rdtype = dns.rdatatype.RdataType.make(qtype)
        apex = self._apex_of(name)
        if apex is None:
            return Answer(dns.rcode.NXDOMAIN, authoritative=False)
        if name not in self.names:
            return Answer(dns.rcode.NXDOMAIN, authority=(self.soa(apex),))
        if rdtype == dns.rdatatype.SOA and name == apex:
            return Answer(dns.rcode.NOERROR, answers=(self.soa(apex),))
        found = self._lookup(name, rdtype)
        if not found:
            return Answer(dns.rcode.NOERROR, authority=(self.soa(apex),))
        answers = tuple(_renamed(rrset, name) for rrset in found)
        return Answer(dns.rcode.NOERROR, answers=answers, additional=self._additional(found))

    def _lookup(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> list[dns.rrset.RRset]:
        if rdtype == dns.rdatatype.ANY:
            return [rrset for (owner, _), rrset in self.records.items() if owner == name]
        exact = self.records.get((name, rdtype))
        if exact is not None:
            return [exact]
        cname = self.records.get((name, dns.rdatatype.CNAME))
        return [cname] if cname is not None else []

    def _additional(self, found: list[dns.rrset.RRset]) -> tuple[dns.rrset.RRset, ...]:
        """Address records of SRV targets that the zone holds (the spec's optional Additional section)."""
        extra: list[dns.rrset.RRset] = []
        for rrset in found:
            if rrset.rdtype != dns.rdatatype.SRV:
                continue
            for target in sorted({rd.target for rd in rrset}):
                for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                    address = self.records.get((target, rdtype))
                    if address is not None and address not in extra:
                        extra.append(address)
        return tuple(extra)


def _renamed(rrset: dns.rrset.RRset, owner: dns.name.Name) -> dns.rrset.RRset:
    copy = dns.rrset.RRset(owner, rrset.rdclass, rrset.rdtype)
    for rdata in rrset:
        copy.add(rdata, rrset.ttl)
    return copy


def resolv_conf(namespace: str, nameserver: str, zone: str = DEFAULT_ZONE) -> str:
    """The kubelet's ``/etc/resolv.conf`` for a ``dnsPolicy: ClusterFirst`` pod in ``namespace``."""
    zone = zone.rstrip(".")
    return f"search {namespace}.svc.{zone} svc.{zone} {zone}\nnameserver {nameserver}\noptions ndots:5\n"


def dashed_hostname(address: str) -> str:
    """CoreDNS's hostname for an endpoint without one: the IP with dots (or colons) as dashes."""
    return address.replace(".", "-").replace(":", "-")


def endpoint_is_ready(endpoint: Mapping[str, Any]) -> bool:
    """EndpointSlice ``conditions.ready``: nil means true (CoreDNS ``endpointsliceReady``)."""
    ready = (endpoint.get("conditions") or {}).get("ready")
    return ready is None or bool(ready)


def _address_type(address: str) -> dns.rdatatype.RdataType:
    return dns.rdatatype.AAAA if ipaddress.ip_address(address).version == 6 else dns.rdatatype.A


def _named_ports(ports: Iterable[Mapping[str, Any]]) -> tuple[tuple[str, int, str], ...]:
    named = []
    for port in ports:
        if port.get("name") and port.get("port") is not None:
            named.append((str(port["name"]), int(port["port"]), str(port.get("protocol") or "TCP")))
    return tuple(named)


def ready_endpoints(service: Mapping[str, Any], slices: Iterable[Mapping[str, Any]]) -> list[Endpoint]:
    """The published endpoints of ``service`` across all its EndpointSlices (same namespace, label)."""
    svc_name, svc_ns = kube.name(service), kube.namespace_of(service, "default")
    endpoints = []
    for eps in slices:
        same_namespace = kube.namespace_of(eps, "default") == svc_ns
        if not same_namespace or kube.labels(eps).get(SERVICE_NAME_LABEL) != svc_name:
            continue
        if str(eps.get("addressType", "IPv4")) not in ("IPv4", "IPv6"):
            continue
        ports = _named_ports(eps.get("ports") or [])
        for endpoint in eps.get("endpoints") or []:
            addresses = tuple(str(a) for a in endpoint.get("addresses") or [])
            if not addresses or not endpoint_is_ready(endpoint):
                continue
            hostname = str(endpoint.get("hostname") or dashed_hostname(addresses[0]))
            endpoints.append(Endpoint(hostname, addresses, ports))
    return endpoints


def _service_ips(spec: Mapping[str, Any]) -> list[str]:
    ips = [str(ip) for ip in spec.get("clusterIPs") or []]
    if not ips and spec.get("clusterIP"):
        ips = [str(spec["clusterIP"])]
    return [ip for ip in ips if ip != "None"]


def _srv_owner(port: tuple[str, int, str], service_fqdn: dns.name.Name) -> dns.name.Name:
    name, _, protocol = port
    return dns.name.from_text(f"_{name}._{protocol.lower()}", service_fqdn)


def _add_cluster_ip_service(zone: Zone, fqdn: dns.name.Name, spec: Mapping[str, Any]) -> None:
    zone.add_name(fqdn)
    for ip in _service_ips(spec):
        zone.add(fqdn, _address_type(ip), ip)
        zone.add(dns.reversename.from_address(ip), dns.rdatatype.PTR, fqdn.to_text())
    for port in _named_ports(spec.get("ports") or []):
        zone.add(_srv_owner(port, fqdn), dns.rdatatype.SRV, f"0 100 {port[1]} {fqdn.to_text()}")


def _add_headless_service(zone: Zone, fqdn: dns.name.Name, endpoints: list[Endpoint]) -> None:
    srv_targets: dict[dns.name.Name, list[tuple[int, dns.name.Name]]] = {}
    for endpoint in endpoints:
        host_fqdn = dns.name.from_text(endpoint.hostname, fqdn)
        for address in endpoint.addresses:
            rdtype = _address_type(address)
            zone.add(fqdn, rdtype, address)
            zone.add(host_fqdn, rdtype, address)
            zone.add(dns.reversename.from_address(address), dns.rdatatype.PTR, host_fqdn.to_text())
        for port in endpoint.ports:
            srv_targets.setdefault(_srv_owner(port, fqdn), []).append((port[1], host_fqdn))
    for owner, targets in srv_targets.items():
        weight = max(1, 100 // len(targets))
        for port_number, target in targets:
            zone.add(owner, dns.rdatatype.SRV, f"0 {weight} {port_number} {target.to_text()}")


def _add_service(zone: Zone, service: Mapping[str, Any], slices: list[kube.Obj]) -> None:
    spec = kube.spec(service)
    namespace = kube.namespace_of(service, "default")
    fqdn = dns.name.from_text(f"{kube.name(service)}.{namespace}.svc", zone.origin)
    if spec.get("type") == "ExternalName":
        target = str(spec.get("externalName") or "").rstrip(".")
        if target:
            zone.add(fqdn, dns.rdatatype.CNAME, f"{target}.")
        return
    if spec.get("clusterIP") == "None":
        endpoints = ready_endpoints(service, slices)
        if endpoints:
            _add_headless_service(zone, fqdn, endpoints)
        return
    _add_cluster_ip_service(zone, fqdn, spec)


def build_zone(
    objects: Iterable[Mapping[str, Any]],
    zone: str = DEFAULT_ZONE,
    ttl: int = DEFAULT_TTL,
    negative_ttl: int | None = None,
) -> Zone:
    """The zone for the Services, EndpointSlices and Namespaces in ``objects`` (other kinds are ignored).

    Objects without ``metadata.namespace`` are in ``default``, as the API server would put them.
    """
    objects = list(objects)
    origin = dns.name.from_text(zone.rstrip(".") + ".")
    result = Zone(origin, ttl, ttl if negative_ttl is None else negative_ttl)
    for apex in result.apexes:
        result.add_name(apex)
    version = dns.name.from_text("dns-version", origin)
    result.add(version, dns.rdatatype.TXT, f'"{SCHEMA_VERSION}"', VERSION_TTL)
    result.add_name(dns.name.from_text("svc", origin))
    for namespace in kube.of_kind(objects, "Namespace"):
        result.add_name(dns.name.from_text(f"{kube.name(namespace)}.svc", origin))
    slices = kube.of_kind(objects, "EndpointSlice")
    for service in kube.of_kind(objects, "Service"):
        try:
            _add_service(result, service, slices)
        except (ValueError, dns.exception.DNSException) as err:
            where = f"{kube.namespace_of(service, 'default')}/{kube.name(service)}"
            result.problems.append(f"Service {where} skipped: {err}")
    return result
