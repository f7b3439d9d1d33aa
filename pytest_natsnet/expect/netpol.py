"""NetworkPolicy semantics as a pure function: flow + policies -> an explained verdict (cyclonus style).

Semantics (networking.k8s.io/v1, as the Kubernetes docs define them):

- isolation is per direction: a pod is egress-isolated once a policy selecting it has ``Egress`` in its
  ``policyTypes`` (omitted: ``Ingress`` always, ``Egress`` when the policy has egress rules); the same for
  ingress;
- policies are additive (any rule of any selecting policy allows) and a flow needs both ends: the source's
  egress and the destination's ingress;
- a missing or empty ``egress``/``ingress`` list denies all; a missing or empty ``to``/``from`` means all
  peers; missing or empty ``ports`` means all ports;
- a peer entry: ``podSelector`` alone selects pods in the policy's namespace, ``namespaceSelector`` alone all
  pods of the selected namespaces, both together the AND of the two, ``ipBlock`` a CIDR (minus ``except``)
  matched against the peer's IP (pod or external);
- ports: ``protocol`` defaults to TCP; a number (with ``endPort`` a range); a name is resolved against the
  DESTINATION pod's named container ports, for egress and ingress alike (a non-pod destination has none).

Traffic to a Service ClusterIP is evaluated post-DNAT: the flow's destination is the endpoint pod, never the
ClusterIP, as kube-network-policies (kindnet) and most CNIs do. An ``ipBlock`` holding only a ClusterIP
therefore allows nothing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pytest_natsnet import kube

Direction = Literal["egress", "ingress"]
PROTOCOLS = ("TCP", "UDP", "SCTP")
SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class PolicyError(ValueError):
    """A NetworkPolicy (or flow) that cannot be evaluated; the message names the policy and the key."""


@dataclass(frozen=True)
class Peer:
    """A pod: where it lives, its labels and IP, and its named container ports (name -> (port, protocol))."""

    namespace: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    ip: str = ""
    ports: Mapping[str, tuple[int, str]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class External:
    """An address outside the cluster's pods; only ``ipBlock`` peers can match it."""

    ip: str
    name: str = "external"

    @property
    def key(self) -> str:
        return f"{self.name}({self.ip})"


Endpoint = Peer | External


@dataclass(frozen=True, order=True)
class FlowKey:
    src: str
    dst: str
    port: str
    protocol: str

    def __str__(self) -> str:
        return f"{self.src} -> {self.dst} {self.port}/{self.protocol}"


@dataclass(frozen=True)
class Flow:
    """Traffic from ``src`` to ``dst`` on ``port`` (a number, or a name of the destination's ports)."""

    src: Endpoint
    dst: Endpoint
    port: int | str
    protocol: str = "TCP"

    @property
    def key(self) -> FlowKey:
        return FlowKey(self.src.key, self.dst.key, str(self.port), self.protocol)

    def port_number(self) -> int:
        """The numeric port; a name is looked up among the destination pod's container ports."""
        if isinstance(self.port, int):
            return self.port
        if isinstance(self.dst, Peer) and self.port in self.dst.ports:
            return self.dst.ports[self.port][0]
        raise PolicyError(f"flow {self.key}: destination has no port named {self.port!r}")


@dataclass(frozen=True)
class PortProbe:
    """A column of a truth table: a port (number or destination port name) and a protocol."""

    port: int | str
    protocol: str = "TCP"


@dataclass(frozen=True)
class DirectionVerdict:
    """One end of a flow: whether the pod is isolated in this direction and which rules allow the flow."""

    applies: bool
    """False when this end is not a pod (an external address): policies do not apply."""
    isolated: bool = False
    policies: tuple[str, ...] = ()
    """The policies isolating the pod in this direction (``ns/name``)."""
    allowed_by: tuple[str, ...] = ()
    """The rules allowing the flow (``ns/name[index]``)."""

    @property
    def allowed(self) -> bool:
        return not self.applies or not self.isolated or bool(self.allowed_by)

    def reason(self) -> str:
        if not self.applies:
            return "not a pod"
        if not self.isolated:
            return "not isolated"
        if self.allowed_by:
            return "allowed by " + ", ".join(self.allowed_by)
        return "isolated by " + ", ".join(self.policies) + "; no rule allows"


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    egress: DirectionVerdict
    ingress: DirectionVerdict

    def reason(self) -> str:
        outcome = "allowed" if self.allowed else "blocked"
        return f"{outcome}: egress {self.egress.reason()}; ingress {self.ingress.reason()}"


@dataclass(frozen=True)
class _IpBlock:
    cidr: IpNetwork
    excepts: tuple[IpNetwork, ...]


@dataclass(frozen=True)
class _PeerRule:
    pod_selector: Mapping[str, Any] | None
    namespace_selector: Mapping[str, Any] | None
    ip_block: _IpBlock | None


@dataclass(frozen=True)
class _PortRule:
    protocol: str
    port: int | str | None
    end_port: int | None


