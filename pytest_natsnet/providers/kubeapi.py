"""Shared code of the kind and existing providers: kubectl/helm argv, API reads, waits, probe pods."""

from __future__ import annotations

import contextlib
import datetime
import json
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import tenacity
import yaml

from pytest_natsnet import kube
from pytest_natsnet.errors import NatsnetError
from pytest_natsnet.kube import Obj
from pytest_natsnet.providers.base import POD_GATE_CONDITION, CellHandle, CellManifests, ProbeTarget, ProviderInfo
from pytest_natsnet.report.progress import note
from pytest_natsnet.sources.helm import helm_install_argv, helm_uninstall_argv
from pytest_natsnet.tools import Runner, run_checked

PROBE_IMAGE = "python:3.12-alpine"
PROBE_DIR = "/natsnet"
PROBE_PROGRAM = Path(__file__).resolve().parents[1] / "probe" / "program.py"
KUBECTL_TIMEOUT = 120.0
POLL_SECONDS = 2.0


class WaitTimeout(NatsnetError):
    """A bounded wait ran out; says what it waited for and what it saw last."""


class ObjectReader(Protocol):
    """Reads live objects as plain dicts (the kubernetes client, or a fake in tests)."""

    def list(self, kind: str, namespace: str | None) -> list[Obj]: ...


# ------------------------------------------------------------------------------------------- pure helpers


def kubectl_argv(kubectl: str, kubeconfig: Path | str, context: str | None, *args: str) -> list[str]:
    """kubectl with the cluster named explicitly on every call."""
    argv = [kubectl, "--kubeconfig", str(kubeconfig)]
    if context:
        argv += ["--context", context]
    return [*argv, *args]


def namespace_manifest(name: str, labels: Mapping[str, str]) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": dict(labels)}}


def statefulset_ready(sts: Mapping[str, Any]) -> bool:
    """Ready = the controller observed the current generation and every replica is ready."""
    status = sts.get("status") or {}
    metadata = sts.get("metadata") or {}
    replicas = int((sts.get("spec") or {}).get("replicas", 1))
    return (
        status.get("observedGeneration") == metadata.get("generation")
        and int(status.get("readyReplicas") or 0) == replicas
    )


