"""The exact kind/kubectl/helm argv the kind and existing providers run, with a fake runner and reader."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from golden_data import rendered_path

from pytest_natsnet import kube
from pytest_natsnet.errors import NatsnetError
from pytest_natsnet.kubeclient import KubeClient
from pytest_natsnet.providers.base import (
    POD_GATE_CONDITION,
    ClusterAccess,
)
from pytest_natsnet.providers.existing import current_context, default_kubeconfig
from pytest_natsnet.providers.kind import KindProvider, kind_create_argv
from pytest_natsnet.providers.kubeapi import (
    WaitTimeout,
    pod_condition_patch,
    pods_needing_gate,
    statefulset_ready,
    statefulset_settled,
    wait_until,
)
from pytest_natsnet.resources import kind_configs_dir
from pytest_natsnet.settings import NatsnetSettings
from pytest_natsnet.tools import Tool

GOLDEN = rendered_path("default")
NS = "natsnet-r1-default"
LABELS = {kube.MANAGED_BY_LABEL: kube.MANAGED_BY_VALUE, kube.RUN_ID_LABEL: "r1",
          kube.SCENARIO_LABEL: "default"}
TOOLS = {
    "kind": Tool("kind", "/t/kind", (0, 27, 0), "PATH"),
    "kubectl": Tool("kubectl", "/t/kubectl", (1, 31, 0), "PATH"),
    "helm": Tool("helm", "/t/helm", (3, 16, 2), "PATH"),
}


class FakeRunner:
    def __init__(self, clusters: str = "", create: tuple[int, str] | BaseException = (0, "")) -> None:
        self.calls: list[tuple[list[str], str | None]] = []
        self.clusters = clusters
        self.create = create

    def run(
        self, argv: Sequence[str], *, input: str | None = None, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        self.calls.append((list(argv), input))
        out = ""
        if list(argv[1:3]) == ["create", "cluster"]:
            if isinstance(self.create, BaseException):
                raise self.create
            return subprocess.CompletedProcess(list(argv), self.create[0], "", self.create[1])
        if list(argv[1:]) == ["get", "clusters"]:
            out = self.clusters
        elif "get" in argv and "pod" in argv:
            conditions = [{"type": "Ready", "status": "False"}]
            out = json.dumps({"status": {"phase": "Running", "conditions": conditions}})
        return subprocess.CompletedProcess(list(argv), 0, out, "")

    @property
    def argvs(self) -> list[list[str]]:
        return [a for a, _ in self.calls]


class FakeCluster:
    def __init__(self, name: str, kubeconfig: Path, kind: Path, kubectl: Path) -> None:
        self.args = (name, kubeconfig, kind, kubectl)
        self.deleted = False

    def delete(self) -> None:
        self.deleted = True


class FakeClient:
    """The API as discover_facts reads it (a cluster with a kube-dns Service and no Corefile); these tests are
    about kind's argv. The kube path itself is tested against the sandbox API (test_kube_path.py)."""

    def get(self, kind: str, name: str, namespace: str | None) -> None:
        return None

    def list(self, kind: str, namespace: str | None) -> list[dict[str, Any]]:
        return [{"metadata": {"name": "kube-dns"}, "spec": {"selector": {"k8s-app": "kube-dns"}}}]


def _kind(tmp_path: Path, runner: FakeRunner) -> tuple[KindProvider, list[FakeCluster]]:
    made: list[FakeCluster] = []

    def factory(*args: Any) -> FakeCluster:
        made.append(FakeCluster(*args))
        return made[-1]

    provider = KindProvider(NatsnetSettings(), tmp_path / "run", runner=runner, tools=dict(TOOLS),
                            cluster_factory=factory, client_factory=lambda k, c: cast(KubeClient, FakeClient()))
    return provider, made


