"""advertise: what each server tells its clients (INFO ``connect_urls``) and what peers dial for gossip.

Without ``client_advertise`` the URLs are pod IPs; with it, the advertised names; ``no_advertise: true`` (the
chart default) gives none. A wrong ``cluster.advertise`` splits a gossip-built mesh. Names and addresses have
boundaries: an external client (outside the cluster network and its DNS, reaching a server through a NodePort)
can use none of the advertised URLs.
"""

from __future__ import annotations

import pytest

from pytest_natsnet import applicability
from pytest_natsnet.expect.nats import expected_connect_urls, expected_mesh, is_ip, url_host
from pytest_natsnet.probe.model import NatsRequest, Outcome, ProbeResult
from pytest_natsnet.prober import Prober
from pytest_natsnet.session import Cell
from pytest_natsnet.suitekit import (
    DNS_BLOCKED,
    LEARNED_URLS_UNREACHABLE,
    Servers,
    applies,
    client_tls,
    dial_error,
    eventually,
    exposed_on_node_port,
    learned_names_timeout,
    mesh_expectation,
    mesh_timeout,
    not_declared,
    observe_mesh,
    require,
    secret_cert_sans,
    servers,
)
from pytest_natsnet.table import Comparison, TruthTable


def _direct_urls(cell: Cell, group: Servers) -> dict[str, str]:
    scheme = "tls" if cell.tls is not None else "nats"
    return {n: f"{scheme}://{group.ip(n)}:{group.conf(n).client_port}" for n in group.names}


def test_each_server_advertises_the_expected_client_urls(natsnet_cell: Cell, natsnet_probe: Prober) -> None:
    """A client connected straight to each server (by pod IP) receives that server's ``connect_urls``: every
    routed server's client URL (pod IP, or ``client_advertise``), or nothing under ``no_advertise``."""
    group = servers(natsnet_cell.deployment)
    predicted = expected_mesh(group.confs, natsnet_cell.expect)
    expect = mesh_expectation(natsnet_cell.expect, natsnet_probe, group, predicted,
                              natsnet_cell.deployment)
    urls = _direct_urls(natsnet_cell, group)
    tls = client_tls(natsnet_cell.deployment, natsnet_probe)

    def compare(mesh: TruthTable[bool], observed: dict[str, frozenset[str]]) -> Comparison[frozenset[str]]:
        urls_by_server = expected_connect_urls(group.confs, mesh)
        expected = {group.conf(n).name: urls_by_server[group.conf(n).name] for n in group.names}
        return Comparison.from_dicts(
            expected,
            observed,
            {
                name: "no_advertise: true" if not want else "client_advertise or pod IP of every routed server"
                for name, want in expected.items()
            },
        )

    def observe() -> tuple[bool, Comparison[frozenset[str]]]:
        results = natsnet_probe.run([NatsRequest(n, (urls[n],), tls, roundtrip=False) for n in group.names])
        observed = {}
        for n in group.names:
            info = results[n].detail.get("server_info") or {}
            observed[group.conf(n).name] = frozenset(info.get("connect_urls") or ())
        # a DNS-blocked cell: with the routes it formed before its policy held; any other, when it differs from the
        # prediction: without a route gossiped and dialled once before its peer's name resolved
        comparison = None if DNS_BLOCKED in natsnet_cell.expect else compare(predicted.table, observed)
        if comparison is None or not comparison.is_same:
            comparison = compare(expect(observe_mesh(natsnet_probe, group)).table, observed)
        return comparison.is_same, comparison

    _, comparison, _ = eventually(observe, mesh_timeout(natsnet_cell.deployment, group), interval=0.5)
    comparison.assert_same(
        f"INFO connect_urls per server ({natsnet_cell.scenario.id})",
        lambda v: ", ".join(sorted(v)) or "(none)",
    )


def test_distinct_route_peers_per_server(natsnet_cell: Cell, natsnet_probe: Prober) -> None:
    """Distinct ``remote_name`` count per server (a wrong ``cluster.advertise`` with seed routes shows a star:
    the seed sees everyone, the others only the seed) — never ``num_routes``, which counts pooled connections."""
    group = servers(natsnet_cell.deployment)
    expect = mesh_expectation(natsnet_cell.expect, natsnet_probe, group, expected_mesh(
        group.confs, natsnet_cell.expect, secret_cert_sans(natsnet_cell.deployment, "nats-route-tls")),
        natsnet_cell.deployment)
    names = [group.conf(n).name for n in group.names]

    def observe() -> tuple[bool, Comparison[int]]:
        observation = observe_mesh(natsnet_probe, group)  # a server not answering yet has no peers
        expected_table = expect(observation).table  # a DNS-blocked cell's routes from before its policy
        expected = {name: sum(expected_table.get(name, other) for other in names) for name in names}
        routez = observation.routez
        observed = {
            group.conf(n).name: len({str(r.get("remote_name")) for r in routez.get(n, {}).get("routes") or []})
            for n in group.names
        }
        comparison = Comparison.from_dicts(expected, observed)
        return comparison.is_same, comparison

    _, comparison, _ = eventually(observe, mesh_timeout(natsnet_cell.deployment, group), interval=0.5)
    comparison.assert_same("distinct route peers per server (/routez remote_name)")


