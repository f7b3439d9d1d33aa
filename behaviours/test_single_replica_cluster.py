"""A bug report, as one test file: a single JetStream server with clustering and route TLS enabled.

Reported in 2026 against another chart: the meta group sized from the route list, ``cluster_size: 2`` on one
server, never Ready. What the official chart (2.14.2, and the built-in rendering equal to it) does with those
values, found on the sandbox with the real nats-server 2.14.2: the same. It still renders a ``cluster`` block whose
only route is the server itself (``tls://nats-0.nats-headless:6222``); JetStream counts that route as a peer, sizes
its meta group 2, and one server never has a quorum of 2: no meta leader, ``/healthz`` 503, never Ready. Route TLS
plays no part (the same happens without it); ``config.cluster.enabled: false`` for one replica avoids it. The cell
declares ``meta-quorum-unreachable``.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_natsnet.probe.model import HttpRequest
from pytest_natsnet.prober import Prober
from pytest_natsnet.session import Cell
from pytest_natsnet.suitekit import (
    applies,
    declared,
    log_lines,
    monitor_port,
    servers,
    wait_for_probe_failures,
)
from pytest_natsnet.table import Comparison


@applies(declared("meta-quorum-unreachable"))
@pytest.mark.natsnet_values("../charts-values/single-replica-route-tls.yaml", "../charts-values/jetstream.yaml",
                            certs="good", expect=["meta-quorum-unreachable"])
def test_single_replica_with_clustering_and_route_tls(
    natsnet_cell: Cell, natsnet_probe: Prober, record_property: pytest.RecordProperty
) -> None:
    """One server whose only route is itself: a meta group of 2 that one server can never lead, so it is never
    Ready; its monitoring endpoints and its log say why."""
    deployment = natsnet_cell.deployment
    group = servers(deployment)
    assert group.names == ["nats-0"], f"expected one server, found {group.names}"
    conf = group.conf("nats-0")
    kind, _, failures, seconds = wait_for_probe_failures(deployment, group, 2)
    record_property("never_ready_judged_after_seconds", round(seconds, 1))
    base = f"http://{group.ip('nats-0')}:{monitor_port(group.pods[0])}"
    results = natsnet_probe.run([HttpRequest(key, f"{base}/{key}") for key in ("healthz", "jsz", "routez")])
    body: dict[str, dict[str, Any]] = {key: dict(r.detail.get("json") or {}) for key, r in results.items()}
    meta = body["jsz"].get("meta_cluster") or {}
    waiting = log_lines(deployment, ["nats-0"], r"Waiting for routing to be established")
    Comparison.from_dicts(
        {"rendered routes": "tls://nats-0.nats-headless:6222", "route TLS": "True", "routes formed": "0",
         "meta cluster_size": "2", "meta leader": "none", "/healthz": "503", f"{kind} failing": "yes",
         "log: waiting for routing": "yes"},
        {"rendered routes": ", ".join(conf.routes), "route TLS": str(conf.route_tls),
         "routes formed": str(len(body["routez"].get("routes") or [])),
         "meta cluster_size": str(meta.get("cluster_size")), "meta leader": str(meta.get("leader") or "none"),
         "/healthz": str(results["healthz"].detail.get("status")),
         f"{kind} failing": "yes" if failures["nats-0"] else "no",
         "log: waiting for routing": "yes" if waiting else "no"},
        {"rendered routes": "the chart renders a route per replica, here the server itself",
         "meta cluster_size": "JetStream sizes its meta group from the routes plus itself",
         "/healthz": str(body["healthz"].get("error") or "")},
    ).assert_same("a single clustered JetStream server (the official chart's rendering)")
    record_property("explained_by", waiting[0][:300] if waiting else "")