def test_kind_creates_cluster_with_our_binaries_and_isolated_kubeconfig(tmp_path: Path) -> None:
    runner = FakeRunner(clusters="other\n")
    provider, made = _kind(tmp_path, runner)
    access = provider.start()
    assert provider.start() == access
    kubeconfig = tmp_path / "run" / "kubeconfig"
    assert runner.argvs == [["/t/kind", "get", "clusters"],
                            kind_create_argv("/t/kind", "natsnet", kubeconfig, kind_configs_dir() / "default.yaml")]
    assert access == ClusterAccess(str(kubeconfig), "kind-natsnet", created=True)
    (cluster,) = made
    assert cluster.args == ("natsnet", kubeconfig, Path("/t/kind"), Path("/t/kubectl"))
    assert provider.info.enforces_network_policy is True
    provider.stop(keep=False)
    assert cluster.deleted


def test_a_cluster_that_appeared_after_the_check_is_used_not_owned(tmp_path: Path) -> None:
    """Another process created the cluster between ``kind get clusters`` and our create: not ours to delete."""
    runner = FakeRunner(clusters="", create=(1, 'ERROR: failed to create cluster: node(s) already exist for a '
                                                'cluster with the name "natsnet"'))
    provider, made = _kind(tmp_path, runner)
    assert provider.start().created is False
    assert runner.argvs[-1][:3] == ["/t/kind", "export", "kubeconfig"]
    provider.stop(keep=False)
    assert not made[0].deleted


@pytest.mark.parametrize("failure", [(1, "ERROR: failed to create cluster: boom"), KeyboardInterrupt()])
def test_a_failed_or_interrupted_creation_deletes_the_half_made_cluster(
    tmp_path: Path, failure: tuple[int, str] | BaseException
) -> None:
    runner = FakeRunner(clusters="", create=failure)
    provider, _ = _kind(tmp_path, runner)
    expected = KeyboardInterrupt if isinstance(failure, BaseException) else NatsnetError
    with pytest.raises(expected) as raised:
        provider.start()
    assert runner.argvs[-1] == ["/t/kind", "delete", "cluster", "--name=natsnet",
                                f"--kubeconfig={tmp_path / 'run' / 'kubeconfig'}"]
    if expected is NatsnetError:
        assert "\n" not in str(raised.value) and "boom" in str(raised.value)


def test_a_worker_attaches_with_its_own_kubeconfig_and_never_deletes(tmp_path: Path) -> None:
    owner_kubeconfig = tmp_path / "owner-kubeconfig"
    owner_kubeconfig.write_text("apiVersion: v1\n")
    runner = FakeRunner()
    provider, made = _kind(tmp_path, runner)
    provider.attach(ClusterAccess(str(owner_kubeconfig), "kind-natsnet", created=True))
    copy = tmp_path / "run" / "kubeconfig"
    assert copy.read_text() == "apiVersion: v1\n" and copy.stat().st_mode & 0o777 == 0o600
    provider.stop(keep=False)
    assert runner.argvs == [] and made == []


def test_kind_reuses_a_running_cluster_and_never_deletes_it(tmp_path: Path) -> None:
    runner = FakeRunner(clusters="natsnet\n")
    provider, made = _kind(tmp_path, runner)
    provider.start()
    kubeconfig = tmp_path / "run" / "kubeconfig"
    assert runner.argvs[-1] == [
        "/t/kind", "export", "kubeconfig", "--name=natsnet", f"--kubeconfig={kubeconfig}"]
    provider.stop(keep=False)
    assert not made[0].deleted


def test_old_kind_does_not_enforce_network_policy(tmp_path: Path) -> None:
    tools = {**TOOLS, "kind": Tool("kind", "/t/kind", (0, 23, 0), "--natsnet-kind")}
    provider = KindProvider(NatsnetSettings(), tmp_path, runner=FakeRunner(), tools=tools)
    assert provider.info.enforces_network_policy is False