@applies(not_declared(DNS_BLOCKED))
def test_external_clients_cannot_use_cluster_local_names(natsnet_cell: Cell, natsnet_probe: Prober) -> None:
    """A client outside the cluster network and its DNS reaches a server the way a cluster exposes it, through a
    NodePort Service on the node's address, and learns the same URLs as an in-cluster client; from outside none
    of them works: pod IPs are not routed outside the cluster network (kind, most clusters) and names under the
    cluster domain are known to cluster DNS only. Inside, each works unless the cell declares it unreachable."""
    deployment = natsnet_cell.deployment
    group = servers(deployment)
    require(applicability.advertising(group.confs))
    if not deployment.info.supports_external_client:
        pytest.skip(f"provider {deployment.info.name} cannot run a client outside the cluster network")
    tls = client_tls(natsnet_cell.deployment, natsnet_probe)
    mesh = expected_mesh(group.confs, natsnet_cell.expect).table
    scheme = "tls" if natsnet_cell.tls is not None else "nats"
    seed_server = group.names[0]
    advertised = expected_connect_urls(group.confs, mesh)[group.conf(seed_server).name]
    wanted = sorted({f"{scheme}://{u}" for u in advertised})
    with exposed_on_node_port(deployment, seed_server, group.conf(seed_server).client_port) as (node, port):
        seed = f"{scheme}://{node}:{port}"

        def learn() -> tuple[bool, tuple[list[str], dict[str, object]]]:
            first = natsnet_probe.run([NatsRequest("seed", (seed,), tls, wait_discovered=2.0)], external=True)["seed"]
            if first.outcome is not Outcome.OK:  # kube-proxy may not have programmed the new NodePort yet
                return False, ([], dict(first.detail))
            learned = sorted({str(u) for u in first.detail.get("discovered_servers") or []} - {seed})
            return learned == wanted, (learned, {})

        done, (learned, failure), _ = eventually(learn, mesh_timeout(deployment, group), interval=1.0)
    assert not failure, f"external client could not reach {seed}: {failure}"
    assert done, f"the external client learned {learned} through {seed}; the servers' config says {wanted}"
    if not learned:
        return  # the seed server advertises nothing (no routed peer: a declared mesh failure): nothing to dial
    requests = [NatsRequest(u, (u,), tls, roundtrip=False, connect_timeout=2.0) for u in learned]
    unreachable = LEARNED_URLS_UNREACHABLE in natsnet_cell.expect

    def dial_inside() -> tuple[bool, dict[str, ProbeResult]]:
        """Inside, a name looked up before its pod was Ready may stay NXDOMAIN in cluster DNS's cache: bounded."""
        results = natsnet_probe.run(requests)
        return all((r.outcome is Outcome.OK) != unreachable for r in results.values()), results

    _, inside, _ = eventually(dial_inside, learned_names_timeout(deployment, learned), interval=1.0)
    outside = natsnet_probe.run(requests, external=True)
    expected, observed, reasons = {}, {}, {}
    for url in learned:
        host = url_host(url)
        expected[url] = ("fails" if unreachable else "ok", "fails")
        observed[url] = tuple("ok" if r[url].outcome is Outcome.OK else "fails" for r in (inside, outside))
        inside_reason = "declared unreachable" if unreachable else "reachable in the cluster network"
        outside_reason = (
            "a pod IP: not routed outside the cluster network" if is_ip(host)
            else "cluster-local name: only cluster DNS knows it"
            if host.endswith(f".{natsnet_cell.deployment.info.cluster_domain}")
            else "a name no DNS outside knows"
        )
        reasons[url] = f"{inside_reason}; outside: {outside_reason}" + dial_error(inside[url], "inside")
    Comparison.from_dicts(expected, observed, reasons).assert_same(
        "learned URLs dialled (in-cluster client, external client)", lambda v: " / ".join(v)
    )
