"""Egress from an application pod, as dns_egress checks it: the policies it applies to scratch namespaces, pods as
NetworkPolicy peers, the enforcement canary, and the egress check itself (DNS over UDP and TCP to kube-dns, a
server's client port by IP), expected from the observed policies by the NetworkPolicy model and observed from a
probe pod. A dropped packet has no event of its own: "blocked" is a probe that timed out where the same probe
without the policy answers (the canary proves that difference first).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_natsnet import kube
from pytest_natsnet.expect import netpol
from pytest_natsnet.expect.policytiming import LEARN_WINDOW
from pytest_natsnet.kube import Obj
from pytest_natsnet.probe.model import DnsRequest, Outcome, ProbeRequest, ProbeResult, TcpRequest
from pytest_natsnet.prober import Prober
from pytest_natsnet.providers.base import Deployment
from pytest_natsnet.suitekit import client_service, eventually, servers
from pytest_natsnet.table import Comparison

DNS_TIMEOUT = 2.0
CONNECT_TIMEOUT = 2.0
CHECK_BOUND = 20.0
"""Policies just applied are programmed within this; the check is repeated until it matches, bounded."""
ANSWERS, TIMES_OUT, ALLOWED, BLOCKED = "answers", "times out", "allowed", "blocked"
KUBE_DNS_LABELS = {"k8s-app": "kube-dns"}
_enforcing: dict[str, bool] = {}
"""The canary's verdict per cell namespace (it runs once per cell)."""


# ------------------------------------------------------------------------------------------- policies (pure)


def deny_all_egress(name: str) -> Obj:
    """Selects every pod of its namespace for egress and allows nothing: default deny."""
    return allow_egress(name, None)


def allow_egress(name: str, rules: list[Obj] | None) -> Obj:
    """An egress policy for every pod of its namespace (``rules`` None: no rule at all, i.e. deny)."""
    spec: dict[str, Any] = {"podSelector": {}, "policyTypes": ["Egress"]}
    if rules is not None:
        spec["egress"] = rules
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name}, "spec": spec}


def dns_rule(protocols: Sequence[str]) -> Obj:
    """Egress to kube-dns (kube-system, ``k8s-app: kube-dns``) on port 53 over ``protocols``."""
    return {
        "to": [
            {
                "namespaceSelector": {"matchLabels": {kube.NAMESPACE_NAME_LABEL: "kube-system"}},
                "podSelector": {"matchLabels": dict(KUBE_DNS_LABELS)},
            }
        ],
        "ports": [{"port": 53, "protocol": protocol} for protocol in protocols],
    }


def namespace_port_rule(namespace: str, port: int) -> Obj:
    """Egress to every pod of ``namespace`` on TCP ``port``."""
    return {
        "to": [{"namespaceSelector": {"matchLabels": {kube.NAMESPACE_NAME_LABEL: namespace}}}],
        "ports": [{"port": port, "protocol": "TCP"}],
    }


def peer_of(pod: Mapping[str, Any]) -> netpol.Peer:
    """A pod as a NetworkPolicy peer: namespace, name, labels, IP and named container ports."""
    ports = {
        str(p["name"]): (int(p["containerPort"]), str(p.get("protocol", "TCP")))
        for c in kube.spec(pod).get("containers") or []
        for p in c.get("ports") or []
        if p.get("name")
    }
    ip = str((pod.get("status") or {}).get("podIP") or "")
    return netpol.Peer(kube.namespace_of(pod), kube.name(pod), kube.labels(pod), ip, ports)


# ------------------------------------------------------------------------------------------- the check


@dataclass(frozen=True)
class Row:
    expected: str
    observed: str
    reason: str


@dataclass(frozen=True)
class EgressCheck:
    """From an application pod in ``namespace``: DNS over UDP and over TCP to kube-dns, and ``server``'s client
    port by IP, each expected (from the observed policies) and observed."""

    namespace: str
    server: str
    port: int
    dns_udp: Row
    dns_tcp: Row
    client_port: Row

    @property
    def expects_dns_blocked(self) -> bool:
        return self.dns_udp.expected == TIMES_OUT and self.dns_tcp.expected == TIMES_OUT

    def rows(self) -> dict[str, Row]:
        return {
            "DNS over UDP to kube-dns": self.dns_udp,
            "DNS over TCP to kube-dns": self.dns_tcp,
            f"TCP {self.port} to {self.server} by IP": self.client_port,
        }

    def comparison(self) -> Comparison[str]:
        rows = self.rows()
        return Comparison.from_dicts(
            {k: r.expected for k, r in rows.items()},
            {k: r.observed for k, r in rows.items()},
            {k: r.reason for k, r in rows.items()},
        )

    def assert_as_expected(self, title: str) -> None:
        self.comparison().assert_same(f"{title} (from an application pod in {self.namespace})")


def _dns_word(result: ProbeResult) -> str:
    if result.outcome is Outcome.NOERROR:
        return ANSWERS
    return TIMES_OUT if result.outcome is Outcome.TIMEOUT else str(result.outcome)