@pytest.mark.parametrize(("sts", "ready"), [
    ({"metadata": {"generation": 2}, "spec": {"replicas": 3}, "status": {"observedGeneration": 2,
                                                                          "readyReplicas": 3}}, True),
    ({"metadata": {"generation": 2}, "spec": {"replicas": 3}, "status": {"observedGeneration": 1,
                                                                          "readyReplicas": 3}}, False),
    ({"metadata": {"generation": 1}, "spec": {"replicas": 3}, "status": {"observedGeneration": 1,
                                                                          "readyReplicas": 2}}, False),
    ({"metadata": {"generation": 1}, "spec": {"replicas": 3}, "status": {}}, False),
])
def test_statefulset_ready(sts: dict[str, Any], ready: bool) -> None:
    assert statefulset_ready(sts) is ready


def test_pod_condition_patch_replaces_or_appends() -> None:
    pod = {"status": {"conditions": [{"type": "Ready"}, {"type": POD_GATE_CONDITION, "status": "True"}]}}
    assert pod_condition_patch(pod, POD_GATE_CONDITION, False, "t")[0] == {
        "op": "replace", "path": "/status/conditions/1",
        "value": {"type": POD_GATE_CONDITION, "status": "False", "lastTransitionTime": "t"}}
    assert pod_condition_patch({"status": {}}, "x", True, "t")[0]["path"] == "/status/conditions"


def test_pods_needing_gate() -> None:
    gate = {"readinessGates": [{"conditionType": POD_GATE_CONDITION}]}
    pods = [
        {"metadata": {"name": "a"}, "spec": gate, "status": {"phase": "Running"}},
        {"metadata": {"name": "b"}, "spec": gate, "status": {"phase": "Pending"}},
        {"metadata": {"name": "c"}, "spec": gate,
         "status": {"phase": "Running", "conditions": [{"type": POD_GATE_CONDITION, "status": "False"}]}},
        {"metadata": {"name": "d"}, "spec": {}, "status": {"phase": "Running"}},
    ]
    assert pods_needing_gate(pods) == ["a"]


def test_wait_until_reports_what_it_waited_for() -> None:
    with pytest.raises(WaitTimeout, match="waiting for the moon; last seen: still dark"):
        wait_until(lambda: (False, "still dark"), timeout=0.2, what="the moon", poll=0.05)
    wait_until(lambda: (True, "ok"), timeout=1, what="x", poll=0.05)


def test_existing_provider_kubeconfig_resolution(tmp_path: Path) -> None:
    assert default_kubeconfig({"KUBECONFIG": f"{tmp_path}/a:{tmp_path}/b"}) == tmp_path / "a"
    assert default_kubeconfig({"HOME": "/h"}) == Path("/h/.kube/config")
    (tmp_path / "a").write_text("apiVersion: v1\n")
    from pytest_natsnet.errors import ConfigError

    with pytest.raises(ConfigError, match="has no current-context; pass --natsnet-context NAME"):
        current_context(tmp_path / "a")


