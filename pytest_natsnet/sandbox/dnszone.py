"""Kubernetes DNS as CoreDNS's ``kubernetes`` plugin answers it: live objects in, answers out.

Pure: no sockets, no files, no cache. ``build_zone(objects, zone, ttl)`` indexes Services, EndpointSlices and
Namespaces; ``Zone.answer(qname, qtype)`` returns what the plugin writes. The rules follow CoreDNS v1.11 (what
kubeadm 1.31 deploys) configured as kubeadm does (``pods insecure``, ``fallthrough in-addr.arpa ip6.arpa``);
each names the upstream file (coredns ``plugin/kubernetes/...``, ``plugin/backend_lookup.go``) it comes from:

- a name below the zone parses as ``[_port._proto.|endpoint.]service.namespace.(svc|pod).<zone>``
  (``parse.go`` ``parseRequest``): more labels, or a first label below the zone other than ``svc``/``pod``,
  is NXDOMAIN; ``<zone>``, ``svc.<zone>``, ``pod.<zone>`` are NODATA; ``<ns>.svc.<zone>`` is NODATA when the
  Namespace exists and NXDOMAIN otherwise (``kubernetes.go`` ``namespaceExposed``, ``findServices``);
- ``<svc>.<ns>.svc``: a ClusterIP Service's IPs, a headless one's ready endpoints; an endpoint is published
  when its EndpointSlice ``conditions.ready`` is nil or true (``object/endpoint.go``); a headless Service with
  no ready endpoint is NXDOMAIN (``findServices``);
- ``<endpoint>.<svc>.<ns>.svc``: the endpoints with that hostname, for headless AND ClusterIP Services; an
  endpoint without ``hostname`` is named by its dashed IP (``endpointHostname``);
- ``_<port>._<proto>.<svc>``: the ports with that name and protocol; ``_tcp.<svc>`` asks for an endpoint named
  ``_tcp`` (NXDOMAIN); a bare Service or endpoint name matches every port, so SRV on it lists them all
  (``matchPortAndProtocol``); SRV targets are the Service name (ClusterIP) or endpoint names (headless), weight
  ``floor(100 / records)``, the targets' addresses in the additional section (``SRV``); an A query on an SRV
  name answers the addresses (``A``);
- ``<a-b-c-d>.<ns>.pod``: ``pods insecure`` answers any well-formed dashed IP in an existing namespace, whether
  or not a pod has it; labels left of it are ignored (``findPods``);
- PTR of a ClusterIP names its Service; of an endpoint IP, one name per Service with that ready endpoint,
  ClusterIP Services included (``reverse.go`` ``serviceRecordForIP``);
- TXT ``dns-version.<zone>`` is ``"1.1.0"`` with TTL 28800; TXT of a name with records is NODATA, of any other
  name NXDOMAIN (``kubernetes.go`` ``Services``); SOA below the apex is NODATA (``handler.go``);
- negative answers carry the zone's SOA: TTL ``min(300, ttl)``, minimum ``ttl`` (``SOA``);
- names outside the zone, and reverse names the plugin does not know (``fallthrough``), are not answered here:
  :attr:`Answer.upstream` tells the server to forward them.
"""

from __future__ import annotations

import functools
import ipaddress
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from pytest_natsnet import kube

DEFAULT_ZONE = "cluster.local"
DEFAULT_TTL = 5
SCHEMA_VERSION = "1.1.0"
VERSION_TTL = 28800
"""CoreDNS answers ``dns-version`` with this TTL whatever the ``ttl`` option."""
SOA_MAX_TTL = 300
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
REVERSE_ZONES = ("in-addr.arpa.", "ip6.arpa.")
NO_PORT = -1
"""CoreDNS's sentinel port of a Service or EndpointSlice without ports (no SRV record)."""
MAX_CNAME_CHAIN = 8


