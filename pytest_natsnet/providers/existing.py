"""The existing provider: the user's cluster (kubeconfig + context), touched only in our namespaces."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import yaml

from pytest_natsnet.deployment import ClusterTools, KubeDeployment, install_cell, probe_pod_manifest
from pytest_natsnet.errors import ConfigError
from pytest_natsnet.kube import MANAGED_BY_LABEL, MANAGED_BY_VALUE, RUN_ID_LABEL, Obj
from pytest_natsnet.kubeclient import KubeClient
from pytest_natsnet.preflight import ClusterFacts, discover_facts, preflight_problems
from pytest_natsnet.providers.base import CellManifests, ClusterAccess, ProbeTarget, ProviderInfo
from pytest_natsnet.providers.kind import ClientFactory
from pytest_natsnet.providers.kubeapi import kubectl_argv
from pytest_natsnet.settings import NatsnetSettings
from pytest_natsnet.tools import Runner, SubprocessRunner, Tool, resolve_tool, run_checked


def default_kubeconfig(env: Mapping[str, str] = os.environ) -> Path:
    """The first file of ``$KUBECONFIG``, else ``~/.kube/config``."""
    first = next((p for p in env.get("KUBECONFIG", "").split(os.pathsep) if p), None)
    return Path(first) if first else Path(env.get("HOME", str(Path.home()))) / ".kube" / "config"


def current_context(kubeconfig: Path) -> str:
    """The kubeconfig's ``current-context``; ConfigError when there is none."""
    try:
        data = yaml.safe_load(kubeconfig.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"--natsnet-kubeconfig {kubeconfig}", f"cannot be read ({exc})") from None
    context = data.get("current-context") if isinstance(data, dict) else None
    if not context:
        raise ConfigError(f"--natsnet-kubeconfig {kubeconfig}", "has no current-context",
                          "pass --natsnet-context NAME")
    return str(context)


def nats_like_pod(namespace: str) -> Obj:
    """A pod as the chart's: the nats image, no securityContext (what a ``restricted`` Pod Security level refuses)."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "natsnet-preflight-nats", "namespace": namespace},
            "spec": {"containers": [{"name": "nats", "image": "nats:2.14.2-alpine"}]}}


def run_selector(run_id: str) -> str:
    return f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{RUN_ID_LABEL}={run_id}"


class ExistingProvider:
    """Uses the given (or current) context; deletes only namespaces carrying this run's label."""

    def __init__(
        self,
        settings: NatsnetSettings,
        run_id: str,
        *,
        runner: Runner | None = None,
        tools: dict[str, Tool] | None = None,
        client_factory: ClientFactory = KubeClient,
        env: Mapping[str, str] = os.environ,
    ) -> None:
        self._settings = settings
        self._run_id = run_id
        self._runner = runner or SubprocessRunner()
        self._tools = dict(tools or {})
        self._client_factory = client_factory
        self._client: KubeClient | None = None
        self._facts = ClusterFacts()
        self._owner = False
        self.kubeconfig = settings.kubeconfig or default_kubeconfig(env)
        self.context = settings.context

    def _tool(self, name: str) -> Tool:
        if name not in self._tools:
            explicit = {"helm": self._settings.helm, "kubectl": self._settings.kubectl}[name]
            self._tools[name] = resolve_tool(name, explicit, runner=self._runner)
        return self._tools[name]

    def _kubectl(self, *args: str) -> str:
        argv = kubectl_argv(self._tool("kubectl").path, self.kubeconfig, self.context, *args)
        return run_checked(self._runner, argv, timeout=60)

    @property
    def info(self) -> ProviderInfo:
        return ProviderInfo(
            name="existing",
            enforces_network_policy=None,
            supports_readiness_gates=True,
            supports_external_client=False,
            details=(f"context {self.context} of {self.kubeconfig}", self._tool("kubectl").label, *self._facts.notes),
            cluster_domain=self._facts.domain,
            dns_profile=self._facts.dns,
        )

    def start(self) -> ClusterAccess:
        if self._client is not None:
            return ClusterAccess(str(self.kubeconfig), self.context)
        if not self.kubeconfig.is_file():
            raise ConfigError(f"--natsnet-kubeconfig {self.kubeconfig}", "does not exist",
                              "pass --natsnet-kubeconfig FILE or set $KUBECONFIG")
        self.context = self.context or current_context(self.kubeconfig)
        self._kubectl("version", "-o", "json")
        client = self._client_factory(self.kubeconfig, self.context)
        self._facts = discover_facts(client)
        preflight_namespace = f"natsnet-{self._run_id}-preflight"
        labels = {MANAGED_BY_LABEL: MANAGED_BY_VALUE, RUN_ID_LABEL: self._run_id}
        pods = [probe_pod_manifest(ProbeTarget(preflight_namespace)), nats_like_pod(preflight_namespace)]
        problems = preflight_problems(client, preflight_namespace, labels, pods)
        if problems:
            raise ConfigError(f"--natsnet-provider=existing (context {self.context})", "; ".join(problems))
        self._client = client
        self._owner = True
        return ClusterAccess(str(self.kubeconfig), self.context)

    def attach(self, access: ClusterAccess) -> None:
        """A worker: the controller checked the context; sweeping the run's namespaces stays the controller's."""
        if self._client is not None:
            return
        self.kubeconfig, self.context = Path(access.kubeconfig), access.context
        self._client = self._client_factory(self.kubeconfig, self.context)
        self._facts = discover_facts(self._client)

    def deploy(self, cell: CellManifests, timeout: float) -> KubeDeployment:
        if self._client is None:
            self.start()
        assert self._client is not None
        helm = self._tool("helm").path if cell.chart else None
        tools = ClusterTools(self._tool("kubectl").path, helm, self.kubeconfig, self.context, self._runner)
        return install_cell(cell, self.info, self._client, tools, timeout)

    def stop(self, keep: bool) -> None:
        if self._client is None:
            return
        if self._owner and keep:
            print(f"natsnet: kept namespaces labelled {run_selector(self._run_id)} in context {self.context}")
        elif self._owner:
            self._kubectl("delete", "namespace", "--selector", run_selector(self._run_id), "--wait=false")
        self._client = None