def statefulset_settled(sts: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> tuple[bool, str]:
    """Whether the StatefulSet's cell is whole, and what is missing: the controller saw the current generation,
    and every ordinal's pod exists, is not terminating and is Ready.

    ``status.readyReplicas`` alone is not enough: it still counts a pod whose deletion has begun while the pod is
    Ready (the kubelet keeps probing readiness during termination and the chart's lame duck lasts ~40 s).
    """
    name = kube.name(sts)
    if not statefulset_ready(sts):
        status = sts.get("status") or {}
        return False, (f"StatefulSet {name} generation {(sts.get('metadata') or {}).get('generation')} observed "
                       f"{status.get('observedGeneration')}, ready {status.get('readyReplicas') or 0}/"
                       f"{int(kube.spec(sts).get('replicas', 1))}")
    by_name = {kube.name(p): p for p in pods}
    problems = []
    for ordinal in range(int(kube.spec(sts).get("replicas", 1))):
        pod = by_name.get(f"{name}-{ordinal}")
        if pod is None:
            problems.append(f"{name}-{ordinal} missing")
        elif (pod.get("metadata") or {}).get("deletionTimestamp"):
            problems.append(f"{name}-{ordinal} terminating")
        elif not any(c.get("type") == "Ready" and c.get("status") == "True"
                     for c in (pod.get("status") or {}).get("conditions") or []):
            problems.append(f"{name}-{ordinal} not Ready")
    return not problems, "; ".join(problems) or f"StatefulSet {name}: every pod present and Ready"


def pod_condition_patch(pod: Mapping[str, Any], condition_type: str, status: bool, now: str) -> list[Obj]:
    """The JSON patch setting ``condition_type`` (replace in place when present, else append)."""
    value = {"type": condition_type, "status": "True" if status else "False", "lastTransitionTime": now}
    conditions = (pod.get("status") or {}).get("conditions") or []
    for index, condition in enumerate(conditions):
        if condition.get("type") == condition_type:
            return [{"op": "replace", "path": f"/status/conditions/{index}", "value": value}]
    if not conditions:
        return [{"op": "add", "path": "/status/conditions", "value": [value]}]
    return [{"op": "add", "path": "/status/conditions/-", "value": value}]


def pods_needing_gate(pods: Sequence[Mapping[str, Any]]) -> list[str]:
    """Running pods with the plugin's readinessGate whose condition was never set."""
    names = []
    for pod in pods:
        gates = [g.get("conditionType") for g in kube.spec(pod).get("readinessGates") or []]
        status = pod.get("status") or {}
        seen = {c.get("type") for c in status.get("conditions") or []}
        running = status.get("phase") == "Running"
        if POD_GATE_CONDITION in gates and running and POD_GATE_CONDITION not in seen:
            names.append(kube.name(pod))
    return names


def probe_pod_manifest(target: ProbeTarget, image: str = PROBE_IMAGE) -> Obj:
    """A stock Python pod that sleeps; the probe program is copied in and exec'd."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": target.name, "namespace": target.namespace, "labels": dict(target.labels)},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "probe", "image": image, "command": ["sleep", "86400"]}],
        },
    }


def probe_copy_sources() -> list[tuple[Path, str]]:
    """(local path, path in the pod): the program and the pure-Python ``dns`` and ``nats`` packages."""
    import dns
    import nats

    return [
        (PROBE_PROGRAM, f"{PROBE_DIR}/program.py"),
        (Path(next(iter(dns.__path__))), f"{PROBE_DIR}/dns"),
        (Path(next(iter(nats.__path__))), f"{PROBE_DIR}/nats"),
    ]


def wait_until(check: Callable[[], tuple[bool, str]], timeout: float, what: str,
               poll: float = POLL_SECONDS) -> None:
    """Polls ``check() -> (done, state)`` until done; WaitTimeout names ``what`` and the last state."""
    last = ["nothing observed yet"]

    def attempt() -> bool:
        done, state = check()
        last[0] = state
        note(state)  # a long step's progress line says what it waits for
        return done

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_delay(timeout),
        wait=tenacity.wait_fixed(poll),
        retry=tenacity.retry_if_result(lambda done: not done),
        reraise=True,
    )
    try:
        retrying(attempt)
    except tenacity.RetryError:
        raise WaitTimeout(f"timed out after {timeout:g}s waiting for {what}; last seen: {last[0]}") from None


# ---------------------------------------------------------------------------------------------- API reads


_KIND_CALLS: Mapping[str, tuple[str, str]] = {
    "Pod": ("CoreV1Api", "pod"),
    "Service": ("CoreV1Api", "service"),
    "ConfigMap": ("CoreV1Api", "config_map"),
    "Event": ("CoreV1Api", "event"),
    "Secret": ("CoreV1Api", "secret"),
    "EndpointSlice": ("DiscoveryV1Api", "endpoint_slice"),
    "NetworkPolicy": ("NetworkingV1Api", "network_policy"),
    "StatefulSet": ("AppsV1Api", "stateful_set"),
}


class KubernetesReader:
    """Reads through the kubernetes client, configured from one kubeconfig file and context."""

    def __init__(self, kubeconfig: Path, context: str | None) -> None:
        from kubernetes import config

        # persist_config=False: never write refreshed credentials back into the user's kubeconfig.
        self._client = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig), context=context, persist_config=False
        )

    def list(self, kind: str, namespace: str | None) -> list[Obj]:
        import kubernetes.client as k8s

        if kind == "Namespace":
            result = k8s.CoreV1Api(self._client).list_namespace()
        else:
            if kind not in _KIND_CALLS:
                raise ValueError(f"reading {kind} is not supported")
            api_name, noun = _KIND_CALLS[kind]
            api = getattr(k8s, api_name)(self._client)
            if namespace is None:
                result = getattr(api, f"list_{noun}_for_all_namespaces")()
            else:
                result = getattr(api, f"list_namespaced_{noun}")(namespace)
        items = self._client.sanitize_for_serialization(result).get("items") or []
        for item in items:
            item.setdefault("kind", kind)
        return [dict(i) for i in items]


# ---------------------------------------------------------------------------------------------- deployment


class WatchProcess:
    """A running ``watch`` probe: its JSON-line events, collected by a reader thread."""

    def __init__(self, process: subprocess.Popen[str], stderr_path: Path | None = None) -> None:
        self._process = process
        self.stderr_path = stderr_path
        self._events: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            try:
                self._events.append(json.loads(line))
            except json.JSONDecodeError:
                continue

    def events(self) -> list[dict[str, Any]]:
        events = list(self._events)
        if self._process.poll() is not None and not any(e.get("event") == "summary" for e in events):
            stderr = self.stderr_path.read_text(errors="replace")[-1500:] if self.stderr_path else ""
            events.append({"event": "exited", "mono": 0.0, "returncode": self._process.returncode,
                           "stderr": stderr})
        return events

    def stop(self) -> list[dict[str, Any]]:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._thread.join(timeout=5)
        return self.events()


class KubeDeployment(CellHandle):
    """One cell on a real cluster, driven by kubectl/helm argv and read through ``reader``."""

    def __init__(self, cell: CellManifests, info: ProviderInfo, runner: Runner, reader: ObjectReader,
                 kubectl: str, helm: str | None, kubeconfig: Path, context: str | None) -> None:
        super().__init__(cell, info)
        self._runner = runner
        self._reader = reader
        self._kubectl = kubectl
        self._helm = helm
        self._kubeconfig = kubeconfig
        self._context = context
        self._namespaces: list[str] = [cell.namespace]

    def kubectl(self, *args: str, input: str | None = None, timeout: float = KUBECTL_TIMEOUT) -> str:
        argv = kubectl_argv(self._kubectl, self._kubeconfig, self._context, *args)
        return run_checked(self._runner, argv, input=input, timeout=timeout)

    def install(self, timeout: float) -> None:
        """Creates the labelled namespace, installs the cell (helm or kubectl apply) and waits for it."""
        namespace = namespace_manifest(self.namespace, self._cell.labels)
        self.kubectl("apply", "-f", "-", input=json.dumps(namespace))
        chart = self._cell.chart
        if chart is not None and self._helm:
            argv = helm_install_argv(self._helm, chart.chart, chart.version, self.release, self.namespace,
                                     chart.values_files, self._kubeconfig, self._context, timeout, chart.repo)
            run_checked(self._runner, argv, timeout=timeout)
        else:
            self.apply(self._cell.objects)
        self.wait_ready(timeout)

    def objects(self, kind: str, namespace: str | None = None) -> list[Obj]:
        where = None if namespace == "*" else (namespace or self.namespace)
        return self._reader.list(kind, where)

    def apply(self, objects: Sequence[Obj], namespace: str | None = None) -> None:
        text = yaml.safe_dump_all(list(objects), sort_keys=False)
        self.kubectl("apply", "--namespace", namespace or self.namespace, "-f", "-", input=text)

    def create_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> None:
        merged = {**self._cell.labels, **(labels or {})}
        self.kubectl("apply", "-f", "-", input=json.dumps(namespace_manifest(name, merged)))
        self._namespaces.append(name)

    def delete(self, kind: str, name: str, namespace: str | None = None,
               grace_seconds: float | None = None) -> None:
        if kind == "Namespace":
            self.kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=false")
            return
        grace = [] if grace_seconds is None else [f"--grace-period={max(1, round(grace_seconds))}"]
        self.kubectl("delete", kind.lower(), name, "--namespace", namespace or self.namespace,
                     "--ignore-not-found", "--wait=false", *grace)

    def _statefulset(self) -> Obj | None:
        return next(iter(self.objects("StatefulSet")), None)

    def wait_ready(self, timeout: float) -> None:
        def check() -> tuple[bool, str]:
            pods = self.objects("Pod")
            for pod in pods_needing_gate(pods):
                self.set_pod_condition(pod, POD_GATE_CONDITION, True)
            sts = self._statefulset()
            if sts is None:
                return False, "no StatefulSet yet"
            return statefulset_settled(sts, pods)

        wait_until(check, timeout, f"StatefulSet ready in namespace {self.namespace}")

    def set_pod_condition(self, pod: str, condition_type: str, status: bool) -> None:
        live = json.loads(self.kubectl("get", "pod", pod, "--namespace", self.namespace, "-o", "json"))
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        patch = pod_condition_patch(live, condition_type, status, now)
        self.kubectl("patch", "pod", pod, "--namespace", self.namespace, "--subresource=status",
                     "--type=json", "-p", json.dumps(patch))

    def _ensure_probe_pod(self, target: ProbeTarget, timeout: float) -> None:
        self.kubectl("apply", "-f", "-", input=json.dumps(probe_pod_manifest(target)))
        self.kubectl("wait", "--namespace", target.namespace, "--for=condition=Ready", f"pod/{target.name}",
                     f"--timeout={max(1, int(timeout))}s", timeout=timeout + 10)
        for local, remote in probe_copy_sources():
            self.kubectl("cp", "--namespace", target.namespace, str(local), f"{target.name}:{remote}",
                         "-c", "probe")

    def _exec_argv(self, target: ProbeTarget, *args: str) -> list[str]:
        return kubectl_argv(self._kubectl, self._kubeconfig, self._context, "exec", "-i", "--namespace",
                            target.namespace, target.name, "-c", "probe", "--", "python3",
                            f"{PROBE_DIR}/program.py", *args)

    def probe(self, target: ProbeTarget, batch: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        if target.external:
            raise NatsnetError("external probes are not supported on this provider")
        self._ensure_probe_pod(target, timeout)
        output = run_checked(self._runner, self._exec_argv(target), input=json.dumps(dict(batch)),
                             timeout=timeout)
        answer: dict[str, Any] = json.loads(output)
        return answer

    def watch(self, target: ProbeTarget, request: Mapping[str, Any]) -> WatchProcess:
        self._ensure_probe_pod(target, KUBECTL_TIMEOUT)
        process = subprocess.Popen(self._exec_argv(target, "watch"), stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert process.stdin is not None
        process.stdin.write(json.dumps(dict(request)) + "\n")
        process.stdin.flush()
        return WatchProcess(process)

    def logs(self, pod: str, container: str = "nats", namespace: str | None = None) -> str:
        where = namespace or self.namespace
        try:
            previous = self.kubectl("logs", pod, "-c", container, "--namespace", where, "--previous")
        except NatsnetError:
            previous = ""
        return previous + self.kubectl("logs", pod, "-c", container, "--namespace", where)

    def collect(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for namespace in self._namespaces:
            for kind in ("StatefulSet", "Pod", "Service", "EndpointSlice", "NetworkPolicy", "ConfigMap",
                         "Event"):
                try:
                    items = self.objects(kind, namespace)
                except Exception as exc:  # evidence is best effort: record why a kind is missing
                    (directory / f"{namespace}-{kind}.error.txt").write_text(str(exc))
                    continue
                (directory / f"{namespace}-{kind}.yaml").write_text(yaml.safe_dump_all(items))
            for pod in self.objects("Pod", namespace):
                for container in kube.spec(pod).get("containers") or []:
                    name = f"{namespace}-{kube.name(pod)}-{container['name']}.log"
                    try:
                        text = self.logs(kube.name(pod), container["name"], namespace)
                    except NatsnetError as exc:
                        text = f"(no log: {exc})"
                    (directory / name).write_text(text)

    def teardown(self) -> None:
        if self._cell.chart is not None and self._helm:
            argv = helm_uninstall_argv(self._helm, self.release, self.namespace, self._kubeconfig,
                                       self._context, KUBECTL_TIMEOUT)
            with contextlib.suppress(NatsnetError):  # the namespace deletion below removes what is left
                run_checked(self._runner, argv, timeout=KUBECTL_TIMEOUT)
        for namespace in reversed(self._namespaces):
            self.delete("Namespace", namespace)
