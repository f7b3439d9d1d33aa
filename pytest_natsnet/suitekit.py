"""What the suites share: applicability (declared failures before deploy, observed objects after), the servers
of a cell, their parsed config, bounded polling, and the bounds of those polls.

No bound here assumes the sandbox's timing: what DNS can make a cluster wait (a cached answer, a resolver giving
up) comes from the cluster's DNS profile (``ProviderInfo.dns_profile``) and the pods' own resolv.conf through the
pure rules of :mod:`pytest_natsnet.expect.dnstiming`; the constants below bound what the cluster's controllers
and nats-server take beyond that."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

import pytest
import tenacity

from pytest_natsnet import kube
from pytest_natsnet.dnsprofile import DnsProfile
from pytest_natsnet.expect.dnstiming import change_visible_within, give_up_seconds, parse_resolv_conf
from pytest_natsnet.expect.nats import (  # noqa: F401 (re-exported for the suites)
    BOOTSTRAP_DEADLOCK,
    DNS_BLOCKED,
    LEARNED_URLS_UNREACHABLE,
    MESH_SPLIT,
    ROUTE_TLS_MISMATCH,
    MeshExpectation,
    ServerConf,
    allowing_missing,
    allowing_present,
    is_ip,
    observed_mesh,
    routes_to,
    server_confs,
    unretried_gossip_lookups,
    url_host,
)
from pytest_natsnet.expect.policytiming import route_starts, routes_before_enforcement, server_starts
from pytest_natsnet.kube import Obj
from pytest_natsnet.matrix import Scenario
from pytest_natsnet.probe.model import HttpRequest, Outcome, ProbeResult, TlsOptions
from pytest_natsnet.prober import Prober
from pytest_natsnet.providers.base import POD_GATE_CONDITION, Deployment
from pytest_natsnet.providers.kubeapi import pods_needing_gate
from pytest_natsnet.report.grid import NOT_APPLICABLE_PREFIX, not_applicable_reason  # noqa: F401 (re-exported)
from pytest_natsnet.session import Cell, Replacement
from pytest_natsnet.table import TruthTable

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def not_applicable(reason: str) -> NoReturn:
    """Skips the running test because it does not apply to this cell (the report shows *n/a*, not *skip*).

    The rule: a skip whose reason starts with ``"not applicable: "`` (``NOT_APPLICABLE_PREFIX``) is not
    applicable; this adds the prefix. Use plain ``pytest.skip`` only for a test that applies but cannot run here
    (e.g. the provider cannot do what it needs): the report counts that as a real skip."""
    __tracebackhide__ = True
    pytest.skip(not_applicable_reason(reason))


def applies(predicate: Callable[[Scenario], str | None]) -> Callable[[F], F]:
    """Marks a suite test with the cells it applies to: ``predicate`` returns why the test does not apply to a
    cell (the plugin skips it there as not applicable, see ``not_applicable``), or None."""

    def decorate(function: F) -> F:
        function.natsnet_applies = predicate  # type: ignore[attr-defined]
        return function

    return decorate


def require(reason: str | None) -> None:
    """Skips the running test when it does not apply to its cell: ``reason`` comes from a pure function of
    :mod:`pytest_natsnet.applicability` over the cell's observed objects (None: it applies)."""
    if reason is not None:
        pytest.skip(f"not applicable: {reason}")


def declared(*failures: str) -> Callable[[Scenario], str | None]:
    """Applies to cells that declare one of ``failures`` (it covers them: a failure of
    ``failures.NEVER_READY`` keeps every test that does not cover it off its cells)."""
    wanted = set(failures)

    def predicate(scenario: Scenario) -> str | None:
        return None if wanted & scenario.expect else f"cell declares none of: {', '.join(sorted(wanted))}"

    predicate.natsnet_covers = frozenset(wanted)  # type: ignore[attr-defined]
    return predicate


def not_declared(*failures: str) -> Callable[[Scenario], str | None]:
    """Applies to cells that declare none of ``failures``."""
    wanted = set(failures)

    def predicate(scenario: Scenario) -> str | None:
        hit = sorted(wanted & scenario.expect)
        return f"cell declares {', '.join(hit)}: another test covers that failure" if hit else None

    return predicate


