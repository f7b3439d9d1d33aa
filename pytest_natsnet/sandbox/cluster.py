"""One sandbox cluster: an object store, the controllers, the kubelet, cluster DNS and the service proxy.

A background loop reconciles every 50 ms: pods get a network namespace and their containers run; StatefulSets
keep their ordinals; EndpointSlices follow readiness; DNS, ClusterIP DNAT and NetworkPolicy are reprogrammed
when what they depend on changes.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import ipaddress
import itertools
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest_natsnet
from pytest_natsnet.kube import (
    NAMESPACE_NAME_LABEL,
    Obj,
    kind,
    labels,
    name,
    namespace_of,
)
from pytest_natsnet.sandbox import gc, netns, nft
from pytest_natsnet.sandbox.controllers import (
    endpointslices_for,
    pod_from_template,
    pod_is_ready,
    statefulset_pod,
    statefulset_wanted,
)
from pytest_natsnet.sandbox.kubelet import REAP_TIMEOUT, Image, PodRuntime, now_iso
from pytest_natsnet.sandbox.model import ContainerPort, PodNet
from pytest_natsnet.sandbox.podfs import (
    Mount,
    VolumeNotReady,
    bwrap_argv,
    hosts_file,
    materialize_volumes,
    python_mounts,
    resolv_conf,
)
from pytest_natsnet.sandbox.reaping import ProcessEntry

ZONE = "cluster.local"
DNS_SERVICE_IP = "198.18.128.10"
DNS_POD_IP = "198.18.0.2"
FIRST_POD_IP = "198.18.0.10"
FIRST_SERVICE_IP = "198.18.128.11"
EXTERNAL_FIRST_IP = "198.18.127.1"
TICK = 0.05
FULL_RECONCILE = 1.0
CLUSTER_SCOPED = {"Namespace"}
DNS_IMAGE = "natsnet/sandbox-dns"
PROBE_IMAGE = "natsnet/probe"

PROBE_PROGRAM = Path(pytest_natsnet.__file__).parent / "probe" / "program.py"


def package_root() -> Path:
    return Path(pytest_natsnet.__file__).resolve().parent.parent


def _ip_allocator(first: str) -> Callable[[], str]:
    counter = itertools.count(int(ipaddress.IPv4Address(first)))
    return lambda: str(ipaddress.IPv4Address(next(counter)))


class SandboxCluster:
    """A Kubernetes-shaped world in network namespaces. All public methods are thread-safe."""

    def __init__(self, sandbox_id: str, run_dir: Path, nats_server: Path, dns_ttl: int = 5) -> None:
        self.id = sandbox_id
        self.run_dir = run_dir
        self.nats_server = nats_server
        self.dns_ttl = dns_ttl
        self.hub = f"natsnet-{sandbox_id}-hub"
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._store: dict[tuple[str, str, str], Obj] = {}
        self._runtimes: dict[tuple[str, str], PodRuntime] = {}
        self._pending_retry: dict[tuple[str, str], float] = {}
        self._netns_of: dict[tuple[str, str], str] = {}
        self._veth_of: dict[tuple[str, str], str] = {}
        self._applied: dict[str, str] = {}
        self._netns_seq = itertools.count()
        self._next_pod_ip = _ip_allocator(FIRST_POD_IP)
        self._next_service_ip = _ip_allocator(FIRST_SERVICE_IP)
        self._next_external_ip = _ip_allocator(EXTERNAL_FIRST_IP)
        self._loop_error: BaseException | None = None
        self._unreaped: list[ProcessEntry] = []
        self._thread: threading.Thread | None = None
        self._executor: Any = None
        self._event_seq = itertools.count()
        self._externals: list[str] = []
        self._dirty = True
        self._last_full = 0.0

    # -- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        gc.record(
            self.id, {"pid": os.getpid(), "run_dir": str(self.run_dir), "netns_prefix": f"natsnet-{self.id}-"}
        )
        try:
            netns.create_hub(self.hub)
            nft.enable_bridge_conntrack(self.hub)
            self._executor = netns.executor_in(self.hub, workers=8)
            (self.run_dir / "dns").mkdir(exist_ok=True)
            self._write_dns_objects()
            self.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}}])
            self.apply(self._kube_dns_objects(), "kube-system")
            self._thread = threading.Thread(target=self._loop, name=f"sandbox-{self.id}", daemon=True)
            self._thread.start()
            self._wait_for_dns(timeout=30.0)
        except BaseException:  # a start that fails (cluster DNS never ready ...) leaves nothing behind
            with contextlib.suppress(Exception):
                self.stop()
            raise

    def _wait_for_dns(self, timeout: float) -> None:
        """Like a fresh kind cluster, the sandbox is handed out once its cluster DNS answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            with self._lock:
                pods = [o for k, o in self._store.items() if k[0] == "Pod" and k[1] == "kube-system"]
                if pods and all(pod_is_ready(p) for p in pods):
                    return
            time.sleep(0.02)
        raise RuntimeError(f"sandbox {self.id}: cluster DNS was not ready within {timeout:g}s")

    def stop(self) -> None:
        """Ends the reconcile loop, which kills and reaps every pod's processes as it ends, then removes the
        network namespaces; raises when a process outlived the bounded wait."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=3 * REAP_TIMEOUT)
        with self._lock:
            left = [*self._unreaped, *self._kill_pods()]
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
            for ns_name in [*self._netns_of.values(), *self._externals, self.hub]:
                gc.kill_netns_processes(ns_name)  # execs into a pod that outlived their caller
                netns.delete_netns(ns_name)
        gc.forget(self.id)
        if left:
            raise RuntimeError(
                f"sandbox {self.id}: {len(left)} process(es) not reaped within {REAP_TIMEOUT:g}s of SIGKILL: "
                + "; ".join(p.describe() for p in left)
            )

    def check(self) -> None:
        """Raises the reconcile loop's error, if it died."""
        if self._loop_error is not None:
            raise RuntimeError(f"sandbox {self.id} reconcile loop failed: {self._loop_error!r}") from None

    # -- API -------------------------------------------------------------------------------------------

    def apply(self, objects: Sequence[Obj], namespace: str | None = None) -> None:
        with self._lock:
            for obj in objects:
                obj = copy.deepcopy(dict(obj))
                meta = obj.setdefault("metadata", {})
                if kind(obj) not in CLUSTER_SCOPED:
                    meta["namespace"] = meta.get("namespace") or namespace or "default"
                meta.setdefault("uid", str(uuid.uuid4()))
                meta.setdefault("creationTimestamp", now_iso())
                key = (kind(obj), namespace_of(obj), name(obj))
                old = self._store.get(key)
                meta["generation"] = (old or {}).get("metadata", {}).get("generation", 0) + 1
                self._admit(obj, old)
                self._store[key] = obj
            self._dirty = True
        self._wake.set()

    def list_objects(self, wanted_kind: str, namespace: str | None) -> list[Obj]:
        with self._lock:
            return [
                copy.deepcopy(o)
                for (k, ns, _), o in sorted(self._store.items())
                if k == wanted_kind and (namespace in (None, "*") or ns == namespace)
            ]

    def delete(self, wanted_kind: str, obj_name: str, namespace: str, grace: float | None = None) -> None:
        with self._lock:
            if wanted_kind == "Namespace":
                for key in [k for k in self._store if k[1] == obj_name]:
                    self.delete(key[0], key[2], key[1], grace=0 if key[0] == "Pod" else None)
                self._store.pop(("Namespace", "", obj_name), None)
            elif wanted_kind == "Pod":
                pod = self._store.get(("Pod", namespace, obj_name))
                if pod is None:
                    raise KeyError(f'pods "{obj_name}" not found in namespace {namespace}')
                pod["metadata"].setdefault("deletionTimestamp", now_iso())
                runtime = self._runtimes.get((namespace, obj_name))
                if runtime is None:
                    self._store.pop(("Pod", namespace, obj_name), None)
                else:
                    runtime.begin_deletion(time.monotonic(), grace)
            else:
                self._store.pop((wanted_kind, namespace, obj_name), None)
                if wanted_kind in ("StatefulSet", "Deployment"):
                    for pod in self._owned_pods(wanted_kind, obj_name, namespace):
                        self.delete("Pod", name(pod), namespace, grace)
            self._dirty = True
        self._wake.set()

    def set_pod_condition(self, namespace: str, pod_name: str, condition_type: str, status: bool) -> None:
        with self._lock:
            pod = self._store.get(("Pod", namespace, pod_name))
            if pod is None:
                raise KeyError(f'pods "{pod_name}" not found in namespace {namespace}')
            conditions = [c for c in pod["status"].get("conditions", []) if c["type"] != condition_type]
            conditions.append(
                {
                    "type": condition_type,
                    "status": "True" if status else "False",
                    "lastTransitionTime": now_iso(),
                }
            )
            pod["status"]["conditions"] = conditions
            self._update_pod_status(pod)
            self._dirty = True
        self._wake.set()

    def exec_argv(self, namespace: str, pod_name: str, container: str, command: Sequence[str]) -> list[str]:
        with self._lock:
            runtime = self._runtimes.get((namespace, pod_name))
            if runtime is None:
                raise KeyError(f"pod {namespace}/{pod_name} is not running")
            c = runtime.find(container)
            if c.child_pid is None:
                raise KeyError(f"container {container} of pod {namespace}/{pod_name} is not running")
            return runtime.exec_argv(c, command)

    def log_path(self, namespace: str, pod_name: str, container: str) -> Path:
        return self.run_dir / "pods" / namespace / pod_name / "logs" / f"{container}.log"

    def external_argv(self, command: Sequence[str]) -> list[str]:
        """A client outside the cluster network: on the pod bridge, without cluster DNS or ClusterIPs."""
        with self._lock:
            ns_name = f"natsnet-{self.id}-x{len(self._externals)}"
            directory = self.run_dir / "external" / ns_name
            directory.mkdir(parents=True, exist_ok=True)
            netns.add_netns(ns_name)
            self._externals.append(ns_name)
            netns.attach_pod(self.hub, ns_name, f"vx{len(self._externals)}", self._next_external_ip())
            (directory / "resolv.conf").write_text(f"nameserver {netns.HUB_ADDRESS}\n")
            (directory / "hosts").write_text("127.0.0.1\tlocalhost\n")
        argv = bwrap_argv(
            hostname="external-client",
            files={"/etc/resolv.conf": directory / "resolv.conf", "/etc/hosts": directory / "hosts"},
            mounts=[*python_mounts(), Mount(package_root(), str(package_root()), True)],
            binaries={},
            env={"PATH": "/usr/bin:/bin"},
            command=command,
        )
        return ["ip", "netns", "exec", ns_name, *argv]

    def dns_query_log(self) -> Path:
        return self.run_dir / "dns" / "queries.jsonl"

    # -- admission -------------------------------------------------------------------------------------

    def _admit(self, obj: Obj, old: Obj | None) -> None:
        meta = obj["metadata"]
        if kind(obj) == "Namespace":
            meta.setdefault("labels", {})[NAMESPACE_NAME_LABEL] = name(obj)
        elif kind(obj) == "Service":
            spec = obj.setdefault("spec", {})
            if spec.get("type") != "ExternalName" and not spec.get("clusterIP"):
                spec["clusterIP"] = (old or {}).get("spec", {}).get("clusterIP") or self._next_service_ip()
            for port in spec.get("ports") or []:
                port.setdefault("protocol", "TCP")
                port.setdefault("targetPort", port.get("port"))
        elif kind(obj) == "Pod":
            obj.setdefault("status", {"phase": "Pending", "conditions": []})
        elif kind(obj) == "StatefulSet":
            obj["status"] = {"replicas": 0, "readyReplicas": 0, "observedGeneration": meta["generation"]}
        ns = namespace_of(obj)
        if ns and ("Namespace", "", ns) not in self._store:
            self._store[("Namespace", "", ns)] = {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": ns, "labels": {NAMESPACE_NAME_LABEL: ns}},
            }

    def _kube_dns_objects(self) -> list[Obj]:
        selector = {"k8s-app": "kube-dns"}
        return [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "kube-dns", "labels": {**selector, "kubernetes.io/name": "CoreDNS"}},
                "spec": {
                    "clusterIP": DNS_SERVICE_IP,
                    "selector": selector,
                    "ports": [
                        {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                        {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                        {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
                    ],
                },
            },
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "coredns-sandbox", "labels": selector},
                "spec": {
                    "dnsPolicy": "Default",
                    "containers": [
                        {
                            "name": "coredns",
                            "image": DNS_IMAGE,
                            "ports": [
                                {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                            ],
                            "readinessProbe": {
                                "tcpSocket": {"port": 53},
                                "periodSeconds": 1,
                                "failureThreshold": 1,
                                "timeoutSeconds": 1,
                            },
                        }
                    ],
                },
            },
        ]

    # -- images ----------------------------------------------------------------------------------------

    def _image(self, image: str) -> Image | None:
        repo = image.rsplit("@", 1)[0].rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
        if repo in ("nats", "docker.io/library/nats", "library/nats"):
            return Image(
                entrypoint=["nats-server"],
                default_args=["--config", "/etc/nats/nats-server.conf"],
                binaries={"nats-server": self.nats_server},
            )
        python = [*python_mounts(), Mount(package_root(), str(package_root()), True)]
        if image == DNS_IMAGE:
            dns_dir = self.run_dir / "dns"
            return Image(
                entrypoint=[
                    sys.executable,
                    "-m",
                    "pytest_natsnet.sandbox.dns",
                    "--listen",
                    DNS_POD_IP,
                    "--objects",
                    str(dns_dir / "objects.json"),
                    "--query-log",
                    str(dns_dir / "queries.jsonl"),
                    "--zone",
                    ZONE,
                    "--ttl",
                    str(self.dns_ttl),
                ],
                default_args=[],
                binaries={},
                extra_mounts=[*python, Mount(dns_dir, str(dns_dir), False)],
            )
        if image == PROBE_IMAGE:
            return Image(entrypoint=["sleep", "infinity"], default_args=[], binaries={}, extra_mounts=python)
        return None

    # -- reconcile loop --------------------------------------------------------------------------------

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                with self._lock:
                    self._tick(time.monotonic())
                self._wake.wait(TICK)
                self._wake.clear()
        except BaseException as error:  # the test thread re-raises it through check()
            self._loop_error = error
        finally:
            # This thread started every container, and bubblewrap dies with the thread that started it
            # (PR_SET_PDEATHSIG), orphaning the container's command: kill and reap them in order first.
            self._unreaped = self._kill_pods()

    def _kill_pods(self) -> list[ProcessEntry]:
        """Kills every pod's processes and waits, bounded, until they are reaped; returns what is left."""
        with self._lock:
            left = [p for runtime in self._runtimes.values() for p in runtime.kill_all()]
            self._runtimes.clear()
            return left

    def _tick(self, now: float) -> None:
        """The kubelet part runs every tick; controllers and network programming only when something changed
        (or once a second as a safety net), so an idle sandbox costs almost nothing."""
        for key, pod in [(k, o) for k, o in self._store.items() if k[0] == "Pod"]:
            pod_key = (key[1], key[2])
            runtime = self._runtimes.get(pod_key)
            if runtime is None:
                if pod["metadata"].get("deletionTimestamp"):
                    self._store.pop(key, None)
                    self._dirty = True
                elif now >= self._pending_retry.get(pod_key, 0.0):
                    self._try_create_runtime(pod, now)
                continue
            if runtime.tick(now):
                self._remove_pod(key)
                continue
            before = json.dumps(pod["status"], sort_keys=True)
            self._update_pod_status(pod)
            if json.dumps(pod["status"], sort_keys=True) != before:
                self._dirty = True
        if self._dirty or now - self._last_full >= FULL_RECONCILE:
            self._dirty = False
            self._last_full = now
            self._run_controllers()
            self._update_workload_status()
            self._reconcile_endpointslices()
            self._program_network()

    def _run_controllers(self) -> None:
        for sts in [o for k, o in list(self._store.items()) if k[0] == "StatefulSet"]:
            pods = self._owned_pods("StatefulSet", name(sts), namespace_of(sts))
            for ordinal in statefulset_wanted(sts, pods):
                pod = statefulset_pod(sts, ordinal)
                self.apply([pod])
        for deploy in [o for k, o in list(self._store.items()) if k[0] == "Deployment"]:
            pods = self._owned_pods("Deployment", name(deploy), namespace_of(deploy))
            for _ in range(int(deploy.get("spec", {}).get("replicas", 1)) - len(pods)):
                suffix = uuid.uuid4().hex[:5]
                self.apply(
                    [
                        pod_from_template(
                            deploy["spec"].get("template") or {},
                            f"{name(deploy)}-{suffix}",
                            namespace_of(deploy),
                            deploy,
                        )
                    ]
                )

    def _owned_pods(self, owner_kind: str, owner_name: str, namespace: str) -> list[Obj]:
        return [
            o
            for (k, ns, _), o in self._store.items()
            if k == "Pod"
            and ns == namespace
            and any(
                r.get("kind") == owner_kind and r.get("name") == owner_name
                for r in o["metadata"].get("ownerReferences") or []
            )
        ]

    def _try_create_runtime(self, pod: Obj, now: float) -> None:
        ns, pod_name = namespace_of(pod), name(pod)
        images = [self._image(str(c.get("image", ""))) for c in pod["spec"].get("containers") or []]
        if not any(images):
            pod["status"].update(
                {
                    "phase": "Pending",
                    "reason": "ImageNotEmulated",
                    "message": "the sandbox runs nats images only; this pod is created, not run",
                }
            )
            self._pending_retry[(ns, pod_name)] = float("inf")
            return
        pod_dir = self.run_dir / "pods" / ns / pod_name
        ns_objects = [o for (k, n, _), o in self._store.items() if n == ns and k in ("ConfigMap", "Secret")]
        try:
            volume_paths = materialize_volumes(pod, ns_objects, pod_dir)
        except VolumeNotReady as error:
            self._pending_retry[(ns, pod_name)] = now + 0.5
            if pod["status"].get("message") != str(error):
                self._event(pod, "FailedMount", f"MountVolume.SetUp failed: {error}", "Warning")
            pod["status"].update({"phase": "Pending", "reason": "ContainerCreating", "message": str(error)})
            return
        ip = (
            DNS_POD_IP
            if pod["spec"].get("containers", [{}])[0].get("image") == DNS_IMAGE
            else self._next_pod_ip()
        )
        pod_netns = f"natsnet-{self.id}-p{next(self._netns_seq)}"
        veth = f"vp{pod_netns.rsplit('-p', 1)[1]}"
        netns.add_netns(pod_netns)
        netns.attach_pod(self.hub, pod_netns, veth, ip)
        self._netns_of[(ns, pod_name)] = pod_netns
        self._veth_of[(ns, pod_name)] = veth
        pod["status"].update(
            {
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "hostIP": netns.HUB_ADDRESS,
                "startTime": now_iso(),
                "phase": "Pending",
            }
        )
        pod["spec"].setdefault("nodeName", "sandbox-node")
        (pod_dir / "etc").mkdir(parents=True, exist_ok=True)
        if pod["spec"].get("dnsPolicy") == "Default":
            resolv = f"nameserver {netns.HUB_ADDRESS}\n"  # the node's resolver: no cluster names
        else:
            resolv = resolv_conf(ns, DNS_SERVICE_IP, ZONE)
        (pod_dir / "etc" / "resolv.conf").write_text(resolv)
        (pod_dir / "etc" / "hosts").write_text(hosts_file(pod, ZONE))
        files = {"/etc/resolv.conf": pod_dir / "etc" / "resolv.conf", "/etc/hosts": pod_dir / "etc" / "hosts"}
        self._runtimes[(ns, pod_name)] = PodRuntime(
            pod,
            pod_netns,
            pod_dir,
            files,
            volume_paths,
            self._image,
            self._executor,
            functools.partial(self._event, pod),
        )
        self._event(pod, "Scheduled", f"Successfully assigned {ns}/{pod_name} to sandbox-node", "Normal")
        # The service proxy must be programmed before the containers start.
        self._applied.pop(pod_netns, None)
        self._program_network()
        self._dirty = True

    def _remove_pod(self, key: tuple[str, str, str]) -> None:
        self._dirty = True
        pod_key = (key[1], key[2])
        self._runtimes.pop(pod_key, None)
        pod_netns = self._netns_of.pop(pod_key, None)
        self._veth_of.pop(pod_key, None)
        if pod_netns is not None:
            netns.delete_netns(pod_netns)
            self._applied.pop(pod_netns, None)
        pod = self._store.pop(key, None)
        if pod is not None:
            self._event(pod, "Deleted", f"Pod {key[2]} deleted", "Normal")

    def _update_pod_status(self, pod: Obj) -> None:
        runtime = self._runtimes.get((namespace_of(pod), name(pod)))
        if runtime is None:
            return
        status = pod["status"]
        status["containerStatuses"] = runtime.container_statuses()
        if runtime.has_running():
            status["phase"] = "Running"
        containers_ready = runtime.containers_ready(lambda spec: True)
        gates = [g["conditionType"] for g in pod["spec"].get("readinessGates") or []]
        by_type = {c["type"]: c for c in status.get("conditions") or []}
        gates_ok = all(by_type.get(g, {}).get("status") == "True" for g in gates)
        ready = containers_ready and gates_ok and runtime.has_running() and not runtime.deleting_since
        for cond_type, value in (
            ("PodScheduled", True),
            ("Initialized", True),
            ("ContainersReady", containers_ready),
            ("Ready", ready),
        ):
            old = by_type.get(cond_type)
            text = "True" if value else "False"
            if old is None or old["status"] != text:
                by_type[cond_type] = {"type": cond_type, "status": text, "lastTransitionTime": now_iso()}
        status["conditions"] = list(by_type.values())
        not_emulated = [c.spec.get("image") for c in runtime.containers if c.image is None]
        if not_emulated:
            pod["metadata"].setdefault("annotations", {})["sandbox.natsnet.io/not-run"] = ", ".join(
                str(i) for i in not_emulated
            )

    def _update_workload_status(self) -> None:
        for sts in [o for k, o in self._store.items() if k[0] == "StatefulSet"]:
            pods = self._owned_pods("StatefulSet", name(sts), namespace_of(sts))
            sts["status"] = {
                "replicas": len(pods),
                "readyReplicas": sum(1 for p in pods if pod_is_ready(p)),
                "currentReplicas": len(pods),
                "observedGeneration": sts["metadata"]["generation"],
            }

    def _reconcile_endpointslices(self) -> None:
        pods = [o for k, o in self._store.items() if k[0] == "Pod"]
        wanted: dict[tuple[str, str, str], Obj] = {}
        for svc in [o for k, o in self._store.items() if k[0] == "Service"]:
            for eps in endpointslices_for(svc, pods):
                eps["metadata"]["namespace"] = namespace_of(svc)
                wanted[("EndpointSlice", namespace_of(svc), name(eps))] = eps
        for key in [k for k in self._store if k[0] == "EndpointSlice" and k not in wanted]:
            del self._store[key]
        for key, eps in wanted.items():
            old = self._store.get(key)
            if old is None or {k: v for k, v in old.items() if k != "metadata"} != {
                k: v for k, v in eps.items() if k != "metadata"
            }:
                self._store[key] = eps

    # -- network programming ---------------------------------------------------------------------------

    def _pod_nets(self) -> list[PodNet]:
        nets = []
        for (ns, pod_name), veth in sorted(self._veth_of.items()):
            pod = self._store.get(("Pod", ns, pod_name))
            if pod is None or not pod["status"].get("podIP"):
                continue
            ports = tuple(
                ContainerPort(str(p.get("name", "")), int(p["containerPort"]), str(p.get("protocol", "TCP")))
                for c in pod["spec"].get("containers") or []
                for p in c.get("ports") or []
            )
            nets.append(PodNet(ns, pod_name, labels(pod), pod["status"]["podIP"], veth, ports))
        return nets

    def _write_dns_objects(self) -> None:
        objects = [
            o
            for k, o in sorted(self._store.items())
            if k[0] in ("Service", "EndpointSlice", "Namespace", "Pod")
        ]
        text = json.dumps({"objects": objects}, sort_keys=True)
        path = self.run_dir / "dns" / "objects.json"
        if self._applied.get("dns") == text:
            return
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        self._applied["dns"] = text

    def _program_network(self) -> None:
        self._write_dns_objects()
        services = [o for k, o in sorted(self._store.items()) if k[0] == "Service"]
        slices = [o for k, o in sorted(self._store.items()) if k[0] == "EndpointSlice"]
        service_script = nft.service_ruleset(services, slices)
        for pod_netns in sorted(self._netns_of.values()):
            if self._applied.get(pod_netns) != service_script:
                nft.apply(pod_netns, service_script)
                self._applied[pod_netns] = service_script
        namespaces = {name(o): labels(o) for k, o in self._store.items() if k[0] == "Namespace"}
        policies = [o for k, o in sorted(self._store.items()) if k[0] == "NetworkPolicy"]
        policy_script = nft.policy_ruleset(self._pod_nets(), namespaces, policies)
        if self._applied.get(self.hub) != policy_script:
            nft.apply(self.hub, policy_script)
            self._applied[self.hub] = policy_script

    def _event(self, obj: Mapping[str, Any], reason: str, message: str, event_type: str) -> None:
        ns = namespace_of(obj) or "default"
        event_name = f"{name(obj)}.{next(self._event_seq):06d}"
        self._store[("Event", ns, event_name)] = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": event_name, "namespace": ns},
            "involvedObject": {"kind": kind(obj), "name": name(obj), "namespace": ns},
            "reason": reason,
            "message": message,
            "type": event_type,
            "firstTimestamp": now_iso(),
            "lastTimestamp": now_iso(),
            "count": 1,
            "source": {"component": "natsnet-sandbox"},
        }
