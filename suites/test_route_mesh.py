"""route_mesh: every server routes to every other; the mesh survives a pod replacement; messages cross it.

Distinct ``remote_name`` per server in ``/routez`` (never ``num_routes``, which counts pooled connections). A cell
that declares a documented failure must show exactly the islands the failure predicts, and the server log line
that explains it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NoReturn

import pytest

from pytest_natsnet import applicability
from pytest_natsnet.expect.nats import (
    MeshExpectation,
    allowing_missing,
    expected_mesh,
    unretried_gossip_lookups,
    url_host,
)
from pytest_natsnet.probe.model import Outcome, RelayRequest
from pytest_natsnet.prober import Prober
from pytest_natsnet.session import Cell, Replacement
from pytest_natsnet.suitekit import (
    DNS_BLOCKED,
    MESH_SPLIT,
    ROUTE_TLS_MISMATCH,
    MeshObservation,
    Servers,
    applies,
    client_tls,
    declared,
    eventually,
    headless_service,
    log_lines,
    mesh_expectation,
    mesh_timeout,
    monitor,
    not_declared,
    observe_mesh,
    replace_server,
    route_lookup_failure_timeout,
    routes_beyond,
    secret_cert_sans,
    servers,
    wait_for_log,
    wait_for_replacement,
)
from pytest_natsnet.table import Comparison, TruthTable

EXPLANATIONS = {
    DNS_BLOCKED: r"Error trying to connect to route.*lookup",
    ROUTE_TLS_MISMATCH: r"TLS route handshake error.*x509",
    MESH_SPLIT: r"Error trying to connect to route|TLS route handshake error",
}
DECLARED_MESH_FAILURES = (DNS_BLOCKED, MESH_SPLIT, ROUTE_TLS_MISMATCH)
REPLACEMENT_BOUND = 180.0
"""A deleted server pod is back and Ready within this: its grace period bounds the shutdown, then the readiness
probe's delay and period."""


def _route_sans(cell: Cell) -> list[str] | None:
    return secret_cert_sans(cell.deployment, "nats-route-tls")


def _explain(cell: Cell, group: Servers) -> str:
    lines = log_lines(cell.deployment, group.names, r"\[ERR\].*(route|Route)")
    return "\n".join(["server log lines about routes:", *lines[-12:]] if lines else ["(no route errors logged)"])


def _compare(expected: MeshExpectation, observation: MeshObservation) -> Comparison[bool]:
    return Comparison.from_tables(expected.table, observation.table, expected.reasons)


def _wait_for_mesh(
    cell: Cell, probe: Prober, group: Servers, expect: Callable[[MeshObservation], MeshExpectation]
) -> tuple[bool, Comparison[bool], MeshObservation, float]:
    """Polls ``/routez`` until the mesh is what ``expect`` says for it, bounded by ``mesh_timeout`` (the cluster's
    DNS cache included); a server that does not answer yet (still starting) is polled again."""

    def matches() -> tuple[bool, tuple[Comparison[bool], MeshObservation]]:
        observation = observe_mesh(probe, group)
        comparison = _compare(expect(observation), observation)
        return comparison.is_same and not observation.unanswered, (comparison, observation)

    done, (comparison, observation), seconds = eventually(matches, mesh_timeout(cell.deployment, group), interval=0.2)
    return done, comparison, observation, seconds


def _fail(
    title: str, comparison: Comparison[bool], observation: MeshObservation, cell: Cell, group: Servers
) -> NoReturn:
    pytest.fail(
        comparison.render(title, lambda v: "." if v else "X")
        + "".join(f"\n{why}" for why in observation.unanswered.values())
        + "\n"
        + _explain(cell, group),
        pytrace=False,
    )