@dataclass(frozen=True)
class Servers:
    """The NATS servers of a cell as observed: StatefulSet pods (ordinal order) and their parsed config."""

    pods: list[Obj]
    confs: list[ServerConf]

    @property
    def names(self) -> list[str]:
        return [kube.name(p) for p in self.pods]

    def ip(self, pod_name: str) -> str:
        for pod in self.pods:
            if kube.name(pod) == pod_name:
                return str(pod["status"]["podIP"])
        raise KeyError(pod_name)

    def conf(self, pod_name: str) -> ServerConf:
        for conf in self.confs:
            if conf.pod == pod_name:
                return conf
        raise KeyError(pod_name)


def _ordinal(pod: Obj) -> int:
    return int(kube.name(pod).rsplit("-", 1)[-1])


def statefulset(deployment: Deployment) -> Obj:
    sets = deployment.objects("StatefulSet")
    if len(sets) != 1:
        raise AssertionError(f"expected one StatefulSet in {deployment.namespace}, found {len(sets)}")
    return sets[0]


def servers(deployment: Deployment) -> Servers:
    """The StatefulSet's pods and each one's nats.conf, parsed with the env the pod has."""
    sts = statefulset(deployment)
    selector = kube.spec(sts).get("selector", {})
    pods = sorted(
        (
            p
            for p in deployment.objects("Pod")
            if kube.selector_matches(selector, kube.labels(p))
            and p["status"].get("podIP")
            and not p["metadata"].get("deletionTimestamp")
        ),
        key=_ordinal,
    )
    config_volume = next((v for v in kube.spec(sts)["template"]["spec"].get("volumes") or [] if "configMap" in v), None)
    if config_volume is None:
        raise AssertionError(f"StatefulSet {kube.name(sts)} mounts no ConfigMap: cannot read nats.conf")
    configmap = kube.find(deployment.objects("ConfigMap"), "ConfigMap", config_volume["configMap"]["name"])
    if configmap is None:
        raise AssertionError(f"ConfigMap {config_volume['configMap']['name']} not found")
    text = next(iter((configmap.get("data") or {}).values()))
    return Servers(pods, server_confs(pods, text))


def replace_server(cell: Cell, group: Servers, victim: str) -> Replacement:
    """Deletes the server pod ``victim`` and records what a later test needs to watch it come back (its uid and
    IP, where the other servers' logs stood); the cell is disturbed until a test waits for it to be whole."""
    deployment = cell.deployment
    pod = next(p for p in group.pods if kube.name(p) == victim)
    offsets = {name: len(deployment.logs(name).splitlines()) for name in group.names if name != victim}
    replacement = Replacement(victim, pod["metadata"].get("uid"), group.ip(victim), offsets, time.monotonic())
    deployment.delete("Pod", victim)
    cell.disturbed, cell.replacement = True, replacement
    return replacement


def wait_for_replacement(cell: Cell, replacement: Replacement, timeout: float) -> Servers:
    """Waits until the StatefulSet has recreated ``replacement.victim`` (a new uid, running, an IP) and opens the
    plugin's readiness gate of the new pod, as the install does: behind a gate never set a pod is never Ready
    (with ``publishNotReadyAddresses: false`` never in DNS). Returns the servers then; Ready is not awaited."""
    deployment = cell.deployment

    def recreated() -> tuple[bool, str]:
        pod = kube.find(deployment.objects("Pod"), "Pod", replacement.victim) or {}
        uid, status = (pod.get("metadata") or {}).get("uid"), pod.get("status") or {}
        running = bool(pod) and uid != replacement.uid and status.get("phase") == "Running" and status.get("podIP")
        return bool(running), f"{replacement.victim}: uid {uid}, phase {status.get('phase')}"

    done, state, _ = eventually(recreated, timeout, interval=0.5)
    assert done, f"{replacement.victim} was not recreated and running within {timeout:g}s of its deletion ({state})"
    for name in pods_needing_gate(deployment.objects("Pod")):
        deployment.set_pod_condition(name, POD_GATE_CONDITION, True)
    return servers(deployment)


def eventually(check: Callable[[], tuple[bool, T]], timeout: float, interval: float = 0.25) -> tuple[bool, T, float]:
    """Polls ``check() -> (done, value)`` until done or ``timeout`` (tenacity); returns (done, last value, seconds).

    The caller asserts on ``done`` and shows the last value, so a timeout reports what was last observed."""
    started = time.monotonic()
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_delay(timeout),
        wait=tenacity.wait_fixed(interval),
        retry=tenacity.retry_if_result(lambda result: not result[0]),
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else (False, None),
    )
    done, value = retrying(check)
    return done, value, time.monotonic() - started


