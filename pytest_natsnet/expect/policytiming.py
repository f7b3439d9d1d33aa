"""When a NetworkPolicy starts to hold for a new pod, and which routes a DNS-blocked cell can show anyway.

Pure: ``/routez`` and ``/varz`` bodies and an expected mesh in, explained routes out. The rule comes from kindnet's
policy engine, kube-network-policies (kind v0.24.0 and newer; kubernetes-sigs/kube-network-policies
``pkg/networkpolicy/controller.go``, v0.6):

- a pod is filtered only once the controller has learned it: its IP joins the nftables set of "local pod IPs with
  network policies" after the pod informer sees it with ``status.podIPs`` (the kubelet's status update) and a
  work-queue sync rewrites the rules; until then its packets bypass the queue and pass;
- only a connection's first packets are judged (``ct state established,related accept`` comes first): a flow that
  began before enforcement stays allowed for its whole life;
- kindnet runs it with ``FailOpen``: ``queue ... bypass`` accepts packets while nothing reads the queue, and an
  error while judging a packet accepts it.

nats-server resolves its route hosts the moment it starts. In a cell whose policies block DNS, its first lookups
can therefore be answered, routes can form, and they stay: an established route is never looked up again, and
servers gossip each other's route URLs (pod IPs, no DNS needed). So on kind a DNS-blocked cell may show routes
the policies forbid. The suites accept such a route as *formed before the policy held* when it began within
:data:`LEARN_WINDOW` of both servers' start, or when gossip over such routes explains it, and report it; any other
route still fails the check. The sandbox enforces from a pod's first packet by default and can
open the same window (``--natsnet-sandbox-policy-delay``).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pytest_natsnet.table import TruthTable

LEARN_WINDOW = 10.0
"""Bound of the time from a pod's start until kube-network-policies filters it: the kubelet's pod status update
with the pod IP, the policy controller's informer and its rate-limited nftables sync (about a second on kind)."""


@dataclass(frozen=True)
class RouteStart:
    """One entry of a server's ``/routez``: who, to whom, since when (seconds since the epoch)."""

    server: str
    remote: str
    start: float
    configured: bool
    """``is_configured``: dialled from the server's own route list (a name, looked up); False for a route it
    accepted or dialled from gossip."""


GO_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def go_time(text: str) -> float:
    """Seconds since the epoch of a Go RFC 3339 time with up to nanoseconds (``2026-11-29T04:10:35.967170793Z``);
    ValueError for anything else."""
    match = GO_TIME.match(text.strip())
    if match is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    whole, fraction, zone = match.groups()
    moment = datetime.datetime.fromisoformat(f"{whole}{'+00:00' if zone == 'Z' else zone}")
    return moment.timestamp() + (int(fraction[:9].ljust(9, "0")) / 1e9 if fraction else 0.0)


def route_starts(routez: Mapping[str, Mapping[str, Any]]) -> list[RouteStart]:
    """Every route of every server's ``/routez`` body (keyed by anything; the body names its server)."""
    found = []
    for body in routez.values():
        server = str(body.get("server_name") or "")
        for route in body.get("routes") or []:
            if route.get("remote_name") and route.get("start"):
                found.append(RouteStart(server, str(route["remote_name"]), go_time(str(route["start"])),
                                        bool(route.get("is_configured"))))
    return found


def server_starts(varz: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """Each server's start (``/varz`` ``start``), by ``server_name``."""
    return {str(body["server_name"]): go_time(str(body["start"])) for body in varz.values()
            if body.get("server_name") and body.get("start")}


def routes_before_enforcement(
    expected: TruthTable[bool], routes: list[RouteStart], starts: Mapping[str, float], window: float = LEARN_WINDOW
) -> dict[tuple[str, str], str]:
    """The routes present although ``expected`` has none between the two servers, explained as formed before
    the policy held (both directions of each pair, with the reason): began within ``window`` seconds of the later
    of the two servers' start, or gossiped: both servers have an explained route to the same third server.
    Unexplained routes are left out."""
    unexpected = [r for r in routes
                  if not expected.get(r.server, r.remote) and not expected.get(r.remote, r.server)]
    explained: dict[tuple[str, str], str] = {}
    for route in unexpected:
        known = [starts[s] for s in (route.server, route.remote) if s in starts]
        if not known:
            continue  # neither server's start is known: nothing to measure the route against
        age = route.start - max(known)
        if age <= window:
            why = (f"formed {max(age, 0.0):.1f}s after both servers started, before the policy held "
                   f"(kube-network-policies filters a pod once it has learned it)")
            explained.setdefault((route.server, route.remote), why)
            explained.setdefault((route.remote, route.server), why)
    changed = True
    while changed:  # nats-server gossips its routes: A routed to B and to C makes B and C route to each other
        changed = False
        for route in unexpected:
            pair = (route.server, route.remote)
            if pair in explained:
                continue
            hubs = sorted(x for (x, y) in explained if y == route.server and (x, route.remote) in explained)
            if hubs:
                why = f"gossiped by {hubs[0]} (pod IPs, no DNS), whose routes formed before the policy held"
                explained[pair] = explained[(route.remote, route.server)] = why
                changed = True
    return explained
