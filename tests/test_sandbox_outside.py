"""The outside of the sandbox cluster: NodePort and LoadBalancer Services on the node's address, and a client
outside the cluster network that reaches nothing else (issue #12, row 6).

What a client next to a kind cluster sees (the CI runner): the node's address on the docker network, no route to
the pod CIDR or the Service CIDR, kube-proxy's NodePorts on the node (``pkg/proxy/iptables/proxier.go``:
``KUBE-NODEPORTS``, masquerade unless ``externalTrafficPolicy: Local``, a NodePort without endpoints rejected);
a LoadBalancer Service gets NodePorts (``allocateLoadBalancerNodePorts`` defaults to true) and, without a
load-balancer controller (kind has none), no ingress address. Admission tests are pure; the rest runs a real
sandbox (root with ``ip``, ``nft``, ``bwrap``, ``nsenter``).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_natsnet.kube import Obj
from pytest_natsnet.sandbox import netns
from pytest_natsnet.sandbox.admission import Admission
from pytest_natsnet.sandbox.cluster import EXTERNAL_ANNOTATION, PROBE_IMAGE, SERVICE_MIN_SYNC, SandboxCluster
from pytest_natsnet.sandbox.controllers import pod_is_ready

NATS_SERVER = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "nats-server"
NS = "outside"
GET = (
    "import sys, urllib.request\n"
    "try:\n"
    "    print(urllib.request.urlopen(sys.argv[1], timeout=2).status)\n"
    "except OSError as error:\n"
    "    print(type(getattr(error, 'reason', error)).__name__)\n"
)
PEER = "import sys, urllib.request\nprint(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())\n"
SERVE_PEER = (  # answers every GET with the address the connection came from
    "import http.server as h\n"
    "class Peer(h.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        body = self.client_address[0].encode()\n"
    "        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()\n"
    "        self.wfile.write(body)\n"
    "h.HTTPServer(('', 8080), Peer).serve_forever()\n"
)


# --- admission: NodePort allocation -----------------------------------------------------------------


def _admitted(spec: dict[str, Any], old: Obj | None = None) -> Obj:
    ports = iter(range(30000, 30010))
    obj: Obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "a"}, "spec": spec}
    Admission(lambda: "198.18.128.20", lambda: next(ports))(obj, old)
    return obj


def test_node_port_and_load_balancer_services_get_node_ports() -> None:
    node_port = _admitted({"type": "NodePort", "ports": [{"port": 80}, {"port": 443, "nodePort": 31443}]})
    assert [p["nodePort"] for p in node_port["spec"]["ports"]] == [30000, 31443]
    assert node_port["spec"]["externalTrafficPolicy"] == "Cluster"
    balancer = _admitted({"type": "LoadBalancer", "ports": [{"port": 80}]})
    assert balancer["spec"]["ports"][0]["nodePort"] == 30000
    assert balancer["spec"]["allocateLoadBalancerNodePorts"] is True
    assert balancer["status"] == {"loadBalancer": {}}, "kind has no load-balancer controller: no ingress"
    opted_out = _admitted({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": False, "ports": [{"port": 80}]})
    assert "nodePort" not in opted_out["spec"]["ports"][0]
    assert "nodePort" not in _admitted({"ports": [{"port": 80}]})["spec"]["ports"][0]


def test_an_update_keeps_the_allocated_node_port() -> None:
    old = _admitted({"type": "NodePort", "ports": [{"port": 80}]})
    old["spec"]["ports"][0]["nodePort"] = 31234
    again = _admitted({"type": "NodePort", "ports": [{"port": 80}]}, old)
    assert again["spec"]["ports"][0]["nodePort"] == 31234


# --- a real sandbox ---------------------------------------------------------------------------------



def _pod(pod_name: str, command: str, labels: dict[str, str] | None = None, external: bool = False) -> Obj:
    metadata: dict[str, Any] = {"name": pod_name, "labels": labels or {}}
    if external:
        metadata["annotations"] = {EXTERNAL_ANNOTATION: "external"}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": {
        "terminationGracePeriodSeconds": 0,
        "containers": [{"name": "main", "image": PROBE_IMAGE, "command": ["sh", "-c", command],
                        "ports": [{"name": "http", "containerPort": 8080}]}]}}


def _service(svc_name: str, svc_type: str, selector: dict[str, str], **extra: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": svc_name},
            "spec": {"type": svc_type, "selector": selector, "ports": [{"port": 80, "targetPort": "http"}], **extra}}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxCluster]:
    if os.geteuid() != 0 or not all(shutil.which(c) for c in ("ip", "nft", "bwrap", "nsenter")):
        pytest.skip("needs root with ip, nft, bwrap and nsenter (network namespaces)")
    nats = NATS_SERVER if NATS_SERVER.is_file() else Path(shutil.which("nats-server") or "nats-server")
    cluster = SandboxCluster(f"to{os.getpid()}", tmp_path_factory.mktemp("outside"), nats, "fast")
    cluster.start()
    try:
        web = {"app": "web"}
        cluster.apply([
            _pod("web", f"exec python3 -c {shlex.quote(SERVE_PEER)}", web),
            _pod("client", "exec sleep 1000"),
            _pod("runner", "exec sleep 1000", external=True),
            _service("web-np", "NodePort", web),
            _service("web-lb", "LoadBalancer", web),
            _service("web-local", "NodePort", web, externalTrafficPolicy="Local"),
            _service("nobody", "NodePort", {"app": "nobody"}),
        ], NS)
        deadline = time.monotonic() + 30
        while True:
            pods = {p["metadata"]["name"]: p for p in cluster.list_objects("Pod", NS)}
            if len(pods) == 3 and all(pod_is_ready(p) for p in pods.values()):
                break
            assert time.monotonic() < deadline, {n: p["status"] for n, p in pods.items()}
            time.sleep(0.1)
        time.sleep(SERVICE_MIN_SYNC + 0.2)  # the Service rules of the pods that became Ready: one kube-proxy sync
        yield cluster
    finally:
        cluster.stop()
        left = [n for n in netns.list_netns() if f"-{cluster.id}-" in n]
        assert left == [], f"network namespaces left behind: {left}"


def _get(cluster: SandboxCluster, pod_name: str, url: str, script: str = GET) -> str:
    argv = cluster.exec_argv(NS, pod_name, "main", ["python3", "-c", script, url])
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout.strip()


def _node_port(cluster: SandboxCluster, svc_name: str) -> int:
    svc = next(s for s in cluster.list_objects("Service", NS) if s["metadata"]["name"] == svc_name)
    return int(svc["spec"]["ports"][0]["nodePort"])


def _pod_ip(cluster: SandboxCluster, pod_name: str) -> str:
    return str(next(p for p in cluster.list_objects("Pod", NS) if p["metadata"]["name"] == pod_name)["status"]
               ["podIP"])


def test_an_outside_client_has_no_route_to_pod_or_service_ips(sandbox: SandboxCluster) -> None:
    runner_ip = _pod_ip(sandbox, "runner")
    assert runner_ip.startswith("198.19."), f"the outside client got an address of the pod network: {runner_ip}"
    cluster_ip = next(s for s in sandbox.list_objects("Service", NS) if s["metadata"]["name"] == "web-np")
    urls = [f"http://{_pod_ip(sandbox, 'web')}:8080/", f"http://{cluster_ip['spec']['clusterIP']}/"]
    assert [_get(sandbox, "runner", u) for u in urls] == ["OSError", "OSError"]
    assert [_get(sandbox, "client", u) for u in urls] == ["200", "200"], "inside the cluster both work"


@pytest.mark.parametrize("svc_name", ["web-np", "web-lb", "web-local"])
def test_node_ports_answer_on_the_node_address_inside_and_outside(sandbox: SandboxCluster, svc_name: str) -> None:
    url = f"http://{netns.HUB_ADDRESS}:{_node_port(sandbox, svc_name)}/"
    assert (_get(sandbox, "runner", url), _get(sandbox, "client", url)) == ("200", "200")


def test_a_node_port_flow_comes_from_the_node_address_unless_external_traffic_policy_is_local(
        sandbox: SandboxCluster) -> None:
    """kube-proxy's KUBE-MARK-MASQ: the pod sees the node's pod-network address, or with ``Local`` the client's."""
    seen = {svc_name: _get(sandbox, "runner", f"http://{netns.HUB_ADDRESS}:{_node_port(sandbox, svc_name)}/", PEER)
            for svc_name in ("web-np", "web-local")}
    assert seen == {"web-np": netns.HUB_ADDRESS, "web-local": _pod_ip(sandbox, "runner")}


