"""The sandbox provider through the kube path: ``natsnet sandbox up`` in its own process, a cell installed with
real kubectl (server-side apply) and observed, probed and torn down through the Kubernetes API; keep, owner death
and Ctrl-C leave nothing behind (or, kept, a cluster the user can reach)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pytest_natsnet import kube
from pytest_natsnet.assembly import assemble_cell
from pytest_natsnet.deployment import KubeDeployment, probe_pod_manifest
from pytest_natsnet.kubeclient import KubeClient
from pytest_natsnet.matrix import load_matrix, scenario_by_id
from pytest_natsnet.probe.model import DnsRequest, Outcome, ProbeBatch, TcpRequest, by_key, parse_answer
from pytest_natsnet.providers.base import POD_GATE_CONDITION, CellManifests, ClusterAccess, ProbeTarget
from pytest_natsnet.providers.kubeapi import wait_until
from pytest_natsnet.providers.sandbox_provider import (
    SandboxProvider,
    SandboxUnavailable,
    missing_requirements,
    up_argv,
)
from pytest_natsnet.sandbox import netns
from pytest_natsnet.settings import NatsnetSettings
from pytest_natsnet.tlsgen import new_ca

NAMESPACE = "natsnet-tp-default"


@pytest.mark.parametrize(
    ("euid", "absent", "expected"),
    [
        (0, set(), []),
        (1000, set(), ["the sandbox needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN): run as root, or use "
                       "--natsnet-provider=kind"]),
        (0, {"bwrap", "nft"},
         ["missing Debian packages for the sandbox: apt-get install -y bubblewrap nftables"]),
        (0, {"ip"}, ["missing Debian packages for the sandbox: apt-get install -y iproute2"]),
    ],
)
def test_missing_requirements(
    monkeypatch: pytest.MonkeyPatch, euid: int, absent: set[str], expected: list[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: euid)
    monkeypatch.setattr(shutil, "which", lambda cmd: None if cmd in absent else f"/usr/bin/{cmd}")
    assert missing_requirements() == expected


def test_start_refuses_in_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(shutil, "which", lambda cmd: None)
    with pytest.raises(SandboxUnavailable) as raised:
        SandboxProvider(NatsnetSettings(), tmp_path).start()
    message = str(raised.value)
    assert "\n" not in message
    assert "needs root" in message
    assert "apt-get install -y bubblewrap busybox-static iproute2 nftables util-linux" in message


def test_the_dns_profile_is_named_in_the_header_and_checked(tmp_path: Path) -> None:
    provider = SandboxProvider(NatsnetSettings(sandbox_dns="fast"), tmp_path)
    assert "sandbox DNS profile fast: debugging" in "\n".join(provider.info.details)
    assert up_argv(tmp_path, tmp_path / "r", 7, "fast")[-4:] == ["--owner-pid", "7", "--dns-profile", "fast"]
    with pytest.raises(ValueError, match="unknown DNS profile 'nope'"):
        SandboxProvider(NatsnetSettings(sandbox_dns="nope"), tmp_path)


def test_a_worker_attaches_with_its_own_kubeconfig_copy(tmp_path: Path) -> None:
    owner = tmp_path / "owner-kubeconfig"
    owner.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "clusters": [], "contexts": [],
                                     "users": [], "current-context": ""}))
    provider = SandboxProvider(NatsnetSettings(), tmp_path / "worker")
    try:
        provider.attach(ClusterAccess(str(owner), None, created=True))
    except Exception as error:  # the kubernetes client refuses an empty config: the copy is what we check
        assert "current-context" in str(error) or "context" in str(error)
    copies = list((tmp_path / "worker").glob("kubeconfig-*"))
    assert len(copies) == 1 and copies[0].stat().st_mode & 0o777 == 0o600
    provider.stop(keep=False)  # attached: nothing of the owner's is touched
    assert owner.exists()


# --- a real sandbox, through the kube path --------------------------------------------------------------


def _needs_sandbox() -> None:
    if missing_requirements():
        pytest.skip("; ".join(missing_requirements()))


def _cell() -> CellManifests:
    """The matrix's default cell as a run assembles it (the reference rendering, with the readiness gate)."""
    scenario = scenario_by_id(load_matrix(), "default")
    cell, _ = assemble_cell(NatsnetSettings(), scenario, "tp", "reference", lambda: new_ca("unused"))
    assert cell.namespace == NAMESPACE
    return cell


