"""One sandbox cluster: the object store, the controllers, the kubelet, cluster DNS and the service proxy.

Every object lives in :class:`~pytest_natsnet.sandbox.store.Store`; every change anyone makes (the API server,
the in-process methods below, the controllers, the kubelet) is a store write, so watches see it.

A background loop ticks every 50 ms (and at once when the store changes): the kubelet part advances each
pod's containers and writes a pod's status only when its runtime reports a change; controllers (namespaces,
StatefulSets and their claims, Deployments, garbage collection, workload status, claim protection and volume
reclaim, EndpointSlices) and the network programming (DNS objects, ClusterIP DNAT, NetworkPolicy) run when
something changed, or once a second as a safety net.

An error while reconciling one object is contained to that object: it gets a ``SandboxError`` Warning Event (a
pod also its status reason and message, and its processes are stopped), the loop goes on with every other object,
and the object is tried again once it changes (a new uid or generation). Only the loop's own failure stops it.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import functools
import ipaddress
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest_natsnet
from pytest_natsnet.dnsprofile import DEFAULT_PROFILE, DnsProfile, corefile, dns_profile
from pytest_natsnet.kinds import is_namespaced
from pytest_natsnet.kube import (
    Obj,
    kind,
    labels,
    name,
    namespace_of,
)
from pytest_natsnet.sandbox import gc, netns, nft, nftlib, storage
from pytest_natsnet.sandbox.admission import NODE_NAME, Admission
from pytest_natsnet.sandbox.controllers import (
    claims_in_use,
    controller_of,
    deployment_status,
    endpointslices_for,
    pod_from_template,
    pod_is_ready,
    refresh_pod_conditions,
    statefulset_claims,
    statefulset_pod,
    statefulset_status,
    statefulset_wanted,
)
from pytest_natsnet.sandbox.dnszone import DNS_KINDS, dns_view
from pytest_natsnet.sandbox.images import DNS_IMAGE, PROBE_IMAGE, ImageCatalog
from pytest_natsnet.sandbox.kubelet import REAP_TIMEOUT, PodRuntime, exit_fds, exited_fds, now_iso
from pytest_natsnet.sandbox.model import EXTERNAL_ANNOTATION, ContainerPort, PodNet
from pytest_natsnet.sandbox.poddns import NodeResolv, pod_dns_config
from pytest_natsnet.sandbox.podfs import (
    VolumeNotEmulated,
    VolumeNotReady,
    hosts_file,
    materialize_volumes,
)
from pytest_natsnet.sandbox.store import Event, Forbidden, Invalid, Key, NotFound, Store, key_of
from pytest_natsnet.sandbox.wakeup import Wakeup

__all__ = ["DNS_IMAGE", "PROBE_IMAGE", "PROBE_PROGRAM", "SandboxCluster"]
from pytest_natsnet.sandbox.reaping import ProcessEntry

ZONE = "cluster.local"
DNS_SERVICE_IP = "198.18.128.10"
DNS_POD_IP = "198.18.0.2"
FIRST_POD_IP = "198.18.0.10"
FIRST_SERVICE_IP = "198.18.128.11"
EXTERNAL_FIRST_IP = "198.19.0.10"
NODE_PORT_RANGE = (30000, 32767)
"""The API server's default ``--service-node-port-range``."""
TICK = 0.05
FULL_RECONCILE = 1.0
SERVICE_MIN_SYNC = 1.0
"""kube-proxy's ``iptables.minSyncPeriod`` (default 1 s, kind keeps it): Service rule changes reach the pods at
most once a second (a new pod gets the current rules at once: on kind they are already on its node)."""
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
MAX_EVENTS = 5000
SANDBOX_ERROR = "SandboxError"
"""Event reason (and a pod's status reason) of an object whose reconciliation failed; see the module docstring."""
POD_STEPS = ("kubelet", "service proxy")
"""Steps whose failure on a pod stops the pod (its processes end, its status says why)."""
VOLUME_NOT_EMULATED = "VolumeNotEmulated"
"""A pod's status reason when one of its volumes is of a kind the sandbox does not have: it never starts."""

PROBE_PROGRAM = Path(pytest_natsnet.__file__).parent / "probe" / "program.py"


def _ip_allocator(first: str) -> Callable[[], str]:
    counter = itertools.count(int(ipaddress.IPv4Address(first)))
    return lambda: str(ipaddress.IPv4Address(next(counter)))


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return str(uuid.uuid4())


