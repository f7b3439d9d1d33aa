"""One cell on any cluster, through the Kubernetes API: the deployment every provider hands out.

A provider only creates, attaches to or removes a cluster and hands over a kubeconfig; everything after that is
here, the same for kind, an existing cluster and the sandbox: the cell is installed with ``helm install`` of the
chart (helm source) or ``kubectl apply --server-side`` of the rendered objects, read and changed through the
kubernetes client, probed by a probe pod that runs the probe program (``probe/program.py``) under ``exec``.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pytest_natsnet import kube
from pytest_natsnet.errors import NatsnetError
from pytest_natsnet.kube import Obj
from pytest_natsnet.kubeclient import KubeClient, KubeError
from pytest_natsnet.kubewatch import Changes
from pytest_natsnet.probe.bundle import probe_bundle
from pytest_natsnet.providers.base import (
    CLIENT_LABELS,
    POD_GATE_CONDITION,
    CellHandle,
    CellManifests,
    ProbeTarget,
    ProviderInfo,
)
from pytest_natsnet.providers.kubeapi import (
    PodCannotStart,
    kubectl_argv,
    pod_condition_patch,
    pods_needing_gate,
    pods_that_cannot_start,
    statefulset_running,
    statefulset_settled,
    undecided_pods,
    wait_until,
)
from pytest_natsnet.sources.helm import helm_install_argv, helm_uninstall_argv
from pytest_natsnet.tools import Runner, SubprocessRunner, run_checked

PROBE_IMAGE = "python:3.12-alpine"
PROBE_CONTAINER = "probe"
PROBE_DIR = "/natsnet"
COMMAND_TIMEOUT = 120.0
READY_POLL = 0.25
CHANGE_POLL = 2.0
"""How often a wait woken by watches (``kubewatch.Changes``) reads again when nothing woke it."""
VERDICT_GRACE = 5.0
"""Once a pod says it cannot start, how long a wait lets the others of the cell give their verdict first."""
EVIDENCE_KINDS = ("StatefulSet", "Pod", "Service", "EndpointSlice", "NetworkPolicy", "ConfigMap", "Event")


@dataclass(frozen=True)
class ClusterTools:
    """The binaries and the cluster a deployment drives: kubectl and helm with an explicit kubeconfig."""

    kubectl: str
    helm: str | None
    kubeconfig: Path
    context: str | None
    runner: Runner = field(default_factory=SubprocessRunner)

    def kubectl_argv(self, *args: str) -> list[str]:
        return kubectl_argv(self.kubectl, self.kubeconfig, self.context, *args)

    def run(self, argv: Sequence[str], *, input: str | None = None, timeout: float = COMMAND_TIMEOUT) -> str:
        return run_checked(self.runner, argv, input=input, timeout=timeout)


def probe_pod_manifest(target: ProbeTarget, annotations: Mapping[str, str] | None = None) -> Obj:
    """A stock Python pod that sleeps; the program is unpacked into it and exec'd."""
    metadata: dict[str, Any] = {"name": target.pod_name, "namespace": target.namespace, "labels": dict(target.labels)}
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": PROBE_CONTAINER, "image": PROBE_IMAGE, "command": ["sleep", "86400"]}],
        },
    }


PROBE_ARCHIVE = f"{PROBE_DIR}/probe.pyz"
"""The probe program and its packages as one zip application (``probe.bundle``): ``python3 probe.pyz serve``."""
PROBE_BOOTSTRAP = """\
import os, runpy, sys
path, size = sys.argv[1], int(sys.argv[2])
data = sys.stdin.buffer.read(size)
if len(data) != size:
    sys.exit(f"natsnet: the probe program arrived cut short ({len(data)} of {size} bytes)")
try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as out:
        out.write(data)
except OSError as error:
    sys.exit(f"natsnet: cannot write the probe program to {path}: {error}")
sys.argv = [path, "serve"]
runpy.run_path(path, run_name="__main__")
"""
"""What a probe session's exec runs: reads the bundle (its size in bytes is the second argument) from stdin,
writes it to the path given first, and runs it as ``serve`` on the rest of stdin. One exec per probe pod for both
(the same buffered stdin goes on to the program)."""


WATCH_LINE = '{"watch": '
"""How the program's lines for a watch begin (its id first); every other line answers a batch."""


