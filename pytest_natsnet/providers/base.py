"""The provider interface: what the suites need from a cluster, and nothing more.

A provider owns a cluster (kind, an existing context, or the sandbox). ``deploy`` installs one cell of the
values matrix into its own namespace and returns a :class:`Deployment`, the handle every suite works through.
Implementations live side by side (``kind.py``, ``existing.py``, ``sandbox_provider.py``) with their methods in
this order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pytest_natsnet.dnsprofile import DEFAULT_PROFILE, DnsProfile, dns_profile
from pytest_natsnet.kube import Obj

POD_GATE_CONDITION = "natsnet.io/ready"
"""The readinessGate condition type the plugin uses to force a pod not-ready deterministically."""


@dataclass(frozen=True)
class ProviderInfo:
    """Capabilities a suite may depend on; a suite skips with a reason when one is missing."""

    name: str
    enforces_network_policy: bool | None
    """True/False when known; None when only a canary probe can tell (e.g. an unknown CNI)."""
    supports_readiness_gates: bool
    supports_external_client: bool
    details: tuple[str, ...] = ()
    """Lines for the run header: which binaries and versions, why this provider was chosen."""
    probe_annotations: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Annotations a probe pod carries to be placed (``external``: outside the cluster network)."""
    cluster_domain: str = "cluster.local"
    """The cluster's DNS domain (read from the cluster where it says; see ``preflight.discover_facts``)."""
    dns_profile: DnsProfile = field(default_factory=lambda: dns_profile(DEFAULT_PROFILE))
    """The cluster DNS behaviour waits are derived from: the sandbox's own profile; on kind and existing clusters
    the one their CoreDNS Corefile configures (``preflight.discover_facts``)."""


@dataclass(frozen=True)
class ChartInstall:
    """How a provider installs a cell with ``helm install``: the chart and the cell's ``-f`` layers."""

    chart: str
    version: str | None
    repo: str | None
    values_files: tuple[Path, ...]


@dataclass(frozen=True)
class CellManifests:
    """One cell of the matrix, rendered: what ``deploy`` installs."""

    scenario_id: str
    namespace: str
    release: str
    objects: tuple[Obj, ...]
    source: str
    """``helm``, ``manifests`` or ``reference``."""
    chart: ChartInstall | None = None
    """The helm source: install the chart with these values (``objects`` is then ``helm template``'s output)."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """Labels for the cell's namespace (managed-by, run id, scenario)."""
    prerequisites: tuple[Obj, ...] = ()
    """Objects the plugin makes for the cell (the TLS Secrets its values mount), created before the chart is
    installed; ``objects`` holds them too."""
    ready_expected: bool = True
    """False for a cell that declares its servers never become Ready (``failures.NEVER_READY``): the install
    waits until they run, not until they are Ready."""


CLIENT_LABELS: Mapping[str, str] = {"app.kubernetes.io/name": "natsnet-client"}
"""Probe pods look like an application client; NetworkPolicies select them like one."""


@dataclass(frozen=True)
class ProbeTarget:
    """Where a probe runs: a fresh probe pod in ``namespace`` carrying ``labels``.

    ``external=True`` runs it outside the cluster network and its DNS (a host-side client).
    """

    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)
    name: str = "natsnet-probe"
    external: bool = False

    @property
    def pod_name(self) -> str:
        """The probe pod's name: an external client is another pod than the in-cluster one of the same name."""
        return f"{self.name}-external" if self.external else self.name


class CellHandle:
    """What every provider's Deployment shares: the cell it installed and the provider's capabilities."""

    def __init__(self, cell: CellManifests, info: ProviderInfo) -> None:
        self._cell = cell
        self._info = info

    @property
    def namespace(self) -> str:
        return self._cell.namespace

    @property
    def release(self) -> str:
        return self._cell.release

    @property
    def info(self) -> ProviderInfo:
        return self._info


class WatchHandle(Protocol):
    """A running ``watch`` probe: JSON-line events while the test disturbs the cluster."""

    def events(self) -> list[dict[str, Any]]:
        """Every event written so far (parsed JSON lines)."""
        ...

    def stop(self) -> list[dict[str, Any]]:
        """Stops the watcher (bounded) and returns every event."""
        ...