@dataclass(frozen=True)
class Answer:
    """What the plugin writes: rcode and the three record sections (or that the name is not its to answer)."""

    rcode: dns.rcode.Rcode
    answers: tuple[dns.rrset.RRset, ...] = ()
    additional: tuple[dns.rrset.RRset, ...] = ()
    authority: tuple[dns.rrset.RRset, ...] = ()
    authoritative: bool = True
    upstream: bool = False
    """True: outside the zone or an unknown reverse name; the server forwards it (the profile's upstream)."""

    @classmethod
    def forward(cls) -> Answer:
        return cls(dns.rcode.NOERROR, authoritative=False, upstream=True)

    def answer_texts(self) -> list[str]:
        """The answer section as ``rdata`` strings (for logs and assertions)."""
        return [rd.to_text() for rrset in self.answers for rd in rrset]


@dataclass(frozen=True)
class Port:
    name: str
    number: int
    protocol: str


SENTINEL_PORTS = (Port("", NO_PORT, ""),)


@dataclass(frozen=True)
class EndpointAddress:
    ip: str
    hostname: str
    """The endpoint's ``hostname``, else its dashed IP (CoreDNS ``endpointHostname``)."""


@dataclass(frozen=True)
class Subset:
    """One EndpointSlice as CoreDNS keeps it: its ready addresses and its ports."""

    addresses: tuple[EndpointAddress, ...]
    ports: tuple[Port, ...]


@dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    headless: bool
    cluster_ips: tuple[str, ...]
    ports: tuple[Port, ...]
    external_name: str | None = None


@dataclass(frozen=True)
class _Record:
    """CoreDNS's ``msg.Service``: a host (IP or name), a port, and the labels naming it below the zone."""

    host: str
    port: int
    key: tuple[str, ...]


class _NameError(Exception):
    """The plugin's ``errNoItems``/``errNsNotExposed``/``errInvalidRequest``: NXDOMAIN (or fallthrough)."""


def dashed_hostname(address: str) -> str:
    """CoreDNS's hostname for an endpoint without one: the IP with dots (or colons) as dashes."""
    return address.replace(".", "-").replace(":", "-")


def endpoint_is_ready(endpoint: Mapping[str, Any]) -> bool:
    """EndpointSlice ``conditions.ready``: nil means true (CoreDNS ``endpointsliceReady``)."""
    ready = (endpoint.get("conditions") or {}).get("ready")
    return ready is None or bool(ready)


def _host_type(host: str) -> dns.rdatatype.RdataType:
    try:
        version = ipaddress.ip_address(host).version
    except ValueError:
        return dns.rdatatype.CNAME
    return dns.rdatatype.AAAA if version == 6 else dns.rdatatype.A


def _same(a: str, b: str) -> bool:
    return a.lower() == b.lower()


def _port_matches(port: str, protocol: str, candidate: Port) -> bool:
    """``matchPortAndProtocol``: an empty request part matches anything."""
    return (not port or _same(port, candidate.name)) and (not protocol or _same(protocol, candidate.protocol))


def _strip_underscore(label: str) -> str:
    return label[1:] if label.startswith("_") else label


def _address_from_reverse(name: dns.name.Name) -> str | None:
    """``dnsutil.ExtractAddressFromReverse``: the IP a reverse name stands for, or None."""
    text = name.to_text().lower()
    if text.endswith(".in-addr.arpa."):
        labels = text[: -len(".in-addr.arpa.")].split(".")
        candidate = ".".join(reversed(labels))
    elif text.endswith(".ip6.arpa."):
        nibbles = list(reversed(text[: -len(".ip6.arpa.")].split(".")))
        candidate = ":".join("".join(nibbles[i : i + 4]) for i in range(0, len(nibbles), 4))
    else:
        return None
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


@functools.lru_cache(maxsize=8192)
def _rdata(rdtype: dns.rdatatype.RdataType, text: str) -> dns.rdata.Rdata:
    """One record's data from its text, parsed once (rdata are immutable: the same record in many answers; a DNS
    server asked ~1,400 times a second spent most of each answer parsing the same few records again)."""
    return dns.rdata.from_text(dns.rdataclass.IN, rdtype, text)


