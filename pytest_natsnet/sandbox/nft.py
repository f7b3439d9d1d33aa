"""The sandbox's kube-proxy (ClusterIP DNAT) and NetworkPolicy enforcement, as nftables scripts.

Both scripts are pure functions of the observed objects and replace their tables atomically when applied with
one ``nft -f -``: re-applying the same script is a no-op apart from resetting the counters. The Services' table
is also available as data (``service_table``, ``Chains``), so that ``table_update`` can change only the chains
that differ from what a pod holds.

``service_ruleset`` goes into every pod netns (table ``ip natsnet_svc``). ClusterIP traffic is DNATed in
the pod's ``output`` hook to a random ready endpoint, like kube-proxy. As kube-proxy's iptables mode (kind's
default; kubernetes ``pkg/proxy/iptables/proxier.go``) does:

- a Service port without endpoints is rejected (``--reject-with icmp-port-unreachable``): "connection refused",
  over UDP too;
- a port the Service does not have matches no rule at all: the packet leaves for the node and is lost, so the
  client times out (kube-proxy's nftables mode would reject it instead);
- traffic a pod sends to a ClusterIP that lands on itself (hairpin) goes through the node on a cluster and is
  judged by NetworkPolicy there (kube-network-policies sees source and destination = the pod). Here it never
  leaves the pod's namespace, so the pod's own policies are compiled into the table as well and applied to
  such flows.

Both are implemented by DNAT to 127.0.0.1 with a conntrack mark, then rejected, dropped or judged in the
``input`` hook (a verdict in ``output`` would make a UDP ``send()`` fail with EPERM instead).

``node_table`` goes into the hub netns (table ``ip natsnet_node``): kube-proxy's NodePorts on the node's
addresses (``nodePort`` of NodePort and LoadBalancer Services; kind has no load balancer, so a LoadBalancer
Service is reachable through its NodePorts only), DNATed to a random ready (else serving terminating) endpoint and
masqueraded to the node's pod-network address (as SNAT, see ``node_table``) unless ``externalTrafficPolicy:
Local`` (kube-proxy's ``KUBE-MARK-MASQ``); a NodePort without endpoints is refused (nothing listens on the node).
Traffic from the outside bridge is forwarded into the pod network only when a NodePort translated it: a client
outside the cluster cannot reach pod or Service IPs (it has no route to them either, see ``netns``). NodePort
flows to an ingress-isolated pod are judged by its ingress policies with the client's own address, before the
masquerade, where kube-network-policies judges them (postrouting ``srcnat - 5``).

``policy_ruleset`` goes into the hub netns (tables ``bridge natsnet_np`` and ``ip natsnet_np_ct``). New
flows are judged in the bridge ``forward`` hook on each pod's bridge-side veth and dropped silently. Kernels
without ``nf_conntrack_bridge`` (this one) refuse ``ct`` in a bridge table (EPROTO), so established/related
packets are recognised by the ip-family conntrack that ``br_netfilter`` runs for bridged IPv4 (needs
``net.bridge.bridge-nf-call-iptables=1`` in the hub, see :func:`enable_bridge_conntrack`): a ``prerouting``
chain marks them and the bridge chain accepts the mark.
"""

from __future__ import annotations

import concurrent.futures
import functools
import ipaddress
import re
import subprocess
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_natsnet.errors import CommandError, ConfigError
from pytest_natsnet.kube import (
    NAMESPACE_NAME_LABEL,
    Obj,
    labels,
    name,
    namespace_of,
    selector_matches,
    spec,
)
from pytest_natsnet.sandbox.model import PodNet

SERVICE_TABLE = "natsnet_svc"
NODE_TABLE = "natsnet_node"
POLICY_TABLE = "natsnet_np"
POLICY_CT_TABLE = "natsnet_np_ct"
NO_ENDPOINT_MARK = 0x4E4F
"""Conntrack mark of ClusterIP flows that have no endpoint: rejected in the pod's input hook."""
UNKNOWN_PORT_MARK = 0x4E50
"""Conntrack mark of flows to a ClusterIP port the Service does not have: dropped in the pod's input hook."""
NODEPORT_MASQ_MARK = 0x4E51
"""Conntrack mark of NodePort flows to masquerade (``externalTrafficPolicy: Cluster``)."""
ESTABLISHED_MARK = 0x4E4E
"""Packet mark the hub's ip-family conntrack puts on established/related bridged packets."""
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
PROTOCOLS = ("TCP", "UDP", "SCTP")
COMMENT_MAX = 120


class NftApplyError(CommandError):
    """``nft -f -`` refused a script: the command, nft's message, and the script it was given."""

    def __init__(self, netns: str, script: str, returncode: int, message: str) -> None:
        super().__init__(["ip", "netns", "exec", netns, "nft", "-f", "-"], returncode, message)
        self.netns = netns
        self.script = script
        self.message = message


# --- shared text helpers --------------------------------------------------------------------------


