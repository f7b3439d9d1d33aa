"""A documented behaviour of seed routes, and what resolves it, each on a cell of its own.

Found in the full matrix (``pnra-false+advertise-dns+routes-seed``): servers that know each other only through
route gossip may never route to each other again after one of them is replaced. ``nats-1`` learns the new
``nats-2``'s advertised name by gossip and tries it once: the route is implicit and ``cluster.connect_retries`` is
0, so a failed attempt is never repeated. The attempt fails whenever the name gives no usable answer at that
moment: without ``publishNotReadyAddresses`` the not-yet-Ready pod has no record (``lookup for host ... no such
host``); with it, the name can still answer the old pod's address, from the terminating pod's published record or
from a DNS cache (CoreDNS on kind up to 1.31 keeps cluster answers 30 s: ``dial tcp <old ip>:6222: connection
refused`` or ``i/o timeout``). ``route_mesh`` accepts that missing route only with such a log line
(``expect.nats.unretried_gossip_lookups``). Each test here replaces ``nats-2``:

- ``cluster.connect_retries: 120``: the gossiped route is tried again every second until the name answers the new
  address: the full mesh comes back, required;
- explicit routes to every pod (the chart's default route list): a configured route is retried forever: the full
  mesh comes back, required;
- ``publishNotReadyAddresses: true`` alone is no fix: it removes the NXDOMAIN, not a stale answer. The mesh must
  come back or the missing route be explained by the old address (recorded as ``routes_left_missing_by_nats``).
"""

from __future__ import annotations

import pytest

from pytest_natsnet import kube
from pytest_natsnet.dnsprofile import DEFAULT_PROFILE, dns_profile
from pytest_natsnet.expect.dnstiming import stale_seconds
from pytest_natsnet.expect.nats import allowing_missing, expected_mesh, unretried_gossip_lookups
from pytest_natsnet.prober import Prober
from pytest_natsnet.session import Cell
from pytest_natsnet.suitekit import eventually, headless_service, log_lines, observe_mesh, servers
from pytest_natsnet.table import Comparison

VALUES = "../charts-values"
REPLACED_BOUND = 180.0
"""The deleted pod is back and Ready within this: its shutdown (lame duck, bounded by the grace period) and the
chart's readiness delay."""
MESH_MARGIN = 30.0
"""Beyond the DNS cache's hold on a negative answer: route retries are a second apart; this is for a loaded
machine."""


def _replace_the_last_server_and_require_the_full_mesh(
    cell: Cell, probe: Prober, record_property: pytest.RecordProperty, explained_allowed: bool = False
) -> None:
    """Replaces the last server; the full mesh must come back (``explained_allowed``: or miss only routes that
    ``unretried_gossip_lookups`` explains with a log line)."""
    deployment = cell.deployment
    before = servers(deployment)
    victim = before.names[-1]
    old_uid = before.pods[-1]["metadata"].get("uid")
    old_ip = before.ip(victim)
    offsets = {pod: len(deployment.logs(pod).splitlines()) for pod in before.names if pod != victim}
    deployment.delete("Pod", victim)
    cell.disturbed = True

    def recreated() -> tuple[bool, str]:
        pod = kube.find(deployment.objects("Pod"), "Pod", victim)
        uid = (pod or {}).get("metadata", {}).get("uid")
        return pod is not None and uid != old_uid and bool(pod["status"].get("podIP")), str(uid)

    done, _, _ = eventually(recreated, REPLACED_BOUND, interval=0.5)
    assert done, f"{victim} was not recreated within {REPLACED_BOUND:g}s"
    deployment.wait_ready(REPLACED_BOUND)
    after = servers(deployment)
    assert after.ip(victim) != old_ip, f"{victim} came back with its old IP: nothing was re-resolved"
    name = f"{victim}.{headless_service(deployment)}.{deployment.namespace}.svc.cluster.local"
    bound = stale_seconds(dns_profile(DEFAULT_PROFILE), name) + MESH_MARGIN
    full_mesh = expected_mesh(after.confs, cell.expect)

    def full() -> tuple[bool, Comparison[bool]]:
        observation = observe_mesh(probe, after)
        expected = full_mesh
        if explained_allowed:
            since = {pod: deployment.logs(pod).splitlines()[offsets.get(pod, 0):] for pod in after.names}
            expected = allowing_missing(full_mesh, observation.table,
                                        unretried_gossip_lookups(after.confs, victim, since, old_ip))
        comparison = Comparison.from_tables(expected.table, observation.table, expected.reasons)
        return comparison.is_same and not observation.unanswered, comparison

    done, comparison, seconds = eventually(full, bound, interval=0.5)
    record_property("time_to_mesh_after_ready_seconds", round(seconds, 2))
    unretried = [c.reason for c in comparison.cells.values() if c.reason.startswith("implicit route not retried")]
    if unretried:
        record_property("routes_left_missing_by_nats", unretried[0][:300])
    if not done:
        lines = log_lines(deployment, after.names, r"Error trying to connect to route")
        pytest.fail(comparison.render(f"mesh {seconds:.0f}s after {victim} was replaced and Ready",
                                      lambda v: "." if v else "X")
                    + "\nroute errors:\n" + "\n".join(lines[-12:]), pytrace=False)


@pytest.mark.natsnet_disruptive
@pytest.mark.natsnet_values(f"{VALUES}/pnra-false.yaml", f"{VALUES}/advertise-dns.yaml",
                            f"{VALUES}/routes-seed.yaml", f"{VALUES}/routes-retry.yaml")
def test_gossip_rejoin_connect_retries(
    natsnet_cell: Cell, natsnet_probe: Prober, record_property: pytest.RecordProperty
) -> None:
    """The finding's cell plus ``cluster.connect_retries: 120``: the gossiped route is retried until it resolves."""
    _replace_the_last_server_and_require_the_full_mesh(natsnet_cell, natsnet_probe, record_property)


@pytest.mark.natsnet_disruptive
@pytest.mark.natsnet_values(f"{VALUES}/pnra-false.yaml", f"{VALUES}/advertise-dns.yaml")
def test_gossip_rejoin_explicit_routes(
    natsnet_cell: Cell, natsnet_probe: Prober, record_property: pytest.RecordProperty
) -> None:
    """The finding's cell with the chart's own route list (every pod, explicitly): configured routes are retried
    forever, so the replaced server is dialled again once its name resolves."""
    _replace_the_last_server_and_require_the_full_mesh(natsnet_cell, natsnet_probe, record_property)


@pytest.mark.natsnet_disruptive
@pytest.mark.natsnet_values(f"{VALUES}/advertise-dns.yaml", f"{VALUES}/routes-seed.yaml")
def test_gossip_rejoin_pnra_true(
    natsnet_cell: Cell, natsnet_probe: Prober, record_property: pytest.RecordProperty
) -> None:
    """Seed routes and advertised names with not-ready addresses published: no NXDOMAIN, but the gossiped name may
    still answer the replaced pod's old address to the route's one attempt; a route missing for that reason must
    say so in the log."""
    _replace_the_last_server_and_require_the_full_mesh(natsnet_cell, natsnet_probe, record_property,
                                                       explained_allowed=True)