@dataclass
class Zone:
    """The indexed objects and the rules that answer from them."""

    origin: dns.name.Name
    ttl: int
    negative_ttl: int
    namespaces: set[str] = field(default_factory=set)
    services: dict[tuple[str, str], Service] = field(default_factory=dict)
    endpoints: dict[tuple[str, str], list[Subset]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    """Objects or fields that were skipped (bad IPs, ...), one line each."""
    _soas: dict[dns.name.Name, dns.rrset.RRset] = field(default_factory=dict, repr=False, compare=False)

    @functools.cached_property
    def apexes(self) -> tuple[dns.name.Name, ...]:
        return (self.origin, *(dns.name.from_text(z) for z in REVERSE_ZONES))

    def _apex_of(self, qname: dns.name.Name) -> dns.name.Name | None:
        for apex in self.apexes:
            if qname.is_subdomain(apex):
                return apex
        return None

    def soa(self, apex: dns.name.Name) -> dns.rrset.RRset:
        """The SOA of ``apex``: TTL ``min(300, negative_ttl)``, minimum ``negative_ttl``; built once per apex (every
        negative answer carries it), so not to be changed by its users."""
        rrset = self._soas.get(apex)
        if rrset is None:
            rrset = dns.rrset.RRset(apex, dns.rdataclass.IN, dns.rdatatype.SOA)
            origin = self.origin.to_text()
            text = f"ns.dns.{origin} hostmaster.{origin} 1 7200 1800 86400 {self.negative_ttl}"
            rrset.add(_rdata(dns.rdatatype.SOA, text), min(SOA_MAX_TTL, self.negative_ttl))
            self._soas[apex] = rrset
        return rrset

    def answer(self, qname: dns.name.Name | str, qtype: dns.rdatatype.RdataType | str) -> Answer:
        """Answers one question; names compare case-insensitively, the answer owner keeps the asked case."""
        name = dns.name.from_text(qname) if isinstance(qname, str) else qname
        rdtype = dns.rdatatype.RdataType.make(qtype)
        apex = self._apex_of(name)
        if apex is None:
            return Answer.forward()
        if rdtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR):
            return Answer(dns.rcode.REFUSED)
        try:
            answers, additional = self._lookup(name, rdtype, apex)
        except _NameError:
            if apex != self.origin:  # fallthrough in-addr.arpa ip6.arpa
                return Answer.forward()
            return Answer(dns.rcode.NXDOMAIN, authority=(self.soa(apex),))
        if not answers:
            return Answer(dns.rcode.NOERROR, authority=(self.soa(apex),))
        return Answer(dns.rcode.NOERROR, answers=tuple(answers), additional=tuple(additional))

    # -- lookups per type (handler.go) ----------------------------------------------------------

    def _lookup(
        self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType, apex: dns.name.Name
    ) -> tuple[list[dns.rrset.RRset], list[dns.rrset.RRset]]:
        if rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            return self._addresses(name, rdtype, apex, 0), []
        if rdtype == dns.rdatatype.SRV:
            return self._srv(name, apex)
        if rdtype == dns.rdatatype.PTR:
            return self._ptr(name, apex), []
        if rdtype == dns.rdatatype.TXT:
            return self._txt(name, apex), []
        if rdtype == dns.rdatatype.CNAME:
            return self._cname(name, apex), []
        if rdtype == dns.rdatatype.SOA:
            return ([self.soa(apex)] if name == apex else []), []
        if rdtype == dns.rdatatype.NS and name == apex:
            return [self._rrset(name, dns.rdatatype.NS, [f"ns.dns.{self.origin.to_text()}"])], []
        self._addresses(name, dns.rdatatype.A, apex, 0)  # NODATA or NXDOMAIN, as CoreDNS's fake A lookup
        return [], []

    def _rrset(
        self, owner: dns.name.Name, rdtype: dns.rdatatype.RdataType, texts: Iterable[str], ttl: int | None = None
    ) -> dns.rrset.RRset:
        rrset = dns.rrset.RRset(owner, dns.rdataclass.IN, rdtype)
        for text in texts:
            rrset.add(_rdata(rdtype, text), self.ttl if ttl is None else ttl)
        return rrset

    def _key_name(self, key: tuple[str, ...]) -> dns.name.Name:
        return dns.name.from_text(".".join(key), self.origin)

    def _addresses(
        self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType, apex: dns.name.Name, depth: int
    ) -> list[dns.rrset.RRset]:
        """``plugin.A``/``AAAA``: addresses of the records, CNAMEs of ExternalName Services followed in-zone."""
        result: list[dns.rrset.RRset] = []
        addresses: list[str] = []
        for record in self._records(name, apex):
            host_type = _host_type(record.host)
            if host_type == rdtype and record.host not in addresses:
                addresses.append(record.host)
            elif host_type == dns.rdatatype.CNAME and depth < MAX_CNAME_CHAIN:
                target = dns.name.from_text(record.host.rstrip(".") + ".")
                if target == name:
                    continue
                cname = self._rrset(name, dns.rdatatype.CNAME, [target.to_text()])
                if target.is_subdomain(self.origin):
                    try:
                        following = self._addresses(target, rdtype, apex, depth + 1)
                    except _NameError:
                        following = []
                    if following:
                        result += [cname, *following]
                    continue
                result.append(cname)  # the upstream stand-in resolves no outside name: the CNAME alone
        if addresses:
            result.append(self._rrset(name, rdtype, addresses))
        return result

    def _srv(
        self, name: dns.name.Name, apex: dns.name.Name
    ) -> tuple[list[dns.rrset.RRset], list[dns.rrset.RRset]]:
        records = [r for r in self._records(name, apex) if _host_type(r.host) != dns.rdatatype.CNAME]
        if not records:
            return [], []
        weight = max(1, math.floor(100.0 / (100.0 * len(records)) * 100))
        srv: list[str] = []
        extra: list[dns.rrset.RRset] = []
        seen_extra: set[tuple[dns.name.Name, str]] = set()
        for record in records:
            if record.port == NO_PORT:
                continue
            target = self._key_name(record.key)
            text = f"0 {weight} {record.port} {target.to_text()}"
            if text not in srv:
                srv.append(text)
            if (target, record.host) not in seen_extra:
                seen_extra.add((target, record.host))
                extra.append(self._rrset(target, _host_type(record.host), [record.host]))
        return ([self._rrset(name, dns.rdatatype.SRV, srv)] if srv else []), extra

    def _ptr(self, name: dns.name.Name, apex: dns.name.Name) -> list[dns.rrset.RRset]:
        address = _address_from_reverse(name) if apex != self.origin else None
        if address is None:
            self._records(name, apex)
            return []
        names = self._names_of(address)
        if not names:
            raise _NameError(name)
        return [self._rrset(name, dns.rdatatype.PTR, names)]

    def _names_of(self, address: str) -> list[str]:
        """``serviceRecordForIP``: the first Service with this ClusterIP, else every endpoint with this IP."""
        for (namespace, service_name), service in sorted(self.services.items()):
            if address in service.cluster_ips:
                return [self._key_name((service_name, namespace, "svc")).to_text()]
        names: list[str] = []
        for (namespace, service_name), subsets in sorted(self.endpoints.items()):
            for subset in subsets:
                for endpoint in subset.addresses:
                    if endpoint.ip == address:
                        text = self._key_name((endpoint.hostname, service_name, namespace, "svc")).to_text()
                        if text not in names:
                            names.append(text)
        return names

    def _txt(self, name: dns.name.Name, apex: dns.name.Name) -> list[dns.rrset.RRset]:
        if name.relativize(apex).to_text().lower() == "dns-version":
            return [self._rrset(name, dns.rdatatype.TXT, [f'"{SCHEMA_VERSION}"'], VERSION_TTL)]
        try:
            records = self._records(name, apex)
        except _NameError:
            records = []
        if not records:
            raise _NameError(name)
        return []

    def _cname(self, name: dns.name.Name, apex: dns.name.Name) -> list[dns.rrset.RRset]:
        records = self._records(name, apex)
        if records and _host_type(records[0].host) == dns.rdatatype.CNAME:
            return [self._rrset(name, dns.rdatatype.CNAME, [records[0].host.rstrip(".") + "."])]
        return []

    # -- Records (kubernetes.go) ----------------------------------------------------------------

    def _records(self, name: dns.name.Name, apex: dns.name.Name) -> list[_Record]:
        """``Records``: parse the name, then find pods or services; raises :class:`_NameError`."""
        labels = [] if name == apex else [label.decode().lower() for label in name.relativize(apex).labels]
        if not labels or labels in (["svc"], ["pod"]):
            return []
        if apex != self.origin or labels[-1] not in ("svc", "pod"):
            raise _NameError(name)
        if len(labels) < 2 or labels[-2] not in self.namespaces:
            raise _NameError(name)
        namespace, rest = labels[-2], labels[:-2]
        if not rest:
            return []
        service, extra = rest[-1], rest[:-1]
        endpoint = port = protocol = ""
        if len(extra) == 1:
            endpoint = extra[0]
        elif len(extra) == 2:
            port, protocol = _strip_underscore(extra[0]), _strip_underscore(extra[1])
        elif len(extra) > 2:
            raise _NameError(name)
        if labels[-1] == "pod":
            return self._pod(namespace, service)
        return self._services(namespace, service, endpoint, port, protocol)

    def _pod(self, namespace: str, pod_name: str) -> list[_Record]:
        """``findPods`` in ``pods insecure`` mode."""
        if pod_name.count("-") == 3 and "--" not in pod_name:
            candidate = pod_name.replace("-", ".")
        else:
            candidate = pod_name.replace("-", ":")
        try:
            address = str(ipaddress.ip_address(candidate))
        except ValueError:
            raise _NameError(pod_name) from None
        return [_Record(address, 0, (pod_name, namespace, "pod"))]

    def _services(
        self, namespace: str, service_name: str, endpoint: str, port: str, protocol: str
    ) -> list[_Record]:
        """``findServices``."""
        service = self.services.get((namespace, service_name))
        if service is None:
            raise _NameError(service_name)
        found = False
        records: list[_Record] = []
        if service.external_name is not None:
            if endpoint or port or protocol:
                raise _NameError(service_name)
            if _host_type(service.external_name) == dns.rdatatype.CNAME:
                return [_Record(service.external_name, 0, (service.name, namespace, "svc"))]
            raise _NameError(service_name)
        if service.headless or endpoint:
            for subset in self.endpoints.get((namespace, service_name), []):
                for address in subset.addresses:
                    if endpoint and not _same(endpoint, address.hostname):
                        continue
                    for candidate in subset.ports:
                        if _port_matches(port, protocol, candidate):
                            found = True
                            key = (address.hostname, service.name, namespace, "svc")
                            records.append(_Record(address.ip, candidate.number, key))
        else:
            for candidate in service.ports:
                if _port_matches(port, protocol, candidate):
                    found = True
                    for ip in service.cluster_ips:
                        records.append(_Record(ip, candidate.number, (service.name, namespace, "svc")))
        if not found:
            raise _NameError(service_name)
        return records