def _ident(text: str) -> str:
    """An nft-safe identifier fragment (letters, digits, underscores)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


def _comment(text: str) -> str:
    cleaned = text.replace('"', "'")
    return f'comment "{cleaned[:COMMENT_MAX]}"'


@functools.lru_cache(maxsize=4096)
def _ip_key(ip: str) -> tuple[int, int]:
    network = ipaddress.ip_network(ip, strict=False)
    return int(network.network_address), network.prefixlen


def _ip_set(addresses: Iterable[str]) -> str:
    ordered = sorted(set(addresses), key=_ip_key)
    return ordered[0] if len(ordered) == 1 else "{ " + ", ".join(ordered) + " }"


Chains = dict[str, tuple[str, ...]]
"""A table as data: chain name -> its lines (a base chain's first line is its ``type ... hook ...;``), in order.
A name starting with ``@`` is a set (or a map, when its type says ``: verdict``): its first line is its type,
the others its elements."""


def table_script(family: str, table: str, chains: Chains) -> str:
    """The script that replaces ``family table`` with ``chains`` in one transaction."""
    return "\n".join(_replace_table(family, table, list(chains.items()))) + "\n"


def _is_base(body: Sequence[str]) -> bool:
    return bool(body) and body[0].startswith("type ")


def _is_set(name: str) -> bool:
    return name.startswith("@")


def _set_kind(body: Sequence[str]) -> str:
    return "map" if " : " in body[0] else "set"


def _element_key(element: str) -> str:
    """A map element's key (what ``delete element`` names): the element without its comment and value."""
    return element.split(" comment ", 1)[0].split(" : ", 1)[0]


def table_update(family: str, table: str, before: Chains | None, after: Chains) -> str:
    """The script that turns the applied ``before`` into ``after`` in one transaction: only the chains that differ
    (created, flushed and refilled, deleted once nothing refers to them) and the elements of sets that differ,
    ``""`` when none does; the whole table when nothing was applied or a base chain's hook or a set's type would
    change."""
    if before is None or any((_is_base(body) or _is_set(n)) and n in before and before[n][:1] != body[:1]
                             for n, body in after.items()):
        return table_script(family, table, after)
    where = f"{family} {table}"
    lines = [f"add chain {where} {n}" + (f" {{ {body[0]} }}" if _is_base(body) else "")
             for n, body in after.items() if n not in before and not _is_set(n)]
    lines += [f"add {_set_kind(body)} {where} {n[1:]} {{ {body[0]}; }}"
              for n, body in after.items() if n not in before and _is_set(n)]
    elements_gone: list[str] = []
    elements_new: list[str] = []
    for chain, body in after.items():
        if before.get(chain) == body:
            continue
        if _is_set(chain):  # elements gone or changed (a map's value, a comment) are deleted, then added
            old, new = set(before.get(chain, ())[1:]), set(body[1:])
            added = sorted(new - old)
            deleted = sorted({_element_key(e) for e in old - new})
            if deleted:
                elements_gone.append(f"delete element {where} {chain[1:]} {{ {', '.join(deleted)} }}")
            if added:
                elements_new.append(f"add element {where} {chain[1:]} {{ {', '.join(added)} }}")
            continue
        if chain in before:
            lines.append(f"flush chain {where} {chain}")
        lines += [f"add rule {where} {chain} {rule}" for rule in (body[1:] if _is_base(body) else body)]
    lines += elements_gone + elements_new
    lines += [f"delete chain {where} {chain}" for chain in before if chain not in after and not _is_set(chain)]
    lines += [f"delete {_set_kind(before[n])} {where} {n[1:]}" for n in before if n not in after and _is_set(n)]
    return "\n".join(lines) + "\n" if lines else ""


def _replace_table(family: str, table: str, chains: Sequence[tuple[str, Sequence[str]]]) -> list[str]:
    """Lines that create-or-keep, delete and recreate ``family table`` in one transaction (its sets first: rules
    name them)."""
    lines = [f"table {family} {table}", f"delete table {family} {table}", f"table {family} {table} {{"]
    ordered = [c for c in chains if _is_set(c[0])] + [c for c in chains if not _is_set(c[0])]
    for index, (chain, body) in enumerate(ordered):
        if index:
            lines.append("")
        if _is_set(chain):
            lines.append(f"\t{_set_kind(body)} {chain[1:]} {{")
            lines.append(f"\t\t{body[0]}")
            if body[1:]:
                lines.append(f"\t\telements = {{ {', '.join(body[1:])} }}")
            lines.append("\t}")
            continue
        lines.append(f"\tchain {chain} {{")
        lines.extend(f"\t\t{line}" for line in body)
        lines.append("\t}")
    lines.append("}")
    return lines


# --- Services (kube-proxy) ------------------------------------------------------------------------


@dataclass(frozen=True)
class _ServicePort:
    namespace: str
    service: str
    port_name: str
    cluster_ip: str
    protocol: str
    port: int
    endpoints: tuple[tuple[str, int], ...]


def _cluster_ip(service: Mapping[str, Any]) -> str | None:
    value = spec(service).get("clusterIP")
    if not value or str(value) == "None":
        return None
    try:
        return str(ipaddress.IPv4Address(str(value)))
    except ValueError:
        return None


def _is_ready(endpoint: Mapping[str, Any]) -> bool:
    return (endpoint.get("conditions") or {}).get("ready") is not False


def _is_serving_terminating(endpoint: Mapping[str, Any]) -> bool:
    conditions = endpoint.get("conditions") or {}
    return conditions.get("serving") is not False and conditions.get("terminating") is True


def _endpoints_for(
    namespace: str, service: str, port_name: str, protocol: str, slices: Sequence[Obj]
) -> tuple[tuple[str, int], ...]:
    """Ready ``(ip, port)`` endpoints; kube-proxy falls back to serving-and-terminating when none is ready."""
    candidates: list[tuple[Mapping[str, Any], str, int]] = []
    for endpoint_slice in slices:
        if (
            namespace_of(endpoint_slice) != namespace
            or labels(endpoint_slice).get(SERVICE_NAME_LABEL) != service
        ):
            continue
        if endpoint_slice.get("addressType", "IPv4") != "IPv4":
            continue
        for slice_port in endpoint_slice.get("ports") or []:
            if str(slice_port.get("name") or "") != port_name or slice_port.get("port") is None:
                continue
            if str(slice_port.get("protocol") or "TCP") != protocol:
                continue
            for endpoint in endpoint_slice.get("endpoints") or []:
                addresses = endpoint.get("addresses") or []
                if addresses:
                    candidates.append((endpoint, str(addresses[0]), int(slice_port["port"])))
    chosen = [(ip, port) for endpoint, ip, port in candidates if _is_ready(endpoint)]
    if not chosen:
        chosen = [(ip, port) for endpoint, ip, port in candidates if _is_serving_terminating(endpoint)]
    return tuple(sorted(set(chosen), key=lambda pair: (_ip_key(pair[0]), pair[1])))


def _service_ports(services: Sequence[Obj], slices: Sequence[Obj]) -> list[_ServicePort]:
    result: list[_ServicePort] = []
    for service in services:
        cluster_ip = _cluster_ip(service)
        if cluster_ip is None:
            continue
        namespace, service_name = namespace_of(service), name(service)
        for port in spec(service).get("ports") or []:
            protocol = str(port.get("protocol") or "TCP")
            if protocol not in PROTOCOLS:
                continue
            port_name = str(port.get("name") or "")
            endpoints = _endpoints_for(namespace, service_name, port_name, protocol, slices)
            result.append(
                _ServicePort(
                    namespace, service_name, port_name, cluster_ip, protocol, int(port["port"]), endpoints
                )
            )
    return sorted(result, key=lambda p: (p.namespace, p.service, p.protocol, p.port))


def _service_chain(port: _ServicePort) -> str:
    return _ident(f"svc_{port.namespace}_{port.service}_{port.protocol.lower()}_{port.port}")


def _service_label(port: _ServicePort) -> str:
    suffix = f" ({port.port_name})" if port.port_name else ""
    return f"{port.namespace}/{port.service}:{port.port}/{port.protocol}{suffix}"


def _endpoint_chains(chain: str, port: _ServicePort, label: str, mark: str = "") -> list[tuple[str, Sequence[str]]]:
    """``chain`` picking one of the port's endpoints at random (as kube-proxy's probability rules do), and one
    chain per endpoint that DNATs to it (``mark``: a ``ct mark set`` before the DNAT)."""
    proto = port.protocol.lower()
    endpoint_chains = [f"{chain}_ep{index}" for index in range(len(port.endpoints))]
    chains: list[tuple[str, Sequence[str]]] = []
    if len(endpoint_chains) == 1:
        chains.append((chain, [f"goto {endpoint_chains[0]}"]))
    else:
        targets = ", ".join(f"{index} : goto {ep}" for index, ep in enumerate(endpoint_chains))
        chains.append((chain, [f"numgen random mod {len(endpoint_chains)} vmap {{ {targets} }}"]))
    for ep_chain, (ip, target_port) in zip(endpoint_chains, port.endpoints, strict=True):
        rule = f"meta l4proto {proto} counter {mark}dnat to {ip}:{target_port} {_comment(label + ' -> ' + ip)}"
        chains.append((ep_chain, [rule]))
    return chains


def service_ruleset(
    services: Sequence[Obj],
    endpointslices: Sequence[Obj],
    pods: Sequence[PodNet] = (),
    namespaces: Mapping[str, Mapping[str, str]] | None = None,
    policies: Sequence[Obj] = (),
) -> str:
    """The ``ip natsnet_svc`` script for every pod netns: ClusterIP DNAT to ready endpoints only, and the
    hairpin NetworkPolicy checks of ``pods`` under ``policies``.

    Headless Services (``clusterIP: None``) and Services without an IPv4 ClusterIP get nothing.
    """
    return table_script("ip", SERVICE_TABLE, service_table(services, endpointslices, pods, namespaces, policies))


def service_table(
    services: Sequence[Obj],
    endpointslices: Sequence[Obj],
    pods: Sequence[PodNet] = (),
    namespaces: Mapping[str, Mapping[str, str]] | None = None,
    policies: Sequence[Obj] = (),
) -> Chains:
    """The chains of :func:`service_ruleset`."""
    dispatch, verdicts, chains = _service_chains(services, endpointslices)
    return _service_table(dispatch, verdicts, chains, *_hairpin(pods, namespaces or {}, policies))


def _service_table(dispatch: Sequence[str], verdicts: Sequence[str], chains: Sequence[tuple[str, Sequence[str]]],
                   hairpin_jumps: Sequence[str], hairpin_chains: Sequence[tuple[str, Sequence[str]]]) -> Chains:
    return {"services": tuple(dispatch), "input": (*verdicts, *hairpin_jumps),
            **{chain: tuple(body) for chain, body in [*chains, *hairpin_chains]}}


def service_tables_by_pod(
    services: Sequence[Obj],
    endpointslices: Sequence[Obj],
    pods: Sequence[PodNet],
    namespaces: Mapping[str, Mapping[str, str]] | None = None,
    policies: Sequence[Obj] = (),
) -> dict[str, Chains]:
    """Each pod's ``ip natsnet_svc`` table, by pod IP: the ClusterIP DNAT of :func:`service_ruleset` and only the
    pod's own hairpin checks. A pod reaching itself through a ClusterIP is judged in its own netns, where another
    pod's hairpin rules never match; with them every pod's table grew, and changed, with every isolated pod of
    the cluster (its peers resolved over that pod alone give the same verdict for the flow to itself). Only the
    policies of the pod's namespace can select it: the others are not looked at (the hub's rules validate them)."""
    dispatch, verdicts, chains = _service_chains(services, endpointslices)
    by_namespace: dict[str, list[Obj]] = {}
    for policy in policies:
        by_namespace.setdefault(namespace_of(policy), []).append(policy)
    common = _service_table(dispatch, verdicts, chains, (), ())  # the same chains (the same tuples) in every table
    tables = {}
    for pod in pods:
        jumps, hairpin_chains = _hairpin([pod], namespaces or {}, by_namespace.get(pod.namespace, ()))
        tables[pod.ip] = {**common, "input": (*common["input"], *jumps),
                          **{chain: tuple(body) for chain, body in hairpin_chains}} if jumps else common
    return tables


def _service_chains(
    services: Sequence[Obj], endpointslices: Sequence[Obj]
) -> tuple[list[str], list[str], list[tuple[str, Sequence[str]]]]:
    """The dispatch chain (output hook), the input verdicts before any hairpin jump, and the other chains and sets:
    the ClusterIP ports in a verdict map (``@dispatch``: a Service coming, going or losing its endpoints is an
    element added or removed in every pod, not its dispatch chain rewritten), the ClusterIPs in a set."""
    ports = _service_ports(services, endpointslices)
    dispatch = [
        "type nat hook output priority -100; policy accept;",
        "ip daddr . meta l4proto . th dport vmap @dispatch",
        f"ip daddr @cluster_ips meta l4proto {{ tcp, udp, sctp }} counter ct mark set {UNKNOWN_PORT_MARK:#x} "
        f"dnat to 127.0.0.1 {_comment('port not served by the Service: no kube-proxy rule, lost (iptables mode)')}",
    ]
    elements: list[str] = []
    chains: list[tuple[str, Sequence[str]]] = [
        ("no_endpoints", [f"counter ct mark set {NO_ENDPOINT_MARK:#x} dnat to 127.0.0.1 "
                          f"{_comment('ClusterIP port without ready endpoints')}"]),
    ]
    for port in ports:
        key = f"{port.cluster_ip} . {port.protocol.lower()} . {port.port}"
        label = _service_label(port)
        if not port.endpoints:
            elements.append(f"{key} {_comment(label + ' has no ready endpoints')} : goto no_endpoints")
            continue
        chain = _service_chain(port)
        elements.append(f"{key} {_comment(label)} : goto {chain}")
        chains += _endpoint_chains(chain, port, label)
    cluster_ips = sorted({a for a in map(_cluster_ip, services) if a is not None}, key=_ip_key)
    chains = [("@dispatch", ["type ipv4_addr . inet_proto . inet_service : verdict", *elements]),
              ("@cluster_ips", ["type ipv4_addr", *cluster_ips]), *chains]
    verdicts = [
        "type filter hook input priority 0; policy accept;",
        f"ct direction original ct mark {NO_ENDPOINT_MARK:#x} counter reject "
        f"{_comment('ClusterIP without endpoint: connection refused')}",
        f"ct direction original ct mark {UNKNOWN_PORT_MARK:#x} counter drop "
        f"{_comment('ClusterIP port the Service lacks: timeout')}",
    ]
    return dispatch, verdicts, chains


@dataclass(frozen=True)
class _NodePort:
    service: _ServicePort
    node_port: int
    masquerade: bool


def _node_ports(services: Sequence[Obj], slices: Sequence[Obj]) -> list[_NodePort]:
    """Every ``nodePort`` of NodePort and LoadBalancer Services with its endpoints (as for the ClusterIP)."""
    result = []
    for service in services:
        service_spec = spec(service)
        if service_spec.get("type") not in ("NodePort", "LoadBalancer"):
            continue
        namespace, service_name = namespace_of(service), name(service)
        masquerade = service_spec.get("externalTrafficPolicy", "Cluster") != "Local"
        for port in service_spec.get("ports") or []:
            protocol = str(port.get("protocol") or "TCP")
            if protocol not in PROTOCOLS or not port.get("nodePort"):
                continue
            port_name = str(port.get("name") or "")
            endpoints = _endpoints_for(namespace, service_name, port_name, protocol, slices)
            service_port = _ServicePort(namespace, service_name, port_name, str(_cluster_ip(service) or ""),
                                        protocol, int(port["port"]), endpoints)
            result.append(_NodePort(service_port, int(port["nodePort"]), masquerade))
    return sorted(result, key=lambda n: (n.node_port, n.service.protocol))


def node_table(
    services: Sequence[Obj],
    endpointslices: Sequence[Obj],
    node_addresses: Sequence[str],
    pod_bridge: str,
    outside_bridge: str,
    pods: Sequence[PodNet] = (),
    namespaces: Mapping[str, Mapping[str, str]] | None = None,
    policies: Sequence[Obj] = (),
) -> Chains:
    """The hub's ``ip natsnet_node`` table: NodePorts on ``node_addresses`` (the first: the node's pod-network
    address), the outside bridge's forwarding rule and the ingress policies of NodePort flows (see the module
    docstring).

    kube-proxy masquerades; here the flows are SNATed to the node's pod-network address, the address masquerade
    picks (they all leave by the pod bridge). Same packets, but no ``masquerade`` in any ruleset: while one
    exists the kernel walks the whole conntrack table (every network namespace's) each time any interface goes
    down or loses an address (``nf_nat_masquerade``'s notifiers), which every pod's removal does: ~3 % of the
    machine's CPU in a full run, in kernel workers."""
    addresses = _ip_set(node_addresses)
    dispatch = ["type nat hook prerouting priority -100; policy accept;"]
    chains: list[tuple[str, Sequence[str]]] = []
    for node_port in _node_ports(services, endpointslices):
        port = node_port.service
        if not port.endpoints:
            continue  # nothing listens on the node's port: refused, as kube-proxy rejects it
        proto = port.protocol.lower()
        label = f"{_service_label(port)} nodePort {node_port.node_port}"
        chain = _ident(f"np_{node_port.node_port}_{proto}")
        dispatch.append(f"ip daddr {addresses} {proto} dport {node_port.node_port} goto {chain} {_comment(label)}")
        mark = f"ct mark set {NODEPORT_MASQ_MARK:#x} " if node_port.masquerade else ""
        chains += _endpoint_chains(chain, port, label, mark)
    masquerade = [  # SNAT to the pod-network address, what masquerade picks on the pod bridge (see the docstring)
        "type nat hook postrouting priority 100; policy accept;",
        f"ct mark {NODEPORT_MASQ_MARK:#x} counter snat ip to {node_addresses[0]} "
        f"{_comment('NodePort, externalTrafficPolicy Cluster')}",
    ]
    outside = f'iifname "{outside_bridge}" oifname "{pod_bridge}"'
    forward = [
        "type filter hook forward priority 0; policy accept;",
        f"{outside} ct state established,related accept",
        f"{outside} ct status dnat counter accept {_comment('a NodePort translated it')}",
        f"{outside} counter drop {_comment('outside the cluster: no route into the pod or Service network')}",
    ]
    ingress, ingress_chains = _nodeport_ingress(pods, namespaces or {}, policies, pod_bridge)
    all_chains = [("nodeports", dispatch), ("nodeport_masq", masquerade), ("from_outside", forward),
                  ("nodeport_ingress", ingress), *chains, *ingress_chains]
    return {chain: tuple(body) for chain, body in all_chains}


def _policy_views(
    policies: Sequence[Obj], ordered_pods: Sequence[PodNet], namespaces: Mapping[str, Mapping[str, str]]
) -> list[_PolicyView]:
    """The policies in rule order, each validated (ConfigError for one that cannot be compiled, whether or not it
    selects a pod yet: the API server refuses such a policy when it is created)."""
    pods_by_namespace: dict[str, list[PodNet]] = {}
    for pod in ordered_pods:
        pods_by_namespace.setdefault(pod.namespace, []).append(pod)
    views = sorted(
        (_PolicyView(p, ordered_pods, namespaces, pods_by_namespace) for p in policies),
        key=lambda v: (v.namespace, v.name),
    )
    for view in views:
        view.validate()
    return views


def _views_by_namespace(views: Sequence[_PolicyView]) -> dict[str, list[_PolicyView]]:
    """A pod is selected only by its namespace's policies: each pod looks at those, not at every policy."""
    grouped: dict[str, list[_PolicyView]] = {}
    for view in views:
        grouped.setdefault(view.namespace, []).append(view)
    return grouped


def _nodeport_ingress(
    pods: Sequence[PodNet], namespaces: Mapping[str, Mapping[str, str]], policies: Sequence[Obj], pod_bridge: str
) -> tuple[list[str], list[tuple[str, Sequence[str]]]]:
    """Postrouting (before the masquerade) jumps judging new NodePort flows by the target pod's ingress policies."""
    body = ["type filter hook postrouting priority 95; policy accept;"]
    chains: list[tuple[str, Sequence[str]]] = []
    ordered_pods = sorted(pods, key=lambda p: (p.namespace, p.name))
    views = _views_by_namespace(_policy_views(policies, ordered_pods, namespaces))
    for pod in ordered_pods:
        pod_chain = _pod_chain(pod, "Ingress", views.get(pod.namespace, ()), ordered_pods)
        if pod_chain is None:
            continue
        chain = _pod_chain_name("nodeport_ingress", pod)
        body.append(
            f'ct state new ct status dnat oifname "{pod_bridge}" ip daddr {pod.ip} jump {chain} '
            f"{_comment(f'{pod.namespace}/{pod.name} ingress-isolated')}"
        )
        chains.append((chain, pod_chain))
    return body, chains


def _hairpin(
    pods: Sequence[PodNet], namespaces: Mapping[str, Mapping[str, str]], policies: Sequence[Obj]
) -> tuple[list[str], list[tuple[str, Sequence[str]]]]:
    """Input-hook jumps and chains judging a pod's DNATed traffic to itself by its egress and ingress policies
    (the flow a cluster's node sees as pod -> pod through the Service)."""
    if not policies:
        return [], []
    ordered_pods = sorted(pods, key=lambda p: (p.namespace, p.name))
    views = _policy_views(policies, ordered_pods, namespaces)
    jumps: list[str] = []
    chains: list[tuple[str, Sequence[str]]] = []
    for index, pod in enumerate(ordered_pods):
        for direction in ("Egress", "Ingress"):
            body = _pod_chain(pod, direction, views, ordered_pods)
            if body is None:
                continue
            chain = f"hairpin_{direction.lower()}_{index}_{_ident(pod.namespace)}_{_ident(pod.name)}"
            label = f"{pod.namespace}/{pod.name} to itself through a ClusterIP: {direction.lower()}"
            jumps.append(
                f"ct direction original ct state new ct status dnat ip saddr {pod.ip} ip daddr {pod.ip} "
                f"jump {chain} {_comment(label)}"
            )
            chains.append((chain, body))
    return jumps, chains


# --- NetworkPolicy --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Peer:
    """A resolved ``to``/``from`` entry: explicit pods, an ipBlock, or any address (both None)."""

    pods: tuple[PodNet, ...] | None = None
    cidr: str | None = None
    excepts: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Port:
    protocol: str
    number: int | None = None
    end: int | None = None
    port_name: str | None = None


class _PolicyView:
    """One NetworkPolicy with its defaults applied and its peers resolved against the known pods."""

    def __init__(
        self, policy: Obj, pods: Sequence[PodNet], namespaces: Mapping[str, Mapping[str, str]],
        pods_by_namespace: Mapping[str, Sequence[PodNet]],
    ) -> None:
        self.namespace = namespace_of(policy)
        self.name = name(policy)
        if not self.namespace:
            raise ConfigError(
                f"NetworkPolicy {self.name}", "has no metadata.namespace", "set it before compiling"
            )
        self.spec = spec(policy)
        self._pods = pods
        self._pods_by_namespace = pods_by_namespace
        self._namespaces = namespaces
        self._rules: dict[str, list[tuple[int, list[_Peer], list[_Port]]]] = {}

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.name}"

    def types(self) -> set[str]:
        declared = self.spec.get("policyTypes")
        if declared:
            return {str(t) for t in declared}
        return {"Ingress", "Egress"} if self.spec.get("egress") else {"Ingress"}

    def selects(self, pod: PodNet) -> bool:
        return pod.namespace == self.namespace and selector_matches(
            self.spec.get("podSelector") or {}, pod.labels
        )

    def validate(self) -> None:
        """Raises ConfigError for a rule that cannot be compiled."""
        self.rules("Ingress")
        self.rules("Egress")

    def rules(self, direction: str) -> list[tuple[int, list[_Peer], list[_Port]]]:
        """``(index, peers, ports)`` of each ``ingress``/``egress`` rule; empty lists mean "any". Resolved once per
        direction (each peer is matched against every known pod; every pod the policy selects asks again)."""
        if direction not in self._rules:
            self._rules[direction] = self._resolve_rules(direction)
        return self._rules[direction]

    def _resolve_rules(self, direction: str) -> list[tuple[int, list[_Peer], list[_Port]]]:
        key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
        result = []
        for index, rule in enumerate(self.spec.get(key) or []):
            where = f"{key}[{index}]"
            peers = [
                self._peer(p, f"{where}.{peers_key}[{i}]") for i, p in enumerate(rule.get(peers_key) or [])
            ]
            ports = [self._port(p, f"{where}.ports[{i}]") for i, p in enumerate(rule.get("ports") or [])]
            result.append((index, peers or [_Peer()], ports or [_Port(protocol="")]))
        return result

    def _fail(self, where: str, problem: str) -> ConfigError:
        return ConfigError(f"NetworkPolicy {self.label} spec.{where}", problem)

    def _namespace_labels(self, namespace: str) -> dict[str, str]:
        found = dict(self._namespaces.get(namespace) or {})
        found.setdefault(NAMESPACE_NAME_LABEL, namespace)
        return found

    def _peer(self, peer: Mapping[str, Any], where: str) -> _Peer:
        if "ipBlock" in peer:
            block = peer["ipBlock"] or {}
            try:
                cidr = str(ipaddress.ip_network(str(block.get("cidr")), strict=False))
                excepts = tuple(
                    str(ipaddress.ip_network(str(e), strict=False)) for e in block.get("except") or []
                )
            except ValueError as error:
                raise self._fail(where, f"ipBlock is not a valid CIDR ({error})") from None
            return _Peer(cidr=cidr, excepts=excepts)
        if "podSelector" not in peer and "namespaceSelector" not in peer:
            raise self._fail(where, "has no podSelector, namespaceSelector or ipBlock")
        pod_selector = peer.get("podSelector") or {}
        if "namespaceSelector" in peer:  # each namespace judged once, its pods in the known pods' order
            namespace_selector = peer.get("namespaceSelector") or {}
            chosen_namespaces = {namespace for namespace in self._pods_by_namespace
                                 if selector_matches(namespace_selector, self._namespace_labels(namespace))}
            candidates: Sequence[PodNet] = [pod for pod in self._pods if pod.namespace in chosen_namespaces]
        else:
            candidates = self._pods_by_namespace.get(self.namespace, ())
        return _Peer(pods=tuple(pod for pod in candidates if selector_matches(pod_selector, pod.labels)))

    def _port(self, port: Mapping[str, Any], where: str) -> _Port:
        protocol = str(port.get("protocol") or "TCP")
        if protocol not in PROTOCOLS:
            raise self._fail(where, f"protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")
        value, end = port.get("port"), port.get("endPort")
        if value is None:
            return _Port(protocol)
        if isinstance(value, int) or str(value).isdigit():
            return _Port(protocol, number=int(value), end=None if end is None else int(end))
        if end is not None:
            raise self._fail(where, "has endPort with a named port: endPort needs a numeric port")
        return _Port(protocol, port_name=str(value))


