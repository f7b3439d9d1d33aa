"""reconnect: what a client learns from the servers (INFO ``connect_urls``) and how it reconnects when its
server's pod is deleted (the chart's preStop lame-duck, then SIGTERM).

Two clients watch while the pod goes away: one seeded with the client Service name, as applications are; one
seeded with only the victim's pod IP, so it can come back only through URLs it learned from the servers.
"""

from __future__ import annotations

import pytest

from pytest_natsnet.expect.nats import expected_connect_urls, expected_mesh
from pytest_natsnet.probe.model import NatsRequest, Outcome
from pytest_natsnet.prober import Prober
from pytest_natsnet.session import Cell
from pytest_natsnet.suitekit import (
    DNS_BLOCKED,
    LEARNED_URLS_UNREACHABLE,
    MESH_SPLIT,
    ROUTE_TLS_MISMATCH,
    Servers,
    applies,
    client_service,
    client_tls,
    eventually,
    mesh_timeout,
    not_declared,
    replace_server,
    servers,
)
from pytest_natsnet.table import Comparison
from pytest_natsnet.watching import Event, first, watching

RECONNECT_BOUND = 45.0
"""Lame duck grace (the chart: 10 s) + closing + reconnect attempts, bounded."""
DELIVERY_BOUND = 10.0
"""A message published after the reconnect comes back through the replayed subscription within this."""


def _scheme(cell: Cell) -> str:
    return "tls" if cell.tls is not None else "nats"


def _url(cell: Cell, host: str, port: int) -> str:
    return f"{_scheme(cell)}://{host}:{port}"


def _advertised_by(group: Servers, cell: Cell, server_name: str) -> frozenset[str]:
    """The client URLs ``server_name`` gossips to its clients (none under ``no_advertise``)."""
    mesh = expected_mesh(group.confs, cell.expect).table
    return frozenset(f"{_scheme(cell)}://{u}" for u in expected_connect_urls(group.confs, mesh)[server_name])


@applies(not_declared(DNS_BLOCKED, MESH_SPLIT, ROUTE_TLS_MISMATCH))
def test_client_learns_the_advertised_urls(natsnet_cell: Cell, natsnet_probe: Prober) -> None:
    """A client given only the Service seed learns every server's client URL when advertising is on, and
    nothing under the chart default ``no_advertise: true``."""
    deployment = natsnet_cell.deployment
    group = servers(deployment)
    service = client_service(deployment)
    seed = _url(natsnet_cell, service, group.confs[0].client_port)
    scheme = _scheme(natsnet_cell)
    request = NatsRequest("seed", (seed,), client_tls(deployment, natsnet_probe, hostname=service), wait_discovered=2.0)

    def learned() -> tuple[bool, tuple[Comparison[frozenset[str]] | None, dict[str, object]]]:
        result = natsnet_probe.run([request])["seed"]
        if result.outcome is not Outcome.OK:  # kube-proxy may not route the Service to the new endpoints yet
            return False, (None, dict(result.detail))
        info = result.detail.get("server_info") or {}
        advertised = _advertised_by(group, natsnet_cell, str(info.get("server_name")))
        comparison = Comparison.from_dicts(
            {"discovered_servers": advertised, "INFO connect_urls": advertised},
            {
                "discovered_servers": frozenset(result.detail.get("discovered_servers") or ()),
                "INFO connect_urls": frozenset(f"{scheme}://{u}" for u in info.get("connect_urls") or []),
            },
            {
                "discovered_servers": "no_advertise: nothing; else every server's client_advertise or pod IP:port",
                "INFO connect_urls": f"what {info.get('server_name')} gossiped to the client",
            },
        )
        return comparison.is_same, (comparison, {})

    _, (comparison, failure), _ = eventually(learned, mesh_timeout(deployment, group), interval=0.5)
    assert comparison is not None and not failure, f"client could not connect to {seed}: {failure}"
    comparison.assert_same(f"what a client of {seed} learns", lambda urls: ", ".join(sorted(urls)) or "(none)")