class Deployment(Protocol):
    """One installed cell: a namespace with the release, observed through the API."""

    @property
    def namespace(self) -> str: ...

    @property
    def release(self) -> str: ...

    @property
    def info(self) -> ProviderInfo: ...

    def objects(self, kind: str, namespace: str | None = None) -> list[Obj]:
        """Live objects of ``kind`` (Pod, Service, EndpointSlice, NetworkPolicy, ConfigMap, Event,
        StatefulSet, Namespace) in ``namespace`` (default: the cell's; ``"*"``: all namespaces)."""
        ...

    def apply(self, objects: Sequence[Obj], namespace: str | None = None) -> None:
        """Creates or replaces objects (e.g. a NetworkPolicy for a probe namespace)."""
        ...

    def create_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> None:
        """Creates a namespace labelled as the run's (deleted with the cell)."""
        ...

    def delete(
        self, kind: str, name: str, namespace: str | None = None, grace_seconds: float | None = None
    ) -> None:
        """Deletes one object (NetworkPolicy, Namespace, ...); a Pod is deleted gracefully (preStop, SIGTERM,
        then SIGKILL after ``grace_seconds``, default the pod's terminationGracePeriodSeconds)."""
        ...

    def wait_ready(self, timeout: float) -> None:
        """Waits until the StatefulSet has all replicas ready at its observed generation."""
        ...

    def set_pod_condition(self, pod: str, condition_type: str, status: bool) -> None:
        """Sets a pod status condition (readinessGates); the kubelet folds it into Ready."""
        ...

    def probe(self, target: ProbeTarget, batch: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        """Runs the probe program once with ``batch`` (see ``probe/model.py``) and returns its JSON answer."""
        ...

    def watch(self, target: ProbeTarget, request: Mapping[str, Any]) -> WatchHandle:
        """Starts the probe's long-running ``watch`` command."""
        ...

    def logs(self, pod: str, container: str = "nats", namespace: str | None = None) -> str:
        """The container's log (all restarts, oldest first)."""
        ...

    def read_file(self, pod: str, path: str, container: str = "nats") -> str:
        """A file as the container sees it (``cat`` under exec), e.g. its ``/etc/resolv.conf``."""
        ...

    def collect(self, directory: Path) -> None:
        """Writes a plain dump: every object of the cell's namespaces as YAML and every container log (the
        fallback when the evidence bundle, ``evidence/cell.py``, cannot be written)."""
        ...

    def teardown(self) -> None:
        """Removes everything the deployment created (its namespaces and probe pods)."""
        ...


@dataclass(frozen=True)
class ClusterAccess:
    """How to reach a cluster, and whether this run created it (only the creator deletes a cluster)."""

    kubeconfig: str
    """Path of a kubeconfig file; empty when the provider needs none (the in-process sandbox)."""
    context: str | None = None
    created: bool = False

    def to_wire(self) -> dict[str, str]:
        """For pytest-xdist's ``workerinput`` (builtin types only)."""
        return {"kubeconfig": self.kubeconfig, "context": self.context or "", "created": "1" if self.created else ""}

    @classmethod
    def from_wire(cls, data: Mapping[str, str]) -> ClusterAccess:
        return cls(str(data.get("kubeconfig", "")), str(data.get("context") or "") or None, bool(data.get("created")))


class Provider(Protocol):
    """A cluster: created or found by ``start`` (the run's owner), or attached (an xdist worker); released by
    ``stop``, which deletes only what the owner created."""

    @property
    def info(self) -> ProviderInfo: ...

    def start(self) -> ClusterAccess:
        """Creates or finds the cluster (bounded); idempotent. The caller owns the cluster's lifecycle."""
        ...

    def attach(self, access: ClusterAccess) -> None:
        """Uses a cluster another process started (pytest-xdist workers): never creates, never deletes."""
        ...

    def deploy(self, cell: CellManifests, timeout: float) -> Deployment:
        """Installs one cell into its namespace and waits for it to be ready (bounded)."""
        ...

    def stop(self, keep: bool) -> None:
        """Releases the cluster: the owner deletes what it created (the cluster, or its labelled namespaces);
        ``keep=True`` leaves everything and says how to reach it; an attached provider deletes nothing."""
        ...
