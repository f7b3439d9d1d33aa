"""reconnect: what a client learns from the servers (INFO ``connect_urls``) and how it reconnects when its
server's pod is deleted (the chart's preStop lame-duck, then SIGTERM).

Two clients watch while the pod goes away: one seeded with the client Service name, as applications are; one
seeded with only the victim's pod IP, so it can come back only through URLs it learned from the servers.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from pytest_natsnet.expect.nats import expected_connect_urls, expected_mesh
from pytest_natsnet.probe.model import NatsRequest, Outcome, TlsOptions, WatchRequest
from pytest_natsnet.prober import Prober
from pytest_natsnet.providers.base import WatchHandle
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
    not_declared,
    servers,
)
from pytest_natsnet.table import Comparison

RECONNECT_BOUND = 45.0
"""Lame duck grace (the chart: 10 s) + closing + reconnect attempts, bounded."""


def _scheme(cell: Cell) -> str:
    return "tls" if cell.tls is not None else "nats"


def _learned(group: Servers, cell: Cell, connected_to: str) -> frozenset[str]:
    """URLs the client should have learned from the server it connected to (all but ones it already had)."""
    mesh = expected_mesh(group.confs, cell.expect).table
    urls = expected_connect_urls(group.confs, mesh)[connected_to]
    return frozenset(f"{_scheme(cell)}://{u}" for u in urls)


@applies(not_declared(DNS_BLOCKED, MESH_SPLIT, ROUTE_TLS_MISMATCH))
def test_client_learns_the_advertised_urls(natsnet_cell: Cell, natsnet_probe: Prober) -> None:
    """A client given only the Service seed learns every server's client URL when advertising is on, and
    nothing under the chart default ``no_advertise: true``."""
    group = servers(natsnet_cell.deployment)
    seed = f"{_scheme(natsnet_cell)}://{client_service(natsnet_cell.deployment)}:{group.confs[0].client_port}"
    tls = client_tls(natsnet_cell.deployment, natsnet_probe, hostname=client_service(natsnet_cell.deployment))
    result = natsnet_probe.run([NatsRequest("seed", (seed,), tls, wait_discovered=2.0)])["seed"]
    assert result.outcome is Outcome.OK, f"client could not connect to {seed}: {dict(result.detail)}"
    info = result.detail.get("server_info") or {}
    connected_to = str(info.get("server_name"))
    learned = _learned(group, natsnet_cell, connected_to)
    expected = {"discovered_servers": learned, "INFO connect_urls": learned}
    observed = {
        "discovered_servers": frozenset(result.detail.get("discovered_servers") or ()),
        "INFO connect_urls": frozenset(f"{_scheme(natsnet_cell)}://{u}" for u in info.get("connect_urls") or ()),
    }
    Comparison.from_dicts(
        expected,
        observed,
        {
            "discovered_servers": "no_advertise: nothing; else every server's client_advertise or pod IP:port",
            "INFO connect_urls": "what the server gossiped to the client",
        },
    ).assert_same(
        f"what a client of {seed} learns (connected to {connected_to})",
        lambda urls: ", ".join(sorted(urls)) or "(none)",
    )


def _events_until(handle: Any, done: Any, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    events: list[dict[str, Any]] = handle.events()
    while time.monotonic() < deadline and not done(events):
        time.sleep(0.1)
        events = handle.events()
    return events


def _first(events: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((e for e in events if e.get("event") == name), None)


def _story(events: list[dict[str, Any]]) -> str:
    lines = []
    for e in events:
        if e.get("event") == "message":
            continue
        fields = {k: v for k, v in e.items() if k not in ("event", "mono", "ts")}
        lines.append(f"  {e.get('mono', 0):.2f} {e.get('event')}: {fields}")
    return "\n".join(lines[-25:])


def _watch(probe: Prober, seed: str, name: str, tls: TlsOptions | None) -> WatchHandle:
    """A watching client (publishing and subscribing on its own subject) seeded with ``seed`` only."""
    request = WatchRequest((seed,), subject=f"natsnet.reconnect.{name}", duration=RECONNECT_BOUND + 20, tls=tls)
    return probe.watch(request, name=f"natsnet-watch-{name}")


def _wait_connected(handle: WatchHandle, who: str) -> dict[str, Any]:
    events = _events_until(handle, lambda ev: _first(ev, "connected") or _first(ev, "summary"), 20)
    connected = _first(events, "connected")
    assert connected, f"the {who} client never connected:\n{_story(events)}"
    return connected


@pytest.mark.natsnet_disruptive
@applies(not_declared(DNS_BLOCKED, MESH_SPLIT, ROUTE_TLS_MISMATCH))
def test_reconnect_after_the_servers_pod_is_deleted(
    natsnet_cell: Cell, natsnet_probe: Prober, record_property: pytest.RecordProperty
) -> None:
    """Delete the pod a client is connected to. A Service-seeded client reconnects to another server and its
    subscription keeps receiving; a client seeded with only that pod's IP reconnects iff it learned usable URLs
    (advertise on, URLs reachable) — under ``no_advertise: true`` or unreachable advertised URLs it cannot."""
    deployment = natsnet_cell.deployment
    group = servers(deployment)
    port = group.confs[0].client_port
    scheme = _scheme(natsnet_cell)
    service = client_service(deployment)
    service_seed = f"{scheme}://{service}:{port}"
    service_client = _watch(natsnet_probe, service_seed, "service", client_tls(deployment, natsnet_probe, service))
    try:
        connected = _wait_connected(service_client, "Service-seeded")
        victim_name = str(connected["server_name"])
        victim = next(n for n in group.names if group.conf(n).name == victim_name)
        ip_seed = f"{scheme}://{group.ip(victim)}:{port}"
        ip_client = _watch(natsnet_probe, ip_seed, "ip", client_tls(deployment, natsnet_probe))
        try:
            _wait_connected(ip_client, "IP-seeded")
            learned = _learned(group, natsnet_cell, victim_name) - {ip_seed}
            usable = bool(learned) and LEARNED_URLS_UNREACHABLE not in natsnet_cell.expect
            deleted_at = time.monotonic()
            deployment.delete("Pod", victim)
            natsnet_cell.disturbed = True
            _events_until(service_client, lambda ev: _first(ev, "reconnected"), RECONNECT_BOUND)
            ip_events = _events_until(
                ip_client, lambda ev: _first(ev, "reconnected"), RECONNECT_BOUND if usable else 15.0
            )
        finally:
            ip_events = ip_client.stop()
        events = service_client.events()
    finally:
        events = service_client.stop()

    service_back = _first(events, "reconnected")
    record_property(
        "service_client_reconnect_seconds",
        round(service_back["mono"] - _first(events, "disconnected")["mono"], 3)  # type: ignore[index]
        if service_back and _first(events, "disconnected")
        else None,
    )
    ip_back = _first(ip_events, "reconnected")
    if ip_back:
        record_property("ip_client_reconnect_after_delete_seconds", round(time.monotonic() - deleted_at, 1))
    summary = _first(events, "summary") or {}
    after = [e for e in events if e.get("event") == "message" and service_back and e["mono"] > service_back["mono"]]
    expected = {
        "service client reconnected to another server": True,
        "service client receives after reconnect": True,
        "IP client reconnected (via learned URLs only)": usable,
    }
    observed = {
        "service client reconnected to another server": bool(
            service_back and service_back.get("server_name") not in (None, victim_name)
        ),
        "service client receives after reconnect": bool(after),
        "IP client reconnected (via learned URLs only)": bool(ip_back),
    }
    reasons = {
        "service client reconnected to another server": f"{service_seed} still routes to live servers",
        "service client receives after reconnect": "subscriptions are replayed on reconnect",
        "IP client reconnected (via learned URLs only)": (
            f"learned {sorted(learned)}"
            if usable
            else "nothing learned (no_advertise)"
            if not learned
            else f"learned only unreachable URLs {sorted(learned)} (declared {LEARNED_URLS_UNREACHABLE})"
        ),
    }
    comparison = Comparison.from_dicts(expected, observed, reasons)
    if not comparison.is_same:
        pytest.fail(
            comparison.render(f"reconnect after deleting {victim} ({natsnet_cell.scenario.id})")
            + f"\nService-seeded client ({summary}):\n{_story(events)}\nIP-seeded client:\n{_story(ip_events)}",
            pytrace=False,
        )
    if LEARNED_URLS_UNREACHABLE in natsnet_cell.expect:
        tried = [e for e in ip_events if e.get("event") == "error"]
        assert tried, f"the IP-seeded client reported no failed attempt on the learned URLs:\n{_story(ip_events)}"
        record_property("learned_url_errors", "; ".join(str(e.get("text"))[:120] for e in tried[:3]))
