"""bootstrap: a JetStream cluster forming from nothing, and the trade-off ``publishNotReadyAddresses`` decides.

A JetStream server is Ready only once it is current with a meta leader (the chart's probes: ``/healthz``), a meta
leader needs a quorum of routes, and routes dial the peers' per-pod DNS names. Without not-ready addresses
published those names exist only for Ready pods: nobody ever becomes Ready (nats-io/k8s#441, declared as
``bootstrap-deadlock``). With them published, the names resolve at once and peers dial pods whose listeners are
not up yet: route errors, which must stop once every server listens. And the point of a JetStream cluster: an R3
stream keeps its messages when a pod is replaced, the new pod reattaching its claim and restoring its store.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from pytest_natsnet import applicability, kube
from pytest_natsnet.expect import natslog
from pytest_natsnet.expect.dnstiming import stale_seconds
from pytest_natsnet.expect.nats import expected_mesh
from pytest_natsnet.kube import Obj
from pytest_natsnet.probe.model import DnsRequest, HttpRequest, JetStreamRequest, Outcome, ProbeResult
from pytest_natsnet.prober import Prober
from pytest_natsnet.providers.base import Deployment
from pytest_natsnet.session import Cell, Replacement
from pytest_natsnet.suitekit import (
    BOOTSTRAP_DEADLOCK,
    DNS_BLOCKED,
    MESH_SPLIT,
    ROUTE_TLS_MISMATCH,
    Servers,
    applies,
    client_service,
    client_tls,
    cluster_dns,
    declared,
    eventually,
    headless_service,
    monitor_port,
    not_declared,
    observed_mesh,
    pod_ready,
    probes_waiting_for_jetstream,
    replace_server,
    require,
    servers,
    wait_for_probe_failures,
    wait_for_replacement,
)
from pytest_natsnet.table import Comparison

STREAM = "NATSNET_BOOTSTRAP"
MESSAGES = 100
MORE = 10
REFUSED_GRACE = 1.0
"""A dial refused just before a listener opened may be logged just after it (the log is written when it fails)."""
CONVERGE_BOUND = 60.0
"""A formed cluster shows one meta leader on every server and a current stream within this (elections take
about a second; the bound is for a loaded machine)."""
REPLACEMENT_BOUND = 180.0
"""A deleted server pod is back and Ready within this: the chart's grace period (60 s) bounds its shutdown, its
readiness probe waits 10 s, its store is restored from the claim."""
PROBE_FAILURES_SEEN = 2
"""The deadlock is judged once every server's probe that waits for JetStream failed this often."""


def _jetstream_servers(cell: Cell) -> Servers:
    group = servers(cell.deployment)
    require(applicability.jetstream(group.confs))
    return group