def _leftovers(directory: Path, sandbox_id: str) -> list[str]:
    found = [f"netns {n}" for n in netns.list_netns() if n.startswith(f"natsnet-{sandbox_id}-")]
    return found + ([f"directory {directory}"] if directory.exists() else [])


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProvider]:
    _needs_sandbox()
    provider = SandboxProvider(NatsnetSettings(sandbox_dns="kind-1.32"), tmp_path_factory.mktemp("run"))
    provider.start()
    try:
        yield provider
    finally:
        provider.stop(keep=False)


@pytest.fixture(scope="module")
def deployed(provider: SandboxProvider) -> Iterator[KubeDeployment]:
    deployment = provider.deploy(_cell(), timeout=90)
    try:
        yield deployment
    finally:
        deployment.teardown()


def _probe(deployment: KubeDeployment, target: ProbeTarget, *requests: object) -> dict[str, object]:
    batch = ProbeBatch(tuple(requests))  # type: ignore[arg-type]
    return by_key(parse_answer(deployment.probe(target, batch.to_json(), 60), batch))


def test_a_cell_installs_through_the_api_and_is_observed(
    deployed: KubeDeployment, provider: SandboxProvider, tmp_path: Path, real_kubectl: str
) -> None:
    assert [s["status"]["readyReplicas"] for s in deployed.objects("StatefulSet")] == [3]
    namespace = kube.find(deployed.objects("Namespace"), "Namespace", NAMESPACE) or {}
    assert kube.labels(namespace)["natsnet.io/run-id"] == "tp"
    assert "Starting nats-server" in deployed.logs("nats-0")
    listed = subprocess.run([real_kubectl, "--kubeconfig", str(provider.start().kubeconfig), "get", "pods", "-n",
                             NAMESPACE, "-o", "json"], capture_output=True, text=True, timeout=60, check=True)
    assert {"nats-0", "nats-1", "nats-2"} <= {p["metadata"]["name"] for p in json.loads(listed.stdout)["items"]}
    deployed.collect(tmp_path / "evidence")
    names = {p.name for p in (tmp_path / "evidence").iterdir()}
    assert {f"{NAMESPACE}-Pod.yaml", f"{NAMESPACE}-StatefulSet.yaml", f"{NAMESPACE}-nats-0-nats.log"} <= names


def test_probes_run_inside_the_cluster_network_and_outside_it(deployed: KubeDeployment) -> None:
    service = f"nats.{NAMESPACE}.svc.cluster.local."
    cluster_ip = str(kube.spec(kube.find(deployed.objects("Service"), "Service", "nats") or {})["clusterIP"])
    inside = _probe(deployed, ProbeTarget(NAMESPACE, {"app": "client"}), DnsRequest("dns", service, "A"),
                    TcpRequest("tcp", cluster_ip, 4222, timeout=2.0))
    assert inside["dns"].outcome is Outcome.NOERROR and inside["tcp"].outcome is Outcome.ALLOWED
    pod_ip = str((kube.find(deployed.objects("Pod"), "Pod", "nats-0") or {})["status"]["podIP"])
    outside = _probe(deployed, ProbeTarget(NAMESPACE, {"app": "client"}, external=True),
                     DnsRequest("dns", service, "A", timeout=2.0), TcpRequest("tcp", cluster_ip, 4222, timeout=2.0),
                     TcpRequest("pod", pod_ip, 4222, timeout=2.0))
    assert outside["dns"].outcome is not Outcome.NOERROR, "cluster DNS answered a client outside the cluster"
    assert outside["tcp"].outcome is not Outcome.ALLOWED, "a Service IP was reachable from outside the cluster"
    assert outside["pod"].outcome is not Outcome.ALLOWED, "a pod IP was reachable from outside the cluster"