def _named_port(pod: PodNet, port: _Port) -> int | None:
    for container_port in pod.ports:
        if container_port.name == port.port_name and container_port.protocol == port.protocol:
            return container_port.port
    return None


def _port_match(port: _Port, number: int | None = None) -> str:
    proto = port.protocol.lower()
    if not proto:
        return ""
    if number is not None:
        return f"{proto} dport {number}"
    if port.number is None:
        return f"meta l4proto {proto}"
    span = (
        f"{port.number}-{port.end}" if port.end is not None and port.end != port.number else str(port.number)
    )
    return f"{proto} dport {span}"


def _peer_match(peer: _Peer, field: str, pods: Sequence[PodNet] | None = None) -> str | None:
    """The address match for ``peer`` (``None``: matches nothing); ``pods`` narrows it to those pod IPs."""
    if pods is not None:
        return f"ip {field} {_ip_set(p.ip for p in pods)}" if pods else None
    if peer.pods is not None:
        return f"ip {field} {_ip_set(p.ip for p in peer.pods)}" if peer.pods else None
    if peer.cidr is None:
        return ""
    if ipaddress.ip_network(peer.cidr).version != 4:
        return None
    excepts = [e for e in peer.excepts if ipaddress.ip_network(e).version == 4]
    text = f"ip {field} {peer.cidr}"
    return f"{text} ip {field} != {_ip_set(excepts)}" if excepts else text