def _owned_by(obj: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    ref = controller_of(obj)
    if ref is None or ref.get("kind") != kind(owner) or ref.get("name") != name(owner):
        return False
    uid = (owner.get("metadata") or {}).get("uid")
    return not ref.get("uid") or not uid or ref.get("uid") == uid


T = TypeVar("T")


_PodNetMemo = dict[tuple[str, str], tuple[object, PodNet, tuple[object, ...]]]
"""By pod: the version its network view was built from (resourceVersion, veth), the view, its :func:`_pod_input`."""


def _pod_input(net: PodNet) -> tuple[object, ...]:
    """What a pod adds to the network's inputs (``SandboxCluster._network_inputs``)."""
    return (net.namespace, net.name, net.ip, net.veth, tuple(sorted(net.labels.items())), net.ports)


def _once_per_choice(compile_rules: Callable[[Sequence[Obj]], T]) -> Callable[[Sequence[Obj]], T]:
    """``compile_rules`` done once per choice of objects (by their keys): ``_usable`` compiles what was chosen,
    and what is programmed afterwards reuses it."""
    done: dict[tuple[Key, ...], T] = {}

    def compiled(chosen: Sequence[Obj]) -> T:
        choice = tuple(key_of(o) for o in chosen)
        if choice not in done:
            done[choice] = compile_rules(chosen)
        return done[choice]

    return compiled


class SandboxCluster:
    """A Kubernetes-shaped world in network namespaces. All public methods are thread-safe."""

    def __init__(self, sandbox_id: str, run_dir: Path, nats_server: Path, dns: str = DEFAULT_PROFILE,
                 policy_delay: float = 0.0) -> None:
        self.id = sandbox_id
        self.policy_delay = policy_delay
        """Seconds a new pod's traffic passes before NetworkPolicy holds for it (and before it counts as a peer):
        kube-network-policies enforces a pod once it has learned it (its podIP through the API, then a rate-limited
        nftables sync); 0, the default, enforces from the pod's first packet. Flows that began earlier stay allowed,
        as on kind (established connections are never judged)."""
        self._policy_learned: dict[tuple[str, str], float] = {}
        self._policy_pending = float("inf")
        """When the next pod is learned (the network is programmed again then)."""
        self._services_synced = float("-inf")
        self._services_pending = float("inf")
        """When the Service rules were last synced to the pods, and when changes held back are due."""
        self._synced_inputs: tuple[object, ...] | None = None
        """The network's inputs at the last Service sync (a change since makes the next sync due)."""
        self.run_dir = run_dir
        self.nats_server = nats_server
        self.dns: DnsProfile = dns_profile(dns)
        """The DNS profile (:mod:`pytest_natsnet.dnsprofile`); the DNS server gets it by name."""
        self.node_resolv = NodeResolv((netns.HUB_ADDRESS,), self.dns.node_search)
        """The node's resolver: its search domains reach every ClusterFirst pod; nothing answers on it."""
        self.hub = f"natsnet-{sandbox_id}-hub"
        self.store = Store(admit=Admission(self._allocate_service_ip, self._allocate_node_port,
                                           self._default_storage_class),
                           on_change=self._on_change)
        self._lock = threading.RLock()
        """Runtime state (pods' processes, network namespaces): held by the reconcile loop while it ticks."""
        self._wake = Wakeup(min_gap=TICK)
        self._stop = threading.Event()
        self._runtimes: dict[tuple[str, str], PodRuntime] = {}
        self._pending_retry: dict[tuple[str, str], float] = {}
        self._netns_of: dict[tuple[str, str], str] = {}
        self._veth_of: dict[tuple[str, str], str] = {}
        self._pod_net_memo: _PodNetMemo = {}
        """Each pod's network view (:meth:`_pod_nets`) and what it adds to the network's inputs."""
        self._hub_tables: nft.Tables | None = None
        self._programmed_inputs: tuple[object, ...] | None = None
        self.network_programs = 0
        """How many times the network's rules were computed (and applied where they changed)."""
        self._service_tables: dict[str, nft.Chains] = {}
        """What each pod netns's ``ip natsnet_svc`` holds: updates change only the chains that differ."""
        self._nft: nftlib.Applier = nftlib.open_applier()
        """Programs the rulesets (a libnftables context kept per network namespace: release it before deleting)."""
        self._dns_written = ""
        self._netns_seq = itertools.count()
        self._next_pod_ip = _ip_allocator(FIRST_POD_IP)
        self._next_service_ip = _ip_allocator(FIRST_SERVICE_IP)
        self._next_external_ip = _ip_allocator(EXTERNAL_FIRST_IP)
        self._loop_error: BaseException | None = None
        self._unreaped: list[ProcessEntry] = []
        self._thread: threading.Thread | None = None
        self._executor: Any = None
        self._remover = gc.DirectoryRemover()
        self._event_seq = itertools.count()
        self._events: collections.deque[Key] = collections.deque()
        self._external_pods: set[tuple[str, str]] = set()
        self._namespace_grace: dict[str, int | None] = {}
        self._dirty = True
        self._last_full = 0.0
        """When every namespace was last reconciled (between those passes only the namespaces that changed)."""
        self._changed_namespaces: set[str] | None = None
        """The namespaces whose objects changed since the last reconcile (None: every namespace)."""
        self._changed_lock = threading.Lock()
        self._failed: dict[tuple[str, Key], tuple[str, str]] = {}
        """Objects whose reconciliation failed, by step and key: (uid, generation or resourceVersion) then."""
        self._claim_problems: dict[Key, str] = {}
        """Why a claim could not be bound, as last reported in its event (one event per distinct reason)."""
        self._images = ImageCatalog(nats_server, self._dns_command, run_dir / "dns", run_dir / "images" / "applets")

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
            self.store.create(self._node())
            self.store.create(storage.default_storage_class())
            self.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in SYSTEM_NAMESPACES])
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
            pods = self.store.list("Pod", "kube-system")
            if pods and all(pod_is_ready(p) for p in pods):
                return
            time.sleep(0.02)
        raise RuntimeError(f"sandbox {self.id}: cluster DNS was not ready within {timeout:g}s")

    def stop(self) -> None:
        """Ends the reconcile loop, which kills and reaps every pod's processes as it ends, then removes the
        network namespaces; raises when a process outlived the bounded wait."""
        self._stop.set()
        self._wake.set()
        self.store.close_watches()
        if self._thread is not None:
            self._thread.join(timeout=3 * REAP_TIMEOUT)
            if not self._thread.is_alive():
                self._wake.close()
        problems: list[str] = []
        with self._lock:
            left = [*self._unreaped, *self._kill_pods()]
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
            self._nft.close()
            self._remover.close()
            for ns_name in [*self._netns_of.values(), self.hub]:
                try:  # one namespace that cannot be removed leaves the others to remove
                    gc.kill_netns_processes(ns_name)  # execs into a pod that outlived their caller
                    netns.delete_netns(ns_name)
                except Exception as error:
                    problems.append(f"network namespace {ns_name}: {type(error).__name__}: {error}")
        if left:
            problems.append(f"{len(left)} process(es) not reaped within {REAP_TIMEOUT:g}s of SIGKILL: "
                            + "; ".join(p.describe() for p in left))
        if not [p for p in problems if p.startswith("network namespace")]:
            gc.forget(self.id)  # else gc still knows the sandbox and removes what is left
        if problems:
            raise RuntimeError(f"sandbox {self.id}: " + "; ".join(problems))

    def check(self) -> None:
        """Raises the reconcile loop's error, if it died."""
        if self._loop_error is not None:
            raise RuntimeError(f"sandbox {self.id} reconcile loop failed: {self._loop_error!r}") from None

    # -- in-process API --------------------------------------------------------------------------------

    def apply(self, objects: Sequence[Obj], namespace: str | None = None) -> None:
        """Creates or replaces each object (its namespace is created when missing; a stored status is kept
        when the object brings none)."""
        for obj in objects:
            obj = copy.deepcopy(dict(obj))
            meta = obj.setdefault("metadata", {})
            if is_namespaced(kind(obj)):
                meta["namespace"] = meta.get("namespace") or namespace or "default"
                self._ensure_namespace(meta["namespace"])
            old = self.store.get(key_of(obj))
            if old is not None and "status" not in obj and "status" in old:
                obj["status"] = copy.deepcopy(old["status"])
            self.store.put(obj)

    def list_objects(self, wanted_kind: str, namespace: str | None) -> list[Obj]:
        return [copy.deepcopy(o) for o in self.store.list(wanted_kind, None if namespace in (None, "*") else namespace)]

    def delete(
        self,
        wanted_kind: str,
        obj_name: str,
        namespace: str,
        grace: float | None = None,
        propagation: str = "Background",
    ) -> Obj:
        """Deletes like the API server: pods gracefully (deletionTimestamp, then the kubelet stops them),
        namespaces through Terminating, owned pods by propagation (Background, Foreground, Orphan).
        Returns the object as the deletion left it; NotFound when there is none."""
        key: Key = (wanted_kind, namespace if is_namespaced(wanted_kind) else "", obj_name)
        current = self.store.get(key)
        if current is None:
            raise NotFound(f'{wanted_kind.lower()}s "{obj_name}" not found', kind=wanted_kind, name=obj_name)
        if wanted_kind == "Namespace":
            self._namespace_grace[obj_name] = None if grace is None else int(grace)
            result = self.store.mutate(key, _mark_terminating)
        elif wanted_kind == "Pod":
            result = self.store.mutate(key, functools.partial(_mark_pod_deleted, grace=grace))
        elif storage.PVC_PROTECTION in (current["metadata"].get("finalizers") or []):
            result = self.store.mutate(key, _mark_deleted)  # the protection controller deletes it once unused
        elif propagation == "Foreground" and self._dependents(current):
            result = self.store.mutate(key, _mark_foreground)
        else:
            if propagation == "Orphan":
                for dependent in self._dependents(current):
                    self.store.mutate(key_of(dependent), functools.partial(_drop_owner, owner=current))
            result = self.store.delete(key)
        self._wake.set()
        return result or current

    def set_pod_condition(self, namespace: str, pod_name: str, condition_type: str, status: bool) -> None:
        def change(pod: Obj) -> None:
            conditions = [c for c in pod["status"].get("conditions", []) if c["type"] != condition_type]
            conditions.append(
                {"type": condition_type, "status": "True" if status else "False", "lastTransitionTime": now_iso()}
            )
            pod["status"]["conditions"] = conditions
            refresh_pod_conditions(pod, now_iso())

        if self.store.mutate(("Pod", namespace, pod_name), change) is None:
            raise NotFound(f'pods "{pod_name}" not found in namespace {namespace}', kind="Pod", name=pod_name)

    def refresh_pod_conditions(self, namespace: str, pod_name: str) -> None:
        """The kubelet's view of Ready after someone wrote the pod's status (a readiness gate through the API)."""
        self.store.mutate(("Pod", namespace, pod_name), lambda pod: refresh_pod_conditions(pod, now_iso()))

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
        """Every start of the container, oldest first (``<log>.starts`` holds where each start begins)."""
        return self.run_dir / "pods" / namespace / pod_name / "logs" / f"{container}.log"

    def container_running(self, namespace: str, pod_name: str, container: str) -> bool:
        with self._lock:
            runtime = self._runtimes.get((namespace, pod_name))
            if runtime is None:
                return False
            try:
                return runtime.find(container).running
            except KeyError:
                return False

    def dns_query_log(self) -> Path:
        return self.run_dir / "dns" / "queries.jsonl"

    def wake(self) -> None:
        self._wake.set()

    # -- admission -------------------------------------------------------------------------------------

    def _allocate_service_ip(self) -> str:
        return self._next_service_ip()

    def _allocate_node_port(self) -> int:
        """A free port of the node-port range, at random like the API server's allocator."""
        used = {int(p["nodePort"]) for svc in self.store.list("Service")
                for p in (svc.get("spec") or {}).get("ports") or [] if p.get("nodePort")}
        free = [port for port in range(NODE_PORT_RANGE[0], NODE_PORT_RANGE[1] + 1) if port not in used]
        if not free:
            raise Invalid("Service: spec.ports.nodePort: the node port range is full", kind="Service")
        return random.choice(free)

    def _default_storage_class(self) -> str | None:
        return storage.default_class_name(self.store.list("StorageClass"))

    def namespace_accepts(self, namespace: str) -> None:
        """NotFound when the namespace does not exist, Forbidden while it terminates (API creates only)."""
        ns = self.store.get(("Namespace", "", namespace))
        if ns is None:
            raise NotFound(f'namespaces "{namespace}" not found', kind="Namespace", name=namespace)
        if ns["metadata"].get("deletionTimestamp"):
            raise Forbidden(f"unable to create new content in namespace {namespace} because it is being "
                            "terminated", kind="Namespace", name=namespace)

    def _ensure_namespace(self, namespace: str) -> None:
        if self.store.get(("Namespace", "", namespace)) is None:
            with contextlib.suppress(Exception):
                self.store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})

    def _on_change(self, event: Event) -> None:
        if event.key[0] != "Event":
            self._mark_changed(event.key)
            self._dirty = True
            self._wake.set()

    def _mark_changed(self, key: Key) -> None:
        """``key``'s namespace is reconciled at the next tick (a Namespace object: the namespace it is; another
        object outside namespaces, a PersistentVolume say: every namespace)."""
        namespace = key[2] if key[0] == "Namespace" else key[1]
        with self._changed_lock:
            if not namespace:
                self._changed_namespaces = None
            elif self._changed_namespaces is not None:
                self._changed_namespaces.add(namespace)

    def _take_changed(self) -> set[str] | None:
        with self._changed_lock:
            changed, self._changed_namespaces = self._changed_namespaces, set()
            return changed

    # -- fixed objects ---------------------------------------------------------------------------------

    def _dns_command(self) -> list[str]:
        dns_dir = self.run_dir / "dns"
        return [
            sys.executable, "-m", "pytest_natsnet.sandbox.dns",
            "--listen", DNS_POD_IP,
            "--objects", str(dns_dir / "objects.json"),
            "--query-log", str(dns_dir / "queries.jsonl"),
            "--zone", ZONE,
            "--profile", self.dns.name,
        ]

    @staticmethod
    def _node() -> Obj:
        ready = {"type": "Ready", "status": "True", "reason": "KubeletReady",
                 "message": "the sandbox kubelet is posting ready status", "lastHeartbeatTime": now_iso(),
                 "lastTransitionTime": now_iso()}
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": NODE_NAME, "labels": {
                "kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64", "node-role.kubernetes.io/control-plane": ""}},
            "spec": {"podCIDR": "198.18.0.0/17", "podCIDRs": ["198.18.0.0/17"]},
            "status": {
                "conditions": [ready],
                "addresses": [{"type": "InternalIP", "address": netns.HUB_ADDRESS},
                              {"type": "Hostname", "address": NODE_NAME}],
                "nodeInfo": {"kubeletVersion": "v1.35.0-natsnet-sandbox", "kubeProxyVersion": "",
                             "containerRuntimeVersion": "bwrap://", "operatingSystem": "linux",
                             "architecture": "amd64", "kernelVersion": os.uname().release,
                             "osImage": "natsnet sandbox", "bootID": _boot_id(), "machineID": uuid.uuid4().hex,
                             "systemUUID": str(uuid.uuid4())},
                "capacity": {"cpu": str(os.cpu_count() or 1), "pods": "1000"},
                "allocatable": {"cpu": str(os.cpu_count() or 1), "pods": "1000"},
            },
        }

    def _kube_dns_objects(self) -> list[Obj]:
        selector = {"k8s-app": "kube-dns"}
        return [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "coredns"},
                "data": {"Corefile": corefile(self.dns, ZONE)},
            },
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

    # -- reconcile loop --------------------------------------------------------------------------------

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                with self._lock:
                    now = time.monotonic()
                    self._tick(now)
                    sleep = min(max(self._next_wake(now) - time.monotonic(), TICK), FULL_RECONCILE)
                    exits = exit_fds(self._runtimes.values())
                self._wake.wait(sleep, exits)
        except BaseException as error:  # the test thread re-raises it through check()
            self._loop_error = error
        finally:
            # This thread started every container, and bubblewrap dies with the thread that started it
            # (PR_SET_PDEATHSIG), orphaning the container's command: kill and reap them in order first.
            self._unreaped = self._kill_pods()

    def _next_wake(self, now: float) -> float:
        """When the loop has work without an event: a pod's due time (a probe period, a restart, a stop), a pod
        to retry, the once-a-second safety net, NetworkPolicy learning a pod, Service changes held back."""
        due = min((rt.due for rt in self._runtimes.values()), default=float("inf"))
        if any(rt.deleting_since is not None or any(c.process is not None and c.exit_fd is None
                                                    for c in rt.containers) for rt in self._runtimes.values()):
            due = now  # a deletion advances every tick; a container without pidfd is polled
        retry = min((t for t in self._pending_retry.values() if t > now), default=float("inf"))
        return min(due, retry, self._last_full + FULL_RECONCILE, self._policy_pending, self._services_pending)

    def _kill_pods(self) -> list[ProcessEntry]:
        """Kills every pod's processes and waits, bounded, until they are reaped; returns what is left."""
        with self._lock:
            left = [p for runtime in self._runtimes.values() for p in runtime.kill_all()]
            self._runtimes.clear()
            return left

    def _tick(self, now: float) -> None:
        """The kubelet part advances the pods that need it (:meth:`PodRuntime.needs_tick`); controllers and network
        programming run only when something changed (or once a second as a safety net), so an idle sandbox costs
        almost nothing. The controllers, workload status and EndpointSlices reconcile only the namespaces whose
        objects changed (what they read and write lies in one namespace), every namespace once a second. Each
        object is reconciled on its own (see :meth:`_each`): one that fails does not stop the others."""
        exited = exited_fds(self._runtimes.values())
        self._each(self.store.list("Pod"), "kubelet", functools.partial(self._tick_pod, now=now, exited=exited))
        every_namespace = now - self._last_full >= FULL_RECONCILE
        if self._dirty or every_namespace or now >= self._policy_pending or now >= self._services_pending:
            self._dirty = False
            scope = self._take_changed()
            if every_namespace or scope is None:
                self._last_full, scope = now, None
            for step_key in [k for k in self._failed if self.store.get(k[1]) is None]:
                del self._failed[step_key]
            for gone in [k for k in self._claim_problems if self.store.get(k) is None]:
                del self._claim_problems[gone]
            self._reconcile_namespaces()
            self._collect_garbage()
            self._run_controllers(scope)
            self._update_workload_status(scope)
            self._protect_claims()
            self._reclaim_volumes()
            self._reconcile_endpointslices(scope)
            self._program_network()

    def _tick_pod(self, pod: Obj, now: float, exited: set[int]) -> None:
        meta = pod["metadata"]
        pod_key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        runtime = self._runtimes.get(pod_key)
        deleting = bool(meta.get("deletionTimestamp"))
        if runtime is not None and not (deleting and runtime.deleting_since is None) and \
                not runtime.needs_tick(now, exited):
            return  # nothing due, nothing exited, no probe answered: an idle pod costs this check only
        key = key_of(pod)
        if runtime is None:
            if deleting:
                self._remove_pod(key)
            elif now >= self._pending_retry.get(pod_key, 0.0):
                self._try_create_runtime(pod, now)
            return
        if deleting and runtime.deleting_since is None:
            runtime.begin_deletion(now, float(pod["metadata"].get("deletionGracePeriodSeconds", 30)))
        if runtime.tick(now):
            self._remove_pod(key)
            return
        if runtime.take_changed():
            self._write_pod_status(key, runtime)

    # -- containment -----------------------------------------------------------------------------------

    @staticmethod
    def _version(obj: Obj) -> tuple[str, str]:
        meta = obj.get("metadata") or {}
        return str(meta.get("uid", "")), str(meta.get("generation", meta.get("resourceVersion", "")))

    def _each(self, objects: Sequence[Obj], step: str, action: Callable[[Obj], None]) -> None:
        """Runs ``action`` on each object; an exception is contained to its object (:meth:`_contain`), which is
        skipped until it changes. A failed pod that is being deleted is still removed."""
        for obj in objects:
            key = (step, key_of(obj))
            failed = self._failed.get(key)
            if failed is not None:
                if failed[0] != self._version(obj)[0]:
                    del self._failed[key]  # another object of that name: try it
                elif kind(obj) == "Pod" and obj["metadata"].get("deletionTimestamp"):
                    self._remove_failed_pod(obj, step)
                    continue
                elif failed[1] == self._version(obj)[1]:
                    continue
                else:
                    del self._failed[key]  # changed since: try again
            try:
                action(obj)
            except Exception as error:  # the point: one object's error is that object's only
                self._contain(obj, step, error)

    def _contain(self, obj: Obj, step: str, error: BaseException) -> None:
        """Records a failed reconciliation: a Warning Event on the object, one line on stderr; a pod also gets
        its processes stopped and the error as its status (what the deploy wait reports)."""
        key = key_of(obj)
        self._failed[(step, key)] = self._version(obj)
        message = " ".join(f"{step} failed: {type(error).__name__}: {error}".split())
        print(f"natsnet sandbox: {kind(obj)} {namespace_of(obj)}/{name(obj)}: {message}", file=sys.stderr)
        with contextlib.suppress(Exception):
            self._event(obj, SANDBOX_ERROR, message, "Warning")
        if kind(obj) != "Pod" or step not in POD_STEPS:
            return
        runtime = self._runtimes.pop((key[1], key[2]), None)
        if runtime is not None:
            self._unreaped.extend(runtime.kill_all())
        self._pending_retry[(key[1], key[2])] = float("inf")
        with contextlib.suppress(Exception):
            self._set_pending(key, SANDBOX_ERROR, message)
        self._failed[(step, key)] = self._version(self.store.get(key) or obj)

    def _remove_failed_pod(self, pod: Obj, step: str) -> None:
        key = key_of(pod)
        try:
            self._remove_pod(key)
        except Exception:  # a pod that cannot even be removed is dropped from the store
            with contextlib.suppress(NotFound):
                self.store.delete(key)
        self._failed.pop((step, key), None)

    def _write_pod_status(self, key: Key, runtime: PodRuntime) -> None:
        statuses = runtime.container_statuses()
        finished = runtime.finished_phase()
        running = runtime.has_running()
        not_emulated = ", ".join(str(c.spec.get("image")) for c in runtime.containers if c.image is None)

        def change(pod: Obj) -> None:
            status = pod.setdefault("status", {})
            status["containerStatuses"] = statuses
            if finished is not None:
                status["phase"] = finished
            elif running:
                status["phase"] = "Running"
            refresh_pod_conditions(pod, now_iso())
            if not_emulated:
                pod["metadata"].setdefault("annotations", {})["sandbox.natsnet.io/not-run"] = not_emulated

        self.store.mutate(key, change)

    def _reconcile_namespaces(self) -> None:
        self._each(self.store.list("Namespace"), "namespace controller", self._reconcile_namespace)

    def _reconcile_namespace(self, ns: Obj) -> None:
        """A terminating namespace is emptied (pods gracefully, claims once unused) and removed; every namespace
        gets its ``default`` ServiceAccount."""
        ns_name = name(ns)
        if not ns["metadata"].get("deletionTimestamp"):
            if self.store.get(("ServiceAccount", ns_name, "default")) is None:
                with contextlib.suppress(Exception):
                    self.store.create({"apiVersion": "v1", "kind": "ServiceAccount",
                                       "metadata": {"name": "default", "namespace": ns_name}})
            return
        left = 0
        for obj_kind in self.store.kinds():
            if not is_namespaced(obj_kind):
                continue
            for obj in self.store.list(obj_kind, ns_name):
                left += 1
                if obj_kind in ("Pod", "PersistentVolumeClaim"):
                    if not obj["metadata"].get("deletionTimestamp"):
                        self.delete(obj_kind, name(obj), ns_name, self._namespace_grace.get(ns_name))
                else:
                    with contextlib.suppress(NotFound):
                        self.store.delete(key_of(obj))
        if left == 0:
            with contextlib.suppress(NotFound):
                self.store.delete(key_of(ns))
            self._namespace_grace.pop(ns_name, None)

    def _collect_garbage(self) -> None:
        """Pods whose controller is gone are deleted (background propagation); a workload deleted in the
        foreground goes once its pods are gone."""

        def orphaned(pod: Obj) -> None:
            ref = controller_of(pod)
            if ref is None or pod["metadata"].get("deletionTimestamp"):
                return
            owner = self.store.get((str(ref.get("kind")), namespace_of(pod), str(ref.get("name"))))
            if owner is None or (ref.get("uid") and owner["metadata"].get("uid") != ref.get("uid")):
                self.delete("Pod", name(pod), namespace_of(pod))

        def foreground(workload: Obj) -> None:
            if workload["metadata"].get("deletionTimestamp"):
                dependents = self._dependents(workload)
                for pod in dependents:
                    if not pod["metadata"].get("deletionTimestamp"):
                        self.delete("Pod", name(pod), namespace_of(pod))
                if not dependents:
                    with contextlib.suppress(NotFound):
                        self.store.delete(key_of(workload))

        self._each(self.store.list("Pod"), "garbage collector", orphaned)
        for workload_kind in ("StatefulSet", "Deployment"):
            self._each(self.store.list(workload_kind), "garbage collector", foreground)

    def _dependents(self, owner: Obj) -> list[Obj]:
        return [p for p in self.store.list("Pod", namespace_of(owner)) if _owned_by(p, owner)]

    def _terminating(self, namespace: str) -> bool:
        ns = self.store.get(("Namespace", "", namespace))
        return ns is None or bool(ns["metadata"].get("deletionTimestamp"))

    def _scoped(self, kind: str, scope: Collection[str] | None) -> list[Obj]:
        """The objects of ``kind`` in the namespaces of ``scope`` (None: in every namespace)."""
        if scope is None:
            return self.store.list(kind)
        return [obj for namespace in sorted(scope) for obj in self.store.list(kind, namespace)]

    def _run_controllers(self, scope: Collection[str] | None = None) -> None:
        self._each(self._scoped("StatefulSet", scope), "statefulset controller", self._reconcile_statefulset)
        self._each(self._scoped("Deployment", scope), "deployment controller", self._reconcile_deployment)

    def _reconcile_statefulset(self, sts: Obj) -> None:
        """Missing pods (Parallel or OrderedReady), each after its claims, as the StatefulSet controller does."""
        if sts["metadata"].get("deletionTimestamp") or self._terminating(namespace_of(sts)):
            return
        pods = self._dependents(sts)
        for ordinal in statefulset_wanted(sts, pods):
            for claim in statefulset_claims(sts, ordinal):
                if self.store.get(key_of(claim)) is None:
                    self.store.create(claim)
            self._create_owned_pod(statefulset_pod(sts, ordinal))

    def _reconcile_deployment(self, deploy: Obj) -> None:
        if deploy["metadata"].get("deletionTimestamp") or self._terminating(namespace_of(deploy)):
            return
        pods = [p for p in self._dependents(deploy) if not p["metadata"].get("deletionTimestamp")]
        for _ in range(int(deploy.get("spec", {}).get("replicas", 1)) - len(pods)):
            suffix = uuid.uuid4().hex[:5]
            pod = pod_from_template(deploy["spec"].get("template") or {}, f"{name(deploy)}-{suffix}",
                                    namespace_of(deploy), deploy)
            self._create_owned_pod(pod)

    def _create_owned_pod(self, pod: Obj) -> None:
        with contextlib.suppress(Exception):  # a pod of that name still terminating: next round
            self.store.create(pod)

    def _update_workload_status(self, scope: Collection[str] | None = None) -> None:
        def statefulset(sts: Obj) -> None:
            status = statefulset_status(sts, self._dependents(sts))
            if sts.get("status") != status:
                self.store.mutate(key_of(sts), functools.partial(_set_status, status=status))

        def deployment(deploy: Obj) -> None:
            status = deployment_status(deploy, self._dependents(deploy), now_iso())
            if deploy.get("status") != status:
                self.store.mutate(key_of(deploy), functools.partial(_set_status, status=status))

        self._each(self._scoped("StatefulSet", scope), "statefulset status", statefulset)
        self._each(self._scoped("Deployment", scope), "deployment status", deployment)

    # -- storage ---------------------------------------------------------------------------------------

    def _claim_path(self, namespace: str, claim_name: str) -> Path:
        """The directory of a claim a pod mounts: bound now when its class binds on first consumer (this pod
        is being started, i.e. scheduled); VolumeNotReady while it cannot be (the claim's event says why)."""
        claim = self.store.get(("PersistentVolumeClaim", namespace, claim_name))
        if claim is None:
            raise VolumeNotReady(f'persistentvolumeclaim "{claim_name}" not found')
        if claim["metadata"].get("deletionTimestamp"):
            raise VolumeNotReady(f'persistentvolumeclaim "{claim_name}" is being deleted')
        volume_name = (claim.get("spec") or {}).get("volumeName")
        if not volume_name:
            problem = storage.binding_problem(claim, self.store.list("StorageClass"))
            if problem is not None:
                if self._claim_problems.get(key_of(claim)) != problem:
                    self._claim_problems[key_of(claim)] = problem
                    self._event(claim, "ProvisioningFailed", problem, "Warning")
                raise VolumeNotReady(f'persistentvolumeclaim "{claim_name}" is not bound: {problem}')
            volume_name = self._provision(claim)
        volume = self.store.get(("PersistentVolume", "", volume_name))
        if volume is None:
            raise VolumeNotReady(f'persistentvolumeclaim "{claim_name}" is bound to a missing volume {volume_name}')
        return Path(storage.host_path(volume))

    def _provision(self, claim: Obj) -> str:
        """The local-path provisioner: a directory and a volume for the claim, then the claim bound to it."""
        class_name = str(claim["spec"]["storageClassName"])
        storage_class = self.store.get(("StorageClass", "", class_name)) or {}
        self._event(claim, "Provisioning", f'External provisioner is provisioning volume for claim '
                    f'"{namespace_of(claim)}/{name(claim)}"', "Normal")
        directory = self.run_dir / "storage" / storage.directory_name(claim)
        directory.mkdir(parents=True, exist_ok=True)
        volume = storage.provisioned_volume(claim, storage_class, NODE_NAME, str(directory))
        if self.store.get(key_of(volume)) is None:
            self.store.create(volume)
        self.store.mutate(key_of(claim), functools.partial(storage.bind_claim, volume=volume, node=NODE_NAME))
        self._event(claim, "ProvisioningSucceeded", f"Successfully provisioned volume {name(volume)}", "Normal")
        return name(volume)

    def _protect_claims(self) -> None:
        """pvc-protection: a deleted claim goes once no pod that has not finished mounts it."""
        in_use = claims_in_use(self.store.list("Pod"))

        def release(claim: Obj) -> None:
            if claim["metadata"].get("deletionTimestamp") and (namespace_of(claim), name(claim)) not in in_use:
                with contextlib.suppress(NotFound):
                    self.store.delete(key_of(claim))

        self._each(self.store.list("PersistentVolumeClaim"), "pvc-protection", release)

    def _reclaim_volumes(self) -> None:
        """A volume whose claim is gone, with reclaim policy Delete, goes with its directory."""
        claims = self.store.list("PersistentVolumeClaim")

        def reclaim(volume: Obj) -> None:
            if not storage.released(volume, claims):
                return
            if (volume.get("spec") or {}).get("persistentVolumeReclaimPolicy") == "Delete":
                path = Path(storage.host_path(volume))
                if path.parent == self.run_dir / "storage":  # only what this sandbox provisioned
                    shutil.rmtree(path, ignore_errors=True)
                with contextlib.suppress(NotFound):
                    self.store.delete(key_of(volume))
            elif (volume.get("status") or {}).get("phase") != "Released":
                self.store.mutate(key_of(volume), functools.partial(_set_status, status={"phase": "Released"}))

        self._each(self.store.list("PersistentVolume"), "volume reclaim", reclaim)

    def _try_create_runtime(self, pod: Obj, now: float) -> None:
        ns, pod_name = namespace_of(pod), name(pod)
        key = key_of(pod)
        if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            self._pending_retry[(ns, pod_name)] = float("inf")
            return
        images = [self._images(str(c.get("image", ""))) for c in pod["spec"].get("containers") or []]
        if not any(images):
            self._set_pending(key, "ImageNotEmulated",
                              "the sandbox runs nats, python and nats-box images only; this pod is created, not run")
            self._pending_retry[(ns, pod_name)] = float("inf")
            return
        pod_dir = self.run_dir / "pods" / ns / pod_name
        ns_objects = [*self.store.list("ConfigMap", ns), *self.store.list("Secret", ns)]
        claim_path = functools.partial(self._claim_path, ns)
        try:
            volume_paths = materialize_volumes(pod, ns_objects, pod_dir, claim_path)
        except VolumeNotEmulated as error:
            self._pending_retry[(ns, pod_name)] = float("inf")
            self._event(pod, "FailedMount", f"MountVolume.SetUp failed: {error}", "Warning")
            self._set_pending(key, VOLUME_NOT_EMULATED, str(error))
            return
        except VolumeNotReady as error:
            self._pending_retry[(ns, pod_name)] = now + 0.5
            if pod["status"].get("message") != str(error):
                self._event(pod, "FailedMount", f"MountVolume.SetUp failed: {error}", "Warning")
            self._set_pending(key, "ContainerCreating", str(error))
            return
        external = ((pod.get("metadata") or {}).get("annotations") or {}).get(EXTERNAL_ANNOTATION) == "external"
        if external:
            ip = self._next_external_ip()
            self._external_pods.add((ns, pod_name))
        elif pod["spec"].get("containers", [{}])[0].get("image") == DNS_IMAGE:
            ip = DNS_POD_IP
        else:
            ip = self._next_pod_ip()
        pod_netns = f"natsnet-{self.id}-p{next(self._netns_seq)}"
        veth = f"vp{pod_netns.rsplit('-p', 1)[1]}"
        netns.add_netns(pod_netns)
        (netns.attach_outside if external else netns.attach_pod)(self.hub, pod_netns, veth, ip)
        self._netns_of[(ns, pod_name)] = pod_netns
        self._veth_of[(ns, pod_name)] = veth
        if self.policy_delay > 0:
            self._policy_learned[(ns, pod_name)] = now + self.policy_delay

        def network(p: Obj) -> None:
            p["status"].update({"podIP": ip, "podIPs": [{"ip": ip}], "hostIP": netns.HUB_ADDRESS,
                                "hostIPs": [{"ip": netns.HUB_ADDRESS}], "startTime": now_iso(),
                                "phase": "Pending"})
            p["status"].pop("reason", None)
            p["status"].pop("message", None)

        pod = self.store.mutate(key, network) or pod
        (pod_dir / "etc").mkdir(parents=True, exist_ok=True)
        if external:
            resolv = f"nameserver {netns.HUB_ADDRESS}\n"  # outside: a resolver that knows no cluster names
        else:
            dns_config = pod_dns_config(pod, [DNS_SERVICE_IP], ZONE, self.node_resolv)
            for warning in dns_config.warnings:
                self._event(pod, "DNSConfigForming", warning, "Warning")
            resolv = dns_config.resolv_conf()
        (pod_dir / "etc" / "resolv.conf").write_text(resolv)
        (pod_dir / "etc" / "hosts").write_text(hosts_file(pod, ZONE))
        files = {"/etc/resolv.conf": pod_dir / "etc" / "resolv.conf", "/etc/hosts": pod_dir / "etc" / "hosts"}
        self._runtimes[(ns, pod_name)] = PodRuntime(
            copy.deepcopy(pod),
            pod_netns,
            pod_dir,
            files,
            volume_paths,
            self._images,
            self._executor,
            functools.partial(self._event, pod),
            admitted_at=time.monotonic(),  # not the tick's start: creating many pods makes a tick long
            wake=self.wake,
        )
        self._event(pod, "Scheduled", f"Successfully assigned {ns}/{pod_name} to {NODE_NAME}", "Normal")
        # The service proxy must be programmed before the containers start: at the end of this tick (dirty), once
        # for every pod admitted in it; the containers start in the next tick.
        self._service_tables.pop(pod_netns, None)
        self._mark_changed(("Pod", ns, pod_name))
        self._dirty = True

    def _set_pending(self, key: Key, reason: str, message: str) -> None:
        def change(pod: Obj) -> None:
            pod["status"].update({"phase": "Pending", "reason": reason, "message": message})

        self.store.mutate(key, change)

    def _remove_pod(self, key: Key) -> None:
        self._mark_changed(key)
        self._dirty = True
        pod_key = (key[1], key[2])
        self._runtimes.pop(pod_key, None)
        self._pending_retry.pop(pod_key, None)
        pod_netns = self._netns_of.pop(pod_key, None)
        self._veth_of.pop(pod_key, None)
        self._external_pods.discard(pod_key)
        self._policy_learned.pop(pod_key, None)
        if pod_netns is not None:
            gc.kill_netns_processes(pod_netns)  # what a container's command left (a shell's background job), execs
            self._nft.release(pod_netns)
            netns.delete_netns(pod_netns)
            self._service_tables.pop(pod_netns, None)
        try:
            pod = self.store.delete(key)
        except NotFound:
            return
        self._remover.remove(self.run_dir / "pods" / key[1] / key[2] / "rootfs")
        self._event(pod, "Deleted", f"Pod {key[2]} deleted", "Normal")

    def _reconcile_endpointslices(self, scope: Collection[str] | None = None) -> None:
        pods = self._scoped("Pod", scope)
        pods_by_ns: dict[str, list[Obj]] = {}
        for pod in pods:
            pods_by_ns.setdefault(namespace_of(pod), []).append(pod)
        wanted: dict[Key, Obj] = {}
        kept: set[tuple[str, str]] = set()

        def slices_of(svc: Obj) -> None:
            for eps in endpointslices_for(svc, pods_by_ns.get(namespace_of(svc), [])):
                eps["metadata"]["namespace"] = namespace_of(svc)
                eps["metadata"]["ownerReferences"] = [{
                    "apiVersion": "v1", "kind": "Service", "name": name(svc),
                    "uid": svc["metadata"].get("uid"), "controller": True, "blockOwnerDeletion": True}]
                wanted[("EndpointSlice", namespace_of(svc), name(eps))] = eps

        services = self._scoped("Service", scope)
        self._each(services, "endpointslice controller", slices_of)
        for svc in services:
            if ("endpointslice controller", key_of(svc)) in self._failed:  # its slices stay as they were
                kept.add((namespace_of(svc), name(svc)))
        for eps in self._scoped("EndpointSlice", scope):
            owner = (namespace_of(eps), labels(eps).get("kubernetes.io/service-name", ""))
            if key_of(eps) not in wanted and owner not in kept:
                with contextlib.suppress(NotFound):
                    self.store.delete(key_of(eps))
        for key, eps in wanted.items():
            old = self.store.get(key)
            if old is None:
                self.store.create(eps)
            elif {k: v for k, v in old.items() if k != "metadata"} != {
                k: v for k, v in eps.items() if k != "metadata"
            }:
                self.store.mutate(key, functools.partial(_copy_content, source=eps))

    # -- network programming ---------------------------------------------------------------------------

    def _pod_nets(self, now: float) -> list[PodNet]:
        """The pods NetworkPolicy knows: not the outside clients, not the pods still to be learned."""
        nets = []
        memo: _PodNetMemo = {}
        for (ns, pod_name), veth in sorted(self._veth_of.items()):
            if (ns, pod_name) in self._external_pods:
                continue  # outside the cluster network: an address, not a pod, to NetworkPolicy
            if self._policy_learned.get((ns, pod_name), 0.0) > now:
                continue  # not learned yet: neither filtered nor a peer a podSelector can match
            pod = self.store.get(("Pod", ns, pod_name))
            if pod is None or not pod["status"].get("podIP"):
                continue
            version = (pod["metadata"].get("resourceVersion"), veth)
            known = self._pod_net_memo.get((ns, pod_name))
            if known is None or known[0] != version:
                ports = tuple(
                    ContainerPort(str(p.get("name", "")), int(p["containerPort"]), str(p.get("protocol", "TCP")))
                    for c in pod["spec"].get("containers") or []
                    for p in c.get("ports") or []
                )
                net = PodNet(ns, pod_name, labels(pod), pod["status"]["podIP"], veth, ports)
                known = (version, net, _pod_input(net))
            memo[(ns, pod_name)] = known
            nets.append(known[1])
        self._pod_net_memo = memo  # each pod's view is built again only when its object changed
        return nets

    def _write_dns_objects(self) -> None:
        """The DNS server's input: what its zone reads of the objects (``dnszone.dns_view``), rewritten only when
        that changed (the server re-reads the whole file on every change)."""
        objects = [dns_view(o) for k in DNS_KINDS for o in self.store.list(k)]
        path = self.run_dir / "dns" / "objects.json"
        text = json.dumps({"objects": objects}, sort_keys=True)
        if text == self._dns_written and path.exists():
            return
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        self._dns_written = text

    def _program_network(self) -> None:
        """DNS objects, kube-proxy's rules in every pod and NetworkPolicy on the bridge. A Service or policy
        whose rules cannot be compiled, or that nft refuses, is contained (:meth:`_usable`): the rest is
        programmed."""
        now = time.monotonic()
        pod_nets = self._pod_nets(now)
        self._policy_pending = min((t for t in self._policy_learned.values() if t > now), default=float("inf"))
        inputs = self._network_inputs(pod_nets)
        if inputs == self._programmed_inputs and now < self._services_pending:
            return  # nothing the rules (or the DNS objects) are made of changed: a pod's status, an Event ...
        self._programmed_inputs = None  # until this programming has gone through
        self.network_programs += 1
        self._write_dns_objects()
        slices = self.store.list("EndpointSlice")
        namespaces = {name(o): labels(o) for o in self.store.list("Namespace")}

        policy_tables = _once_per_choice(lambda chosen: nft.policy_tables(pod_nets, namespaces, chosen))

        def policy_rules(chosen: Sequence[Obj]) -> str:
            return nft.tables_script(policy_tables(chosen))

        policies, _ = self._usable(self.store.list("NetworkPolicy"), "network policy", policy_rules)

        service_table = _once_per_choice(lambda chosen: nft.service_table(chosen, slices))  # no hairpin

        def service_rules(chosen: Sequence[Obj]) -> str:
            return nft.table_script("ip", nft.SERVICE_TABLE, service_table(chosen))

        services, _ = self._usable(self.store.list("Service"), "service proxy", service_rules)
        nets = {(n.namespace, n.name): n for n in pod_nets}

        def pod_tables(pod_keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], nft.Chains]:
            """Each pod's table: the Services' DNAT and its own hairpin checks (none before it is learned: the
            usable Services' table, as ``_usable`` compiled it)."""
            own = nft.service_tables_by_pod(services, slices, [nets[k] for k in pod_keys if k in nets],
                                            namespaces, policies)
            return {k: own[nets[k].ip] if k in nets else service_table(services) for k in pod_keys}

        # no kube-proxy outside the cluster: Service IPs lead nowhere
        in_cluster = [k for k in sorted(self._netns_of) if k not in self._external_pods]
        if now - self._services_synced < SERVICE_MIN_SYNC:
            # only new pods now (their tables computed alone); the others at the next sync, which is due when
            # the inputs changed since the last one (it may find every table as it was)
            fresh = [k for k in in_cluster if self._netns_of[k] not in self._service_tables]
            stale = pod_tables(fresh)
            if inputs != self._synced_inputs:
                self._services_pending = self._services_synced + SERVICE_MIN_SYNC
        else:  # a sync now: nothing is held back after it (a pending sync that found nothing stale ends here too)
            tables = pod_tables(in_cluster)
            stale = {k: tables[k] for k in in_cluster if self._service_tables.get(self._netns_of[k]) != tables[k]}
            self._services_pending = float("inf")
            self._synced_inputs = inputs
            if stale:
                self._services_synced = now
        refused = self._nft.apply_each({  # only the chains that changed since the last apply
            self._netns_of[k]: nft.table_update("ip", nft.SERVICE_TABLE,
                                                self._service_tables.get(self._netns_of[k]), table)
            for k, table in stale.items()})
        for pod_key, table in stale.items():
            pod_netns = self._netns_of[pod_key]
            if pod_netns not in refused:
                self._service_tables[pod_netns] = table
                continue
            table = pod_tables([pod_key])[pod_key]  # the Services may have been narrowed since; the whole table
            try:
                self._nft.apply(pod_netns, nft.table_script("ip", nft.SERVICE_TABLE, table))
            except nft.NftApplyError:
                services, _ = self._usable(services, "service proxy", service_rules, check_in=pod_netns)
                table = pod_tables([pod_key])[pod_key]
                try:
                    self._nft.apply(pod_netns, nft.table_script("ip", nft.SERVICE_TABLE, table))
                except nft.NftApplyError as error:  # not a Service's fault: this pod's network namespace
                    self._service_tables.pop(pod_netns, None)
                    pod = self.store.get(("Pod", *pod_key))
                    if pod is not None:
                        self._contain(pod, "service proxy", error)
                    continue
            self._service_tables[pod_netns] = table

        def hub_tables(chosen: Sequence[Obj]) -> nft.Tables:
            return {**policy_tables(chosen), ("ip", nft.NODE_TABLE): nft.node_table(
                services, slices, (netns.HUB_ADDRESS, netns.OUTSIDE_ADDRESS), netns.HUB_BRIDGE,
                netns.OUTSIDE_BRIDGE, pod_nets, namespaces, chosen)}

        def hub_rules(chosen: Sequence[Obj]) -> str:
            return nft.tables_script(hub_tables(chosen))

        tables = hub_tables(policies)
        if self._hub_tables != tables:
            try:  # only the chains that changed: the whole ruleset is ~900 lines with two dozen cells
                self._nft.apply(self.hub, nft.tables_update(self._hub_tables, tables))
            except nft.NftApplyError:
                policies, hub_script = self._usable(policies, "network policy", hub_rules, check_in=self.hub)
                self._nft.apply(self.hub, hub_script)
                tables = hub_tables(policies)
            self._hub_tables = tables
        self._programmed_inputs = self._network_inputs(pod_nets)  # with the objects contained meanwhile

    def network_inputs(self) -> tuple[object, ...]:
        """What the network's rules are made of, now (see ``_network_inputs``)."""
        return self._network_inputs(self._pod_nets(time.monotonic()))

    def _network_inputs(self, pod_nets: Sequence[PodNet]) -> tuple[object, ...]:
        """What the network's rules are made of: the pods as NetworkPolicy knows them, the last change to any
        Service, EndpointSlice, NetworkPolicy or Namespace (the DNS objects' kinds among them), which pods
        have a network namespace (and are outside clients), the objects contained. Equal inputs give the rules
        and the DNS objects already written."""
        versions = tuple(self.store.kind_version(kind)
                         for kind in ("Service", "EndpointSlice", "NetworkPolicy", "Namespace"))
        memo = self._pod_net_memo
        pods = tuple(known[2] if (known := memo.get((n.namespace, n.name))) and known[1] is n else _pod_input(n)
                     for n in pod_nets)
        return (pods, versions, tuple(sorted(self._netns_of.items())), tuple(sorted(self._external_pods)),
                tuple(sorted(k for k in self._failed if k[0] in ("network policy", "service proxy"))))

    def _usable(self, objects: Sequence[Obj], step: str, compile_with: Callable[[Sequence[Obj]], str],
                check_in: str | None = None) -> tuple[list[Obj], str]:
        """The objects whose rules compile (and, with ``check_in``, that ``nft -c`` accepts in that network
        namespace), and their rules; each other one is contained, found by compiling (and checking) it on its
        own."""
        chosen = [o for o in objects if (step, key_of(o)) not in self._failed]
        if check_in is None:
            try:
                return chosen, compile_with(chosen)
            except Exception:  # which object's? see below
                pass
        usable = []
        for obj in chosen:
            try:
                rules = compile_with([obj])
                refused = _nft_check(check_in, rules) if check_in else None
            except Exception as error:  # this object's own error
                self._contain(obj, step, error)
                continue
            if refused is not None:
                self._contain(obj, step, RuntimeError(f"nft refused its rules: {refused}"))
                continue
            usable.append(obj)
        return usable, compile_with(usable)

    def _event(self, obj: Mapping[str, Any], reason: str, message: str, event_type: str) -> None:
        ns = namespace_of(obj) or "default"
        if self._terminating(ns):
            return  # the API server refuses new content in a terminating namespace
        event_name = f"{name(obj)}.{next(self._event_seq):06d}"
        uid = (obj.get("metadata") or {}).get("uid")
        event: Obj = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": event_name, "namespace": ns},
            "involvedObject": {"kind": kind(obj), "name": name(obj), "namespace": ns,
                               "apiVersion": obj.get("apiVersion", "v1")},
            "reason": reason,
            "message": message,
            "type": event_type,
            "firstTimestamp": now_iso(),
            "lastTimestamp": now_iso(),
            "count": 1,
            "source": {"component": "natsnet-sandbox", "host": NODE_NAME},
            "reportingComponent": "natsnet-sandbox",
        }
        if uid:
            event["involvedObject"]["uid"] = uid
        with contextlib.suppress(Exception):
            self.store.create(event)
            self._events.append(("Event", ns, event_name))
        while len(self._events) > MAX_EVENTS:
            with contextlib.suppress(NotFound):
                self.store.delete(self._events.popleft())