def test_a_readiness_gate_flips_through_a_status_patch(deployed: KubeDeployment) -> None:
    def ready(expected: bool) -> tuple[bool, str]:
        pod = kube.find(deployed.objects("Pod"), "Pod", "nats-2") or {}
        conditions = {c["type"]: c["status"] for c in (pod.get("status") or {}).get("conditions") or []}
        return conditions.get("Ready") == ("True" if expected else "False"), str(conditions)

    deployed.set_pod_condition("nats-2", POD_GATE_CONDITION, False)
    wait_until(lambda: ready(False), 30, "nats-2 not Ready", poll=0.2)
    deployed.set_pod_condition("nats-2", POD_GATE_CONDITION, True)
    wait_until(lambda: ready(True), 30, "nats-2 Ready again", poll=0.2)
    deployed.wait_ready(30)


def test_kubectl_cp_into_a_missing_directory_fails_as_on_a_real_cluster(
    deployed: KubeDeployment, provider: SandboxProvider, real_kubectl: str
) -> None:
    """Issue #10, first-run bug 1: the old probe set-up copied the program to /natsnet/program.py with kubectl cp,
    which runs ``tar -xmf - -C /natsnet`` in a stock python image where /natsnet does not exist. The sandbox's
    image is faithful, so that fails here too; the probe now unpacks the program in one exec (tests above)."""
    target = ProbeTarget(NAMESPACE, {"app": "cp-check"}, name="cp-check")
    client = KubeClient(provider.start().kubeconfig)
    client.apply(probe_pod_manifest(target))

    def running() -> tuple[bool, str]:
        pod = client.get("Pod", "cp-check", NAMESPACE) or {}
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        return any((s.get("state") or {}).get("running") for s in statuses), str(statuses)

    wait_until(running, 60, "cp-check running", poll=0.2)
    program = Path(__file__).resolve().parent.parent / "pytest_natsnet" / "probe" / "program.py"
    done = subprocess.run([real_kubectl, "--kubeconfig", str(provider.start().kubeconfig), "cp", "-n", NAMESPACE,
                           str(program), "cp-check:/natsnet/program.py", "-c", "probe"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0 and "/natsnet" in done.stderr, done.stderr
    client.delete("Pod", "cp-check", NAMESPACE, 0)


def _sandbox_up(tmp_path: Path, owner_pid: int) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    ready_file = tmp_path / "ready.json"
    process = subprocess.Popen(up_argv(tmp_path / "state", ready_file, owner_pid, "fast"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while not ready_file.exists():
        assert process.poll() is None and time.monotonic() < deadline, "sandbox up did not get ready"
        time.sleep(0.05)
    return process, json.loads(ready_file.read_text())


def test_the_sandbox_stops_when_the_run_that_started_it_dies(tmp_path: Path) -> None:
    _needs_sandbox()
    owner = subprocess.Popen(["sleep", "30"])
    process, ready = _sandbox_up(tmp_path, owner.pid)
    owner.kill()
    owner.wait()
    assert process.wait(timeout=30) == 0
    assert _leftovers(tmp_path / "state", str(ready["id"])) == []


def test_keep_detaches_the_sandbox_and_stop_leaves_nothing(tmp_path: Path) -> None:
    _needs_sandbox()
    kept = SandboxProvider(NatsnetSettings(sandbox_dns="fast"), tmp_path / "kept")
    access = kept.start()
    process = kept._process
    assert process is not None
    kept.stop(keep=True)
    time.sleep(1.0)
    assert process.poll() is None, "a kept sandbox must outlive the run"
    assert KubeClient(access.kubeconfig).list("Namespace", None)  # reachable with the printed KUBECONFIG
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert not (tmp_path / "kept" / "sandbox").exists()

    stopped = SandboxProvider(NatsnetSettings(sandbox_dns="fast"), tmp_path / "stopped")
    stopped.start()
    sandbox_id = str(stopped._ready["id"])
    stopped.stop(keep=False)
    assert _leftovers(tmp_path / "stopped" / "sandbox", sandbox_id) == []