def _kube_dns(deployment: Deployment) -> Obj:
    pods = [p for p in deployment.objects("Pod", "kube-system") if kube.labels(p).get("k8s-app") == "kube-dns"]
    assert pods, "no kube-system pod labelled k8s-app=kube-dns: the cluster DNS is not the standard one"
    return pods[0]


def _probe_pod(deployment: Deployment, probe: Prober, namespace: str) -> netpol.Peer:
    """The probe pod of ``namespace`` as a policy peer (created on first use)."""
    probe.run([], namespace=namespace)
    pod = kube.find(deployment.objects("Pod", namespace), "Pod", "natsnet-probe")
    assert pod is not None, f"probe pod not found in {namespace}"
    return peer_of(pod)


def check_egress(deployment: Deployment, probe: Prober, namespace: str, bound: float = CHECK_BOUND) -> EgressCheck:
    """The egress check from ``namespace``, repeated until observed matches expected (bounded): its expectation
    comes from the policies observed at that moment."""
    client = _probe_pod(deployment, probe, namespace)
    dns = peer_of(_kube_dns(deployment))
    group = servers(deployment)
    target, port = peer_of(group.pods[0]), group.confs[0].client_port
    fqdn = f"{client_service(deployment)}.{deployment.namespace}.svc.{deployment.info.cluster_domain}."
    requests: list[ProbeRequest] = [
        DnsRequest("dns-udp", fqdn, "A", "udp", timeout=DNS_TIMEOUT),
        DnsRequest("dns-tcp", fqdn, "A", "tcp", timeout=DNS_TIMEOUT),
        TcpRequest("client-port", target.ip, port, timeout=CONNECT_TIMEOUT),
    ]

    def observe() -> tuple[bool, EgressCheck]:
        namespaces = {kube.name(n): kube.labels(n) for n in deployment.objects("Namespace", "*")}
        policies = deployment.objects("NetworkPolicy", "*")

        def verdict(dst: netpol.Peer, dst_port: int, protocol: str) -> netpol.Verdict:
            return netpol.evaluate(netpol.Flow(client, dst, dst_port, protocol), policies, namespaces)

        udp, tcp, direct = verdict(dns, 53, "UDP"), verdict(dns, 53, "TCP"), verdict(target, port, "TCP")
        results = probe.run(requests, namespace=namespace)
        check = EgressCheck(
            namespace,
            target.name,
            port,
            Row(ANSWERS if udp.allowed else TIMES_OUT, _dns_word(results["dns-udp"]), udp.reason()),
            Row(ANSWERS if tcp.allowed else TIMES_OUT, _dns_word(results["dns-tcp"]), tcp.reason()),
            Row(ALLOWED if direct.allowed else BLOCKED, str(results["client-port"].outcome), direct.reason()),
        )
        return check.comparison().is_same, check

    _, check, _ = eventually(observe, bound, interval=0.5)
    return check


def scratch_namespace(deployment: Deployment, suffix: str, policies: Sequence[Obj]) -> str:
    """A namespace next to the cell's holding only ``policies`` (deleted with the cell)."""
    namespace = kube.sibling_namespace(deployment.namespace, suffix)
    deployment.create_namespace(namespace)
    deployment.apply(list(policies), namespace)
    return namespace


# ------------------------------------------------------------------------------------------- the canary


def enforces_network_policy(deployment: Deployment, probe: Prober) -> bool:
    """Whether the cluster enforces NetworkPolicy: a pod of a default-deny-egress namespace must not reach a
    server that a pod of a namespace without policies reaches. Known providers say so; others run the canary.

    The denied pod is new, and a policy engine may filter a pod only once it has learned it (kind's
    kube-network-policies: ``expect.policytiming``): its connections are tried again until one is blocked,
    bounded by that learning window, before the cluster is said not to enforce."""
    if deployment.info.enforces_network_policy is False:
        return False
    if deployment.namespace not in _enforcing:
        denied_namespace = scratch_namespace(deployment, "canary", [deny_all_egress("natsnet-canary-deny-egress")])
        open_namespace = scratch_namespace(deployment, "canary-open", [])
        group = servers(deployment)
        target = TcpRequest("canary", group.ip(group.names[0]), group.confs[0].client_port, timeout=CONNECT_TIMEOUT)
        reachable = probe.run([target], namespace=open_namespace)["canary"]
        assert reachable.outcome is Outcome.ALLOWED, (
            f"canary baseline: a pod without policies cannot reach {target.host}:{target.port} "
            f"({reachable.raw_outcome}); the cluster network itself is broken"
        )
        blocked, _, _ = eventually(
            lambda: (probe.run([target], namespace=denied_namespace)["canary"].outcome is Outcome.BLOCKED, None),
            LEARN_WINDOW, interval=0.5)
        _enforcing[deployment.namespace] = blocked
    return _enforcing[deployment.namespace]
