"""dns_egress: NetworkPolicy egress must allow DNS (UDP and TCP 53 to kube-dns) or every name breaks.

Expectations come from the observed NetworkPolicies (a pure NetworkPolicy evaluator, post-DNAT semantics); the
probe runs as an application client in the namespace. Before anything else an enforcement canary proves the
cluster enforces NetworkPolicy at all: a cluster that does not (kind < v0.24, a CNI without policy) makes the suite
not applicable, never passed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from pytest_natsnet import applicability, kube
from pytest_natsnet.expect import netpol
from pytest_natsnet.kube import Obj
from pytest_natsnet.probe.model import DnsRequest, Outcome, ProbeRequest, TcpRequest
from pytest_natsnet.prober import Prober
from pytest_natsnet.providers.base import Deployment
from pytest_natsnet.session import Cell
from pytest_natsnet.suitekit import DNS_BLOCKED, client_service, require, servers, wait_for_log
from pytest_natsnet.table import Comparison

DNS_TIMEOUT = 2.0
LOG_WAIT = 60.0
_canary: dict[str, bool] = {}


def _policy(name: str, egress: list[Obj] | None) -> Obj:
    spec: dict[str, Any] = {"podSelector": {}, "policyTypes": ["Egress"]}
    if egress is not None:
        spec["egress"] = egress
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }


def _dns_rule(protocols: Sequence[str]) -> Obj:
    return {
        "to": [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ],
        "ports": [{"port": 53, "protocol": p} for p in protocols],
    }


def _peer(pod: Mapping[str, Any]) -> netpol.Peer:
    ports = {
        str(p["name"]): (int(p["containerPort"]), str(p.get("protocol", "TCP")))
        for c in kube.spec(pod).get("containers") or []
        for p in c.get("ports") or []
        if p.get("name")
    }
    return netpol.Peer(
        kube.namespace_of(pod),
        kube.name(pod),
        kube.labels(pod),
        str(pod.get("status", {}).get("podIP") or ""),
        ports,
    )


def _kube_dns(deployment: Deployment) -> Obj:
    pods = [p for p in deployment.objects("Pod", "kube-system") if kube.labels(p).get("k8s-app") == "kube-dns"]
    assert pods, "no kube-system pod labelled k8s-app=kube-dns: the cluster DNS is not the standard one"
    return pods[0]


def _verdict(deployment: Deployment, src: netpol.Peer, dst: netpol.Peer, port: int, protocol: str) -> netpol.Verdict:
    namespaces = {kube.name(n): kube.labels(n) for n in deployment.objects("Namespace", "*")}
    return netpol.evaluate(netpol.Flow(src, dst, port, protocol), deployment.objects("NetworkPolicy", "*"), namespaces)


def _client(deployment: Deployment, probe: Prober, namespace: str) -> netpol.Peer:
    """The probe pod as a policy peer (it is created on first use)."""
    probe.run([], namespace=namespace)
    pod = kube.find(deployment.objects("Pod", namespace), "Pod", "natsnet-probe")
    assert pod is not None, f"probe pod not found in {namespace}"
    return _peer(pod)


def egress_table(deployment: Deployment, probe: Prober, namespace: str) -> Comparison[str]:
    """Expected (from the observed policies) vs observed: DNS over UDP and TCP to kube-dns, a server by IP."""
    client = _client(deployment, probe, namespace)
    dns_pod = _kube_dns(deployment)
    group = servers(deployment)
    target = next(p for p in group.pods)
    target_peer = _peer(target)
    port = group.confs[0].client_port
    name = client_service(deployment)
    fqdn = f"{name}.{deployment.namespace}.svc.cluster.local."
    requests: list[ProbeRequest] = [
        DnsRequest("dns-udp", fqdn, "A", "udp", timeout=DNS_TIMEOUT),
        DnsRequest("dns-tcp", fqdn, "A", "tcp", timeout=DNS_TIMEOUT),
        TcpRequest("nats-by-ip", target_peer.ip, port, timeout=2.0),
    ]
    results = probe.run(requests, namespace=namespace)
    udp = _verdict(deployment, client, _peer(dns_pod), 53, "UDP")
    tcp = _verdict(deployment, client, _peer(dns_pod), 53, "TCP")
    direct = _verdict(deployment, client, target_peer, port, "TCP")
    expected = {
        "DNS over UDP to kube-dns": "answers" if udp.allowed else "times out",
        "DNS over TCP to kube-dns": "answers" if tcp.allowed else "times out",
        f"TCP {port} to {kube.name(target)} by IP": "allowed" if direct.allowed else "blocked",
    }

    def dns_word(outcome: Outcome) -> str:
        return "answers" if outcome is Outcome.NOERROR else "times out" if outcome is Outcome.TIMEOUT else outcome

    observed = {
        "DNS over UDP to kube-dns": dns_word(results["dns-udp"].outcome),
        "DNS over TCP to kube-dns": dns_word(results["dns-tcp"].outcome),
        f"TCP {port} to {kube.name(target)} by IP": str(results["nats-by-ip"].outcome),
    }
    reasons = {
        "DNS over UDP to kube-dns": udp.reason(),
        "DNS over TCP to kube-dns": tcp.reason(),
        f"TCP {port} to {kube.name(target)} by IP": direct.reason(),
    }
    return Comparison.from_dicts(expected, observed, reasons)


def enforcement(deployment: Deployment, probe: Prober) -> bool:
    """The canary: a default-deny-egress namespace must not reach a server that is reachable without it."""
    if deployment.info.enforces_network_policy is False:
        return False
    key = deployment.namespace
    if key not in _canary:
        canary = kube.sibling_namespace(deployment.namespace, "canary")
        open_namespace = kube.sibling_namespace(deployment.namespace, "canary-open")
        deployment.create_namespace(canary)
        deployment.apply([_policy("natsnet-canary-deny-egress", None)], canary)
        group = servers(deployment)
        target = TcpRequest("canary", group.ip(group.names[0]), group.confs[0].client_port, timeout=2.0)
        deployment.create_namespace(open_namespace)
        open_result = probe.run([target], namespace=open_namespace)["canary"]
        denied = probe.run([target], namespace=canary)["canary"]
        assert open_result.outcome is Outcome.ALLOWED, (
            f"canary baseline: a pod without policies cannot reach {target.host}:{target.port} "
            f"({open_result.raw_outcome}); the cluster network itself is broken"
        )
        _canary[key] = denied.outcome is Outcome.BLOCKED
    return _canary[key]


def _require_enforcement(cell: Cell, probe: Prober) -> None:
    deployment = cell.deployment
    require(applicability.egress_policies(deployment.objects("NetworkPolicy"), deployment.namespace, cell.expect))
    if not enforcement(cell.deployment, probe):
        pytest.skip(
            "not applicable: this cluster does not enforce NetworkPolicy (the canary's default-deny "
            "egress let traffic through); use kind >= v0.24.0 or a policy-capable CNI"
        )


def test_cell_policies_decide_dns_and_client_traffic(natsnet_cell: Cell, natsnet_probe: Prober) -> None:
    """The cell's own policies, as an application pod in its namespace sees them: DNS over UDP and TCP, the
    client port by IP, a name lookup; a cell that declares dns-blocked must show the servers' DNS errors too."""
    _require_enforcement(natsnet_cell, natsnet_probe)
    deployment = natsnet_cell.deployment
    comparison = egress_table(deployment, natsnet_probe, deployment.namespace)
    comparison.assert_same(f"egress from an application pod in {deployment.namespace}")
    dns_blocked = next(iter(comparison.cells.values())).expected == "times out"
    assert dns_blocked == (DNS_BLOCKED in natsnet_cell.expect), (
        f"the cell {'declares' if DNS_BLOCKED in natsnet_cell.expect else 'does not declare'} {DNS_BLOCKED} but "
        f"its policies {'block' if dns_blocked else 'allow'} DNS: the matrix entry and the values disagree"
    )
    if dns_blocked:
        group = servers(deployment)
        lines = wait_for_log(deployment, group.names, r"Error trying to connect to route.*lookup", LOG_WAIT)
        assert lines, f"DNS is blocked but no server logged a failed route lookup within {LOG_WAIT:g}s"