def secret_cert_sans(deployment: Deployment, secret_name: str, key: str = "tls.crt") -> list[str] | None:
    """The SANs (DNS names and IPs) of the certificate in Secret ``secret_name``; None when there is none."""
    import base64

    from cryptography import x509

    secret = kube.find(deployment.objects("Secret"), "Secret", secret_name)
    if secret is None or key not in (secret.get("data") or {}):
        return None
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"][key]))
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [
        *names.get_values_for_type(x509.DNSName),
        *(str(ip) for ip in names.get_values_for_type(x509.IPAddress)),
    ]


def monitor_port(pod: Obj, default: int = 8222) -> int:
    for container in kube.spec(pod).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == "monitor":
                return int(port["containerPort"])
    return default


def log_lines(deployment: Deployment, pods: list[str], pattern: str) -> list[str]:
    """Server log lines matching ``pattern`` (regex), prefixed with the pod name."""
    import re

    regex = re.compile(pattern)
    found = []
    for pod in pods:
        for line in deployment.logs(pod).splitlines():
            if regex.search(line):
                found.append(f"{pod}: {line.strip()}")
    return found


def wait_for_log(deployment: Deployment, pods: list[str], pattern: str, timeout: float) -> list[str]:
    """Server log lines matching ``pattern``, waiting up to ``timeout`` for the first (a blocked DNS lookup
    is only logged once the Go resolver gave up: ``expect.dnstiming.give_up_seconds``, 50 s on kind's default)."""
    _, lines, _ = eventually(
        lambda: (bool(found := log_lines(deployment, pods, pattern)), found), timeout, interval=1.0
    )
    return lines


def monitor_answers(probe: Prober, group: Servers, path: str) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """``GET <path>`` of every server's monitoring port, from a client pod of the cell's namespace: the JSON bodies
    of the servers that answered, and for the others why not (a server still starting refuses)."""
    requests = [
        HttpRequest(f"{path}:{name}", f"http://{group.ip(name)}:{monitor_port(pod)}{path}")
        for name, pod in zip(group.names, group.pods, strict=True)
    ]
    results = probe.run(requests)
    bodies, unanswered = {}, {}
    for name in group.names:
        result = results[f"{path}:{name}"]
        if result.outcome is Outcome.OK and isinstance(result.detail.get("json"), dict):
            bodies[name] = dict(result.detail["json"])
        else:
            unanswered[name] = f"GET {path} of {name} gave {result.raw_outcome}: {dict(result.detail)}"
    return bodies, unanswered


def monitor(probe: Prober, group: Servers, path: str) -> dict[str, dict[str, Any]]:
    """``GET <path>`` of every server's monitoring port; every server must answer."""
    bodies, unanswered = monitor_answers(probe, group, path)
    if unanswered:
        raise AssertionError("; ".join(unanswered.values()))
    return bodies


@dataclass(frozen=True)
class MeshObservation:
    """Who routes to whom (``/routez`` distinct ``remote_name``), the servers that did not answer, and the
    ``/routez`` bodies (by pod name)."""

    table: TruthTable[bool]
    unanswered: dict[str, str]
    routez: dict[str, dict[str, Any]] = field(default_factory=dict)


def observe_mesh(probe: Prober, group: Servers) -> MeshObservation:
    bodies, unanswered = monitor_answers(probe, group, "/routez")
    return MeshObservation(observed_mesh([group.conf(n).name for n in group.names], bodies), unanswered, bodies)


def mesh_expectation(
    declared: frozenset[str], probe: Prober, group: Servers, expected: MeshExpectation, deployment: Deployment
) -> Callable[[MeshObservation], MeshExpectation]:
    """What an observed mesh must be: ``expected``, except

    - a route a server learned by gossip and dialled once, when the peer's gossip name had no DNS record yet, that
      is missing (:func:`lost_gossip`: real NATS behaviour, with the log line that explains it);
    - in a cell that declares dns-blocked, routes that formed before the cell's NetworkPolicy held (or were
      gossiped over those) are accepted too, each with its reason, as kind's kube-network-policies can let them
      form (:mod:`pytest_natsnet.expect.policytiming`)."""
    if DNS_BLOCKED not in declared:
        return lambda observation: lost_gossip(deployment, group, expected, observation)
    varz, _ = monitor_answers(probe, group, "/varz")
    starts = server_starts(varz)

    def expect(observation: MeshObservation) -> MeshExpectation:
        early = routes_before_enforcement(expected.table, route_starts(observation.routez), starts)
        return lost_gossip(deployment, group, allowing_present(expected, observation.table, early), observation)

    return expect