@dataclass(frozen=True)
class _Rule:
    peers: tuple[_PeerRule, ...]
    """Empty: every peer."""
    ports: tuple[_PortRule, ...]
    """Empty: every port."""


@dataclass(frozen=True)
class ParsedPolicy:
    """A NetworkPolicy checked and converted to the evaluation model."""

    namespace: str
    name: str
    pod_selector: Mapping[str, Any]
    rules: Mapping[str, tuple[_Rule, ...]]
    """Per isolated direction; a direction the policy does not isolate is absent."""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def _network(text: Any, where: str) -> IpNetwork:
    try:
        return ipaddress.ip_network(str(text), strict=False)
    except ValueError:
        raise PolicyError(f"{where}: {text!r} is not a CIDR") from None


def _check_selector(selector: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(selector, Mapping):
        raise PolicyError(f"{where}: expected a label selector mapping")
    for expr in selector.get("matchExpressions") or []:
        if expr.get("operator") not in SELECTOR_OPERATORS:
            raise PolicyError(f"{where}.matchExpressions: unknown operator {expr.get('operator')!r}")
    return selector


def _parse_peer(entry: Mapping[str, Any], where: str) -> _PeerRule:
    pods, namespaces, block = entry.get("podSelector"), entry.get("namespaceSelector"), entry.get("ipBlock")
    if block is not None and (pods is not None or namespaces is not None):
        raise PolicyError(f"{where}: ipBlock cannot be combined with podSelector/namespaceSelector")
    if block is None and pods is None and namespaces is None:
        raise PolicyError(f"{where}: needs podSelector, namespaceSelector or ipBlock")
    ip_block = None
    if block is not None:
        cidr = _network(block.get("cidr"), f"{where}.ipBlock.cidr")
        excepts = tuple(_network(e, f"{where}.ipBlock.except") for e in block.get("except") or [])
        ip_block = _IpBlock(cidr, excepts)
    return _PeerRule(
        None if pods is None else _check_selector(pods, f"{where}.podSelector"),
        None if namespaces is None else _check_selector(namespaces, f"{where}.namespaceSelector"),
        ip_block,
    )


def _parse_port(entry: Mapping[str, Any], where: str) -> _PortRule:
    protocol = str(entry.get("protocol") or "TCP")
    if protocol not in PROTOCOLS:
        raise PolicyError(f"{where}.protocol: {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    port = entry.get("port")
    end_port = entry.get("endPort")
    if port is not None and not isinstance(port, int | str):
        raise PolicyError(f"{where}.port: expected a number or a port name")
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if end_port is not None and not (
        isinstance(port, int) and isinstance(end_port, int) and end_port >= port
    ):
        raise PolicyError(f"{where}.endPort: needs a numeric port not greater than it")
    return _PortRule(protocol, port, end_port)


def _parse_rule(rule: Mapping[str, Any], peers_key: str, where: str) -> _Rule:
    peers = tuple(
        _parse_peer(p, f"{where}.{peers_key}[{i}]") for i, p in enumerate(rule.get(peers_key) or [])
    )
    ports = tuple(_parse_port(p, f"{where}.ports[{i}]") for i, p in enumerate(rule.get("ports") or []))
    return _Rule(peers, ports)


def policy_types(spec: Mapping[str, Any]) -> tuple[str, ...]:
    """``spec.policyTypes``, or the API default: Ingress, plus Egress when egress rules exist."""
    if spec.get("policyTypes"):
        return tuple(str(t) for t in spec["policyTypes"])
    return ("Ingress", "Egress") if spec.get("egress") else ("Ingress",)


def _parse_policy(obj: Mapping[str, Any], default_namespace: str) -> ParsedPolicy:
    namespace, name = kube.namespace_of(obj, default_namespace), kube.name(obj)
    where = f"NetworkPolicy {namespace}/{name}: spec"
    spec = kube.spec(obj)
    types = policy_types(spec)
    for t in types:
        if t not in ("Ingress", "Egress"):
            raise PolicyError(f"{where}.policyTypes: {t!r} is not Ingress or Egress")
    rules: dict[str, tuple[_Rule, ...]] = {}
    for policy_type, key, peers_key in (("Ingress", "ingress", "from"), ("Egress", "egress", "to")):
        if policy_type in types:
            items = spec.get(key) or []
            rules[key] = tuple(_parse_rule(r, peers_key, f"{where}.{key}[{i}]") for i, r in enumerate(items))
    pod_selector = _check_selector(spec.get("podSelector") or {}, f"{where}.podSelector")
    return ParsedPolicy(namespace, name, pod_selector, rules)


def parse_policies(
    policies: Iterable[Mapping[str, Any]], default_namespace: str = "default"
) -> list[ParsedPolicy]:
    """The NetworkPolicy objects among ``policies``, checked; raises :class:`PolicyError` naming the key."""
    return [_parse_policy(p, default_namespace) for p in policies if kube.kind(p) == "NetworkPolicy"]


def _namespace_labels(namespace: str, namespace_labels: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    labels = dict(namespace_labels.get(namespace) or {})
    labels.setdefault(kube.NAMESPACE_NAME_LABEL, namespace)
    return labels


def _ip_in_block(ip: str, block: _IpBlock) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    in_cidr = address.version == block.cidr.version and address in block.cidr
    return in_cidr and not any(address.version == e.version and address in e for e in block.excepts)


def _peer_matches(
    rule: _PeerRule,
    endpoint: Endpoint,
    policy_namespace: str,
    namespace_labels: Mapping[str, Mapping[str, str]],
) -> bool:
    if rule.ip_block is not None:
        return _ip_in_block(endpoint.ip, rule.ip_block)
    if not isinstance(endpoint, Peer):
        return False
    if rule.namespace_selector is None:
        namespace_ok = endpoint.namespace == policy_namespace
    else:
        namespace_ok = kube.selector_matches(
            rule.namespace_selector, _namespace_labels(endpoint.namespace, namespace_labels)
        )
    return namespace_ok and (
        rule.pod_selector is None or kube.selector_matches(rule.pod_selector, endpoint.labels)
    )


def _port_matches(rule: _PortRule, dst: Endpoint, number: int, protocol: str) -> bool:
    if rule.protocol != protocol:
        return False
    if rule.port is None:
        return True
    if isinstance(rule.port, int):
        return rule.port <= number <= (rule.end_port or rule.port)
    return isinstance(dst, Peer) and dst.ports.get(rule.port) == (number, protocol)


def _rule_allows(
    rule: _Rule,
    other_end: Endpoint,
    flow: Flow,
    number: int,
    policy_namespace: str,
    namespace_labels: Mapping[str, Mapping[str, str]],
) -> bool:
    peers_ok = not rule.peers or any(
        _peer_matches(p, other_end, policy_namespace, namespace_labels) for p in rule.peers
    )
    ports_ok = not rule.ports or any(_port_matches(p, flow.dst, number, flow.protocol) for p in rule.ports)
    return peers_ok and ports_ok


def _direction(
    direction: Direction,
    flow: Flow,
    number: int,
    policies: Sequence[ParsedPolicy],
    namespace_labels: Mapping[str, Mapping[str, str]],
) -> DirectionVerdict:
    pod, other_end = (flow.src, flow.dst) if direction == "egress" else (flow.dst, flow.src)
    if not isinstance(pod, Peer):
        return DirectionVerdict(applies=False)
    selecting = [
        p
        for p in policies
        if direction in p.rules
        and p.namespace == pod.namespace
        and kube.selector_matches(p.pod_selector, pod.labels)
    ]
    allowed_by = tuple(
        f"{p.key}[{i}]"
        for p in selecting
        for i, rule in enumerate(p.rules[direction])
        if _rule_allows(rule, other_end, flow, number, p.namespace, namespace_labels)
    )
    return DirectionVerdict(True, bool(selecting), tuple(p.key for p in selecting), allowed_by)


def _evaluate_parsed(
    flow: Flow, policies: Sequence[ParsedPolicy], namespace_labels: Mapping[str, Mapping[str, str]]
) -> Verdict:
    if flow.protocol not in PROTOCOLS:
        raise PolicyError(f"flow {flow.key}: protocol must be one of {', '.join(PROTOCOLS)}")
    number = flow.port_number()
    egress = _direction("egress", flow, number, policies, namespace_labels)
    ingress = _direction("ingress", flow, number, policies, namespace_labels)
    return Verdict(egress.allowed and ingress.allowed, egress, ingress)


def evaluate(
    flow: Flow,
    policies: Iterable[Mapping[str, Any]],
    namespace_labels: Mapping[str, Mapping[str, str]],
    *,
    default_namespace: str = "default",
) -> Verdict:
    """Whether ``flow`` is allowed by the NetworkPolicies in ``policies`` (other kinds are ignored), and why.

    ``namespace_labels`` maps namespace name -> labels; ``kubernetes.io/metadata.name`` is implied.
    Policies without ``metadata.namespace`` are in ``default_namespace``.
    """
    return _evaluate_parsed(flow, parse_policies(policies, default_namespace), namespace_labels)


def truth_table(
    peers: Sequence[Endpoint],
    flows: Sequence[PortProbe],
    policies: Iterable[Mapping[str, Any]],
    namespace_labels: Mapping[str, Mapping[str, str]],
    *,
    default_namespace: str = "default",
) -> dict[FlowKey, Verdict]:
    """Every source × destination (distinct, at least one a pod) × port probe, as cyclonus tables it.

    Cells whose named port the destination does not have are left out (no such traffic can exist).
    """
    parsed = parse_policies(policies, default_namespace)
    table: dict[FlowKey, Verdict] = {}
    for src in peers:
        for dst in peers:
            if src == dst or not (isinstance(src, Peer) or isinstance(dst, Peer)):
                continue
            for probe in flows:
                flow = Flow(src, dst, probe.port, probe.protocol)
                if isinstance(probe.port, str) and not (isinstance(dst, Peer) and probe.port in dst.ports):
                    continue
                table[flow.key] = _evaluate_parsed(flow, parsed, namespace_labels)
    return table
