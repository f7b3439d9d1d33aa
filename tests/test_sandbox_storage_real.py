"""A real sandbox cluster with the official chart's JetStream render: claims from ``volumeClaimTemplates`` bound
by the default class, a replaced pod that gets its data back, claims and volumes removed with the namespace;
and objects the sandbox cannot handle, each contained to itself while the rest of the cluster goes on.

Needs root with ``ip``, ``nft``, ``bwrap`` and ``nsenter``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import yaml
from golden_data import RENDERED

from pytest_natsnet import kube
from pytest_natsnet.kube import Obj
from pytest_natsnet.providers.kubeapi import pods_that_cannot_start
from pytest_natsnet.sandbox import netns
from pytest_natsnet.sandbox.cluster import PROBE_IMAGE, SANDBOX_ERROR, VOLUME_NOT_EMULATED, SandboxCluster
from pytest_natsnet.sandbox.controllers import pod_is_ready

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(c) for c in ("ip", "nft", "bwrap", "nsenter")),
    reason="needs root with ip, nft, bwrap and nsenter (network namespaces)",
)

NATS_SERVER = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "nats-server"
NS = "natsnet"
READY_TIMEOUT = 45.0
T = TypeVar("T")


def eventually(observe: Callable[[], T], done: Callable[[T], bool], timeout: float, poll: float = 0.1) -> T:
    """Polls until ``done(observe())``; returns the last observation (the caller asserts on it)."""
    deadline = time.monotonic() + timeout
    while True:
        value = observe()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(poll)


def jetstream_objects() -> list[Obj]:
    docs = yaml.safe_load_all((RENDERED / "jetstream.yaml").read_text())
    return [o for o in docs if o and not (o["metadata"].get("annotations") or {}).get("helm.sh/hook")]


def pods(cluster: SandboxCluster, namespace: str = NS) -> dict[str, Obj]:
    cluster.check()
    return {kube.name(p): p for p in cluster.list_objects("Pod", namespace)}


def servers_ready(cluster: SandboxCluster) -> bool:
    found = pods(cluster)
    return all(f"nats-{i}" in found and pod_is_ready(found[f"nats-{i}"]) for i in range(3))


def run_in_pod(cluster: SandboxCluster, pod: str, command: list[str]) -> str:
    argv = cluster.exec_argv(NS, pod, "nats", command)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    assert done.returncode == 0, f"{command} in {pod}: {done.stdout}{done.stderr}"
    return done.stdout


def warnings_of(cluster: SandboxCluster, namespace: str, obj_name: str, reason: str) -> list[str]:
    return [e["message"] for e in cluster.list_objects("Event", namespace)
            if e["involvedObject"]["name"] == obj_name and e["reason"] == reason and e["type"] == "Warning"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxCluster]:
    found = shutil.which("nats-server")
    binary = NATS_SERVER if NATS_SERVER.is_file() else Path(found or "nats-server")
    sandbox = SandboxCluster(f"ts{os.getpid()}", tmp_path_factory.mktemp("sandbox-storage"), binary, "fast")
    sandbox.start()
    try:
        sandbox.apply(jetstream_objects(), NS)
        ready = eventually(lambda: servers_ready(sandbox), bool, READY_TIMEOUT)
        assert ready, f"JetStream StatefulSet not ready within {READY_TIMEOUT:g}s: " + str(
            {n: (p["status"].get("phase"), p["status"].get("message")) for n, p in pods(sandbox).items()})
        yield sandbox
    finally:
        sandbox.stop()
        left = [n for n in netns.list_netns() if f"-{sandbox.id}-" in n]
        shutil.rmtree(sandbox.run_dir, ignore_errors=True)
        assert left == [], f"network namespaces left behind: {left}"


def test_each_ordinal_gets_a_bound_claim_of_the_default_class_mounted_at_the_store(cluster: SandboxCluster) -> None:
    claims = {kube.name(c): c for c in cluster.list_objects("PersistentVolumeClaim", NS)}
    assert sorted(claims) == ["nats-js-nats-0", "nats-js-nats-1", "nats-js-nats-2"]
    volumes = {kube.name(v): v for v in cluster.list_objects("PersistentVolume", None)}
    for ordinal in range(3):
        claim = claims[f"nats-js-nats-{ordinal}"]
        assert claim["status"]["phase"] == "Bound" and claim["spec"]["storageClassName"] == "standard"
        assert claim["metadata"]["labels"] == {"app.kubernetes.io/component": "nats", "app.kubernetes.io/instance":
                                               "nats", "app.kubernetes.io/name": "nats"}
        volume = volumes[claim["spec"]["volumeName"]]
        assert volume["spec"]["claimRef"]["uid"] == claim["metadata"]["uid"]
        directory = Path(volume["spec"]["hostPath"]["path"])
        assert directory.parent == cluster.run_dir / "storage"
        assert (directory / "jetstream").is_dir(), "nats-server keeps its store in the claim's directory"
        pod = pods(cluster)[f"nats-{ordinal}"]
        assert {"name": "nats-js", "persistentVolumeClaim": {"claimName": f"nats-js-nats-{ordinal}"}} in (
            pod["spec"]["volumes"])


def test_a_replaced_pod_gets_its_claim_and_data_back(cluster: SandboxCluster) -> None:
    run_in_pod(cluster, "nats-2", ["sh", "-c", "echo kept > /data/marker"])
    old = pods(cluster)["nats-2"]
    claim_before = kube.find(cluster.list_objects("PersistentVolumeClaim", NS), "PersistentVolumeClaim",
                             "nats-js-nats-2")
    assert claim_before is not None
    cluster.delete("Pod", "nats-2", NS, grace=0)

    def replacement() -> Obj | None:
        pod = pods(cluster).get("nats-2")
        if pod is None or pod["metadata"]["uid"] == old["metadata"]["uid"]:
            return None
        statuses = pod["status"].get("containerStatuses") or []
        return pod if any("running" in s["state"] for s in statuses if s["name"] == "nats") else None

    new = eventually(replacement, lambda pod: pod is not None, 20)
    assert new is not None, "nats-2 was not recreated and running within 20 s"
    assert new["status"]["podIP"] != old["status"]["podIP"]
    assert run_in_pod(cluster, "nats-2", ["cat", "/data/marker"]) == "kept\n"
    claim_after = kube.find(cluster.list_objects("PersistentVolumeClaim", NS), "PersistentVolumeClaim",
                            "nats-js-nats-2")
    assert claim_after is not None and claim_after["metadata"]["uid"] == claim_before["metadata"]["uid"]
    assert claim_after["spec"]["volumeName"] == claim_before["spec"]["volumeName"]
    assert eventually(lambda: servers_ready(cluster), bool, READY_TIMEOUT), "nats-2 not Ready again"


def test_a_volume_kind_the_sandbox_lacks_stops_that_pod_only(cluster: SandboxCluster) -> None:
    host_path = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "host-path"},
                 "spec": {"terminationGracePeriodSeconds": 0,
                          "containers": [{"name": "main", "image": PROBE_IMAGE, "command": ["sleep", "60"],
                                          "volumeMounts": [{"name": "h", "mountPath": "/h"}]}],
                          "volumes": [{"name": "h", "hostPath": {"path": "/var"}}]}}
    cluster.apply([host_path], "odd-volume")
    try:
        pod = eventually(lambda: pods(cluster, "odd-volume")["host-path"],
                         lambda p: p["status"].get("reason") == VOLUME_NOT_EMULATED, 5)
        assert pod["status"]["phase"] == "Pending" and "podIP" not in pod["status"]
        assert pods_that_cannot_start([pod]) == [
            'host-path: VolumeNotEmulated: volume "h" of type hostPath is not emulated by the sandbox (it has '
            "configMap, secret, emptyDir, persistentVolumeClaim): run this cell on kind"]
        assert warnings_of(cluster, "odd-volume", "host-path", "FailedMount")
        assert servers_ready(cluster)  # everything else goes on
    finally:
        cluster.delete("Pod", "host-path", "odd-volume", grace=0)
    assert eventually(lambda: "host-path" in pods(cluster, "odd-volume"), lambda left: not left, 5) is False


def test_an_object_whose_reconciliation_fails_is_contained_to_itself(cluster: SandboxCluster) -> None:
    """A StatefulSet the controller cannot read: a Warning Event on it, every other object reconciled (a pod
    applied after it runs), the loop alive; fixed, it is reconciled."""
    broken = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "broken"},
              "spec": {"replicas": "three", "serviceName": "x", "selector": {"matchLabels": {"app": "b"}},
                       "template": {"metadata": {"labels": {"app": "b"}},
                                    "spec": {"terminationGracePeriodSeconds": 0, "containers": [
                                        {"name": "main", "image": PROBE_IMAGE, "command": ["sleep", "60"]}]}}}}
    after = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "after"},
             "spec": {"terminationGracePeriodSeconds": 0,
                      "containers": [{"name": "main", "image": PROBE_IMAGE, "command": ["sleep", "60"]}]}}
    cluster.apply([broken], "contained")
    try:
        errors = eventually(lambda: warnings_of(cluster, "contained", "broken", SANDBOX_ERROR), bool, 5)
        assert errors and errors[0].startswith("statefulset controller failed: ValueError: invalid literal for int()")
        cluster.apply([after], "contained")
        running = eventually(lambda: pods(cluster, "contained").get("after", {}).get("status", {}).get("phase"),
                             lambda phase: phase == "Running", 10)
        assert running == "Running"
        cluster.check()
        assert len(warnings_of(cluster, "contained", "broken", SANDBOX_ERROR)) == 1, "reported once, not per tick"
        fixed = {**broken, "spec": {**broken["spec"], "replicas": 1}}
        cluster.apply([fixed], "contained")
        made = eventually(lambda: sorted(pods(cluster, "contained")), lambda names: "broken-0" in names, 10)
        assert "broken-0" in made, "a changed object is tried again"
    finally:
        cluster.delete("Namespace", "contained", "", grace=0)


def test_a_network_policy_that_cannot_be_programmed_is_contained_to_itself(cluster: SandboxCluster) -> None:
    """A NetworkPolicy whose rules do not compile (an ipBlock that is no CIDR; the real API server would refuse it):
    a Warning Event on it, the network programmed without it, the loop alive."""
    bad = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "bad-cidr"},
           "spec": {"podSelector": {}, "policyTypes": ["Ingress"],
                    "ingress": [{"from": [{"ipBlock": {"cidr": "not-a-cidr"}}]}]}}
    cluster.apply([bad], "bad-policy")
    try:
        errors = eventually(lambda: warnings_of(cluster, "bad-policy", "bad-cidr", SANDBOX_ERROR), bool, 5)
        assert errors and errors[0].startswith("network policy failed: ConfigError: NetworkPolicy bad-policy/bad-cidr")
        time.sleep(1.5)  # another full reconcile: still one report, still running
        cluster.check()
        assert len(warnings_of(cluster, "bad-policy", "bad-cidr", SANDBOX_ERROR)) == 1
        assert servers_ready(cluster)
    finally:
        cluster.delete("Namespace", "bad-policy", "", grace=0)


def test_a_deleted_namespace_takes_its_claims_and_volumes_once_no_pod_uses_them(cluster: SandboxCluster) -> None:
    """pvc-protection keeps a claim a running pod mounts (Terminating); the namespace's deletion stops the pods,
    then removes the claims, the released volumes and their directories."""
    cluster.delete("PersistentVolumeClaim", "nats-js-nats-0", NS)
    time.sleep(0.5)
    claim = kube.find(cluster.list_objects("PersistentVolumeClaim", NS), "PersistentVolumeClaim", "nats-js-nats-0")
    assert claim is not None and claim["metadata"].get("deletionTimestamp"), "still mounted by nats-0: protected"
    directories = [Path(v["spec"]["hostPath"]["path"]) for v in cluster.list_objects("PersistentVolume", None)]
    assert len(directories) == 3 and all(d.is_dir() for d in directories)
    cluster.delete("Namespace", NS, "", grace=0)
    gone = eventually(lambda: (cluster.list_objects("PersistentVolume", None),
                               [n for n in cluster.list_objects("Namespace", None) if kube.name(n) == NS]),
                      lambda state: state == ([], []), 30)
    assert gone == ([], []), f"left: {gone}"
    assert not any(d.exists() for d in directories)