def lost_gossip(
    deployment: Deployment, group: Servers, expected: MeshExpectation, observation: MeshObservation
) -> MeshExpectation:
    """``expected`` where each missing route is expected missing that a server learned by gossip and tried once
    while the peer's gossip name (``cluster.advertise``) had no record: with ``publishNotReadyAddresses: false``
    a server that joins before it is Ready is told to its peers by a name that does not resolve yet, and an
    implicit route is not dialled again (:func:`unretried_gossip_lookups`). The servers' logs are read only when
    an expected route is missing."""
    confs = {conf.name: conf for conf in group.confs}
    missing = [(a, b) for (a, b), want in expected.table.as_dict().items()
               if want and not observation.table.get(a, b) and not observation.table.get(b, a)
               and a in confs and b in confs and not (routes_to(confs[a], confs[b], group.confs)
                                                      or routes_to(confs[b], confs[a], group.confs))]
    if not missing:
        return expected
    logs = {name: deployment.logs(name).splitlines() for name in group.names}
    explained: dict[tuple[str, str], str] = {}
    for name in group.names:
        explained.update(unretried_gossip_lookups(group.confs, name, logs))
    return allowing_missing(expected, observation.table, explained)


def routes_beyond(expected: MeshExpectation, tolerated: MeshExpectation) -> list[str]:
    """The routes ``tolerated`` accepts that ``expected`` does not, as ``a - b: reason`` lines (one per pair)."""
    lines = []
    for (a, b), value in sorted(tolerated.table.as_dict().items()):
        if value and a < b and not expected.table.get(a, b):
            lines.append(f"{a} - {b}: {tolerated.reasons.get((a, b), '')}")
    return lines


def client_service(deployment: Deployment) -> str:
    """The client Service: the ClusterIP Service whose selector picks the servers."""
    for svc in deployment.objects("Service"):
        if kube.spec(svc).get("clusterIP") not in (None, "None") and kube.spec(svc).get("selector"):
            return kube.name(svc)
    raise AssertionError(f"no client ClusterIP Service in {deployment.namespace}")


def headless_service(deployment: Deployment) -> str:
    for svc in deployment.objects("Service"):
        if kube.spec(svc).get("clusterIP") == "None":
            return kube.name(svc)
    raise AssertionError(f"no headless Service in {deployment.namespace}")


def client_tls(deployment: Deployment, probe: Prober, hostname: str | None = None) -> TlsOptions | None:
    """TLS options for a client of a TLS cell (None otherwise): the run's CA, and as ``tls_hostname`` the given
    name or else the longest non-wildcard DNS name of the client certificate (for clients that dial IPs)."""
    sans = secret_cert_sans(deployment, "nats-client-tls")
    if sans is None or probe.ca_pem is None:
        return None
    if hostname is None:
        names = [s for s in sans if "*" not in s]
        hostname = max(names, key=len) if names else None
    return probe.tls(hostname)


NODE_PORT_SERVICE = "natsnet-external"
NODE_PORT_WAIT = 30.0
"""Bound for a NodePort Service to get its port and its pod's ready endpoint (API server and controllers)."""
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"


def node_address(nodes: Sequence[Obj]) -> str | None:
    """The address a client outside the cluster reaches the first node on: its ExternalIP, else its InternalIP
    (a kind node's address on the docker network, which the runner routes to)."""
    for address_type in ("ExternalIP", "InternalIP"):
        for node in nodes:
            for address in (node.get("status") or {}).get("addresses") or []:
                if address.get("type") == address_type and address.get("address"):
                    return str(address["address"])
    return None