def test_route_mesh_matches_the_expectation(
    natsnet_cell: Cell, natsnet_probe: Prober, record_property: pytest.RecordProperty
) -> None:
    """N×N truth table of who routes to whom; healthy cells: full mesh; declared failures: the predicted islands
    (the server log lines that explain them: the next test). A DNS-blocked cell may also show routes that formed
    before its NetworkPolicy held (as on kind, see ``expect.policytiming``): they are accepted and reported."""
    group = servers(natsnet_cell.deployment)
    record_property("time_to_ready_seconds", round(natsnet_cell.deploy_seconds, 2))
    expected = expected_mesh(group.confs, natsnet_cell.expect, _route_sans(natsnet_cell))
    expect = mesh_expectation(natsnet_cell.expect, natsnet_probe, group, expected, natsnet_cell.deployment)
    done, comparison, observation, seconds = _wait_for_mesh(natsnet_cell, natsnet_probe, group, expect)
    if not done:
        _fail(f"route mesh of {natsnet_cell.scenario.id} after {seconds:.1f}s", comparison, observation,
              natsnet_cell, group)  # fmt: skip
    if not set(DECLARED_MESH_FAILURES) & natsnet_cell.expect:
        record_property("time_to_mesh_seconds", round(seconds + natsnet_cell.deploy_seconds, 2))
        return
    early = routes_beyond(expected, expect(observation))
    if early:
        record_property("routes_formed_before_policy", "; ".join(early)[:1000])


@pytest.mark.natsnet_late
@applies(declared(*DECLARED_MESH_FAILURES))
def test_missing_routes_are_explained_in_the_servers_logs(
    natsnet_cell: Cell, natsnet_probe: Prober, record_property: pytest.RecordProperty
) -> None:
    """A cell that declares a mesh failure: for the routes still missing, a server logs the reason (a failed
    lookup, an x509 error) once the resolver or the handshake gives up (the wait runs while the cell's other
    tests do); then the mesh is judged again: the missing routes were tried and failed, not merely late."""
    group = servers(natsnet_cell.deployment)
    declared_failures = sorted(set(DECLARED_MESH_FAILURES) & natsnet_cell.expect)
    expected = expected_mesh(group.confs, natsnet_cell.expect, _route_sans(natsnet_cell))
    expect = mesh_expectation(natsnet_cell.expect, natsnet_probe, group, expected, natsnet_cell.deployment)
    observation = observe_mesh(natsnet_probe, group)
    missing = [(a, b) for (a, b), want in expected.table.as_dict().items()
               if a != b and not want and not observation.table.get(a, b)]
    if not missing:
        record_property("declared_failures_not_shown", f"{', '.join(declared_failures)}: every route formed before "
                        "the cell's NetworkPolicy held, so no lookup fails and nothing is logged")
        return
    log_wait = route_lookup_failure_timeout(natsnet_cell.deployment, group)
    for failure in declared_failures:
        lines = wait_for_log(natsnet_cell.deployment, group.names, EXPLANATIONS[failure], log_wait)
        assert lines, (
            f"the cell declares {failure} and the mesh shows it, but no server logged the reason within "
            f"{log_wait:g}s (pattern {EXPLANATIONS[failure]!r}):\n{_explain(natsnet_cell, group)}"
        )
        record_property(f"explained_by_{failure}", lines[0][:300])
    observation = observe_mesh(natsnet_probe, group)
    comparison = _compare(expect(observation), observation)
    if not comparison.is_same or observation.unanswered:
        _fail(f"route mesh of {natsnet_cell.scenario.id} once the failure was logged", comparison, observation,
              natsnet_cell, group)  # fmt: skip


def test_configured_routes_equal_the_rendered_ones(natsnet_cell: Cell, natsnet_probe: Prober) -> None:
    """``/varz`` ``cluster.urls`` is the route list of the rendered nats.conf (host:port), on every server."""
    group = servers(natsnet_cell.deployment)
    varz = monitor(natsnet_probe, group, "/varz")
    expected, observed = {}, {}
    for name in group.names:
        conf = group.conf(name)
        port_of = {url_host(r): r.rsplit(":", 1)[-1] for r in conf.routes}
        expected[name] = sorted(f"{host}:{port}" for host, port in port_of.items())
        cluster = varz[name].get("cluster") or {}
        observed[name] = sorted(str(u) for u in (cluster.get("urls") or []))  # type: ignore[union-attr]
    Comparison.from_dicts(expected, observed).assert_same("configured routes (/varz cluster.urls)")