@pytest.mark.natsnet_disruptive
@applies(not_declared(DNS_BLOCKED, MESH_SPLIT, ROUTE_TLS_MISMATCH))
def test_reconnect_after_the_servers_pod_is_deleted(
    natsnet_cell: Cell, natsnet_probe: Prober, record_property: pytest.RecordProperty
) -> None:
    """Delete the pod a client is connected to. A Service-seeded client reconnects to another server and a message
    it publishes after that comes back (its subscription was replayed); a client seeded with only that pod's IP
    reconnects iff it learned usable URLs: under ``no_advertise: true`` or unreachable advertised URLs it fails on
    every URL it knows."""
    deployment = natsnet_cell.deployment
    group = servers(deployment)
    port = group.confs[0].client_port
    service = client_service(deployment)
    service_seed = _url(natsnet_cell, service, port)
    with watching(
        natsnet_probe, service_seed, "service", "Service-seeded", client_tls(deployment, natsnet_probe, service)
    ) as service_client:
        victim_name = str(service_client.connected()["server_name"])
        victim = next(n for n in group.names if group.conf(n).name == victim_name)
        ip_seed = _url(natsnet_cell, group.ip(victim), port)
        with watching(natsnet_probe, ip_seed, "ip", "IP-seeded", client_tls(deployment, natsnet_probe)) as ip_client:
            ip_client.connected()
            learned = _advertised_by(group, natsnet_cell, victim_name) - {ip_seed}
            usable = bool(learned) and LEARNED_URLS_UNREACHABLE not in natsnet_cell.expect

            replace_server(natsnet_cell, group, victim)
            service_back = service_client.reconnected(RECONNECT_BOUND)
            received = service_client.receives_after(service_back, DELIVERY_BOUND) if service_back else None
            ip_back, ip_failed_everywhere = ip_client.reconnects_or_fails_everywhere(RECONNECT_BOUND)

    _record_timings(record_property, "service_client", service_client.events(), service_back, received)
    _record_timings(record_property, "ip_client", ip_client.events(), ip_back, None)
    if ip_failed_everywhere:
        record_property("ip_client_failed_urls", ", ".join(p["url"] for p in ip_failed_everywhere["pool"]))
    ip_outcome = "reconnects" if ip_back else "fails on every URL it knows" if ip_failed_everywhere else "neither"
    comparison = Comparison.from_dicts(
        {
            "Service client reconnects to another server": True,
            "Service client receives what it publishes after reconnecting": True,
            "IP-seeded client (learned URLs only)": "reconnects" if usable else "fails on every URL it knows",
        },
        {
            "Service client reconnects to another server": bool(
                service_back and service_back.get("server_name") not in (None, victim_name)
            ),
            "Service client receives what it publishes after reconnecting": received is not None,
            "IP-seeded client (learned URLs only)": ip_outcome,
        },
        {
            "Service client reconnects to another server": f"{service_seed} still routes to live servers",
            "Service client receives what it publishes after reconnecting": "subscriptions are replayed on reconnect",
            "IP-seeded client (learned URLs only)": (
                f"learned {sorted(learned)}"
                if usable
                else "nothing learned (no_advertise)"
                if not learned
                else f"learned only unreachable URLs {sorted(learned)} (declared {LEARNED_URLS_UNREACHABLE})"
            ),
        },
    )
    if not comparison.is_same:
        pytest.fail(
            comparison.render(f"reconnect after deleting {victim} ({natsnet_cell.scenario.id})")
            + f"\nService-seeded client:\n{service_client.story()}\nIP-seeded client:\n{ip_client.story()}",
            pytrace=False,
        )



def _record_timings(
    record_property: pytest.RecordProperty, who: str, events: list[Event], back: Event | None, received: Event | None
) -> None:
    """Seconds from losing the server to being back, and from being back to the first new message (the probe's
    own clock: never mixed with this process's)."""
    lost = first(events, "disconnected")
    if lost and back:
        record_property(f"{who}_reconnect_seconds", round(float(back["mono"]) - float(lost["mono"]), 3))
    if back and received:
        record_property(f"{who}_delivery_after_reconnect_seconds", round(received["mono"] - back["mono"], 3))