@contextlib.contextmanager
def exposed_on_node_port(deployment: Deployment, pod_name: str, port: int) -> Iterator[tuple[str, int]]:
    """One server's ``port`` the way a cluster exposes it to the outside: a NodePort Service selecting the pod
    (by its StatefulSet pod-name label); yields (node address, nodePort) once the pod is its ready endpoint, and
    deletes the Service afterwards."""
    service: Obj = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": NODE_PORT_SERVICE},
        "spec": {"type": "NodePort", "selector": {POD_NAME_LABEL: pod_name},
                 "ports": [{"name": "client", "port": port, "targetPort": port, "protocol": "TCP"}]},
    }
    deployment.apply([service])
    try:
        def published() -> tuple[bool, str]:
            svc = kube.find(deployment.objects("Service"), "Service", NODE_PORT_SERVICE) or {}
            ports = [int(p["nodePort"]) for p in kube.spec(svc).get("ports") or [] if p.get("nodePort")]
            ready = [e for s in deployment.objects("EndpointSlice")
                     if kube.labels(s).get("kubernetes.io/service-name") == NODE_PORT_SERVICE
                     for e in s.get("endpoints") or [] if (e.get("conditions") or {}).get("ready")]
            return bool(ports and ready), f"nodePorts {ports}, ready endpoints {len(ready)}"

        done, state, _ = eventually(published, NODE_PORT_WAIT, interval=0.5)
        assert done, f"NodePort Service {NODE_PORT_SERVICE} for {pod_name} not ready in {NODE_PORT_WAIT:g}s: {state}"
        address = node_address(deployment.objects("Node"))
        assert address is not None, "no node reports an ExternalIP or InternalIP address"
        svc = kube.find(deployment.objects("Service"), "Service", NODE_PORT_SERVICE) or {}
        yield address, int(kube.spec(svc)["ports"][0]["nodePort"])
    finally:
        deployment.delete("Service", NODE_PORT_SERVICE)


CONTROLLER_LAG = 10.0
"""Bound for a cluster's controllers to follow an object change (the EndpointSlice controller, the informers of
CoreDNS and kube-proxy: about a second on kind), with room for a loaded machine."""
MESH_SETTLE = 30.0
"""What a route mesh needs beyond DNS: nats-server retries explicit routes every second, then gossips implicit
routes and reports them in ``/routez``."""
LOG_MARGIN = 15.0
"""From a resolver giving up to the failure being in the server's log and read: the route retry (1 s) and the
suites' polling, with room for a loaded machine."""


def cluster_dns(deployment: Deployment) -> DnsProfile:
    """The DNS profile of the cell's cluster (the sandbox's own; else read from the cluster's Corefile)."""
    return deployment.info.dns_profile


def dns_change_timeout(deployment: Deployment, qnames: Sequence[str]) -> float:
    """Bound for cluster DNS to answer ``qnames`` the way the objects now say: the controllers' lag plus the
    longest time the profile's cache may keep the old answer (``expect.dnstiming.change_visible_within``)."""
    return change_visible_within(cluster_dns(deployment), qnames, CONTROLLER_LAG, deployment.info.cluster_domain)


def learned_names_timeout(deployment: Deployment, urls: Iterable[str]) -> float:
    """Bound for dialling learned URLs by name: the time cluster DNS may keep an old answer for their hosts under
    the cluster domain (a name looked up before its pod was Ready stays NXDOMAIN for the cache's lifetime: 30 s
    with Kubernetes 1.31's CoreDNS, none from 1.32); 0 when every host is an IP or outside the cluster."""
    names = cluster_qnames(map(url_host, urls), deployment.namespace, deployment.info.cluster_domain)
    return dns_change_timeout(deployment, names) if names else 0.0


def dial_error(result: ProbeResult, where: str = "") -> str:
    """``; <where> dial: <the probe's error>`` for a failed dial (what a table's reason shows), else ``""``."""
    if result.outcome is Outcome.OK:
        return ""
    error = result.detail.get("error") or result.detail.get("errno") or result.outcome.value
    return f"; {where + ' ' if where else ''}dial: {str(error)[:160]}"


def cluster_qnames(hosts: Iterable[str], namespace: str, zone: str = "cluster.local") -> list[str]:
    """The in-zone names ``hosts`` resolve as from a pod of ``namespace``: an FQDN under ``zone`` as it is; the
    short forms the chart writes (``nats``, ``nats-0.nats-headless``) and ``<name>.<ns>.svc`` through the search
    path; IPs and other names (outside the cluster) are left out."""
    names = set()
    for host in (h.rstrip(".") for h in hosts):
        if is_ip(host) or not host:
            continue
        if host.endswith(f".{zone}"):
            names.add(host)
        elif host.endswith(".svc"):
            names.add(f"{host}.{zone}")
        elif host.count(".") <= 1:
            names.add(f"{host}.{namespace}.svc.{zone}")
    return sorted(names)


def route_qnames(namespace: str, group: Servers, zone: str = "cluster.local") -> list[str]:
    """The in-zone names the servers' route hosts resolve as (``cluster_qnames``); IPs need no lookup."""
    return cluster_qnames((url_host(route) for conf in group.confs for route in conf.routes), namespace, zone)