def test_messages_cross_exactly_the_routes(natsnet_cell: Cell, natsnet_probe: Prober) -> None:
    """A message published on server A reaches a subscriber on server B iff A and B share a route."""
    group = servers(natsnet_cell.deployment)
    expected = expected_mesh(group.confs, natsnet_cell.expect, _route_sans(natsnet_cell))
    tls = client_tls(natsnet_cell.deployment, natsnet_probe)
    scheme = "tls" if tls is not None else "nats"
    urls = {n: f"{scheme}://{group.ip(n)}:{group.conf(n).client_port}" for n in group.names}
    names = {n: group.conf(n).name for n in group.names}
    pairs = [(a, b) for a in group.names for b in group.names if a != b]
    requests = [RelayRequest(f"{a}>{b}", (urls[a],), (urls[b],), tls) for a, b in pairs]  # type: ignore[arg-type]
    expect = mesh_expectation(natsnet_cell.expect, natsnet_probe, group, expected, natsnet_cell.deployment)
    done, comparison, observation, _ = _wait_for_mesh(natsnet_cell, natsnet_probe, group, expect)
    if not done:  # the routes are not what test_route_mesh_matches_the_expectation expects: nothing to relay over
        _fail("route mesh before relaying messages", comparison, observation, natsnet_cell, group)
    expected = expect(observation)  # with the routes a DNS-blocked cell formed before its policy held
    results = natsnet_probe.run(requests)
    labels = [names[n] for n in group.names]
    want, got = TruthTable(labels, labels, False), TruthTable(labels, labels, False)
    for a, b in pairs:
        want.set(names[a], names[b], expected.table.get(names[a], names[b]))
        got.set(names[a], names[b], results[f"{a}>{b}"].outcome is Outcome.OK)
    Comparison.from_tables(want, got, expected.reasons).assert_same(
        f"messages published on row, received on column ({natsnet_cell.scenario.id})"
    )


@pytest.mark.natsnet_disruptive
@applies(not_declared(*DECLARED_MESH_FAILURES))
def test_replaced_pod_rejoins_with_a_new_ip(
    natsnet_cell: Cell,
    natsnet_probe: Prober,
    natsnet_replacement: Replacement | None,
    record_property: pytest.RecordProperty,
) -> None:
    """Delete a server pod: the StatefulSet recreates it with the same name and a new IP, and the full mesh
    returns with no config change (explicit routes re-resolve the name on every attempt). The pod an earlier test
    of the cell deleted (the reconnect suite's) serves when it is still coming back; else the last one is deleted."""
    deployment = natsnet_cell.deployment
    if natsnet_replacement is None:
        before = servers(deployment)
        natsnet_replacement = replace_server(natsnet_cell, before, before.names[-1])
    victim, old_ip = natsnet_replacement.victim, natsnet_replacement.ip
    log_offsets = natsnet_replacement.log_offsets

    after = wait_for_replacement(natsnet_cell, natsnet_replacement, REPLACEMENT_BOUND)
    record_property("pod_replacement_seconds", round(time.monotonic() - natsnet_replacement.deleted_at, 2))
    if applicability.publishes_not_ready(deployment.objects("Service"), headless_service(deployment)):
        deployment.wait_ready(REPLACEMENT_BOUND)  # its name resolves only once it is Ready: the mesh waits for that
    assert victim in after.names, f"{victim} was not recreated: pods now {after.names}"
    new_ip = after.ip(victim)
    assert new_ip != old_ip, (
        f"{victim} came back with the same IP {old_ip}: the test proves nothing about re-resolution"
    )
    expected = expected_mesh(after.confs, natsnet_cell.expect, _route_sans(natsnet_cell))

    def expect(observation: MeshObservation) -> MeshExpectation:
        """The full mesh, except routes that real NATS leaves missing, each explained by its log line."""
        since = {pod: deployment.logs(pod).splitlines()[log_offsets.get(pod, 0) :] for pod in after.names}
        explained = unretried_gossip_lookups(after.confs, victim, since, old_ip)
        return allowing_missing(expected, observation.table, explained)

    done, comparison, observation, seconds = _wait_for_mesh(natsnet_cell, natsnet_probe, after, expect)
    record_property("time_to_mesh_after_replacement_seconds", round(seconds, 2))
    if not done:
        _fail(f"mesh after replacing {victim} ({old_ip} -> {new_ip})", comparison, observation, natsnet_cell, after)
    unretried = [c.reason for c in comparison.cells.values() if c.reason.startswith("implicit route not retried")]
    if unretried:
        record_property("routes_left_missing_by_nats", unretried[0][:300])