def _scratch(cell: Cell, probe: Prober, suffix: str, egress_rules: list[Obj]) -> Comparison[str]:
    deployment = cell.deployment
    namespace = kube.sibling_namespace(deployment.namespace, suffix)
    deployment.create_namespace(namespace)
    deployment.apply([_policy("natsnet-deny-egress", None), _policy("natsnet-allow", egress_rules)], namespace)
    return egress_table(deployment, probe, namespace)


def test_udp_only_dns_rule_breaks_tcp_dns(natsnet_cell: Cell, natsnet_probe: Prober) -> None:
    """Default-deny egress plus a DNS rule listing only UDP: UDP queries answer, TCP queries time out."""
    _require_enforcement(natsnet_cell, natsnet_probe)
    group = servers(natsnet_cell.deployment)
    rules = [
        _dns_rule(["UDP"]),
        {
            "to": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": natsnet_cell.deployment.namespace}
                    }
                }
            ],
            "ports": [{"port": group.confs[0].client_port, "protocol": "TCP"}],
        },
    ]
    comparison = _scratch(natsnet_cell, natsnet_probe, "udponly", rules)
    assert next(iter(comparison.cells.values())).expected == "answers"
    assert list(comparison.cells.values())[1].expected == "times out", "the policy model says TCP 53 is allowed"
    comparison.assert_same("UDP-only DNS egress rule")


def test_dns_allowed_but_client_port_blocked(natsnet_cell: Cell, natsnet_probe: Prober) -> None:
    """The canonical DNS rule alone: names resolve, yet the client port is blocked — "DNS lookup succeeds but
    connection fails"."""
    _require_enforcement(natsnet_cell, natsnet_probe)
    comparison = _scratch(natsnet_cell, natsnet_probe, "dnsonly", [_dns_rule(["UDP", "TCP"])])
    values = list(comparison.cells.values())
    assert values[0].expected == "answers" and values[2].expected == "blocked"
    comparison.assert_same("DNS allowed, client port not")