def _pod(name: str, ready: bool = True, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-29T00:00:00Z"
    return {"metadata": meta, "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


READY_STS = {"metadata": {"name": "nats", "generation": 1}, "spec": {"replicas": 3},
             "status": {"observedGeneration": 1, "readyReplicas": 3}}


@pytest.mark.parametrize(("pods", "settled", "state"), [
    ([_pod("nats-0"), _pod("nats-1"), _pod("nats-2")], True, "every pod present and Ready"),
    # readyReplicas still says 3 while nats-1 is in its lame duck (terminating, still Ready): not settled
    ([_pod("nats-0"), _pod("nats-1", deleting=True), _pod("nats-2")], False, "nats-1 terminating"),
    ([_pod("nats-0"), _pod("nats-2")], False, "nats-1 missing"),
    ([_pod("nats-0"), _pod("nats-1", ready=False), _pod("nats-2")], False, "nats-1 not Ready"),
])
def test_statefulset_settled_needs_every_ordinal_present_not_terminating_and_ready(
    pods: list[dict[str, Any]], settled: bool, state: str
) -> None:
    done, seen = statefulset_settled(READY_STS, pods)
    assert done is settled and state in seen


def test_statefulset_settled_waits_for_the_controller_first() -> None:
    stale = {**READY_STS, "status": {"observedGeneration": 0, "readyReplicas": 3}}
    assert statefulset_settled(stale, [_pod("nats-0"), _pod("nats-1"), _pod("nats-2")]) == (
        False, "StatefulSet nats generation 1 observed 0, ready 3/3")


def test_default_kind_config_pins_the_node_image_the_default_dns_profile_models() -> None:
    """One pin for both: kind-configs/default.yaml's node image is dnsprofile.KIND_NODE_IMAGE (Kubernetes 1.37,
    whose kubeadm Corefile no longer caches the cluster zone: kubernetes PR #128359, from 1.32), and the sandbox's
    default DNS profile is the one for that version; the pinned kind download is the release that built it."""
    from pytest_natsnet.dnsprofile import DEFAULT_PROFILE, KIND_NODE_IMAGE, dns_profile
    from pytest_natsnet.tools import pinned_release

    config = yaml.safe_load((kind_configs_dir() / "default.yaml").read_text())
    images = {node.get("image") for node in config["nodes"]}
    assert images == {KIND_NODE_IMAGE}
    minor = int(KIND_NODE_IMAGE.split(":v", 1)[1].split(".")[1])
    profile = dns_profile(DEFAULT_PROFILE)
    assert profile.cache is not None and profile.cache.cluster_zone == (minor < 32), profile
    assert "@sha256:" in KIND_NODE_IMAGE
    assert pinned_release("kind", "linux", "amd64").version == "v0.33.0"


def _phase(name: str, phase: str, reason: str | None = None, message: str | None = None) -> dict[str, Any]:
    pod = _pod(name, ready=False)
    pod["status"].update({"phase": phase, **({"reason": reason} if reason else {}),
                          **({"message": message} if message else {})})
    return pod


def test_statefulset_running_waits_for_every_pod_to_run_ready_or_not() -> None:
    """What a cell that declares it never becomes Ready is installed to."""
    from pytest_natsnet.providers.kubeapi import statefulset_running

    unready = {**READY_STS, "status": {"observedGeneration": 1, "readyReplicas": 0}}
    running = [_phase(f"nats-{i}", "Running") for i in range(3)]
    assert statefulset_running(unready, running) == (True, "StatefulSet nats: every pod present and running")
    pending = [*running[:2], _phase("nats-2", "Pending", "ContainerCreating", 'persistentvolumeclaim "x" not found')]
    assert statefulset_running(unready, pending) == (
        False, 'nats-2 not running (Pending: ContainerCreating: persistentvolumeclaim "x" not found)')


def test_pods_that_cannot_start_are_one_line_per_reason() -> None:
    from pytest_natsnet.providers.kubeapi import pods_that_cannot_start

    pods = [_phase("nats-1", "Pending", "VolumeNotEmulated", "volume h"),
            _phase("nats-0", "Pending", "VolumeNotEmulated", "volume h"),
            _phase("nats-2", "Pending", "ContainerCreating", "waiting"),
            _phase("box", "Pending", "SandboxError", "kubelet failed: OSError: x")]
    assert pods_that_cannot_start(pods) == ["box: SandboxError: kubelet failed: OSError: x",
                                            "nats-0, nats-1: VolumeNotEmulated: volume h"]


def test_undecided_pods_are_the_missing_and_the_pending_without_a_reason() -> None:
    from pytest_natsnet.providers.kubeapi import undecided_pods

    sts = {"kind": "StatefulSet", "metadata": {"name": "nats"}, "spec": {"replicas": 4}}
    pods = [
        {"metadata": {"name": "nats-0"}, "status": {"phase": "Pending", "reason": "VolumeNotEmulated"}},
        {"metadata": {"name": "nats-1"}, "status": {"phase": "Running"}},
        {"metadata": {"name": "nats-2"}, "status": {"phase": "Pending"}},
        {"metadata": {"name": "natsnet-probe"}, "status": {"phase": "Pending"}},
    ]
    assert undecided_pods([sts], pods) == ["nats-2", "nats-3"]
    assert undecided_pods([], pods) == []
