"""dns_egress's policies and peers, evaluated by the NetworkPolicy model (pure: no cluster)."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_natsnet.egress import (
    ANSWERS,
    BLOCKED,
    TIMES_OUT,
    EgressCheck,
    Row,
    allow_egress,
    deny_all_egress,
    dns_rule,
    namespace_port_rule,
    peer_of,
)
from pytest_natsnet.expect import netpol

CELL = "natsnet-r1-default"
SCRATCH = "natsnet-r1-default-udponly"
NAMESPACES = {n: {} for n in (CELL, SCRATCH, "kube-system")}
KUBE_DNS = netpol.Peer("kube-system", "coredns", {"k8s-app": "kube-dns"}, "198.18.0.2", {"dns": (53, "UDP")})
SERVER = netpol.Peer(CELL, "nats-0", {"app.kubernetes.io/name": "nats"}, "198.18.0.10", {"nats": (4222, "TCP")})
CLIENT = netpol.Peer(SCRATCH, "natsnet-probe", {"app.kubernetes.io/name": "natsnet-client"}, "198.18.0.20")


def placed(policy: dict[str, Any], namespace: str = SCRATCH) -> dict[str, Any]:
    return {**policy, "metadata": {**policy["metadata"], "namespace": namespace}}


def allowed(policies: list[dict[str, Any]], dst: netpol.Peer, port: int, protocol: str) -> bool:
    return netpol.evaluate(netpol.Flow(CLIENT, dst, port, protocol), policies, NAMESPACES).allowed


def test_deny_all_egress_blocks_everything_it_selects() -> None:
    policies = [placed(deny_all_egress("deny"))]
    assert policies[0]["spec"] == {"podSelector": {}, "policyTypes": ["Egress"]}
    assert not allowed(policies, KUBE_DNS, 53, "UDP") and not allowed(policies, SERVER, 4222, "TCP")


@pytest.mark.parametrize(
    ("protocols", "udp", "tcp"), [(["UDP"], True, False), (["UDP", "TCP"], True, True), (["TCP"], False, True)]
)
def test_a_dns_rule_allows_kube_dns_over_exactly_its_protocols(protocols: list[str], udp: bool, tcp: bool) -> None:
    policies = [placed(deny_all_egress("deny")), placed(allow_egress("allow", [dns_rule(protocols)]))]
    assert (allowed(policies, KUBE_DNS, 53, "UDP"), allowed(policies, KUBE_DNS, 53, "TCP")) == (udp, tcp)
    assert not allowed(policies, SERVER, 4222, "TCP")


def test_a_namespace_port_rule_allows_that_port_in_that_namespace_only() -> None:
    policies = [placed(allow_egress("allow", [namespace_port_rule(CELL, 4222)]))]
    assert allowed(policies, SERVER, 4222, "TCP")
    assert not allowed(policies, SERVER, 6222, "TCP") and not allowed(policies, KUBE_DNS, 53, "UDP")


def test_a_pod_becomes_a_peer_with_its_named_ports() -> None:
    pod = {
        "metadata": {"name": "nats-0", "namespace": CELL, "labels": {"app.kubernetes.io/name": "nats"}},
        "spec": {"containers": [{"name": "nats", "ports": [{"name": "nats", "containerPort": 4222},
                                                            {"containerPort": 9999}]}]},
        "status": {"podIP": "198.18.0.10"},
    }  # fmt: skip
    assert peer_of(pod) == SERVER


def test_the_check_reads_its_rows_by_name() -> None:
    check = EgressCheck(
        SCRATCH, "nats-0", 4222,
        Row(TIMES_OUT, TIMES_OUT, "blocked: egress denied"), Row(TIMES_OUT, ANSWERS, "blocked: egress denied"),
        Row(BLOCKED, BLOCKED, "blocked"),
    )  # fmt: skip
    assert check.expects_dns_blocked
    assert list(check.rows()) == ["DNS over UDP to kube-dns", "DNS over TCP to kube-dns", "TCP 4222 to nats-0 by IP"]
    comparison = check.comparison()
    assert not comparison.is_same
    with pytest.raises(pytest.fail.Exception, match="DNS over TCP to kube-dns"):
        check.assert_as_expected("policies")
