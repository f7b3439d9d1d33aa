"""Which routes a DNS-blocked cell may show because its NetworkPolicy held only after the pods started.

The rule is kube-network-policies' (kindnet's; kubernetes-sigs/kube-network-policies
``pkg/networkpolicy/controller.go`` v0.6): a pod is filtered once its IP is in the nftables set the controller
syncs after learning the pod from the API; ``ct state established,related accept`` keeps earlier flows; FailOpen
accepts while nothing reads the queue. nats-server resolves its route hosts at start and gossips its peers' route
URLs (pod IPs) to the servers it routes to.
"""

from __future__ import annotations

import pytest

from pytest_natsnet.expect.nats import MeshExpectation, allowing_present
from pytest_natsnet.expect.policytiming import (
    LEARN_WINDOW,
    RouteStart,
    go_time,
    route_starts,
    routes_before_enforcement,
    server_starts,
)
from pytest_natsnet.table import TruthTable

NAMES = ("nats-0", "nats-1", "nats-2")
T0 = 1_800_000_000.0


def islands() -> TruthTable[bool]:
    """What a DNS-blocked cell predicts: no server routes to another."""
    return TruthTable(NAMES, NAMES, False)


def route(a: str, b: str, after: float, configured: bool = True) -> list[RouteStart]:
    """Both ends' entries of one route that began ``after`` seconds after T0."""
    return [RouteStart(a, b, T0 + after, configured), RouteStart(b, a, T0 + after, False)]


STARTS = {name: T0 for name in NAMES}


def test_go_times_parse_with_nanoseconds_and_zones() -> None:
    assert go_time("2026-11-29T04:10:35.967170793Z") == pytest.approx(1795925435.967170793)
    assert go_time("2026-11-29T04:10:35Z") == pytest.approx(1795925435.0)
    assert go_time("2026-11-29T05:10:35.5+01:00") == pytest.approx(1795925435.5)
    with pytest.raises(ValueError, match="not an RFC 3339 time"):
        go_time("yesterday")


def test_routes_and_starts_come_from_routez_and_varz() -> None:
    routez = {"pod-0": {"server_name": "nats-0", "routes": [
        {"remote_name": "nats-1", "start": "2026-11-29T04:10:35Z", "is_configured": True},
        {"remote_name": "nats-2", "start": "2026-11-29T04:10:36Z", "is_configured": False},
        {"remote_name": "", "start": "2026-11-29T04:10:36Z"},  # a route still in its handshake: no name yet
    ]}}
    assert route_starts(routez) == [RouteStart("nats-0", "nats-1", 1795925435.0, True),
                                    RouteStart("nats-0", "nats-2", 1795925436.0, False)]
    assert server_starts({"pod-0": {"server_name": "nats-0", "start": "2026-11-29T04:10:30Z"}, "pod-1": {}}) == {
        "nats-0": 1795925430.0}


def test_a_route_that_formed_in_the_learning_window_is_explained() -> None:
    explained = routes_before_enforcement(islands(), route("nats-0", "nats-1", 1.2), STARTS)
    assert set(explained) == {("nats-0", "nats-1"), ("nats-1", "nats-0")}
    assert explained[("nats-0", "nats-1")].startswith("formed 1.2s after both servers started, before the policy")


def test_a_route_that_formed_after_the_window_is_not() -> None:
    assert routes_before_enforcement(islands(), route("nats-0", "nats-1", LEARN_WINDOW + 5), STARTS) == {}


def test_the_window_counts_from_the_later_server_start() -> None:
    starts = {"nats-0": T0, "nats-1": T0 + 30}  # nats-1 restarted (a replaced pod): its own window
    assert routes_before_enforcement(islands(), route("nats-0", "nats-1", 32), starts)
    assert routes_before_enforcement(islands(), route("nats-0", "nats-1", 32), {"nats-0": T0}) == {}
    assert routes_before_enforcement(islands(), route("nats-0", "nats-1", 1), {}) == {}, "nothing to measure by"


def test_gossip_over_early_routes_explains_a_later_route_between_their_ends() -> None:
    """nats-0 routed to nats-1 and nats-2 in the window; it gossips each one's route URL (a pod IP) to the other,
    and they connect without DNS, long after the window."""
    routes = route("nats-0", "nats-1", 0.5) + route("nats-0", "nats-2", 0.7) + route("nats-1", "nats-2", 40, False)
    explained = routes_before_enforcement(islands(), routes, STARTS)
    assert explained[("nats-1", "nats-2")] == explained[("nats-2", "nats-1")]
    assert explained[("nats-1", "nats-2")].startswith("gossiped by nats-0")


def test_a_late_route_with_no_common_early_peer_stays_unexplained() -> None:
    routes = route("nats-0", "nats-1", 0.5) + route("nats-1", "nats-2", 40)
    assert set(routes_before_enforcement(islands(), routes, STARTS)) == {("nats-0", "nats-1"), ("nats-1", "nats-0")}


def test_routes_the_expectation_has_need_no_explanation() -> None:
    expected = islands()
    expected.set("nats-0", "nats-1", True)
    expected.set("nats-1", "nats-0", True)
    assert routes_before_enforcement(expected, route("nats-0", "nats-1", 0.5), STARTS) == {}


def test_allowing_present_accepts_only_explained_routes_that_exist() -> None:
    observed = islands()
    observed.set("nats-0", "nats-1", True)
    observed.set("nats-1", "nats-0", True)
    explained = {("nats-0", "nats-1"): "early", ("nats-1", "nats-0"): "early", ("nats-0", "nats-2"): "early"}
    tolerated = allowing_present(MeshExpectation(islands(), {}), observed, explained)
    assert tolerated.table.get("nats-0", "nats-1") and tolerated.table.get("nats-1", "nats-0")
    assert not tolerated.table.get("nats-0", "nats-2"), "an explained route that is not there is not expected"
    assert tolerated.reasons[("nats-0", "nats-1")] == "early"