def _timestamp(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")


def _seconds_to_ready(pod: Mapping[str, Any]) -> float | None:
    """From the nats container's start to the pod's Ready transition (the API's one-second timestamps)."""
    status = pod.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    nats = next((s for s in status.get("containerStatuses") or [] if s.get("name") == "nats"), {})
    started = _timestamp(((nats.get("state") or {}).get("running") or {}).get("startedAt"))
    became = _timestamp(ready.get("lastTransitionTime")) if ready.get("status") == "True" else None
    return None if started is None or became is None else (became - started).total_seconds()


def _logs(deployment: Deployment, group: Servers) -> dict[str, str]:
    return {name: deployment.logs(name) for name in group.names}


def _meta(jsz: Mapping[str, Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {name: dict(body.get("meta_cluster") or {}) for name, body in jsz.items()}


def _monitor_both(probe: Prober, group: Servers, paths: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """``GET`` each of ``paths`` from every server's monitoring port in one probe run: path → server → JSON body
    (a server that does not answer is left out, and the comparison shows it)."""
    requests = [HttpRequest(f"{path}:{name}", f"http://{group.ip(name)}:{monitor_port(pod)}{path}")
                for path in paths for name, pod in zip(group.names, group.pods, strict=True)]
    results = probe.run(requests)
    bodies: dict[str, dict[str, dict[str, Any]]] = {path: {} for path in paths}
    for path in paths:
        for name in group.names:
            body = results[f"{path}:{name}"].detail.get("json")
            if results[f"{path}:{name}"].outcome is Outcome.OK and isinstance(body, dict):
                bodies[path][name] = body
    return bodies


def _client(cell: Cell, probe: Prober, group: Servers) -> tuple[tuple[str, ...], Any]:
    """The client Service's URL, as applications connect, and its TLS options (TLS cells)."""
    service = client_service(cell.deployment)
    tls = client_tls(cell.deployment, probe, hostname=service)
    scheme = "tls" if tls is not None else "nats"
    return (f"{scheme}://{service}:{group.confs[0].client_port}",), tls


# ---------------------------------------------------------------------------------------------- healthy


@applies(not_declared(DNS_BLOCKED, MESH_SPLIT, ROUTE_TLS_MISMATCH))
def test_jetstream_cluster_bootstraps(
    natsnet_cell: Cell, natsnet_probe: Prober, record_property: pytest.RecordProperty
) -> None:
    """Every server is Ready, routes to every other, and reports the same JetStream meta leader, whose group has
    every other server as a current peer. Records each pod's time to Ready and the time to a meta leader."""
    deployment = natsnet_cell.deployment
    group = _jetstream_servers(natsnet_cell)
    names = [group.conf(n).name for n in group.names]

    def formed() -> tuple[bool, Comparison[str]]:
        answers = _monitor_both(natsnet_probe, group, ("/routez", "/jsz"))
        mesh = observed_mesh(names, {group.conf(pod).name: body for pod, body in answers["/routez"].items()})
        meta = _meta(answers["/jsz"])
        leaders = {str(m.get("leader") or "") for m in meta.values()}
        leader = next(iter(leaders)) if len(leaders) == 1 else ""
        leader_pod = next((n for n in group.names if group.conf(n).name == leader), None)
        peers = {str(r.get("name")): r for r in (meta.get(leader_pod or "", {}).get("replicas") or [])}
        full = expected_mesh(group.confs, natsnet_cell.expect).table
        comparison = Comparison.from_dicts(
            {"Ready pods": ", ".join(group.names), "routes (full mesh)": "yes", "meta leaders seen": "one",
             "meta group size": str(len(names)), "leader's current peers": ", ".join(sorted(set(names) - {leader}))},
            {"Ready pods": ", ".join(kube.name(p) for p in deployment.objects("Pod") if kube.name(p) in group.names
                                     and pod_ready(p)),
             "routes (full mesh)": "yes" if mesh.as_dict() == full.as_dict() else f"no: {mesh.as_dict()}",
             "meta leaders seen": "one" if leader else f"{sorted(leaders)}",
             "meta group size": ", ".join(sorted({str(m.get('cluster_size')) for m in meta.values()})),
             "leader's current peers": ", ".join(sorted(n for n, r in peers.items() if r.get("current")))},
            {"meta leaders seen": "every server's /jsz meta_cluster.leader",
             "leader's current peers": "the leader's /jsz meta_cluster.replicas that are current"},
        )
        return comparison.is_same, comparison

    _, comparison, _ = eventually(formed, CONVERGE_BOUND, interval=1.0)
    comparison.assert_same(f"JetStream bootstrap of {natsnet_cell.scenario.id}")
    pods = {kube.name(p): p for p in deployment.objects("Pod")}
    ready_after = {name: _seconds_to_ready(pods[name]) for name in group.names}
    record_property("pods_ready_seconds", ", ".join(f"{n}={s:g}" for n, s in ready_after.items() if s is not None))
    known = [s for s in ready_after.values() if s is not None]
    if known:
        record_property("slowest_pod_ready_seconds", max(known))
    seen = natslog.bootstrap(_logs(deployment, group))
    leader_after = seen.seconds_after_start(seen.meta_leader.at if seen.meta_leader else None)
    if leader_after is not None:
        record_property("time_to_meta_leader_seconds", round(leader_after, 3))


@applies(not_declared(DNS_BLOCKED, MESH_SPLIT, ROUTE_TLS_MISMATCH))
def test_route_errors_before_the_mesh_stop_once_every_server_listens(
    natsnet_cell: Cell, record_property: pytest.RecordProperty
) -> None:
    """With not-ready addresses published, a starting server dials peers whose listeners are not up yet: count
    and time those route errors (from the servers' logs), and none may come after every server listened, except
    lookups the cluster's DNS may still answer from a cached NXDOMAIN (its negative cache, kind-1.31 at most)."""
    deployment = natsnet_cell.deployment
    group = _jetstream_servers(natsnet_cell)
    require(applicability.publishes_not_ready(deployment.objects("Service"), headless_service(deployment)))
    seen = natslog.bootstrap(_logs(deployment, group))
    assert seen.all_listening is not None and len(seen.listening) == len(group.names), (
        f"not every server logged that it listens for routes: {sorted(seen.listening)}")
    zone = deployment.info.cluster_domain
    per_pod_name = f"{group.names[0]}.{headless_service(deployment)}.{deployment.namespace}.svc.{zone}"
    grace = {"refused": REFUSED_GRACE, "no such host": float(stale_seconds(cluster_dns(deployment), per_pod_name,
                                                                            zone))}
    record_property("route_errors_before_mesh", len(seen.route_errors))
    record_property("route_errors_by_kind", ", ".join(f"{k}={n}" for k, n in seen.errors_by_kind().items()))
    listened = seen.seconds_after_start(seen.all_listening)
    if listened is not None:
        record_property("every_server_listening_seconds", round(listened, 3))
    if seen.route_errors:
        last = seen.route_errors[-1].at
        after = seen.seconds_after_start(last)
        if after is not None:
            record_property("last_route_error_seconds", round(after, 3))
    late = seen.late_errors(grace)
    assert not late, (
        f"route errors after every server listened ({seen.all_listening}), beyond {grace}:\n"
        + "\n".join(str(line) for line in late[:12]))


@dataclass(frozen=True)
class WrittenStream:
    """An R3 stream holding ``MESSAGES`` acknowledged messages, and each server's claims when it was written."""

    urls: tuple[str, ...]
    tls: Any
    claims: Mapping[str, dict[str, tuple[str, str]]]
    written_at: float
    """``time.monotonic()`` once every message was acknowledged."""


@applies(not_declared(DNS_BLOCKED, MESH_SPLIT, ROUTE_TLS_MISMATCH))
def test_an_r3_stream_acknowledges_every_message(natsnet_cell: Cell, natsnet_probe: Prober) -> None:
    """Through the client Service, an R3 stream (on every server's claim) acknowledges all ``MESSAGES`` messages;
    it stays for the cell's replacement test, which checks that a replaced server restores and catches up."""
    _write_stream(natsnet_cell, natsnet_probe)


def _write_stream(cell: Cell, probe: Prober) -> WrittenStream:
    group = _jetstream_servers(cell)
    require(applicability.store_on_claim(group.pods[0]))
    urls, tls = _client(cell, probe, group)
    created = _jetstream(probe, JetStreamRequest("create", urls, STREAM, (f"{STREAM.lower()}.>",),
                                                 min(3, len(group.names)), create=True, publish=MESSAGES, tls=tls))
    assert created.detail.get("acked") == list(range(1, MESSAGES + 1)), dict(created.detail)
    written = WrittenStream(urls, tls, {name: _claims(cell.deployment, pod) for name, pod in
                                        zip(group.names, group.pods, strict=True)}, time.monotonic())
    cell.prepared[STREAM] = written
    return written


@pytest.mark.natsnet_disruptive
@applies(not_declared(DNS_BLOCKED, MESH_SPLIT, ROUTE_TLS_MISMATCH))
def test_stream_data_survives_a_pod_replacement(
    natsnet_cell: Cell, natsnet_probe: Prober, natsnet_replacement: Replacement | None,
    record_property: pytest.RecordProperty,
) -> None:
    """The R3 stream written before a server pod was deleted (by the reconnect suite, when it ran; else here):
    the StatefulSet recreates the pod with the same claim, it restores its store from it (its log says how many
    messages), catches up and the stream keeps every message and takes new ones. All of that before the pod is
    Ready (its readiness probe waits 10 s): records the time from the deletion to being current again."""
    deployment = natsnet_cell.deployment
    group = _jetstream_servers(natsnet_cell)  # not applicable decided first: never after waiting for the cell
    require(applicability.store_on_claim(group.pods[0]))
    stream = natsnet_cell.prepared.get(STREAM)
    replacement = natsnet_replacement
    if stream is None or replacement is None or replacement.deleted_at < stream.written_at:
        if natsnet_cell.disturbed:  # what was deleted came before the stream: the cell whole again first
            deployment.wait_ready(REPLACEMENT_BOUND)
            natsnet_cell.settled()
        if stream is None:
            stream = _write_stream(natsnet_cell, natsnet_probe)
        group = _jetstream_servers(natsnet_cell)
        replacement = replace_server(natsnet_cell, group, group.names[-1])
    victim, urls, tls = replacement.victim, stream.urls, stream.tls
    claims_before = stream.claims[victim]

    after = wait_for_replacement(natsnet_cell, replacement, REPLACEMENT_BOUND)
    new_pod = after.pods[after.names.index(victim)]
    assert _claims(deployment, new_pod) == claims_before, "the replaced pod did not get the same claim back"
    victim_monitor = f"http://{after.ip(victim)}:{monitor_port(new_pod)}/jsz?accounts=true&streams=true"

    def current() -> tuple[bool, str]:
        results = natsnet_probe.run([JetStreamRequest("info", urls, STREAM, tls=tls),
                                     HttpRequest("stored", victim_monitor)])
        stored = _stored_messages(results["stored"].detail.get("json") or {})
        cluster = results["info"].detail.get("cluster") or {}
        victim_name = after.conf(victim).name
        peer = next((r for r in cluster.get("replicas") or [] if r.get("name") == victim_name), {})
        caught_up = cluster.get("leader") == victim_name or bool(peer.get("current"))
        return caught_up and stored == MESSAGES, f"leader {cluster.get('leader')}, {victim} {peer}, stored {stored}"

    done, state, seconds = eventually(current, CONVERGE_BOUND, interval=1.0)
    assert done, f"{victim} did not catch up with {STREAM} within {CONVERGE_BOUND:g}s: {state}"
    record_property("catch_up_seconds", round(seconds, 2))
    record_property("replacement_to_current_seconds", round(time.monotonic() - replacement.deleted_at, 2))
    restored = [m for line in natslog.parse(victim, deployment.logs(victim))
                if (m := natslog.RESTORED.search(line.text)) and m.group("stream") == STREAM]
    assert restored and int(restored[0].group("messages").replace(",", "")) == MESSAGES, (
        f"{victim}'s log does not say it restored {MESSAGES} messages of {STREAM} from its store: {restored}")
    more = _jetstream(natsnet_probe, JetStreamRequest("more", urls, STREAM, publish=MORE, tls=tls))
    assert (more.detail.get("state") or {}).get("messages") == MESSAGES + MORE, dict(more.detail)


def _jetstream(probe: Prober, request: JetStreamRequest, check: bool = True) -> ProbeResult:
    """Runs a JetStream request; with ``check``, again while the cluster answers that it is electing (bounded),
    and it must succeed."""
    if not check:
        return probe.run([request])[request.key]

    def answered() -> tuple[bool, ProbeResult]:
        result = probe.run([request])[request.key]
        return result.outcome is Outcome.OK, result

    done, result, _ = eventually(answered, CONVERGE_BOUND, interval=1.0)
    assert done, f"JetStream request {request.key} on {request.stream} failed: {dict(result.detail)}"
    return result


def _claims(deployment: Deployment, pod: Obj) -> dict[str, tuple[str, str]]:
    """The pod's claims: volume name → (claim uid, bound volume)."""
    claims = {kube.name(c): c for c in deployment.objects("PersistentVolumeClaim")}
    found = {}
    for volume in kube.spec(pod).get("volumes") or []:
        name = (volume.get("persistentVolumeClaim") or {}).get("claimName")
        if name:
            claim = claims.get(str(name)) or {}
            found[str(volume["name"])] = (str((claim.get("metadata") or {}).get("uid")),
                                          str(kube.spec(claim).get("volumeName")))
    return found


def _stored_messages(jsz: Mapping[str, Any]) -> int | None:
    """How many messages of STREAM a server holds in its own store, from its ``/jsz?accounts=true&streams=true``."""
    for account in jsz.get("account_details") or []:
        for stream in account.get("stream_detail") or []:
            if stream.get("name") == STREAM:
                return int((stream.get("state") or {}).get("messages") or 0)
    return None


# ---------------------------------------------------------------------------------------------- deadlock


@applies(declared(BOOTSTRAP_DEADLOCK))
def test_bootstrap_deadlock_keeps_every_server_not_ready(
    natsnet_cell: Cell, natsnet_probe: Prober, record_property: pytest.RecordProperty
) -> None:
    """The cell declares bootstrap-deadlock: its probes wait for JetStream, the routes wait for DNS names that only
    Ready pods get. Once each server's probe failed a few times, none is Ready, no route formed, no meta leader
    exists, the per-pod names are NXDOMAIN, and every server's log explains it: its route lookups found no such
    host, and JetStream has no meta leader."""
    deployment = natsnet_cell.deployment
    group = servers(deployment)
    headless = headless_service(deployment)
    kind, probe_spec, failures, seconds = wait_for_probe_failures(deployment, group, PROBE_FAILURES_SEEN)
    record_property("deadlock_judged_after_seconds", round(seconds, 1))
    record_property("deadlock_probe", f"{kind} GET {probe_spec['httpGet']['path']}: failed {failures}")
    requests: list[Any] = []
    for name, pod in zip(group.names, group.pods, strict=True):
        base = f"http://{group.ip(name)}:{monitor_port(pod)}"
        requests += [HttpRequest(f"healthz:{name}", f"{base}/healthz"), HttpRequest(f"jsz:{name}", f"{base}/jsz"),
                     HttpRequest(f"routez:{name}", f"{base}/routez"),
                     DnsRequest(f"dns:{name}",
                                f"{name}.{headless}.{deployment.namespace}.svc.{deployment.info.cluster_domain}.")]
    results = natsnet_probe.run(requests)
    logs = {name: natslog.parse(name, deployment.logs(name)) for name in group.names}
    pods = {kube.name(p): p for p in deployment.objects("Pod")}
    expected: dict[str, str] = {}
    observed: dict[str, str] = {}
    why: dict[str, str] = {}
    for name in group.names:
        health = results[f"healthz:{name}"].detail
        meta = ((results[f"jsz:{name}"].detail.get("json") or {}).get("meta_cluster") or {})
        lookups = [line for line in logs[name] if natslog.ROUTE_LOOKUP_FAILED.search(line.text)]
        no_leader = natslog.matching(logs[name], natslog.NO_META_LEADER)
        rows = {
            "Ready": ("False", str(pod_ready(pods.get(name, {})))),
            "/healthz": ("503", str(health.get("status"))),
            "routes": ("0", str(len((results[f"routez:{name}"].detail.get("json") or {}).get("routes") or []))),
            "meta leader": ("none", str(meta.get("leader") or "none")),
            "own per-pod name": ("NXDOMAIN", str(results[f"dns:{name}"].raw_outcome)),
            "log: route lookup no such host": ("yes", "yes" if lookups else "no"),
            "log: no meta leader": ("yes", "yes" if no_leader else "no"),
        }
        for row, (want, got) in rows.items():
            expected[f"{name} {row}"], observed[f"{name} {row}"] = want, got
        why[f"{name} /healthz"] = str((health.get("json") or {}).get("error") or health.get("error") or "")[:160]
        why[f"{name} log: route lookup no such host"] = lookups[0].text[:160] if lookups else ""
        why[f"{name} log: no meta leader"] = no_leader[0].text[:160] if no_leader else ""
        if lookups:
            record_property(f"explained_by_route_lookup_{name}", lookups[0].text[:300])
        if no_leader:
            record_property(f"explained_by_meta_{name}", no_leader[0].text[:300])
    Comparison.from_dicts(expected, observed, why).assert_same(
        f"{BOOTSTRAP_DEADLOCK} of {natsnet_cell.scenario.id} after {seconds:.0f}s")


@pytest.mark.natsnet_disruptive
@applies(declared(BOOTSTRAP_DEADLOCK))
def test_publishing_not_ready_addresses_resolves_the_deadlock(
    natsnet_cell: Cell, natsnet_probe: Prober, record_property: pytest.RecordProperty
) -> None:
    """The other side of the trade-off, on the deadlocked cell itself: set ``publishNotReadyAddresses: true`` on the
    headless Service (what the chart hard-codes since nats-io/k8s#442) and every server becomes Ready: the names
    resolve, the routes (retried forever, being configured) connect, a meta leader is elected, the probes pass."""
    deployment = natsnet_cell.deployment
    group = servers(deployment)
    headless = headless_service(deployment)
    service = kube.find(deployment.objects("Service"), "Service", headless)
    assert service is not None
    deployment.apply([{"apiVersion": "v1", "kind": "Service",
                       "metadata": {"name": headless, "namespace": deployment.namespace},
                       "spec": {**kube.spec(service), "publishNotReadyAddresses": True}}])
    natsnet_cell.disturbed = True
    _, probe_spec = probes_waiting_for_jetstream(group.pods[0])[0]
    zone = deployment.info.cluster_domain
    per_pod_name = f"{group.names[0]}.{headless}.{deployment.namespace}.svc.{zone}"
    bound = (float(stale_seconds(cluster_dns(deployment), per_pod_name, zone))
             + 2 * float(probe_spec.get("periodSeconds", 10)) + CONVERGE_BOUND)

    def all_ready() -> tuple[bool, str]:
        pods = {kube.name(p): p for p in deployment.objects("Pod")}
        waiting = [n for n in group.names if not pod_ready(pods.get(n, {}))]
        return not waiting, f"not Ready: {', '.join(waiting)}"

    done, state, seconds = eventually(all_ready, bound, interval=1.0)
    assert done, f"publishNotReadyAddresses: true did not end the deadlock within {bound:g}s ({state})"
    record_property("ready_after_publishing_not_ready_addresses_seconds", round(seconds, 1))

    def leaders() -> tuple[bool, dict[str, str]]:
        """Every server's meta leader, as its ``/jsz`` says (a follower that joins an elected group may log none)."""
        results = natsnet_probe.run([HttpRequest(f"jsz:{name}", f"http://{group.ip(name)}:{monitor_port(pod)}/jsz")
                                     for name, pod in zip(group.names, group.pods, strict=True)])
        seen = {name: str(((results[f"jsz:{name}"].detail.get("json") or {}).get("meta_cluster") or {}).get("leader")
                          or "") for name in group.names}
        return all(seen.values()), seen

    done, seen, _ = eventually(leaders, CONVERGE_BOUND, interval=1.0)
    assert done, f"every server is Ready, but not every one knows a meta leader (/jsz meta_cluster.leader): {seen}"
    record_property("meta_leader_after_publishing_not_ready_addresses", ", ".join(sorted(set(seen.values()))))
