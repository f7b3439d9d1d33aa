"""The one kube path, as every provider takes it, against the sandbox's Kubernetes API with the real kubectl, helm
and kubernetes client: the kind provider with only the ``kind`` binary faked, the existing provider on a
kubeconfig, and a helm cell that is a real release (install, list, uninstall)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import SandboxApi, needs_sandbox

from pytest_natsnet import kube
from pytest_natsnet.assembly import assemble_cell
from pytest_natsnet.deployment import COMMAND_TIMEOUT, PROBE_CONTAINER, PROBE_DIR, ClusterTools, KubeDeployment
from pytest_natsnet.dnsprofile import CachePolicy, dns_profile
from pytest_natsnet.dnsprofile import corefile as corefile_for
from pytest_natsnet.errors import NatsnetError
from pytest_natsnet.kubeclient import KubeClient
from pytest_natsnet.matrix import Scenario, load_matrix, scenario_by_id
from pytest_natsnet.probe.model import NatsRequest, Outcome, ProbeBatch, by_key, parse_answer
from pytest_natsnet.providers.base import CLIENT_LABELS, CellManifests, ProbeTarget, ProviderInfo
from pytest_natsnet.providers.existing import ExistingProvider
from pytest_natsnet.providers.kind import KindProvider
from pytest_natsnet.providers.kubeapi import wait_until
from pytest_natsnet.settings import NatsnetSettings
from pytest_natsnet.tlsgen import new_ca
from pytest_natsnet.tools import Tool

pytestmark = [needs_sandbox]
MINI = Path(__file__).parent / "charts" / "mini"
FAKE_KIND = """\
import sys, yaml
args = sys.argv[1:]
if args[:2] == ["get", "clusters"]:
    print("natsnet")
elif args[:2] == ["export", "kubeconfig"]:
    target = next(a.split("=", 1)[1] for a in args if a.startswith("--kubeconfig="))
    config = yaml.safe_load(open({source!r}))
    config["contexts"][0]["name"] = config["current-context"] = "kind-natsnet"
    open(target, "w").write(yaml.safe_dump(config))
else:
    sys.exit(f"fake kind: {{args}} is not what the provider should run on an existing cluster")