# -- building the index ---------------------------------------------------------------------------


def _ports(items: Iterable[Mapping[str, Any]]) -> tuple[Port, ...]:
    ports = tuple(
        Port(
            str(p.get("name") or ""),
            NO_PORT if p.get("port") is None else int(p["port"]),
            str(p.get("protocol") or "TCP"),
        )
        for p in items
    )
    return ports or SENTINEL_PORTS


def _checked_ip(text: str) -> str:
    return str(ipaddress.ip_address(text))


def _service(obj: Mapping[str, Any]) -> Service:
    spec = kube.spec(obj)
    namespace, name = kube.namespace_of(obj, "default"), kube.name(obj)
    if spec.get("type") == "ExternalName":
        return Service(namespace, name, False, (), SENTINEL_PORTS, str(spec.get("externalName") or "").rstrip("."))
    ips = [str(ip) for ip in spec.get("clusterIPs") or []] or [str(spec.get("clusterIP") or "")]
    headless = ips[0] == "None"
    cluster_ips = tuple(_checked_ip(ip) for ip in ips if ip and ip != "None")
    return Service(namespace, name, headless, cluster_ips, _ports(spec.get("ports") or []))


def _subset(endpoint_slice: Mapping[str, Any], where: str, problems: list[str]) -> Subset:
    addresses = []
    for endpoint in endpoint_slice.get("endpoints") or []:
        if not endpoint_is_ready(endpoint):
            continue
        for address in endpoint.get("addresses") or []:
            try:
                ip = _checked_ip(str(address))
            except ValueError:
                problems.append(f"{where}: endpoint address {address!r} skipped (not an IP)")
                continue
            addresses.append(EndpointAddress(ip, str(endpoint.get("hostname") or dashed_hostname(ip))))
    return Subset(tuple(addresses), _ports(endpoint_slice.get("ports") or []))


