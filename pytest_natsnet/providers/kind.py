"""The kind provider: a kind cluster (pytest-kind's KindCluster, our kind >= v0.24.0, isolated kubeconfig)."""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_natsnet.deployment import ClusterTools, KubeDeployment, install_cell, own_kubeconfig
from pytest_natsnet.errors import CommandError, NatsnetError
from pytest_natsnet.kubeclient import KubeClient
from pytest_natsnet.preflight import ClusterFacts, discover_facts
from pytest_natsnet.providers.base import CellManifests, ClusterAccess, ProviderInfo
from pytest_natsnet.resources import kind_configs_dir
from pytest_natsnet.settings import NatsnetSettings
from pytest_natsnet.tools import Runner, SubprocessRunner, Tool, resolve_tool, run_checked

KIND_TIMEOUT = 600.0
NETWORK_POLICY_KIND = (0, 24, 0)
"""kindnet enforces NetworkPolicy from this kind release on."""


def _isolated_kind_cluster(name: str, kubeconfig: Path, kind: Path, kubectl: Path) -> Any:
    """pytest-kind's KindCluster driven by our binaries; no ``.pytest-kind`` dir, no downloads of its own."""
    from pytest_kind.cluster import KindCluster

    class IsolatedKindCluster(KindCluster):  # type: ignore[misc]
        def __init__(self) -> None:  # KindCluster.__init__ would create ./.pytest-kind/<name>
            self.name = name
            self.image = None
            self.path = kubeconfig.parent
            self.kubeconfig_path = kubeconfig
            self.kind_path = kind
            self.kubectl_path = kubectl
            self.platform = platform.system().lower()

    return IsolatedKindCluster()


ClusterFactory = Callable[[str, Path, Path, Path], Any]
ClientFactory = Callable[[Path, "str | None"], KubeClient]


def kind_context(cluster_name: str) -> str:
    return f"kind-{cluster_name}"


def kind_get_clusters_argv(kind: str) -> list[str]:
    return [kind, "get", "clusters"]


def kind_create_argv(kind: str, name: str, kubeconfig: Path, config: Path) -> list[str]:
    """What ``KindCluster.create`` runs (shown in the run header and tested)."""
    return [kind, "create", "cluster", f"--name={name}", f"--kubeconfig={kubeconfig}",
            "--config", str(config)]


def kind_export_kubeconfig_argv(kind: str, name: str, kubeconfig: Path) -> list[str]:
    return [kind, "export", "kubeconfig", f"--name={name}", f"--kubeconfig={kubeconfig}"]


def kind_delete_argv(kind: str, name: str, kubeconfig: Path) -> list[str]:
    return [kind, "delete", "cluster", f"--name={name}", f"--kubeconfig={kubeconfig}"]