class ProbeSession:
    """One ``probe.pyz serve`` per probe pod, kept open: each batch is a line in and an answer line out over the
    same exec, so the interpreter and its imports start once per pod instead of once per probe. Watches run in
    the same program beside the batches; their event lines are filed under their watch as they are read.

    Nothing reads in the background: whoever waits (a batch's answer, a watch's events) reads what has come,
    one reader at a time."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._buffer = ""
        self._answers: list[str] = []
        self._watch_events: dict[str, list[dict[str, Any]]] = {}
        self._stderr = ""
        self._watches = 0
        self._reading = threading.Lock()
        self._writing = threading.Lock()
        self.lock = threading.Lock()
        """One batch at a time."""

    @property
    def alive(self) -> bool:
        return bool(self._stream.is_open())

    def ended(self) -> str | None:
        """Why the session is over (the program's last error output), or None while it runs."""
        if self.alive:
            return None
        return self._stderr.strip()[-1500:] or "no output"

    def send(self, message: Mapping[str, Any]) -> None:
        with self._writing:
            self._stream.write_stdin(json.dumps(dict(message)) + "\n")

    def read(self, timeout: float, wait: bool = True) -> None:
        """Reads what the program wrote, waiting up to ``timeout`` for something; with ``wait`` false, returns at
        once when another thread is reading."""
        if not self._reading.acquire(blocking=wait):
            return
        try:
            if not self._stream.is_open():
                return
            try:
                self._stream.update(timeout=timeout)
                self._buffer += self._stream.read_stdout(timeout=0) or ""
                self._stderr = (self._stderr + (self._stream.read_stderr(timeout=0) or ""))[-4000:]
            except Exception as error:  # the connection went away (the cluster or the pod is gone)
                self._stderr += f"\n(probe session closed: {error})"
                self.close()
            *lines, self._buffer = self._buffer.split("\n")
            for line in lines:
                self._file(line)
        finally:
            self._reading.release()

    def _file(self, line: str) -> None:
        if not line.startswith(WATCH_LINE):
            self._answers.append(line)
            return
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            self._watch_events.setdefault(str(event.pop("watch")), []).append(event)

    def ask(self, batch: Mapping[str, Any], timeout: float) -> str:
        """The answer line to ``batch``; raises NatsnetError when the session ends or the deadline passes."""
        self.send(batch)
        deadline = time.monotonic() + timeout
        while not self._answers:
            left = deadline - time.monotonic()
            if left <= 0:
                self.close()
                raise NatsnetError(f"the probe did not answer within {timeout:g}s")
            if (why := self.ended()) is not None:
                raise NatsnetError(f"the probe session ended: {why}")
            self.read(min(left, 1.0))
        return self._answers.pop(0)

    def watch(self, request: Mapping[str, Any]) -> SessionWatch:
        """Starts a watch in the program (``request`` as for ``probe.pyz watch``)."""
        with self._writing:
            self._watches += 1
            watch_id = f"w{self._watches}"
        self.send({"watch": watch_id, "request": dict(request)})
        return SessionWatch(self, watch_id)

    def watch_events(self, watch_id: str) -> list[dict[str, Any]]:
        return list(self._watch_events.get(watch_id, ()))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stream.close_channel(0)
        with contextlib.suppress(Exception):
            self._stream.close()


class SessionWatch:
    """A watch running in a probe session: its events as read so far; ``stop`` asks the program to end it and
    waits (bounded) for its summary."""

    def __init__(self, session: ProbeSession, watch_id: str) -> None:
        self._session = session
        self._id = watch_id

    def _summarised(self) -> bool:
        return any(e.get("event") == "summary" for e in self._session.watch_events(self._id))

    def events(self) -> list[dict[str, Any]]:
        self._session.read(0, wait=False)
        events = self._session.watch_events(self._id)
        why = self._session.ended()
        if why is not None and not self._summarised():
            events.append({"event": "exited", "mono": 0.0, "returncode": None, "stderr": why})
        return events

    def stop(self, timeout: float = 15.0) -> list[dict[str, Any]]:
        with contextlib.suppress(Exception):
            self._session.send({"unwatch": self._id})
        deadline = time.monotonic() + timeout
        while not self._summarised() and self._session.ended() is None and time.monotonic() < deadline:
            self._session.read(min(deadline - time.monotonic(), 0.5))
        return self.events()


class KubeDeployment(CellHandle):
    """One cell in its namespace of a cluster, installed and observed through the Kubernetes API."""

    def __init__(self, cell: CellManifests, info: ProviderInfo, client: KubeClient, tools: ClusterTools) -> None:
        super().__init__(cell, info)
        self._client = client
        self._tools = tools
        self._namespaces: list[str] = [cell.namespace]
        self._probe_pods: set[tuple[str, str]] = set()
        self._watches: list[SessionWatch] = []
        self._sessions: dict[tuple[str, str], ProbeSession] = {}
        self._lock = threading.Lock()

    @property
    def client(self) -> KubeClient:
        return self._client

    @property
    def tools(self) -> ClusterTools:
        return self._tools

    @property
    def namespaces(self) -> list[str]:
        """The cell's namespace first, then those its tests created (other clients, canaries)."""
        with self._lock:
            return list(self._namespaces)

    @property
    def manifests(self) -> CellManifests:
        """The cell as it was rendered for install (TLS Secrets included: write it only redacted)."""
        return self._cell

    # -- install ---------------------------------------------------------------------------------------------

    def install(self, timeout: float) -> None:
        """Creates the labelled namespace, installs the cell (``helm install`` after the plugin's own objects such as
        TLS Secrets, or server-side apply of everything) and waits until every pod of the StatefulSet is Ready (a
        cell that declares it never will: until they run). A failure carries this deployment
        (``natsnet_deployment``): the run writes the cell's evidence from it, then tears it down."""
        try:
            self._install(timeout)
        except NatsnetError as error:
            error.natsnet_deployment = self  # type: ignore[attr-defined]
            raise

    def _install(self, timeout: float) -> None:
        self._client.apply(self._namespace_object(self.namespace, {}))
        failed = threading.Event()
        probe = threading.Thread(target=self._prepare_probe,
                                 args=(ProbeTarget(self.namespace, CLIENT_LABELS), failed),
                                 name=f"natsnet-probe-{self.namespace}", daemon=True)
        probe.start()  # the cell's probe pod starts beside its servers, not after them
        try:
            self._install_chart(timeout)
        except BaseException:
            failed.set()  # the probe stops waiting: the failure is reported, the namespace torn down, at once
            raise
        finally:
            probe.join()  # bounded by the probe pod's own waits

    def _install_chart(self, timeout: float) -> None:
        chart = self._cell.chart
        if chart is not None and self._tools.helm:
            for obj in self._cell.prerequisites:  # what the chart mounts but does not render (TLS Secrets)
                self._client.apply(dict(obj), self.namespace)
            argv = helm_install_argv(self._tools.helm, chart.chart, chart.version, self.release, self.namespace,
                                     chart.values_files, self._tools.kubeconfig, self._tools.context, timeout,
                                     chart.repo)
            self._tools.run(argv, timeout=timeout + 30)
        else:
            text = yaml.safe_dump_all(list(self._cell.objects), sort_keys=False)
            self._tools.run(self._tools.kubectl_argv("apply", "--server-side", "--field-manager=pytest-natsnet",
                                                     "--namespace", self.namespace, "-f", "-"), input=text)
        if self._cell.ready_expected:
            self.wait_ready(timeout)
        else:
            self.wait_running(timeout)

    def _namespace_object(self, name: str, labels: Mapping[str, str]) -> Obj:
        return {"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name, "labels": {**self._cell.labels, **labels}}}

    # -- the Deployment protocol ----------------------------------------------------------------------------

    def objects(self, kind: str, namespace: str | None = None) -> list[Obj]:
        where = None if namespace == "*" else (namespace or self.namespace)
        if kind == "Namespace":
            where = None
        return self._client.list(kind, where)

    def apply(self, objects: Sequence[Obj], namespace: str | None = None) -> None:
        for obj in objects:
            self._client.apply(dict(obj), namespace or self.namespace)

    def create_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> None:
        self._client.apply(self._namespace_object(name, labels or {}))
        with self._lock:
            if name not in self._namespaces:
                self._namespaces.append(name)

    def delete(self, kind: str, name: str, namespace: str | None = None,
               grace_seconds: float | None = None) -> None:
        if kind == "Namespace":
            self._client.delete("Namespace", name, None)
            return
        self._client.delete(kind, name, namespace or self.namespace, grace_seconds)

    def wait_ready(self, timeout: float) -> None:
        """Waits until every pod of the StatefulSet is Ready (the plugin's readiness gates opened as pods run);
        stops at once with PodCannotStart when a pod says it never will."""
        self._wait_for_pods(timeout, statefulset_settled, "StatefulSet ready")

    def wait_running(self, timeout: float) -> None:
        """Waits until every pod of the StatefulSet exists and runs (phase Running), Ready or not, opening the
        plugin's readiness gates as they run; stops at once with PodCannotStart when a pod says it never will."""
        self._wait_for_pods(timeout, statefulset_running, "StatefulSet pods running")

    def _wait_for_pods(self, timeout: float,
                       judge: Callable[[Obj, Sequence[Obj]], tuple[bool, str]], what: str) -> None:
        first_blocked: list[float] = []

        def check() -> tuple[bool, str]:
            pods = self.objects("Pod")
            blocked = pods_that_cannot_start(pods)
            if blocked:  # reported once every server's pod has its verdict (bounded), so that the line names all
                undecided = undecided_pods(self.objects("StatefulSet"), pods)
                first_blocked[:] = first_blocked or [time.monotonic()]
                if not undecided or time.monotonic() - first_blocked[0] >= VERDICT_GRACE:
                    raise PodCannotStart(f"in namespace {self.namespace}: {'; '.join(blocked)}")
                return False, f"{'; '.join(blocked)}; not judged yet: {', '.join(undecided)}"
            for pod in pods_needing_gate(pods):
                self.set_pod_condition(pod, POD_GATE_CONDITION, True)
            sets = self.objects("StatefulSet")
            if not sets:
                return False, "no StatefulSet yet"
            states = [judge(s, pods) for s in sets]
            return all(done for done, _ in states), "; ".join(state for _, state in states)

        with Changes(self._client, self.namespace, ("Pod", "StatefulSet")) as changes:
            wait_until(check, timeout, f"{what} in namespace {self.namespace}", poll=CHANGE_POLL,
                       sleep=changes.sleep)

    def set_pod_condition(self, pod: str, condition_type: str, status: bool) -> None:
        live = self._client.get("Pod", pod, self.namespace)
        if live is None:
            raise NatsnetError(f"pod {self.namespace}/{pod} does not exist")
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._client.patch_status("Pod", pod, self.namespace, pod_condition_patch(live, condition_type, status, now))

    # -- probes ----------------------------------------------------------------------------------------------

    def _ensure_probe_pod(self, target: ProbeTarget, timeout: float,
                          abandoned: threading.Event | None = None) -> None:
        """Creates the probe pod once and waits until it runs (or ``abandoned`` is set); the program goes into it
        with its session (:meth:`_session`)."""
        key = (target.namespace, target.pod_name)
        with self._lock:
            if key in self._probe_pods:
                return
        if self._client.get("Namespace", target.namespace, None) is None:
            self.create_namespace(target.namespace)
        if target.external and "external" not in self.info.probe_annotations:
            raise NatsnetError(f"provider {self.info.name} cannot run a client outside the cluster network")
        annotations = self.info.probe_annotations.get("external") if target.external else None
        self._client.apply(probe_pod_manifest(target, annotations))

        def running() -> tuple[bool, str]:
            if abandoned is not None and abandoned.is_set():
                raise NatsnetError(f"preparing probe pod {target.namespace}/{target.pod_name} was abandoned")
            pod = self._client.get("Pod", target.pod_name, target.namespace) or {}
            statuses = (pod.get("status") or {}).get("containerStatuses") or []
            started = any((s.get("state") or {}).get("running") for s in statuses)
            return started, f"probe pod phase {(pod.get('status') or {}).get('phase')}"

        wait_until(running, timeout, f"probe pod {target.namespace}/{target.pod_name} running", poll=READY_POLL)
        with self._lock:
            self._probe_pods.add(key)

    def _prepare_probe(self, target: ProbeTarget, abandoned: threading.Event) -> None:
        """Readies ``target``'s probe pod and session ahead of the first probe, until ``abandoned``; a failure is
        left to that probe, which prepares them again and reports what went wrong."""
        with contextlib.suppress(Exception):
            self._ensure_probe_pod(target, COMMAND_TIMEOUT, abandoned)
            if not abandoned.is_set():
                self._session(target)

    def _session(self, target: ProbeTarget) -> ProbeSession:
        """The target's probe session, started when there is none alive: one exec that receives the program
        (written to ``PROBE_ARCHIVE``) and then serves batches."""
        key = (target.namespace, target.pod_name)
        with self._lock:
            session = self._sessions.get(key)
            if session is not None and session.alive:
                return session
            bundle = probe_bundle()
            stream = self._client.exec_stream(target.pod_name, PROBE_CONTAINER, target.namespace,
                                              ["python3", "-c", PROBE_BOOTSTRAP, PROBE_ARCHIVE, str(len(bundle))])
            stream.write_stdin(bundle)
            session = self._sessions[key] = ProbeSession(stream)
            return session

    def probe(self, target: ProbeTarget, batch: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        """Runs ``batch`` in the target's probe pod (created and prepared once), through its probe session."""
        self._ensure_probe_pod(target, COMMAND_TIMEOUT)
        session = self._session(target)
        with session.lock:
            line = session.ask(batch, timeout)
        try:
            answer: dict[str, Any] = json.loads(line)
        except ValueError:
            raise NatsnetError(f"probe in {target.namespace}/{target.pod_name} answered no JSON: {line[-2000:]}"
                               ) from None
        return answer

    def watch(self, target: ProbeTarget, request: Mapping[str, Any]) -> SessionWatch:
        """Starts a watch in the target's probe session, beside its batches (no pod or program of its own)."""
        self._ensure_probe_pod(target, COMMAND_TIMEOUT)
        watch = self._session(target).watch(request)
        with self._lock:
            self._watches.append(watch)
        return watch

    # -- logs, evidence, teardown ----------------------------------------------------------------------------

    def logs(self, pod: str, container: str = "nats", namespace: str | None = None) -> str:
        """Every start's log, oldest first: the previous container's (when it restarted), then the current."""
        where = namespace or self.namespace
        try:
            previous = self._client.logs(pod, container, where, previous=True)
        except KubeError:
            previous = ""
        return previous + self._client.logs(pod, container, where)

    def read_file(self, pod: str, path: str, container: str = "nats") -> str:
        result = self._client.exec(pod, container, self.namespace, ["cat", path], timeout=COMMAND_TIMEOUT)
        if result.returncode != 0:
            raise NatsnetError(f"reading {path} in {self.namespace}/{pod} ({container}) failed "
                               f"(exit {result.returncode}): {result.stderr.strip()[-500:]}")
        return result.stdout

    def collect(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for namespace in list(self._namespaces):
            for kind in EVIDENCE_KINDS:
                try:
                    items = self.objects(kind, namespace)
                except NatsnetError as error:  # evidence is best effort: record why a kind is missing
                    (directory / f"{namespace}-{kind}.error.txt").write_text(str(error))
                    continue
                if items:
                    (directory / f"{namespace}-{kind}.yaml").write_text(yaml.safe_dump_all(items))
            for pod in self.objects("Pod", namespace):
                for container in kube.spec(pod).get("containers") or []:
                    try:
                        text = self.logs(kube.name(pod), container["name"], namespace)
                    except NatsnetError as error:
                        text = f"(no log: {error})"
                    (directory / f"{namespace}-{kube.name(pod)}-{container['name']}.log").write_text(text)

    def teardown(self) -> None:
        """Stops the cell's watches, ``helm uninstall`` (helm cells), then the cell's namespaces; idempotent."""
        with self._lock:
            watches, self._watches = self._watches, []
            sessions, self._sessions = list(self._sessions.values()), {}
        for watch in watches:
            watch.stop(timeout=5.0)
        for session in sessions:
            session.close()
        chart = self._cell.chart
        if chart is not None and self._tools.helm:
            argv = helm_uninstall_argv(self._tools.helm, self.release, self.namespace, self._tools.kubeconfig,
                                       self._tools.context, COMMAND_TIMEOUT)
            with contextlib.suppress(NatsnetError, subprocess.SubprocessError):
                self._tools.run(argv)
        for namespace in reversed(self._namespaces):
            with contextlib.suppress(NatsnetError):
                self._client.delete("Namespace", namespace, None)
        with self._lock:
            self._probe_pods.clear()


def wait_namespaces_gone(client: KubeClient, names: Sequence[str], timeout: float) -> None:
    """Waits until the namespaces are gone (a deletion is asynchronous on every cluster)."""

    def gone() -> tuple[bool, str]:
        left = sorted(n for n in set(names) if client.get("Namespace", n, None) is not None)
        return not left, f"still present: {', '.join(left)}"

    wait_until(gone, timeout, f"namespaces {', '.join(names)} deleted", poll=READY_POLL)


def own_kubeconfig(source: Path | str, target: Path) -> Path:
    """An xdist worker's own copy of the owner's kubeconfig (mode 0600): tools that rewrite the file they are
    given (kind export, refreshed tokens) never race the owner's."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    target.chmod(0o600)
    return target


def install_cell(cell: CellManifests, info: ProviderInfo, client: KubeClient, tools: ClusterTools,
                 timeout: float) -> KubeDeployment:
    """What every provider's ``deploy`` does once it has a cluster: one KubeDeployment, installed (bounded)."""
    deployment = KubeDeployment(cell, info, client, tools)
    deployment.install(timeout)
    return deployment
