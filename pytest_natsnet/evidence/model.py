"""What the Debugging Flow observed, as plain data: the input of the pure findings and of the bundle README.

Everything here is a value (no client, no files): tests build :class:`Observations` by hand, ``collect.observe``
builds them from a live namespace. Secret data never enters: certificates are kept as their public description.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_natsnet import kube
from pytest_natsnet.expect.nats import ServerConf
from pytest_natsnet.kube import Obj
from pytest_natsnet.probe.model import Outcome, ProbeResult

STEPS: Mapping[int, str] = {
    1: "DNS from the probe pod",
    2: "EndpointSlices",
    3: "Pods: readiness, restarts, events",
    4: "NATS logs",
    5: "Server-provided URLs",
    6: "NetworkPolicies and reachability",
    7: "TLS names",
    8: "Publish/subscribe round trip",
}
"""The Debugging Flow, in the order it is walked."""


@dataclass(frozen=True)
class CertInfo:
    """A certificate's public description: never the certificate or its key."""

    subject: str
    issuer: str
    sans: tuple[str, ...]
    not_before: str
    not_after: str
    is_ca: bool = False

    def line(self) -> str:
        sans = ", ".join(self.sans) or "none"
        return f"subject {self.subject}; SANs {sans}; issuer {self.issuer}; valid {self.not_before} to {self.not_after}"


@dataclass(frozen=True)
class Check:
    """One probe request of the flow and its result (None: not run, ``skipped`` says why)."""

    key: str
    step: int
    subject: str
    """What it asks, for people: ``A nats.ns.svc.cluster.local. over UDP (client Service FQDN)``."""
    request: Mapping[str, Any]
    result: ProbeResult | None = None
    skipped: str = ""

    @property
    def outcome(self) -> str:
        if self.result is None:
            return "not run"
        return self.result.raw_outcome or self.result.outcome.value

    @property
    def works(self) -> bool:
        return self.result is not None and self.result.outcome.works

    def is_(self, *outcomes: Outcome) -> bool:
        return self.result is not None and self.result.outcome in outcomes

    def answers(self) -> list[str]:
        return [str(a) for a in (self.result.detail.get("answers") or [])] if self.result else []


@dataclass(frozen=True)
class LogLine:
    """A server log line the flow extracted, with what it is about."""

    pod: str
    text: str
    """The first occurrence, as logged."""
    category: str
    """``fatal`` (the server exits), ``route-created``, ``route-closed``, ``route-error``, ``dns``, ``tls``,
    ``auth``, ``self``, ``duplicate``."""
    count: int = 1
    """How often the same message (timestamps, connection ids and ephemeral ports aside) was logged."""
    last: str = ""
    """When it was logged last (the log's own timestamp)."""


@dataclass(frozen=True)
class ProbeSite:
    """Where the probes ran from."""

    pod: str
    namespace: str
    labels: Mapping[str, str]
    resolv_conf: str = ""

    @property
    def search(self) -> tuple[str, ...]:
        """The resolv.conf search list (the last ``search`` line wins)."""
        found: tuple[str, ...] = ()
        for line in self.resolv_conf.splitlines():
            fields = line.split()
            if fields[:1] == ["search"]:
                found = tuple(fields[1:])
        return found


@dataclass(frozen=True)
class Observations:
    """A NATS deployment in one namespace, as the Debugging Flow saw it."""

    namespace: str
    release: str = "nats"
    zone: str = "cluster.local"
    objects: Mapping[str, Sequence[Obj]] = field(default_factory=dict)
    """Kind -> the namespace's objects (Pod, Service, EndpointSlice, NetworkPolicy, ConfigMap, StatefulSet,
    Event). No Secrets."""
    namespace_labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    dns_pods: Sequence[Obj] = ()
    """The cluster DNS pods (kube-system, k8s-app=kube-dns)."""
    statefulset: str | None = None
    servers: Sequence[ServerConf] = ()
    certificates: Mapping[str, Sequence[CertInfo]] = field(default_factory=dict)
    """``Secret <name>/<key>`` -> the certificates in it."""
    route_cert: str | None = None
    """The key into ``certificates`` of the route TLS certificate (cluster.tls.cert_file), if any."""
    client_cert: str | None = None
    probe: ProbeSite | None = None
    checks: Mapping[str, Check] = field(default_factory=dict)
    monitor: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Server name -> {``/varz``: body, ``/routez``: body} (what answered)."""
    log_lines: Sequence[LogLine] = ()
    gaps: Sequence[str] = ()
    """What could not be observed, and why (RBAC, a probe pod that did not start, ...)."""
    timings: Mapping[str, float] = field(default_factory=dict)

    # -- accessors ------------------------------------------------------------------------------------------

    def of_kind(self, kind: str) -> list[Obj]:
        return [dict(o) for o in self.objects.get(kind, ())]

    def check(self, key: str) -> Check | None:
        return self.checks.get(key)

    def checks_of_step(self, step: int) -> list[Check]:
        return [c for c in self.checks.values() if c.step == step]

    def server_pods(self) -> list[Obj]:
        """The StatefulSet's pods (ordinal order), or every pod running nats-server when there is none."""
        names = {s.pod for s in self.servers}
        pods = [p for p in self.of_kind("Pod") if kube.name(p) in names]
        return sorted(pods, key=lambda p: _ordinal(kube.name(p)))

    def headless_service(self) -> Obj | None:
        """The StatefulSet's ``serviceName`` Service, else the headless Service selecting its pods."""
        services = self.of_kind("Service")
        sts = kube.find(self.of_kind("StatefulSet"), "StatefulSet", self.statefulset or "")
        wanted = kube.spec(sts).get("serviceName") if sts else None
        if wanted:
            found = kube.find(services, "Service", str(wanted))
            if found is not None:
                return found
        pods = self.server_pods()
        for service in services:
            if kube.spec(service).get("clusterIP") == "None" and any(
                    kube.service_selector_matches(kube.spec(service).get("selector"), kube.labels(p)) for p in pods):
                return service
        return None

    def client_service(self) -> Obj | None:
        """The ClusterIP Service selecting the servers (the one clients seed with)."""
        pods = self.server_pods()
        for service in self.of_kind("Service"):
            spec = kube.spec(service)
            if spec.get("clusterIP") not in (None, "", "None") and pods and any(
                    kube.service_selector_matches(spec.get("selector"), kube.labels(p)) for p in pods):
                return service
        return None

    def server(self, name: str) -> ServerConf | None:
        return next((s for s in self.servers if s.name == name or s.pod == name), None)


def _ordinal(name: str) -> tuple[int, str]:
    head, _, tail = name.rpartition("-")
    return (int(tail), head) if tail.isdigit() else (1 << 30, name)


def pod_ready(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def restarts(pod: Mapping[str, Any]) -> int:
    return sum(int(s.get("restartCount") or 0) for s in (pod.get("status") or {}).get("containerStatuses") or [])


def distinct_peers(routez: Mapping[str, Any]) -> set[str]:
    """The distinct ``remote_name``s of a ``/routez`` body (connections are pooled: count names, not routes)."""
    return {str(r.get("remote_name")) for r in routez.get("routes") or [] if r.get("remote_name")}