def _peer_pods(peer: _Peer, pods: Sequence[PodNet]) -> list[PodNet]:
    """The known pods a peer covers (used to resolve named ports on the destination side)."""
    if peer.pods is not None:
        return list(peer.pods)
    if peer.cidr is None:
        return list(pods)
    network = ipaddress.ip_network(peer.cidr)
    excluded = [ipaddress.ip_network(e) for e in peer.excepts]
    result = []
    for pod in pods:
        address = ipaddress.ip_address(pod.ip)
        if address in network and not any(address in e for e in excluded):
            result.append(pod)
    return result


def _rule_matches(
    peers: Sequence[_Peer], ports: Sequence[_Port], direction: str, owner: PodNet, pods: Sequence[PodNet]
) -> list[str]:
    """Match expressions (one nft rule each) for one policy rule seen from ``owner``."""
    field = "daddr" if direction == "Egress" else "saddr"
    matches: list[str] = []
    for peer in peers:
        for port in ports:
            if port.port_name is None:
                address = _peer_match(peer, field)
                if address is not None:
                    matches.append(f"{address} {_port_match(port)}".strip())
            elif direction == "Ingress":
                number = _named_port(owner, port)
                address = _peer_match(peer, field)
                if number is not None and address is not None:
                    matches.append(f"{address} {_port_match(port, number)}".strip())
            else:
                by_number: dict[int, list[PodNet]] = {}
                for pod in _peer_pods(peer, pods):
                    number = _named_port(pod, port)
                    if number is not None:
                        by_number.setdefault(number, []).append(pod)
                for number, targets in sorted(by_number.items()):
                    matches.append(f"{_peer_match(peer, field, targets)} {_port_match(port, number)}")
    return list(dict.fromkeys(matches))