DNS_KINDS = ("EndpointSlice", "Namespace", "Service")
"""The kinds ``build_zone`` reads (CoreDNS's kubernetes plugin watches these; Pods only with ``pods verified``)."""


def dns_view(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What ``build_zone`` reads of one object: names, the EndpointSlice's service label, a Service's type,
    IPs and ports, an EndpointSlice's endpoints and ports. Written instead of whole objects, the zone's input
    changes only when an answer may: a pod's status or an object's managedFields changing does not rewrite it."""
    meta = obj.get("metadata") or {}
    view: dict[str, Any] = {"kind": obj.get("kind"),
                            "metadata": {k: meta[k] for k in ("name", "namespace") if k in meta}}
    if obj.get("kind") == "Service":
        view["spec"] = {k: v for k, v in kube.spec(obj).items()
                        if k in ("type", "externalName", "clusterIP", "clusterIPs", "ports")}
    elif obj.get("kind") == "EndpointSlice":
        label = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if label is not None:
            view["metadata"]["labels"] = {SERVICE_NAME_LABEL: label}
        view.update({k: obj[k] for k in ("addressType", "endpoints", "ports") if k in obj})
    return view


def build_zone(
    objects: Iterable[Mapping[str, Any]],
    zone: str = DEFAULT_ZONE,
    ttl: int = DEFAULT_TTL,
    negative_ttl: int | None = None,
) -> Zone:
    """The zone for the Services, EndpointSlices and Namespaces in ``objects`` (other kinds are ignored).

    Objects without ``metadata.namespace`` are in ``default``, as the API server would put them. A namespace
    exists for DNS only through its Namespace object, as CoreDNS asks the API. ``negative_ttl`` overrides the
    SOA minimum (it follows ``ttl`` in CoreDNS).
    """
    objects = list(objects)
    origin = dns.name.from_text(zone.rstrip(".") + ".")
    result = Zone(origin, ttl, ttl if negative_ttl is None else negative_ttl)
    result.namespaces = {kube.name(n).lower() for n in kube.of_kind(objects, "Namespace")}
    for obj in kube.of_kind(objects, "Service"):
        where = f"Service {kube.namespace_of(obj, 'default')}/{kube.name(obj)}"
        try:
            service = _service(obj)
        except (ValueError, dns.exception.DNSException) as err:
            result.problems.append(f"{where} skipped: {err}")
            continue
        result.services[(service.namespace.lower(), service.name.lower())] = service
    for endpoint_slice in sorted(kube.of_kind(objects, "EndpointSlice"), key=kube.name):
        if str(endpoint_slice.get("addressType", "IPv4")) not in ("IPv4", "IPv6"):
            continue
        service_name = kube.labels(endpoint_slice).get(SERVICE_NAME_LABEL)
        if not service_name:
            continue
        namespace = kube.namespace_of(endpoint_slice, "default")
        where = f"Service {namespace}/{service_name} (EndpointSlice {kube.name(endpoint_slice)})"
        subset = _subset(endpoint_slice, where, result.problems)
        result.endpoints.setdefault((namespace.lower(), service_name.lower()), []).append(subset)
    return result
