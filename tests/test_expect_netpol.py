"""NetworkPolicy truth tables: golden DNS-egress policies and the semantics' corner cases, table-driven."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from golden_data import VALUES

from pytest_natsnet.expect.netpol import (
    External,
    Flow,
    Peer,
    PolicyError,
    PortProbe,
    evaluate,
    truth_table,
)

GOLDEN_VALUES = VALUES
NS = "natsnet"
NATS_LABELS = {"app.kubernetes.io/name": "nats", "app.kubernetes.io/component": "nats"}
NATS_PORTS = {"nats": (4222, "TCP"), "cluster": (6222, "TCP"), "monitor": (8222, "TCP")}
NATS0 = Peer(NS, "nats-0", NATS_LABELS, "198.18.0.10", NATS_PORTS)
NATS1 = Peer(NS, "nats-1", NATS_LABELS, "198.18.0.11", NATS_PORTS)
KUBE_DNS = Peer(
    "kube-system",
    "coredns-0",
    {"k8s-app": "kube-dns"},
    "198.18.0.2",
    {"dns": (53, "UDP"), "dns-tcp": (53, "TCP")},
)
CLIENT = Peer("clients", "probe", {"role": "client"}, "198.18.0.50")
OUTSIDE = External("198.19.0.7", "outside")
KUBE_DNS_CLUSTER_IP = "198.18.128.10"
NAMESPACE_LABELS: dict[str, dict[str, str]] = {
    NS: {"kubernetes.io/metadata.name": NS},
    "kube-system": {"kubernetes.io/metadata.name": "kube-system"},
    "clients": {"team": "blue"},
}

Obj = dict[str, Any]


def golden_policies(values_file: str) -> list[Obj]:
    """The ``extraResources`` NetworkPolicies of a golden values file, in namespace ``natsnet``."""
    values = yaml.safe_load((GOLDEN_VALUES / values_file).read_text())
    policies = [dict(r) for r in values["extraResources"] if r["kind"] == "NetworkPolicy"]
    for policy in policies:
        policy["metadata"] = {**policy["metadata"], "namespace": NS}
    return policies


def policy(name: str, spec: Obj, namespace: str = NS) -> Obj:
    return {"kind": "NetworkPolicy", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


DENY_EGRESS = policy("deny-egress", {"podSelector": {}, "policyTypes": ["Egress"]})
DENY_INGRESS = policy("deny-ingress", {"podSelector": {}, "policyTypes": ["Ingress"]})
KUBE_DNS_PEER = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
}


def egress_rule(name: str, to: list[Obj] | None, ports: list[Obj] | None) -> Obj:
    rule: Obj = {}
    if to is not None:
        rule["to"] = to
    if ports is not None:
        rule["ports"] = ports
    return policy(name, {"podSelector": {}, "policyTypes": ["Egress"], "egress": [rule]})


def allowed(flow: Flow, policies: list[Obj]) -> bool:
    return evaluate(flow, policies, NAMESPACE_LABELS).allowed


NO_DNS = "netpol-egress-no-dns.yaml"
WITH_DNS = "netpol-egress-dns.yaml"


@pytest.mark.parametrize(
    ("values_file", "flow", "expected"),
    [
        pytest.param(None, Flow(NATS0, KUBE_DNS, 53, "UDP"), True, id="no-policy-dns-udp"),
        pytest.param(NO_DNS, Flow(NATS0, KUBE_DNS, 53, "UDP"), False, id="no-dns-udp53-blocked"),
        pytest.param(NO_DNS, Flow(NATS0, KUBE_DNS, 53, "TCP"), False, id="no-dns-tcp53-blocked"),
        pytest.param(NO_DNS, Flow(NATS0, NATS1, 4222), True, id="no-dns-4222-in-namespace"),
        pytest.param(NO_DNS, Flow(NATS0, NATS1, 6222), True, id="no-dns-6222-in-namespace"),
        pytest.param(NO_DNS, Flow(NATS0, NATS1, 7777), False, id="no-dns-other-port-blocked"),
        pytest.param(NO_DNS, Flow(NATS0, NATS1, 6222, "UDP"), False, id="no-dns-6222-udp-blocked"),
        pytest.param(NO_DNS, Flow(NATS0, CLIENT, 4222), False, id="no-dns-4222-other-namespace-blocked"),
        pytest.param(NO_DNS, Flow(CLIENT, NATS0, 4222), True, id="no-dns-ingress-not-isolated"),
        pytest.param(WITH_DNS, Flow(NATS0, KUBE_DNS, 53, "UDP"), True, id="dns-udp53-allowed"),
        pytest.param(WITH_DNS, Flow(NATS0, KUBE_DNS, 53, "TCP"), True, id="dns-tcp53-allowed"),
        pytest.param(WITH_DNS, Flow(NATS0, KUBE_DNS, 9153), False, id="dns-metrics-port-blocked"),
        pytest.param(WITH_DNS, Flow(NATS0, NATS1, 6222), True, id="dns-6222-in-namespace"),
        pytest.param(WITH_DNS, Flow(NATS0, OUTSIDE, 53, "UDP"), False, id="dns-outside-resolver-blocked"),
    ],
)
def test_golden_dns_egress_policies(values_file: str | None, flow: Flow, expected: bool) -> None:
    policies = golden_policies(values_file) if values_file else []
    assert allowed(flow, policies) is expected


UDP53, TCP53 = {"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}


@pytest.mark.parametrize(
    ("rule", "udp", "tcp"),
    [
        pytest.param(egress_rule("dns", [KUBE_DNS_PEER], [UDP53, TCP53]), True, True, id="canonical"),
        pytest.param(egress_rule("dns", [KUBE_DNS_PEER], [UDP53]), True, False, id="udp-only"),
        pytest.param(
            egress_rule("dns", [KUBE_DNS_PEER], [{"port": 53}]), False, True, id="no-protocol-is-tcp"
        ),
        pytest.param(egress_rule("dns", [KUBE_DNS_PEER], None), True, True, id="no-ports-all-ports"),
        pytest.param(egress_rule("dns", None, [UDP53]), True, False, id="no-to-all-peers"),
        pytest.param(
            egress_rule("dns", [{"ipBlock": {"cidr": f"{KUBE_DNS_CLUSTER_IP}/32"}}], [UDP53, TCP53]),
            False,
            False,
            id="ipblock-clusterip-post-dnat",
        ),
        pytest.param(
            egress_rule("dns", [{"ipBlock": {"cidr": "198.18.0.0/24"}}], [UDP53, TCP53]),
            True,
            True,
            id="ipblock-pod-cidr",
        ),
        pytest.param(
            egress_rule(
                "dns", [{"ipBlock": {"cidr": "198.18.0.0/24", "except": ["198.18.0.0/30"]}}], [UDP53]
            ),
            False,
            False,
            id="ipblock-except",
        ),
        pytest.param(
            egress_rule("dns", [{"podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}], [UDP53, TCP53]),
            False,
            False,
            id="pod-selector-alone-is-own-namespace",
        ),
        pytest.param(
            egress_rule("dns", [{"namespaceSelector": {}}], [UDP53, TCP53]),
            True,
            True,
            id="empty-namespace-selector-all-namespaces",
        ),
        pytest.param(
            egress_rule(
                "dns",
                [
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "clients"}}},
                    KUBE_DNS_PEER,
                ],
                [UDP53],
            ),
            True,
            False,
            id="two-peer-entries-are-or",
        ),
        pytest.param(
            egress_rule(
                "dns",
                [
                    {
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "clients"}},
                        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                    }
                ],
                [UDP53],
            ),
            False,
            False,
            id="namespace-and-pod-selector-is-and",
        ),
        pytest.param(
            egress_rule("dns", [KUBE_DNS_PEER], [{"port": "dns", "protocol": "UDP"}]),
            True,
            False,
            id="named-port-udp",
        ),
        pytest.param(
            egress_rule("dns", [KUBE_DNS_PEER], [{"port": "dns"}]),
            False,
            False,
            id="named-port-protocol-mismatch",
        ),
        pytest.param(
            egress_rule("dns", [KUBE_DNS_PEER], [{"port": 50, "endPort": 60, "protocol": "UDP"}]),
            True,
            False,
            id="end-port-range",
        ),
    ],
)
def test_dns_egress_variants(rule: Obj, udp: bool, tcp: bool) -> None:
    policies = [DENY_EGRESS, rule]
    assert (
        allowed(Flow(NATS0, KUBE_DNS, 53, "UDP"), policies),
        allowed(Flow(NATS0, KUBE_DNS, 53, "TCP"), policies),
    ) == (
        udp,
        tcp,
    )


FROM_CLIENTS = policy(
    "allow-clients",
    {
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "nats"}},
        "ingress": [
            {"from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}}}], "ports": [{"port": "nats"}]}
        ],
    },
)
CLIENT_DENY_EGRESS = policy("deny-egress", {"podSelector": {}, "policyTypes": ["Egress"]}, "clients")
CLIENT_ALLOW_EGRESS = policy(
    "allow-nats",
    {"podSelector": {}, "egress": [{"to": [{"namespaceSelector": {}}], "ports": [{"port": 4222}]}]},
    "clients",
)


@pytest.mark.parametrize(
    ("policies", "port", "expected", "egress_reason", "ingress_reason"),
    [
        pytest.param([], 4222, True, "not isolated", "not isolated", id="open"),
        pytest.param(
            [DENY_INGRESS],
            4222,
            False,
            "not isolated",
            "isolated by natsnet/deny-ingress; no rule allows",
            id="ingress-isolated",
        ),
        pytest.param(
            [DENY_INGRESS, FROM_CLIENTS],
            4222,
            True,
            "not isolated",
            "allowed by natsnet/allow-clients[0]",
            id="additive-ingress-allow",
        ),
        pytest.param(
            [FROM_CLIENTS],
            6222,
            False,
            "not isolated",
            "isolated by natsnet/allow-clients; no rule allows",
            id="named-port-ingress-other-port",
        ),
        pytest.param(
            [FROM_CLIENTS, CLIENT_DENY_EGRESS],
            4222,
            False,
            "isolated by clients/deny-egress; no rule allows",
            "allowed by natsnet/allow-clients[0]",
            id="both-ends-egress-denied",
        ),
        pytest.param(
            [FROM_CLIENTS, CLIENT_DENY_EGRESS, CLIENT_ALLOW_EGRESS],
            4222,
            True,
            "allowed by clients/allow-nats[0]",
            "allowed by natsnet/allow-clients[0]",
            id="both-ends-allowed",
        ),
    ],
)
def test_ingress_isolation_needs_both_ends(
    policies: list[Obj], port: int, expected: bool, egress_reason: str, ingress_reason: str
) -> None:
    verdict = evaluate(Flow(CLIENT, NATS0, port), policies, NAMESPACE_LABELS)
    assert (verdict.allowed, verdict.egress.reason(), verdict.ingress.reason()) == (
        expected,
        egress_reason,
        ingress_reason,
    )


@pytest.mark.parametrize(
    ("spec", "egress_isolated", "ingress_isolated"),
    [
        pytest.param({"podSelector": {}}, False, True, id="omitted-no-rules-ingress-only"),
        pytest.param({"podSelector": {}, "egress": [{}]}, True, True, id="omitted-with-egress-rules"),
        pytest.param({"podSelector": {}, "egress": []}, False, True, id="omitted-empty-egress-list"),
        pytest.param({"podSelector": {}, "policyTypes": ["Egress"]}, True, False, id="egress-only"),
        pytest.param(
            {
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "other"}},
                "policyTypes": ["Egress", "Ingress"],
            },
            False,
            False,
            id="selects-other-pods",
        ),
        pytest.param(
            {
                "podSelector": {
                    "matchExpressions": [
                        {"key": "app.kubernetes.io/name", "operator": "In", "values": ["nats"]}
                    ]
                },
                "policyTypes": ["Egress"],
            },
            True,
            False,
            id="match-expressions",
        ),
    ],
)
def test_policy_types_and_selection(spec: Obj, egress_isolated: bool, ingress_isolated: bool) -> None:
    verdict = evaluate(Flow(NATS0, NATS1, 4222), [policy("p", spec)], NAMESPACE_LABELS)
    assert (verdict.egress.isolated, verdict.ingress.isolated) == (egress_isolated, ingress_isolated)


def test_policy_in_another_namespace_does_not_select() -> None:
    other = policy("deny", {"podSelector": {}, "policyTypes": ["Egress", "Ingress"]}, "clients")
    assert evaluate(Flow(NATS0, NATS1, 4222), [other], NAMESPACE_LABELS).reason() == (
        "allowed: egress not isolated; ingress not isolated"
    )


def test_allow_all_rule_and_deny_all_policy() -> None:
    allow_all = policy("allow-all", {"podSelector": {}, "ingress": [{}]})
    assert allowed(Flow(OUTSIDE, NATS0, 9999), [DENY_INGRESS, allow_all])
    assert not allowed(Flow(OUTSIDE, NATS0, 9999), [DENY_INGRESS])


def test_external_source_only_matches_ip_blocks() -> None:
    from_outside = policy(
        "from-outside", {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "198.19.0.0/16"}}]}]}
    )
    from_any_ns = policy(
        "from-any-ns", {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]}
    )
    assert allowed(Flow(OUTSIDE, NATS0, 4222), [from_outside])
    assert not allowed(Flow(OUTSIDE, NATS0, 4222), [from_any_ns])
    assert (
        evaluate(Flow(OUTSIDE, NATS0, 4222), [from_any_ns], NAMESPACE_LABELS).egress.reason() == "not a pod"
    )


def test_flow_by_port_name_resolves_on_the_destination() -> None:
    cluster_only = egress_rule("cluster", [{"podSelector": {}}], [{"port": "cluster"}])
    assert allowed(Flow(NATS0, NATS1, "cluster"), [cluster_only])
    assert allowed(Flow(NATS0, NATS1, 6222), [cluster_only])
    assert not allowed(Flow(NATS0, NATS1, "nats"), [cluster_only])
    with pytest.raises(PolicyError, match="destination has no port named 'gossip'"):
        evaluate(Flow(NATS0, NATS1, "gossip"), [cluster_only], NAMESPACE_LABELS)


def test_namespace_name_label_is_implied() -> None:
    to_clients = egress_rule(
        "to-clients",
        [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "clients"}}}],
        None,
    )
    assert allowed(Flow(NATS0, CLIENT, 80), [to_clients])


def test_policy_without_namespace_uses_the_default() -> None:
    bare = {
        "kind": "NetworkPolicy",
        "metadata": {"name": "deny"},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"]},
    }
    assert evaluate(Flow(NATS0, NATS1, 4222), [bare], NAMESPACE_LABELS).allowed
    assert not evaluate(Flow(NATS0, NATS1, 4222), [bare], NAMESPACE_LABELS, default_namespace=NS).allowed


def test_other_kinds_are_ignored() -> None:
    assert allowed(Flow(NATS0, NATS1, 4222), [{"kind": "Service", "metadata": {"name": "x"}, "spec": {}}])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "nope"}}]}]},
            "NetworkPolicy natsnet/bad: spec.egress[0].to[0].ipBlock.cidr: 'nope' is not a CIDR",
        ),
        (
            {"podSelector": {}, "ingress": [{"ports": [{"port": 1, "protocol": "ICMP"}]}]},
            "spec.ingress[0].ports[0].protocol: 'ICMP' is not one of TCP, UDP, SCTP",
        ),
        (
            {"podSelector": {}, "ingress": [{"ports": [{"port": "nats", "endPort": 5000}]}]},
            "spec.ingress[0].ports[0].endPort: needs a numeric port",
        ),
        (
            {
                "podSelector": {},
                "ingress": [{"from": [{"ipBlock": {"cidr": "1.2.3.0/24"}, "podSelector": {}}]}],
            },
            "spec.ingress[0].from[0]: ipBlock cannot be combined",
        ),
        ({"podSelector": {}, "ingress": [{"from": [{}]}]}, "spec.ingress[0].from[0]: needs podSelector"),
        (
            {"podSelector": {"matchExpressions": [{"key": "a", "operator": "Like"}]}},
            "spec.podSelector.matchExpressions: unknown operator 'Like'",
        ),
        (
            {"podSelector": {}, "policyTypes": ["Outbound"]},
            "spec.policyTypes: 'Outbound' is not Ingress or Egress",
        ),
    ],
)
def test_bad_policies_raise_one_line_naming_the_key(spec: Obj, message: str) -> None:
    with pytest.raises(PolicyError) as excinfo:
        evaluate(Flow(NATS0, NATS1, 4222), [policy("bad", spec)], NAMESPACE_LABELS)
    assert message in str(excinfo.value) and "\n" not in str(excinfo.value)


def test_truth_table_for_golden_dns_policies() -> None:
    peers: list[Peer | External] = [NATS0, NATS1, KUBE_DNS, OUTSIDE]
    probes = [PortProbe(53, "UDP"), PortProbe(53, "TCP"), PortProbe(6222), PortProbe("cluster")]
    table = truth_table(peers, probes, golden_policies(WITH_DNS), NAMESPACE_LABELS)
    # The natsnet pods may reach DNS and each other; kube-system pods and the outside are not isolated.
    from_natsnet = [
        f"natsnet/{src} -> {dst} {port}"
        for src, other in (("nats-0", "nats-1"), ("nats-1", "nats-0"))
        for dst, port in (
            ("kube-system/coredns-0", "53/TCP"),
            ("kube-system/coredns-0", "53/UDP"),
            (f"natsnet/{other}", "6222/TCP"),
            (f"natsnet/{other}", "cluster/TCP"),
        )
    ]
    unisolated = [str(k) for k in table if k.src in (KUBE_DNS.key, OUTSIDE.key)]
    assert len(table) == 6 * 4 + 6 * 3, "12 ordered pairs; the named port only towards the nats pods"
    assert len(unisolated) == 2 * (2 * 4 + 3)
    assert sorted(str(k) for k, v in table.items() if v.allowed) == sorted(from_natsnet + unisolated)
    blocked = table[Flow(NATS0, OUTSIDE, 53, "UDP").key]
    assert blocked.reason() == (
        "blocked: egress isolated by natsnet/natsnet-default-deny-egress, natsnet/natsnet-allow-nats-ports, "
        "natsnet/natsnet-allow-dns; no rule allows; ingress not a pod"
    )