def _pod_chain(
    owner: PodNet, direction: str, views: Sequence[_PolicyView], pods: Sequence[PodNet]
) -> list[str] | None:
    """The body of ``owner``'s chain for ``direction``, or ``None`` when no policy isolates it."""
    isolating = [v for v in views if v.namespace == owner.namespace and direction in v.types() and v.selects(owner)]
    if not isolating:
        return None
    body: list[str] = []
    for view in isolating:
        for index, peers, ports in view.rules(direction):
            note = _comment(f"{view.label} {direction.lower()}[{index}]")
            body.extend(
                f"{match} counter return {note}".lstrip()
                for match in _rule_matches(peers, ports, direction, owner, pods)
            )
    body.append(
        f"counter drop {_comment(f'{owner.namespace}/{owner.name}: {direction.lower()} not allowed')}"
    )
    return body


def policy_ruleset(
    pods: Sequence[PodNet], namespaces: Mapping[str, Mapping[str, str]], policies: Sequence[Obj]
) -> str:
    """The hub-netns script enforcing ``policies`` on each pod's bridge-side veth (drops are silent)."""
    return tables_script(policy_tables(pods, namespaces, policies))


def policy_tables(
    pods: Sequence[PodNet], namespaces: Mapping[str, Mapping[str, str]], policies: Sequence[Obj]
) -> Tables:
    """The tables of :func:`policy_ruleset`: a chain per isolated pod and direction, named after the pod (another
    pod coming or going leaves the other chains' names as they were, so an update touches only what changed)."""
    ordered_pods = sorted(pods, key=lambda p: (p.namespace, p.name))
    views = _views_by_namespace(_policy_views(policies, ordered_pods, namespaces))
    forward = [
        "type filter hook forward priority 0; policy accept;",
        "ether type arp accept",
        f"meta mark {ESTABLISHED_MARK:#x} counter accept {_comment('established or related flow')}",
    ]
    jumps: dict[str, list[str]] = {"Egress": [], "Ingress": []}
    chains: list[tuple[str, Sequence[str]]] = []
    for direction, interface in (("Egress", "iifname"), ("Ingress", "oifname")):
        for pod in ordered_pods:
            body = _pod_chain(pod, direction, views.get(pod.namespace, ()), ordered_pods)
            if body is None:
                continue
            chain = _pod_chain_name(f"pod_{direction.lower()}", pod)
            label = f"{pod.namespace}/{pod.name} {direction.lower()}-isolated"
            jumps[direction].append(f'{interface} "{pod.veth}" jump {chain} {_comment(label)}')
            chains.append((chain, body))
    forward += jumps["Egress"] + jumps["Ingress"]
    mark = [
        "type filter hook prerouting priority 0; policy accept;",
        f"ct state established,related meta mark set {ESTABLISHED_MARK:#x}",
    ]
    return {("ip", POLICY_CT_TABLE): {"prerouting": tuple(mark)},
            ("bridge", POLICY_TABLE): {"forward": tuple(forward), **{c: tuple(b) for c, b in chains}}}


