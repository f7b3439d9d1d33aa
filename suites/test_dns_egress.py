"""dns_egress: NetworkPolicy egress must allow DNS (UDP and TCP 53 to kube-dns) or every name breaks.

Expectations come from the observed NetworkPolicies (a pure NetworkPolicy evaluator, post-DNAT semantics); the
probe runs as an application client in the namespace. The suite applies to a cell whose namespace has a policy
restricting egress. Before anything else an enforcement canary proves the cluster enforces NetworkPolicy at all:
a cluster that does not (kind < v0.24, a CNI without policy) makes the suite not applicable, never passed.
"""

from __future__ import annotations

import pytest

from pytest_natsnet import applicability
from pytest_natsnet.egress import (
    ANSWERS,
    BLOCKED,
    TIMES_OUT,
    allow_egress,
    check_egress,
    deny_all_egress,
    dns_rule,
    enforces_network_policy,
    namespace_port_rule,
    scratch_namespace,
)
from pytest_natsnet.prober import Prober
from pytest_natsnet.session import Cell
from pytest_natsnet.suitekit import (
    DNS_BLOCKED,
    applies,
    declared,
    observe_mesh,
    require,
    route_lookup_failure_timeout,
    servers,
    wait_for_log,
)

ROUTE_LOOKUP_FAILED = r"Error trying to connect to route.*lookup"


@pytest.fixture
def egress_cell(natsnet_cell: Cell, natsnet_probe: Prober) -> Cell:
    """The cell, when the suite applies to it: a policy restricts its egress and the cluster enforces policies."""
    deployment = natsnet_cell.deployment
    policies = deployment.objects("NetworkPolicy")
    require(applicability.egress_policies(policies, deployment.namespace, natsnet_cell.expect))
    if not enforces_network_policy(deployment, natsnet_probe):
        pytest.skip(
            "not applicable: this cluster does not enforce NetworkPolicy (the canary's default-deny egress let "
            "traffic through); use kind >= v0.24.0 or a policy-capable CNI"
        )
    return natsnet_cell


def test_cell_policies_decide_dns_and_client_traffic(egress_cell: Cell, natsnet_probe: Prober) -> None:
    """The cell's own policies, as an application pod in its namespace sees them: DNS over UDP and TCP, the
    client port by IP; a cell whose policies block DNS declares dns-blocked."""
    deployment = egress_cell.deployment
    check = check_egress(deployment, natsnet_probe, deployment.namespace)
    check.assert_as_expected("the cell's NetworkPolicies")
    declared = DNS_BLOCKED in egress_cell.expect
    assert check.expects_dns_blocked == declared, (
        f"the cell {'declares' if declared else 'does not declare'} {DNS_BLOCKED} but its policies "
        f"{'block' if check.expects_dns_blocked else 'allow'} DNS: the declaration and the values disagree"
    )


@pytest.mark.natsnet_late
@applies(declared(DNS_BLOCKED))
def test_servers_log_the_route_lookups_their_policies_block(
    egress_cell: Cell, natsnet_probe: Prober, record_property: pytest.RecordProperty
) -> None:
    """A cell whose policies block DNS: its servers log the failed route lookups (Go's resolver gives up after
    every search domain's timeouts: the wait runs while the cell's other tests do), unless every route formed
    before the policy held (kind's kube-network-policies filters a pod only once it has learned it,
    ``expect.policytiming``): then nothing is looked up any more, which is reported."""
    deployment = egress_cell.deployment
    group = servers(deployment)
    mesh = observe_mesh(natsnet_probe, group).table
    if all(mesh.get(a, b) for a in mesh.rows for b in mesh.cols if a != b):
        record_property("dns_blocked_after_routes_formed", "every server routes to every other: the routes "
                        "formed before the cell's NetworkPolicy held, no route lookup is left to fail")
        return
    log_wait = route_lookup_failure_timeout(deployment, group)
    lines = wait_for_log(deployment, group.names, ROUTE_LOOKUP_FAILED, log_wait)
    assert lines, f"DNS is blocked but no server logged a failed route lookup within {log_wait:g}s"


def test_udp_only_dns_rule_breaks_tcp_dns(egress_cell: Cell, natsnet_probe: Prober) -> None:
    """Default-deny egress plus a DNS rule listing only UDP: UDP queries answer, TCP queries time out."""
    deployment = egress_cell.deployment
    client_port = servers(deployment).confs[0].client_port
    namespace = scratch_namespace(deployment, "udponly", [
        deny_all_egress("natsnet-deny-egress"),
        allow_egress("natsnet-allow", [dns_rule(["UDP"]), namespace_port_rule(deployment.namespace, client_port)]),
    ])  # fmt: skip
    check = check_egress(deployment, natsnet_probe, namespace)
    assert (check.dns_udp.expected, check.dns_tcp.expected) == (ANSWERS, TIMES_OUT), (
        f"the policy model disagrees with the policies applied: {check.rows()}"
    )
    check.assert_as_expected("a DNS egress rule for UDP only")


def test_dns_allowed_but_client_port_blocked(egress_cell: Cell, natsnet_probe: Prober) -> None:
    """The canonical DNS rule alone: names resolve, yet the client port is blocked — "DNS lookup succeeds but
    connection fails"."""
    deployment = egress_cell.deployment
    namespace = scratch_namespace(deployment, "dnsonly", [
        deny_all_egress("natsnet-deny-egress"),
        allow_egress("natsnet-allow", [dns_rule(["UDP", "TCP"])]),
    ])  # fmt: skip
    check = check_egress(deployment, natsnet_probe, namespace)
    assert (check.dns_udp.expected, check.dns_tcp.expected, check.client_port.expected) == (
        ANSWERS, ANSWERS, BLOCKED
    ), f"the policy model disagrees with the policies applied: {check.rows()}"
    check.assert_as_expected("DNS egress allowed, the client port not")