"""


def _tool(name: str, path: str) -> Tool:
    version = {"kind": (0, 27, 0), "kubectl": (1, 35, 2), "helm": (4, 1, 4)}[name]
    return Tool(name, path, version, "test")


def _default_cell(run_id: str) -> CellManifests:
    cell, _ = assemble_cell(NatsnetSettings(), scenario_by_id(load_matrix(), "default"), run_id, "reference",
                            lambda: new_ca("helm cell"))
    return cell


def _namespaces(kubeconfig: Path) -> set[str]:
    """The namespaces that exist and are not being deleted."""
    return {kube.name(n) for n in KubeClient(kubeconfig).list("Namespace", None)
            if (n.get("status") or {}).get("phase") != "Terminating"}


def _client_connects(deployment: KubeDeployment) -> None:
    batch = ProbeBatch((NatsRequest("client", ("nats://nats:4222",)),))
    answer = by_key(parse_answer(deployment.probe(ProbeTarget(deployment.namespace), batch.to_json(), 60), batch))
    assert answer["client"].outcome is Outcome.OK, answer["client"].detail


def _probe_pod_was_prepared(deployment: KubeDeployment) -> None:
    """The cell's probe pod was started beside its servers: it runs and holds the probe program when install
    returns, before any probe asked for it."""
    pod = deployment.client.get("Pod", "natsnet-probe", deployment.namespace)
    assert pod is not None, f"no probe pod in {deployment.namespace} after the install"
    assert kube.labels(pod) == dict(CLIENT_LABELS)
    listed = deployment.client.exec("natsnet-probe", PROBE_CONTAINER, deployment.namespace, ["ls", PROBE_DIR],
                                     timeout=30)
    assert "probe.pyz" in listed.stdout.split(), listed


@pytest.fixture(scope="module")
def fake_kind(sandbox_api: SandboxApi, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("bin") / "kind"
    path.write_text(f"#!{sys.executable}\n" + FAKE_KIND.format(source=str(sandbox_api.kubeconfig)))
    path.chmod(0o755)
    return str(path)


def test_the_kind_provider_runs_the_kube_path_with_only_kind_faked(
    sandbox_api: SandboxApi, fake_kind: str, real_helm: str, tmp_path: Path
) -> None:
    tools = {"kind": _tool("kind", fake_kind), "kubectl": _tool("kubectl", sandbox_api.kubectl_bin),
             "helm": _tool("helm", real_helm)}
    provider = KindProvider(NatsnetSettings(), tmp_path / "run", tools=tools)
    access = provider.start()
    assert (access.context, access.created) == ("kind-natsnet", False)
    deployment = provider.deploy(_default_cell("kp1"), timeout=120)
    try:
        _probe_pod_was_prepared(deployment)
        _client_connects(deployment)
        assert len(deployment.objects("Pod")) >= 3
    finally:
        deployment.teardown()
    provider.stop(keep=False)  # found, not created: the cluster stays
    assert KubeClient(sandbox_api.kubeconfig).list("Namespace", None)


def test_the_existing_provider_sweeps_only_its_own_run(sandbox_api: SandboxApi, real_helm: str) -> None:
    client = KubeClient(sandbox_api.kubeconfig)
    client.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "users-own"}})
    tools = {"kubectl": _tool("kubectl", sandbox_api.kubectl_bin), "helm": _tool("helm", real_helm)}
    provider = ExistingProvider(NatsnetSettings(kubeconfig=sandbox_api.kubeconfig), "ep1", tools=tools)
    provider.start()
    deployment = provider.deploy(_default_cell("ep1"), timeout=120)
    deployment.create_namespace("natsnet-ep1-other")
    provider.stop(keep=False)  # the run's sweep: every namespace labelled with the run id, nothing else
    wait_until(lambda: (not {"natsnet-ep1-default", "natsnet-ep1-other"} & _namespaces(sandbox_api.kubeconfig),
                        str(sorted(_namespaces(sandbox_api.kubeconfig)))), 60, "the run's namespaces deleted",
               poll=0.5)
    assert "users-own" in _namespaces(sandbox_api.kubeconfig)


def test_a_failed_install_abandons_the_probe_pod_it_was_preparing(sandbox_api: SandboxApi, real_helm: str) -> None:
    """The probe pod is prepared beside the servers; when the install fails, install stops waiting for the probe
    pod and raises at once (the cell's evidence and teardown must not wait for the probe pod's own bound)."""
    tools = {"kubectl": _tool("kubectl", sandbox_api.kubectl_bin), "helm": _tool("helm", real_helm)}
    provider = ExistingProvider(NatsnetSettings(kubeconfig=sandbox_api.kubeconfig), "ap1", tools=tools)
    provider.start()
    started = time.monotonic()
    with pytest.raises(NatsnetError, match=r"timed out after 0\.5s") as failed:
        provider.deploy(_default_cell("ap1"), timeout=0.5)
    assert time.monotonic() - started < COMMAND_TIMEOUT / 2, "install waited for the probe pod's own bound"
    assert not [t.name for t in threading.enumerate() if t.name == "natsnet-probe-natsnet-ap1-default"]
    failed.value.natsnet_deployment.teardown()  # type: ignore[attr-defined]
    provider.stop(keep=False)


@pytest.fixture
def mini_values(tmp_path: Path) -> Path:
    values = tmp_path / "mini-values.yaml"
    values.write_text(yaml.safe_dump({"replicas": 2, "config": {"cluster": {"enabled": True}}}))
    return values


@pytest.fixture
def helm_cell(sandbox_api: SandboxApi, real_helm: str, mini_values: Path, tmp_path: Path) -> Iterator[KubeDeployment]:
    settings = NatsnetSettings(enabled=True, chart=str(MINI), chart_repo=None, chart_named=True, source="helm",
                               helm=real_helm)
    scenario = Scenario(id="mini", settings={}, values_files=(mini_values,), certs="good", origin="marker")
    cell, _ = assemble_cell(settings, scenario, "hp1", "helm", lambda: new_ca("helm cell"), workdir=tmp_path / "cell")
    assert cell.chart is not None and cell.chart.values_files
    info = ProviderInfo("test", True, True, False)
    tools = ClusterTools(sandbox_api.kubectl_bin, real_helm, sandbox_api.kubeconfig, None)
    deployment = KubeDeployment(cell, info, KubeClient(sandbox_api.kubeconfig), tools)
    deployment.install(120)
    yield deployment
    deployment.teardown()


def _releases(sandbox_api: SandboxApi, helm: str, namespace: str) -> list[dict[str, str]]:
    done = subprocess.run([helm, "list", "--kubeconfig", str(sandbox_api.kubeconfig), "-n", namespace, "-o", "json"],
                          capture_output=True, text=True, timeout=60, check=True)
    return list(json.loads(done.stdout or "[]"))


def test_a_helm_cell_is_a_real_release(helm_cell: KubeDeployment, sandbox_api: SandboxApi, real_helm: str) -> None:
    """Installed by helm, after the plugin's own objects: the TLS Secrets a certs cell's values mount."""
    secrets = {kube.name(s) for s in helm_cell.objects("Secret")}
    assert {"nats-ca", "nats-client-tls", "nats-route-tls"} <= secrets, secrets
    releases = _releases(sandbox_api, real_helm, helm_cell.namespace)
    assert [(r["name"], r["status"]) for r in releases] == [("nats", "deployed")]
    assert len([p for p in helm_cell.objects("Pod") if kube.name(p).startswith("nats-mini-")]) == 2
    helm_cell.teardown()
    assert _releases(sandbox_api, real_helm, helm_cell.namespace) == []


def test_the_cluster_domain_dns_cache_and_dns_pods_are_read_from_the_cluster(sandbox_api: SandboxApi) -> None:
    """The suites do not assume cluster.local or a DNS cache: the domain and the cache come from CoreDNS's Corefile
    (the sandbox publishes one, as kubeadm does), the DNS pods from the kube-dns Service's selector."""
    from pytest_natsnet.preflight import discover_facts

    client = KubeClient(sandbox_api.kubeconfig)
    facts = discover_facts(client)
    assert (facts.domain, facts.dns_selector) == ("cluster.local", (("k8s-app", "kube-dns"),))
    assert facts.notes == ("cluster DNS read from the cluster's Corefile: ttl 30, cache 30 except cluster.local",)
    assert facts.dns.cache is not None and not facts.dns.cache.cluster_zone  # the sandbox's default, kind-1.32
    corefile = client.get("ConfigMap", "coredns", "kube-system")
    assert corefile is not None
    def corefile_map(data: dict[str, str]) -> dict[str, object]:
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "coredns", "namespace": "kube-system"},
                "data": data}

    client.apply(corefile_map({"Corefile": corefile["data"]["Corefile"].replace("cluster.local", "corp.example")}))
    try:
        assert discover_facts(client).domain == "corp.example"
        client.apply(corefile_map({"Corefile": corefile_for(dns_profile("kind-1.31"), "corp.example")}))
        cached = discover_facts(client).dns  # Kubernetes 1.31's kubeadm Corefile: cluster answers cached 30 s
        assert (cached.ttl, cached.cache) == (30, CachePolicy(max_ttl=30, cluster_zone=True))
    finally:
        client.apply(corefile_map(dict(corefile["data"])))


def test_the_existing_provider_checks_rbac_and_pod_security_up_front(sandbox_api: SandboxApi, real_helm: str) -> None:
    """The preflight runs on start: every review is asked (the sandbox's certificate is cluster-admin: all allowed)
    and the probe and a chart-like pod pass a dry run in a short-lived namespace, which is removed."""
    tools = {"kubectl": _tool("kubectl", sandbox_api.kubectl_bin), "helm": _tool("helm", real_helm)}
    provider = ExistingProvider(NatsnetSettings(kubeconfig=sandbox_api.kubeconfig), "pf1", tools=tools)
    provider.start()
    assert provider.info.cluster_domain == "cluster.local"
    wait_until(lambda: ("natsnet-pf1-preflight" not in _namespaces(sandbox_api.kubeconfig), "still there"), 60,
               "the preflight namespace removed", poll=0.5)
    provider.stop(keep=False)