def _nft_check(netns_name: str, script: str) -> str | None:
    """``nft -c`` (check only) of ``script`` in ``netns_name``: None when nft accepts it, else nft's complaint."""
    argv = ["ip", "netns", "exec", netns_name, "nft", "-c", "-f", "-"]
    try:
        done = subprocess.run(argv, input=script, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    return None if done.returncode == 0 else " ".join((done.stderr or done.stdout).split())[:500]


def _copy_content(obj: Obj, source: Obj) -> None:
    obj.update({k: v for k, v in source.items() if k != "metadata"})


def _set_status(obj: Obj, status: Obj) -> None:
    obj["status"] = status


def _mark_terminating(ns: Obj) -> None:
    ns["metadata"].setdefault("deletionTimestamp", now_iso())
    ns.setdefault("status", {})["phase"] = "Terminating"


def _mark_deleted(obj: Obj) -> None:
    obj["metadata"].setdefault("deletionTimestamp", now_iso())
    obj["metadata"]["deletionGracePeriodSeconds"] = 0


def _mark_pod_deleted(pod: Obj, grace: float | None) -> None:
    meta = pod["metadata"]
    seconds = int(pod.get("spec", {}).get("terminationGracePeriodSeconds", 30) if grace is None else grace)
    if "deletionGracePeriodSeconds" in meta:
        seconds = min(seconds, int(meta["deletionGracePeriodSeconds"]))
    meta.setdefault("deletionTimestamp", now_iso())
    meta["deletionGracePeriodSeconds"] = max(seconds, 0)


def _mark_foreground(obj: Obj) -> None:
    meta = obj["metadata"]
    meta.setdefault("deletionTimestamp", now_iso())
    meta["deletionGracePeriodSeconds"] = 0
    finalizers = meta.setdefault("finalizers", [])
    if "foregroundDeletion" not in finalizers:
        finalizers.append("foregroundDeletion")


def _drop_owner(obj: Obj, owner: Obj) -> None:
    refs = [r for r in obj["metadata"].get("ownerReferences") or []
            if not (r.get("kind") == kind(owner) and r.get("name") == name(owner))]
    if refs:
        obj["metadata"]["ownerReferences"] = refs
    else:
        obj["metadata"].pop("ownerReferences", None)