def test_a_node_port_without_endpoints_is_refused(sandbox: SandboxCluster) -> None:
    url = f"http://{netns.HUB_ADDRESS}:{_node_port(sandbox, 'nobody')}/"
    assert _get(sandbox, "runner", url) == "ConnectionRefusedError"


def test_a_node_port_flow_meets_the_pods_ingress_policy(sandbox: SandboxCluster) -> None:
    """kube-network-policies judges it before the masquerade: the outside client's own address counts."""
    url = f"http://{netns.HUB_ADDRESS}:{_node_port(sandbox, 'web-np')}/"
    deny = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "deny"},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"]}}
    allow_runner = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "runner"},
                    "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                             "ingress": [{"from": [{"ipBlock": {"cidr": f"{_pod_ip(sandbox, 'runner')}/32"}}]}]}}
    sandbox.apply([deny], NS)
    try:
        assert _wait(lambda: _get(sandbox, "runner", url), "TimeoutError") == "TimeoutError"
        sandbox.apply([allow_runner], NS)
        assert _wait(lambda: _get(sandbox, "runner", url), "200") == "200"
    finally:
        for policy in ("deny", "runner"):
            sandbox.delete("NetworkPolicy", policy, NS)


def _wait(observe: Any, expected: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        value = str(observe())
        if value == expected or time.monotonic() > deadline:
            return value
        time.sleep(0.2)