class KindProvider:
    """Creates (or finds) the kind cluster ``--natsnet-cluster-name``; deletes it only if this run created it.

    Creation is bounded (``KIND_TIMEOUT``) and owned only when our own ``kind create cluster`` succeeded: a
    cluster that another process created in the meantime ("already exist") is used, never deleted. A creation
    interrupted (Ctrl-C) or timed out is deleted by name, since kind leaves its containers behind then.
    """

    def __init__(
        self,
        settings: NatsnetSettings,
        run_dir: Path,
        *,
        runner: Runner | None = None,
        tools: dict[str, Tool] | None = None,
        cluster_factory: ClusterFactory = _isolated_kind_cluster,
        client_factory: ClientFactory = KubeClient,
    ) -> None:
        self._settings = settings
        self._run_dir = run_dir
        self._runner = runner or SubprocessRunner()
        self._tools = dict(tools or {})
        self._cluster_factory = cluster_factory
        self._client_factory = client_factory
        self._cluster: Any = None
        self._client: KubeClient | None = None
        self._facts = ClusterFacts()
        self._access: ClusterAccess | None = None
        self._owner = False
        self.created = False
        self.kubeconfig = run_dir / "kubeconfig"

    def _tool(self, name: str) -> Tool:
        if name not in self._tools:
            explicit = {"helm": self._settings.helm, "kind": self._settings.kind,
                        "kubectl": self._settings.kubectl}[name]
            self._tools[name] = resolve_tool(name, explicit, runner=self._runner)
        return self._tools[name]

    @property
    def info(self) -> ProviderInfo:
        kind = self._tool("kind")
        return ProviderInfo(
            name="kind",
            enforces_network_policy=kind.version >= NETWORK_POLICY_KIND,
            supports_readiness_gates=True,
            supports_external_client=False,
            details=(
                f"kind cluster {self._settings.cluster_name} ({'created' if self.created else 'reused'}), "
                f"kubeconfig {self.kubeconfig}",
                kind.label,
                self._tool("kubectl").label,
                *self._facts.notes,
            ),
            cluster_domain=self._facts.domain,
            dns_profile=self._facts.dns,
        )

    def _context(self) -> str:
        return kind_context(self._settings.cluster_name)

    def _create(self, kind: str, name: str) -> bool:
        """Runs ``kind create cluster`` (bounded); True when this call created it, False when it already
        existed. Deletes a half-created cluster on timeout, failure or Ctrl-C."""
        config = self._settings.kind_config or kind_configs_dir() / "default.yaml"
        argv = kind_create_argv(kind, name, self.kubeconfig, config)
        try:
            run_checked(self._runner, argv, timeout=KIND_TIMEOUT)
        except CommandError as error:
            if "already exist" in error.output:
                return False
            self._delete_by_name(kind, name)
            raise NatsnetError(f"kind could not create cluster {name} within {KIND_TIMEOUT:g}s: "
                               f"{' '.join(error.output.split())[-400:]} (command: {error.command})") from None
        except KeyboardInterrupt:
            self._delete_by_name(kind, name)
            raise
        return True

    def _delete_by_name(self, kind: str, name: str) -> None:
        with contextlib.suppress(NatsnetError):
            run_checked(self._runner, kind_delete_argv(kind, name, self.kubeconfig), timeout=KIND_TIMEOUT)

    def start(self) -> ClusterAccess:
        if self._access is not None:
            return self._access
        kind, kubectl = self._tool("kind"), self._tool("kubectl")
        self._run_dir.mkdir(parents=True, exist_ok=True)
        name = self._settings.cluster_name
        existing = run_checked(self._runner, kind_get_clusters_argv(kind.path), timeout=60).split()
        self._cluster = self._cluster_factory(name, self.kubeconfig, Path(kind.path), Path(kubectl.path))
        self.created = name not in existing and self._create(kind.path, name)
        if not self.created:
            run_checked(self._runner, kind_export_kubeconfig_argv(kind.path, name, self.kubeconfig), timeout=60)
        self._owner = True
        self._access = ClusterAccess(str(self.kubeconfig), self._context(), self.created)
        self._client = self._client_factory(self.kubeconfig, self._context())
        self._facts = discover_facts(self._client)
        return self._access

    def attach(self, access: ClusterAccess) -> None:
        """A worker: its own copy of the controller's kubeconfig (kind rewrites files it exports in place)."""
        if self._access is not None:
            return
        own_kubeconfig(access.kubeconfig, self.kubeconfig)
        self._access = ClusterAccess(str(self.kubeconfig), access.context, created=False)
        self._client = self._client_factory(self.kubeconfig, access.context)
        self._facts = discover_facts(self._client)

    def deploy(self, cell: CellManifests, timeout: float) -> KubeDeployment:
        if self._access is None:
            self.start()
        assert self._client is not None and self._access is not None
        helm = self._tool("helm").path if cell.chart else None
        tools = ClusterTools(self._tool("kubectl").path, helm, self.kubeconfig, self._access.context, self._runner)
        return install_cell(cell, self.info, self._client, tools, timeout)

    def stop(self, keep: bool) -> None:
        if self._access is None:
            return
        if self._owner and keep:
            print(f"natsnet: kept kind cluster {self._settings.cluster_name}; "
                  f"kubectl --kubeconfig {self.kubeconfig} --context {self._context()}")
        elif self._owner and self.created:
            self._cluster.delete()
        self._access = None
        self._cluster = None
