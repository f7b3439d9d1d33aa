"""The kubernetes Python client (JSON only, no discovery) against ``natsnet sandbox up``: list, create, watch
(resourceVersion, timeoutSeconds), a status patch sent as a JSON patch list, and exec through ``stream()``
(v5 channel protocol, text stdin frames, the exit Status)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import SandboxApi, needs_sandbox
from kubernetes import client, config, watch
from kubernetes.stream import stream

from pytest_natsnet.kubeclient import KubeClient, KubeError

pytestmark = [needs_sandbox, pytest.mark.xdist_group("sandbox-api-client")]

NS = "pyclient"


@pytest.fixture(scope="module")
def core(sandbox_api: SandboxApi) -> Iterator[client.CoreV1Api]:
    api_client = config.new_client_from_config(config_file=str(sandbox_api.kubeconfig))
    core = client.CoreV1Api(api_client)
    core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    yield core
    api_client.close()


def python_pod(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"terminationGracePeriodSeconds": 1, **spec,
                     "containers": [{"name": "main", "image": "python:3.12-alpine", "command": ["sleep", "86400"]}]}}


def wait_for(check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_list_namespaces_and_pods(core: client.CoreV1Api) -> None:
    names = {ns.metadata.name for ns in core.list_namespace().items}
    assert {"default", "kube-system", NS} <= names
    pods = core.list_namespaced_pod("kube-system")
    assert [p.metadata.name for p in pods.items] == ["coredns-sandbox"] and pods.items[0].status.phase == "Running"


def test_watch_sees_a_pod_come_up(core: client.CoreV1Api) -> None:
    rv = core.list_namespaced_pod(NS).metadata.resource_version
    seen: list[tuple[str, str | None]] = []

    def follow() -> None:
        for event in watch.Watch().stream(core.list_namespaced_pod, NS, resource_version=rv, timeout_seconds=30,
                                          label_selector="app=watched"):
            seen.append((event["type"], event["object"].status.phase))
            if event["object"].status.phase == "Running":
                return

    watcher = threading.Thread(target=follow)
    watcher.start()
    core.create_namespaced_pod(NS, python_pod("watched"))
    watcher.join(timeout=40)
    assert seen[0] == ("ADDED", "Pending") and seen[-1] == ("MODIFIED", "Running")


def test_status_patch_as_a_json_patch_list_opens_a_readiness_gate(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod(NS, python_pod("gated", readinessGates=[{"conditionType": "natsnet.io/gate"}]))

    def conditions() -> dict[str, str]:
        pod = core.read_namespaced_pod_status("gated", NS)
        return {c.type: c.status for c in pod.status.conditions or []}

    assert wait_for(lambda: conditions().get("ContainersReady") == "True")
    assert conditions()["Ready"] == "False"
    patch = [{"op": "add", "path": "/status/conditions/-", "value": {"type": "natsnet.io/gate", "status": "True"}}]
    core.patch_namespaced_pod_status("gated", NS, patch)
    assert wait_for(lambda: conditions().get("Ready") == "True", timeout=10)


def test_exec_stream_with_stdin_and_exit_codes(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod(NS, python_pod("shell"))
    assert wait_for(lambda: core.read_namespaced_pod("shell", NS).status.phase == "Running")
    out = stream(core.connect_get_namespaced_pod_exec, "shell", NS, command=["sh", "-c", "echo hi; uname -n"],
                 stderr=True, stdin=False, stdout=True, tty=False)
    assert out.split() == ["hi", "shell"]
    session = stream(core.connect_get_namespaced_pod_exec, "shell", NS, command=["sh", "-c", "read x; exit $x"],
                     stderr=True, stdin=True, stdout=True, tty=False, _preload_content=False)
    session.write_stdin("7\n")
    session.run_forever(timeout=20)
    assert session.returncode == 7
    session.close()


def test_requests_in_other_threads_stay_plain_while_an_exec_stream_connects(
    core: client.CoreV1Api, sandbox_api: SandboxApi
) -> None:
    """``stream()`` swaps its client's request function while it connects; KubeClient keeps exec streams on their
    own client, so lists from other threads (a cell's probe pod prepared beside its readiness wait) stay lists."""
    core.create_namespaced_pod(NS, python_pod("streams"))
    assert wait_for(lambda: core.read_namespaced_pod("streams", NS).status.phase == "Running")
    kube_client = KubeClient(sandbox_api.kubeconfig)
    errors: list[str] = []
    done = threading.Event()

    def lists() -> None:
        while not done.is_set():
            try:
                kube_client.list("Pod", NS)
            except KubeError as error:
                errors.append(str(error)[:300])

    listers = [threading.Thread(target=lists) for _ in range(2)]
    for lister in listers:
        lister.start()
    try:
        for _ in range(20):
            assert kube_client.exec("streams", "main", NS, ["true"], timeout=30).returncode == 0
    finally:
        done.set()
        for lister in listers:
            lister.join(timeout=30)
    assert errors == []