def _pod_chain_name(prefix: str, pod: PodNet) -> str:
    """``prefix`` with the pod's namespace and name, and a checksum of both (``a-b/c`` and ``a/b-c`` both read
    ``a_b_c``)."""
    checksum = zlib.crc32(f"{pod.namespace}/{pod.name}".encode())
    return f"{prefix}_{_ident(pod.namespace)}_{_ident(pod.name)}_{checksum:08x}"


Tables = dict[tuple[str, str], Chains]
"""Several tables as data: (family, table) -> its chains."""


def tables_script(tables: Tables) -> str:
    """The script that replaces each of ``tables`` in one transaction."""
    return "".join(table_script(family, table, chains) for (family, table), chains in tables.items())


def tables_update(before: Tables | None, after: Tables) -> str:
    """:func:`table_update` for each of ``after``'s tables (whole where ``before`` has none), in one script."""
    return "".join(table_update(family, table, (before or {}).get((family, table)), chains)
                   for (family, table), chains in after.items())


# --- applying -------------------------------------------------------------------------------------


def apply(netns: str, script: str, timeout: float = 30.0) -> None:
    """Runs ``ip netns exec <netns> nft -f -`` with ``script`` on stdin; raises :class:`NftApplyError`."""
    argv = ["ip", "netns", "exec", netns, "nft", "-f", "-"]
    try:
        done = subprocess.run(
            argv, input=script, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise NftApplyError(netns, script, -1, str(error)) from None
    if done.returncode != 0:
        raise NftApplyError(netns, script, done.returncode, done.stderr or done.stdout)


APPLY_WORKERS = 16
"""Network namespaces programmed at once. Each ``nft`` run waits ~12 ms for the kernel to release its netlink
socket (an RCU grace period) while using almost no CPU, so one at a time for every pod held the sandbox's reconcile
loop for seconds per change once a few cells ran together (5,000 runs and 94 s in one smoke run)."""


def apply_each(scripts: Mapping[str, str], timeout: float = 30.0) -> dict[str, NftApplyError]:
    """Applies each network namespace's script (``netns -> script``) concurrently; returns the refusals by
    network namespace (the others are programmed)."""
    if not scripts:
        return {}

    def one(item: tuple[str, str]) -> tuple[str, NftApplyError | None]:
        try:
            apply(*item, timeout=timeout)
        except NftApplyError as error:
            return item[0], error
        return item[0], None

    with concurrent.futures.ThreadPoolExecutor(min(APPLY_WORKERS, len(scripts))) as pool:
        return {name: error for name, error in pool.map(one, scripts.items()) if error is not None}


def enable_bridge_conntrack(netns: str) -> None:
    """Turns on ``bridge-nf-call-iptables`` in ``netns`` (the hub), which the policy ruleset relies on."""
    argv = ["ip", "netns", "exec", netns, "sh", "-c", "echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise CommandError(argv, done.returncode, done.stderr or done.stdout)