def mesh_timeout(deployment: Deployment, group: Servers) -> float:
    """Bound for a mesh to become what is expected: ``MESH_SETTLE`` plus the time cluster DNS may keep answering
    a route host the old way from its cache (NXDOMAIN looked up before the peer was published, or a replaced
    pod's old IP: 30 s with the pinned kind image's CoreDNS, 0 without a cluster-zone cache)."""
    zone = deployment.info.cluster_domain
    return change_visible_within(cluster_dns(deployment), route_qnames(deployment.namespace, group, zone), MESH_SETTLE,
                                 zone)


def route_lookup_failure_timeout(deployment: Deployment, group: Servers) -> float:
    """Bound for a server whose DNS is blocked to log a failed route lookup: Go's resolver (nats-server's) gives
    up on a route host after ``give_up_seconds`` of the server's own resolv.conf (every search domain, attempts
    and timeouts: 50 s on kind with a runner's search domain), plus ``LOG_MARGIN``."""
    conf = parse_resolv_conf(deployment.read_file(group.names[0], "/etc/resolv.conf"))
    hosts = {url_host(r) for c in group.confs for r in c.routes if not is_ip(url_host(r))}
    return max((give_up_seconds(conf, host, "go") for host in hosts), default=0.0) + LOG_MARGIN


def pod_ready(pod: Mapping[str, Any]) -> bool:
    """The pod's Ready condition is True."""
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def probes_waiting_for_jetstream(pod: Obj, container: str = "nats") -> list[tuple[str, Mapping[str, Any]]]:
    """The container's probes that gate Ready and ask ``/healthz`` for more than "JetStream is enabled": they answer
    503 until the server is current with a JetStream meta leader (the chart's startup probe ``/healthz``, and its
    readiness probe ``/healthz?js-server-only=true``), in the order they gate: startup, then readiness."""
    containers = kube.spec(pod).get("containers") or []
    spec: Mapping[str, Any] = next((c for c in containers if c.get("name") == container), {})
    found = []
    for kind in ("startupProbe", "readinessProbe"):
        path = str(((spec.get(kind) or {}).get("httpGet") or {}).get("path") or "")
        if path.startswith("/healthz") and "js-enabled-only=true" not in path:
            found.append((kind, spec[kind]))
    return found


def probe_failures(events: Sequence[Obj], pod: str, kind: str) -> int:
    """How often the kubelet reported the probe ``kind`` (``startupProbe``, ``readinessProbe``, ``livenessProbe``)
    failing for ``pod``: its ``Unhealthy`` Events, whose ``count`` aggregates repeats on a real cluster."""
    word = kind.removesuffix("Probe").capitalize()
    return sum(int(e.get("count") or 1) for e in events
               if (e.get("involvedObject") or {}).get("name") == pod and e.get("reason") == "Unhealthy"
               and str(e.get("message", "")).startswith(f"{word} probe failed"))


def wait_for_probe_failures(deployment: Deployment, group: Servers, failures: int,
                            extra_seconds: float = 30.0) -> tuple[str, Mapping[str, Any], dict[str, int], float]:
    """For a cell whose servers must never become Ready: waits until each server's first probe that waits for
    JetStream failed ``failures`` times (bounded by the probe's own timing plus ``extra_seconds``), failing at once
    should a server become Ready. Returns the probe kind, its spec, the failure counts and the seconds waited."""
    gating = probes_waiting_for_jetstream(group.pods[0])
    assert gating, "no probe of the servers waits for JetStream: nothing keeps them from becoming Ready"
    kind, spec = gating[0]
    bound = (float(spec.get("initialDelaySeconds", 0)) + (failures + 1) * float(spec.get("periodSeconds", 10))
             + extra_seconds)

    def judged() -> tuple[bool, dict[str, int]]:
        pods = {kube.name(p): p for p in deployment.objects("Pod")}
        became = [n for n in group.names if pod_ready(pods.get(n, {}))]
        assert not became, f"{', '.join(became)} became Ready: the cell declares its servers never will"
        events = deployment.objects("Event")
        counts = {n: probe_failures(events, n, kind) for n in group.names}
        return all(count >= failures for count in counts.values()), counts

    done, counts, seconds = eventually(judged, bound, interval=1.0)
    assert done, f"{kind} did not fail {failures} times on every server within {bound:g}s: {counts}"
    return kind, spec, counts, seconds
