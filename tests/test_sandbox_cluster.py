"""Real sandbox clusters: the golden chart renders reach a full route mesh; readiness → EndpointSlice → DNS →
ClusterIP; pod deletion (preStop lame duck, same name, new IP); container restarts with backoff.

Needs root with ``ip``, ``nft``, ``bwrap`` and ``nsenter``. The three golden clusters start together in one
module fixture (the chart's readiness probe waits 10 s); every namespace is named ``natsnet-tc<pid>...``, and
the fixture asserts at teardown that none is left.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
import yaml
from golden_data import RENDERED

from pytest_natsnet import kube
from pytest_natsnet.kube import Obj
from pytest_natsnet.sandbox import kubelet, netns
from pytest_natsnet.sandbox.cluster import DNS_POD_IP, PROBE_IMAGE, SERVICE_MIN_SYNC, SandboxCluster
from pytest_natsnet.sandbox.controllers import pod_is_ready
from pytest_natsnet.tlsgen import new_ca, tls_material

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(c) for c in ("ip", "nft", "bwrap", "nsenter")),
    reason="needs root with ip, nft, bwrap and nsenter (network namespaces)",
)

GOLDEN = RENDERED
NATS_SERVER = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "nats-server"
NS = "natsnet"
SCENARIOS = ("default", "tls", "netpol-egress-dns")
GATE = "natsnet.io/test-gate"
READY_TIMEOUT = 40.0
T = TypeVar("T")


def nats_server() -> Path:
    found = shutil.which("nats-server")
    return NATS_SERVER if NATS_SERVER.is_file() else Path(found or "nats-server")


def golden_objects(scenario: str) -> list[Obj]:
    """A golden render without helm test hooks, plus the TLS Secrets it mounts."""
    docs = yaml.safe_load_all((GOLDEN / f"{scenario}.yaml").read_text())
    objects = [o for o in docs if o and not (o["metadata"].get("annotations") or {}).get("helm.sh/hook")]
    if scenario == "tls":
        objects += list(tls_material(new_ca(), "good", NS).secrets)
    return objects


def gated_objects() -> list[Obj]:
    """Three plain nats-servers behind readinessGates, a ClusterIP Service and two headless Services."""
    selector = {"app": "gated"}
    container = {
        "name": "nats",
        "image": "nats:2.14.2",
        "args": ["-p", "4222", "-m", "8222", "-n", "$(POD_NAME)"],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "ports": [{"name": "monitor", "containerPort": 8222}],
    }
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "gated"},
        "spec": {
            "replicas": 3,
            "podManagementPolicy": "Parallel",
            "serviceName": "gated-headless",
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": selector},
                "spec": {
                    "containers": [container],
                    "readinessGates": [{"conditionType": GATE}],
                    "terminationGracePeriodSeconds": 0,
                },
            },
        },
    }

    def svc(svc_name: str, headless: bool, pnra: bool) -> Obj:
        svc_spec: dict[str, Any] = {
            "selector": selector,
            "publishNotReadyAddresses": pnra,
            "ports": [{"name": "monitor", "port": 80 if not headless else 8222, "targetPort": "monitor"}],
        }
        if headless:
            svc_spec["clusterIP"] = "None"
        return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": svc_name}, "spec": svc_spec}

    return [sts, svc("gated", False, False), svc("gated-headless", True, False), svc("gated-all", True, True)]


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=3) as response:
        return json.load(response)


def _a_records(qname: str, source_port: int = 0) -> list[str]:
    query = dns.message.make_query(qname, "A")
    answer = dns.query.udp(query, DNS_POD_IP, timeout=2, source_port=source_port)
    return sorted(r.address for rrset in answer.answer if rrset.rdtype == dns.rdatatype.A for r in rrset)


@dataclass
class Sandbox:
    """A running sandbox cluster and threads in its hub (node) namespace."""

    cluster: SandboxCluster
    hub: ThreadPoolExecutor

    def pods(self, namespace: str = NS) -> dict[str, Obj]:
        self.cluster.check()
        return {kube.name(p): p for p in self.cluster.list_objects("Pod", namespace)}

    def pod_ip(self, pod_name: str, namespace: str = NS) -> str:
        return str(self.pods(namespace)[pod_name]["status"]["podIP"])

    def get_json(self, url: str) -> Any:
        return self.hub.submit(_get_json, url).result()

    def a_records(self, qname: str, source_port: int = 0) -> list[str]:
        """A records from the DNS pod; a fixed ``source_port`` keeps the flow (and so the replica) the same."""
        return self.hub.submit(_a_records, qname, source_port).result()

    def route_peers(self, pod_name: str) -> set[str]:
        """DISTINCT remote server names in the server's /routez (route pooling makes num_routes larger)."""
        routez = self.get_json(f"http://{self.pod_ip(pod_name)}:8222/routez")
        return {str(r["remote_name"]) for r in routez.get("routes") or [] if r.get("remote_name")}

    def run_in_pod(self, namespace: str, pod_name: str, container: str, command: list[str]) -> str:
        argv = self.cluster.exec_argv(namespace, pod_name, container, command)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
        assert done.returncode == 0, f"{command} in {namespace}/{pod_name}: {done.stdout}{done.stderr}"
        return done.stdout


def eventually(observe: Callable[[], T], expected: T, timeout: float, poll: float = 0.1) -> T:
    """Polls until ``observe()`` equals ``expected``; returns the last observation (the caller asserts)."""
    deadline = time.monotonic() + timeout
    while True:
        value = observe()
        if value == expected or time.monotonic() > deadline:
            return value
        time.sleep(poll)


def wait_until(sandboxes: list[Sandbox], done: Callable[[Sandbox], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    pending = list(sandboxes)
    while pending:
        pending = [s for s in pending if not done(s)]
        if pending and time.monotonic() > deadline:
            states = {s.cluster.id: {n: p["status"].get("phase") for n, p in s.pods("*").items()}
                      for s in pending}
            pytest.fail(f"{what} not reached within {timeout:g}s: {states}", pytrace=False)
        time.sleep(0.1)


def _open_gates(sandbox: Sandbox) -> bool:
    pods = sandbox.pods("gates")
    for pod_name, pod in pods.items():
        seen = {c["type"] for c in pod["status"].get("conditions") or []}
        if pod["status"].get("phase") == "Running" and GATE not in seen:
            sandbox.cluster.set_pod_condition("gates", pod_name, GATE, True)
    return len(pods) == 3 and all(pod_is_ready(p) for p in pods.values())


def _statefulset_ready(sandbox: Sandbox) -> bool:
    sts = sandbox.cluster.list_objects("StatefulSet", NS)
    return bool(sts) and sts[0]["status"].get("readyReplicas") == kube.spec(sts[0]).get("replicas")


def stop_and_check(sandbox: Sandbox) -> None:
    sandbox.hub.shutdown(wait=False, cancel_futures=True)
    sandbox.cluster.stop()
    shutil.rmtree(sandbox.cluster.run_dir, ignore_errors=True)
    left = [n for n in netns.list_netns() if f"-{sandbox.cluster.id}-" in n]
    assert left == [], f"network namespaces left behind by sandbox {sandbox.cluster.id}: {left}"


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Sandbox]]:
    """The three golden renders, each in its own sandbox; ``default`` also runs the gated StatefulSet and uses
    the ``fast`` DNS profile (no cache: DNS follows the objects at once), the others the default ``kind-1.31``."""
    started: dict[str, Sandbox] = {}
    try:
        for index, scenario in enumerate(SCENARIOS):
            sandbox_id = f"tc{os.getpid()}{'abc'[index]}"
            run_dir = tmp_path_factory.mktemp(f"sandbox-{scenario}")
            profile = "fast" if scenario == "default" else "kind-1.31"
            cluster = SandboxCluster(sandbox_id, run_dir, nats_server(), profile)
            cluster.start()
            started[scenario] = Sandbox(cluster, netns.executor_in(cluster.hub, workers=4))
            cluster.apply(golden_objects(scenario), NS)
        started["default"].cluster.apply(gated_objects(), "gates")
        sandboxes = list(started.values())
        wait_until(sandboxes, _statefulset_ready, READY_TIMEOUT, "every golden StatefulSet ready")
        wait_until([started["default"]], _open_gates, READY_TIMEOUT, "gated pods ready")
        yield started
    finally:
        errors = []
        for sandbox in started.values():
            try:
                stop_and_check(sandbox)
            except AssertionError as error:
                errors.append(str(error))
        assert not errors, errors


# --- golden renders ----------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_golden_render_reaches_a_full_route_mesh(golden: dict[str, Sandbox], scenario: str) -> None:
    sandbox = golden[scenario]
    servers = sorted(n for n in sandbox.pods() if n.startswith("nats-") and not n.startswith("nats-box"))
    assert servers == ["nats-0", "nats-1", "nats-2"]
    expected = {s: set(servers) - {s} for s in servers}
    peers = eventually(lambda: {s: sandbox.route_peers(s) for s in servers}, expected, timeout=10)
    assert peers == expected


def test_images_not_emulated_are_reported(golden: dict[str, Sandbox]) -> None:
    sandbox = golden["default"]
    reloader_only = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "reloader-only"},
        "spec": {"containers": [{"name": "r", "image": "natsio/nats-server-config-reloader:0.23.0"}]},
    }
    sandbox.cluster.apply([reloader_only], "not-run")
    try:
        def reason() -> str:
            return str(sandbox.pods("not-run")["reloader-only"]["status"].get("reason"))

        assert eventually(reason, "ImageNotEmulated", timeout=5) == "ImageNotEmulated"
        pending = sandbox.pods("not-run")["reloader-only"]["status"]
        assert pending["phase"] == "Pending" and "podIP" not in pending
    finally:
        sandbox.cluster.delete("Pod", "reloader-only", "not-run", grace=0)
    pods = sandbox.pods()
    box = [p for n, p in pods.items() if n.startswith("nats-box-")]
    assert len(box) == 1  # nats-box runs its stand-in (sandbox/natsbox.py)
    assert box[0]["status"]["phase"] == "Running"
    server = pods["nats-0"]
    assert server["metadata"]["annotations"]["sandbox.natsnet.io/not-run"] == (
        "natsio/nats-server-config-reloader:0.23.0"
    )
    states = {s["name"]: s["state"] for s in server["status"]["containerStatuses"]}
    assert states["reloader"]["waiting"]["reason"] == "ImageNotEmulated"
    assert "running" in states["nats"]


def test_pods_see_the_kubelet_resolv_conf_and_hosts(golden: dict[str, Sandbox]) -> None:
    resolv = golden["tls"].run_in_pod(NS, "nats-1", "nats", ["cat", "/etc/resolv.conf"])
    assert resolv == (
        "search natsnet.svc.cluster.local svc.cluster.local cluster.local runner.internal\n"
        "nameserver 198.18.128.10\noptions ndots:5\n"
    ), "kind-1.31: the runner's search domain follows the cluster ones"
    sandbox = golden["default"]
    resolv = sandbox.run_in_pod(NS, "nats-1", "nats", ["cat", "/etc/resolv.conf"])
    assert resolv.startswith("search natsnet.svc.cluster.local svc.cluster.local cluster.local\n"), "fast: none"
    hosts = sandbox.run_in_pod(NS, "nats-1", "nats", ["cat", "/etc/hosts"])
    own = f"{sandbox.pod_ip('nats-1')}\tnats-1.nats-headless.natsnet.svc.cluster.local\tnats-1"
    assert hosts.splitlines()[-1] == own
    assert sandbox.run_in_pod(NS, "nats-1", "nats", ["hostname"]).strip() == "nats-1"


# --- readiness → EndpointSlice → DNS → ClusterIP -----------------------------------------------------

CLUSTER_IP_CLIENT = (
    "import json, sys, urllib.request\n"
    "names = set()\n"
    "for _ in range(int(sys.argv[2])):\n"
    "    with urllib.request.urlopen(sys.argv[1], timeout=2) as r:\n"
    "        names.add(json.load(r)['server_name'])\n"
    "print(json.dumps(sorted(names)))\n"
)


def test_a_gated_pod_leaves_the_cluster_ip_and_the_strict_headless_dns(golden: dict[str, Sandbox]) -> None:
    sandbox = golden["default"]
    cluster = sandbox.cluster
    cluster_ip = kube.find(cluster.list_objects("Service", "gates"), "Service", "gated")
    assert cluster_ip is not None
    url = f"http://{cluster_ip['spec']['clusterIP']}/varz"

    def served() -> list[str]:
        out = sandbox.run_in_pod("gates", "gated-0", "nats", ["python3", "-c", CLUSTER_IP_CLIENT, url, "40"])
        return list(json.loads(out))

    def endpoint_ready(pod_name: str) -> tuple[bool, bool]:
        slices = [s for s in cluster.list_objects("EndpointSlice", "gates")
                  if s["metadata"]["labels"]["kubernetes.io/service-name"] == "gated"]
        for endpoint in (e for s in slices for e in s["endpoints"]):
            if endpoint["targetRef"]["name"] == pod_name:
                return endpoint["conditions"]["ready"], endpoint["conditions"]["serving"]
        raise AssertionError(f"{pod_name} missing from the EndpointSlices of gates/gated")

    all_ips = sorted(sandbox.pod_ip(f"gated-{i}", "gates") for i in range(3))
    strict = "gated-headless.gates.svc.cluster.local."
    published = "gated-all.gates.svc.cluster.local."
    assert served() == ["gated-0", "gated-1", "gated-2"]
    assert sandbox.a_records(strict) == all_ips
    try:
        cluster.set_pod_condition("gates", "gated-1", GATE, False)
        assert eventually(lambda: endpoint_ready("gated-1"), (False, False), timeout=3) == (False, False)
        assert not pod_is_ready(sandbox.pods("gates")["gated-1"])
        without = sorted(set(all_ips) - {sandbox.pod_ip("gated-1", "gates")})
        assert eventually(lambda: sandbox.a_records(strict), without, timeout=3) == without
        assert sandbox.a_records(published) == all_ips  # publishNotReadyAddresses keeps it in DNS
        assert eventually(served, ["gated-0", "gated-2"], timeout=3) == ["gated-0", "gated-2"]
    finally:
        cluster.set_pod_condition("gates", "gated-1", GATE, True)
    assert eventually(lambda: endpoint_ready("gated-1"), (True, True), timeout=3) == (True, True)
    everyone = ["gated-0", "gated-1", "gated-2"]
    assert eventually(served, everyone, timeout=3) == everyone
    assert sandbox.a_records(strict) == all_ips


def test_kind_profile_dns_serves_a_deleted_service_from_its_cache(golden: dict[str, Sandbox]) -> None:
    """kind-1.31 (kubeadm ``cache 30`` over ``ttl 30``): once a replica has answered a name, it answers it the
    same way after the object is gone, until the entry expires; the query log says the answer came from the
    cache, and from the same replica (same client flow)."""
    sandbox = golden["tls"]
    qname = "cache-probe.natsnet.svc.cluster.local."
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "cache-probe"},
               "spec": {"ports": [{"name": "x", "port": 80}]}}
    sandbox.cluster.apply([service], NS)
    objects = sandbox.cluster.run_dir / "dns" / "objects.json"
    # Do not ask before the server knows the name: the NXDOMAIN would be cached for 30 s as well.
    assert eventually(lambda: '"cache-probe"' in objects.read_text(), True, timeout=5)
    time.sleep(0.1)  # longer than the server's reload check interval (50 ms)
    first = sandbox.a_records(qname, 41000)
    assert first, "the new Service has no A record"
    sandbox.cluster.delete("Service", "cache-probe", NS)

    def rcode_of_a_question_never_asked() -> str:
        query = dns.message.make_query(qname, "TXT")
        return dns.rcode.to_text(sandbox.hub.submit(dns.query.udp, query, DNS_POD_IP, 2).result().rcode())

    assert eventually(rcode_of_a_question_never_asked, "NXDOMAIN", timeout=5) == "NXDOMAIN"  # the zone is current
    assert sandbox.a_records(qname, 41000) == first
    entries = [json.loads(line) for line in sandbox.cluster.dns_query_log().read_text().splitlines()]
    mine = [e for e in entries if e["qname"] == qname and e["qtype"] == "A"]
    assert mine[-1]["source"] == "cache" and mine[-1]["rcode"] == "NOERROR"
    assert len({e["replica"] for e in mine[-2:]}) == 1


# --- container restarts ------------------------------------------------------------------------------


def _pod(pod_name: str, command: str, **spec: Any) -> Obj:
    container: dict[str, Any] = {"name": "main", "image": PROBE_IMAGE, "command": ["sh", "-c", command]}
    container.update(spec.pop("container", {}))
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod_name},
            "spec": {"terminationGracePeriodSeconds": 0, "containers": [container], **spec}}


def _restart_count(sandbox: Sandbox, namespace: str, pod_name: str) -> int:
    statuses = sandbox.pods(namespace)[pod_name]["status"].get("containerStatuses") or [{}]
    return int(statuses[0].get("restartCount", 0))


def _events(sandbox: Sandbox, namespace: str, pod_name: str, reason: str) -> list[str]:
    return [e["message"] for e in sandbox.cluster.list_objects("Event", namespace)
            if e["reason"] == reason and e["involvedObject"]["name"] == pod_name]


def test_the_first_restart_is_immediate_then_back_off_doubles(
    golden: dict[str, Sandbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    """kuberuntime ``doBackOff``: no back-off for the first exit, then the initial window, doubling."""
    monkeypatch.setattr(kubelet, "RESTART_BACKOFF_START", 0.3)
    sandbox = golden["default"]
    crasher = _pod("crasher", "sleep 0.1; exit 3")
    once = _pod("once", "test -f /state/crashed && exec sleep 1000; touch /state/crashed; exit 3",
                container={"volumeMounts": [{"name": "state", "mountPath": "/state"}]},
                volumes=[{"name": "state", "emptyDir": {}}])
    sandbox.cluster.apply([crasher, once], "crash")
    try:
        assert eventually(lambda: _restart_count(sandbox, "crash", "crasher") >= 4, True, timeout=15), (
            f"restartCount {_restart_count(sandbox, 'crash', 'crasher')}")
        status = sandbox.pods("crash")["crasher"]["status"]["containerStatuses"][0]
        assert status["lastState"] == {"terminated": {"exitCode": 3}}
        backoffs = _events(sandbox, "crash", "crasher", "BackOff")
        assert [m.rsplit("restarting in ", 1)[1] for m in backoffs[:3]] == ["0.3s", "0.6s", "1.2s"]
        assert all("code 3" in m for m in backoffs)
        assert eventually(lambda: _restart_count(sandbox, "crash", "once"), 1, timeout=10) == 1
        assert _events(sandbox, "crash", "once", "BackOff") == [], "the first restart waited for a back-off"
    finally:
        sandbox.cluster.delete("Pod", "crasher", "crash", grace=0)
        sandbox.cluster.delete("Pod", "once", "crash", grace=0)
    assert eventually(lambda: {"crasher", "once"} & set(sandbox.pods("crash")), set(), timeout=5) == set()


def test_an_idle_pod_is_ticked_only_when_a_probe_is_due(
    golden: dict[str, Sandbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ready servers whose probes run every few seconds are not advanced every 50 ms tick, the loop sleeps while
    nothing is due and reconciles everything about once a second (issue #13: CPU per idle cell near zero), while
    an exit is still seen at once (the restart test above, and this pod's)."""
    sandbox = golden["default"]
    ticks: collections.Counter[str] = collections.Counter()
    real_tick = kubelet.PodRuntime.tick

    def counted(runtime: kubelet.PodRuntime, now: float) -> bool:
        ticks[f"{runtime.pod['metadata']['namespace']}/{runtime.pod['metadata']['name']}"] += 1
        return real_tick(runtime, now)

    monkeypatch.setattr(kubelet.PodRuntime, "tick", counted)
    loop = {"ticks": 0, "full": 0}
    real_loop_tick, real_full = SandboxCluster._tick, SandboxCluster._reconcile_namespaces

    def loop_tick(cluster: SandboxCluster, now: float) -> None:
        loop["ticks"] += cluster is sandbox.cluster  # the module's other sandboxes tick too
        real_loop_tick(cluster, now)

    def full(cluster: SandboxCluster) -> None:
        loop["full"] += cluster is sandbox.cluster
        real_full(cluster)

    monkeypatch.setattr(SandboxCluster, "_tick", loop_tick)
    monkeypatch.setattr(SandboxCluster, "_reconcile_namespaces", full)
    time.sleep(3.0)
    assert loop["ticks"] <= 30, f"the loop woke {loop['ticks']} times in 3 s (every 50 ms before: 60)"
    assert loop["full"] <= 5, f"{loop['full']} full reconciles in 3 s of nothing changing (the safety net: 3)"
    servers = {name: count for name, count in ticks.items() if name.startswith(f"{NS}/nats-")}
    periods = {c["readinessProbe"]["periodSeconds"] for o in golden_objects("default") if o["kind"] == "StatefulSet"
               for c in o["spec"]["template"]["spec"]["containers"] if "readinessProbe" in c}
    assert min(periods) >= 2, periods
    assert all(count <= 3 * 3 for count in servers.values()), f"ticks in 3 s (60 before): {servers}"
    sandbox.cluster.apply([_pod("exits", "sleep 1; exit 4")], "idle")
    try:
        assert eventually(lambda: _restart_count(sandbox, "idle", "exits") >= 1, True, timeout=10)
    finally:
        sandbox.cluster.delete("Pod", "exits", "idle", grace=0)


def test_an_unsupported_env_source_is_a_config_error_not_a_crash(golden: dict[str, Sandbox]) -> None:
    sandbox = golden["default"]
    bad = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bad-env"},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {"name": "main", "image": PROBE_IMAGE, "envFrom": [{"configMapRef": {"name": "x"}}]}
            ],
        },
    }
    sandbox.cluster.apply([bad], "bad")
    try:
        def waiting() -> dict[str, Any]:
            statuses = sandbox.pods("bad")["bad-env"]["status"].get("containerStatuses") or [{}]
            return dict(statuses[0].get("state", {}).get("waiting") or {})

        assert eventually(lambda: str(waiting().get("reason")), "CreateContainerConfigError", timeout=5) == (
            "CreateContainerConfigError"
        )
        assert "envFrom is not supported" in waiting()["message"]
        assert not pod_is_ready(sandbox.pods("bad")["bad-env"])
        sandbox.cluster.check()  # the reconcile loop survived
    finally:
        sandbox.cluster.delete("Pod", "bad-env", "bad", grace=0)


# --- kubelet fidelity: termination, liveness kills ---------------------------------------------------

HTTP_GET = "import sys, urllib.request\nprint(urllib.request.urlopen(sys.argv[1], timeout=2).status)\n"


def _conditions(sandbox: Sandbox, namespace: str, service: str, pod_name: str) -> dict[str, Any] | None:
    for eps in sandbox.cluster.list_objects("EndpointSlice", namespace):
        if eps["metadata"]["labels"].get("kubernetes.io/service-name") != service:
            continue
        for endpoint in eps.get("endpoints") or []:
            if endpoint["targetRef"]["name"] == pod_name:
                return dict(endpoint["conditions"])
    return None


def test_a_terminating_pod_stays_ready_and_serving_until_its_containers_stop(golden: dict[str, Sandbox]) -> None:
    """kubelet ``prober/worker.go``: once the pod has a deletionTimestamp only liveness and startup stop, so the
    pod stays Ready while its preStop hook runs; the EndpointSlice says ready=false, serving=true,
    terminating=true (``endpointslice`` ``podToEndpoint``), and kube-proxy, with no ready endpoint left, sends
    ClusterIP traffic to the serving terminating one (``pkg/proxy`` ``CategorizeEndpoints``)."""
    sandbox = golden["default"]
    server = _pod("lame", "exec python3 -m http.server 8080", terminationGracePeriodSeconds=30, container={
        "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1},
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", "5"]}}},
        "ports": [{"name": "http", "containerPort": 8080}]})
    server["metadata"]["labels"] = {"app": "lame"}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lame"},
               "spec": {"selector": {"app": "lame"}, "ports": [{"port": 80, "targetPort": "http"}]}}
    sandbox.cluster.apply([server, _pod("lame-client", "exec sleep 1000"), service], "lame")
    try:
        wait_until([sandbox], lambda s: pod_is_ready(s.pods("lame")["lame"])
                   and s.pods("lame")["lame-client"]["status"].get("phase") == "Running", 20, "lame pods up")
        url = f"http://{sandbox.cluster.list_objects('Service', 'lame')[0]['spec']['clusterIP']}/"
        sandbox.cluster.delete("Pod", "lame", "lame")
        terminating = {"ready": False, "serving": True, "terminating": True}
        observed = eventually(lambda: _conditions(sandbox, "lame", "lame", "lame"), terminating, timeout=3)
        assert observed == terminating
        pod = sandbox.pods("lame")["lame"]
        assert pod["metadata"].get("deletionTimestamp") and pod_is_ready(pod), pod["status"]

        def get() -> str:
            try:
                return sandbox.run_in_pod("lame", "lame-client", "main", ["python3", "-c", HTTP_GET, url]).strip()
            except AssertionError as error:  # the client's rules may be up to one kube-proxy sync behind
                return str(error)[-300:]

        assert eventually(get, "200", timeout=SERVICE_MIN_SYNC + 2) == "200"
        assert eventually(lambda: "lame" in sandbox.pods("lame"), False, timeout=15) is False
    finally:
        for pod_name in ("lame", "lame-client"):
            with contextlib.suppress(Exception):
                sandbox.cluster.delete("Pod", pod_name, "lame", grace=0)


def test_a_liveness_kill_runs_prestop_and_never_freezes_the_sandbox(golden: dict[str, Sandbox]) -> None:
    """kuberuntime ``killContainer``: a liveness failure runs the preStop hook, then SIGTERM, then SIGKILL after
    the rest of the grace period; the first restart is immediate. The kill is a state the reconcile loop
    advances: another pod starts while the stubborn one sits out its grace period."""
    sandbox = golden["default"]
    state = {"volumeMounts": [{"name": "state", "mountPath": "/state"}]}
    stubborn = _pod("stubborn", "trap '' TERM; while true; do sleep 1; done", terminationGracePeriodSeconds=8,
                    volumes=[{"name": "state", "emptyDir": {}}], container={
                        **state,
                        "livenessProbe": {"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 1},
                        "lifecycle": {"preStop": {"exec": {"command": ["touch", "/state/prestop"]}}}})
    sandbox.cluster.apply([stubborn], "liveness")
    try:
        killing = eventually(lambda: bool(_events(sandbox, "liveness", "stubborn", "Killing")), True, timeout=15)
        assert killing, "the liveness probe never killed the container"
        killed_at = time.monotonic()
        sandbox.cluster.apply([_pod("bystander", "exec sleep 1000")], "liveness")
        running = eventually(lambda: sandbox.pods("liveness")["bystander"]["status"].get("phase"), "Running", 5)
        assert running == "Running", "the sandbox froze while a container sat out its grace period"
        assert time.monotonic() - killed_at < 5, "bystander started only after the stubborn container's kill"
        assert _restart_count(sandbox, "liveness", "stubborn") == 0, "SIGKILL came before the grace period ended"
        assert eventually(lambda: _restart_count(sandbox, "liveness", "stubborn") >= 1, True, timeout=15)
        assert time.monotonic() - killed_at >= 5, "the stubborn container was killed before its grace period"
        out = sandbox.run_in_pod("liveness", "stubborn", "main", ["sh", "-c", "test -f /state/prestop && echo ran"])
        assert out.strip() == "ran", "the preStop hook did not run before the liveness kill"
        assert _events(sandbox, "liveness", "stubborn", "BackOff") == [], "the first restart waited for a back-off"
    finally:
        for pod_name in ("stubborn", "bystander"):
            with contextlib.suppress(Exception):
                sandbox.cluster.delete("Pod", pod_name, "liveness", grace=0)


# --- pod deletion (last: it changes the default cluster) ---------------------------------------------


def test_a_deleted_pod_comes_back_with_the_same_name_and_a_new_ip(golden: dict[str, Sandbox]) -> None:
    sandbox = golden["default"]
    old = copy.deepcopy(sandbox.pods()["nats-2"])
    log = sandbox.cluster.log_path(NS, "nats-2", "nats")
    sandbox.cluster.delete("Pod", "nats-2", NS)

    def replacement() -> Obj | None:
        pod = sandbox.pods().get("nats-2")
        if pod is None or pod["metadata"]["uid"] == old["metadata"]["uid"]:
            return None
        running = any("running" in s["state"] for s in pod["status"].get("containerStatuses") or [])
        return pod if running else None

    new = None
    deadline = time.monotonic() + 15
    while new is None and time.monotonic() < deadline:
        new = replacement()
        time.sleep(0.05)
    assert new is not None, "the StatefulSet did not recreate nats-2 within 15 s"
    assert new["status"]["podIP"] != old["status"]["podIP"]
    assert new["spec"]["hostname"] == "nats-2" and new["spec"]["subdomain"] == "nats-headless"
    log_text = log.read_text(errors="replace").lower()
    assert "lame duck mode" in log_text, "the chart's preStop lame-duck hook did not run"
    events = sandbox.cluster.list_objects("Event", NS)
    reasons = [e["reason"] for e in events if e["involvedObject"]["name"] == "nats-2"]
    assert "Killing" in reasons and "Deleted" in reasons


def test_the_network_rules_inputs_ignore_an_annotation_and_follow_labels(
        golden: dict[str, Sandbox]) -> None:
    """Every change of an object marks the sandbox dirty; the network's rules (kube-proxy's per pod, NetworkPolicy
    on the bridge) are computed again only when their inputs changed: a pod's annotation does not change them, its
    labels do (a podSelector may match them). Other tests' pods may change the inputs meanwhile (a crashing
    container's endpoint): the annotation's case is asked around one change at a time, a few times."""
    cluster = golden["default"].cluster
    key = ("Pod", "gates", "gated-0")

    def annotate(pod: dict[str, Any]) -> None:
        pod["metadata"].setdefault("annotations", {})["natsnet.io/test"] = str(time.monotonic())

    def label(value: str | None) -> Callable[[dict[str, Any]], None]:
        def change(pod: dict[str, Any]) -> None:
            labels = pod["metadata"].setdefault("labels", {})
            if value is None:
                labels.pop("natsnet-test", None)
            else:
                labels["natsnet-test"] = value
        return change

    def unchanged_by(change: Callable[[dict[str, Any]], None]) -> bool:
        before = cluster.network_inputs()
        cluster.store.mutate(key, change)
        return cluster.network_inputs() == before

    assert any(unchanged_by(annotate) for _ in range(5)), "an annotation changed the network's inputs"
    try:
        programs = cluster.network_programs
        assert not unchanged_by(label("x")), "a label changed: the network's inputs did not"
        assert eventually(lambda: cluster.network_programs > programs, True, timeout=3), "no rules computed since"
    finally:
        cluster.store.mutate(key, label(None))


def test_a_change_in_one_namespace_is_reconciled_there_and_leaves_the_others_slices_alone(
        golden: dict[str, Sandbox]) -> None:
    """The controllers, workload status and EndpointSlices reconcile the namespaces whose objects changed (and
    every namespace once a second): a new Service in one namespace gets its EndpointSlice at once, and that
    reconcile neither deletes nor rewrites the EndpointSlices of another namespace."""
    cluster = golden["default"].cluster

    def slices(namespace: str) -> dict[str, tuple[str, str]]:
        return {eps["metadata"]["name"]: (eps["metadata"]["uid"], eps["metadata"]["resourceVersion"])
                for eps in cluster.list_objects("EndpointSlice", namespace)}

    def addresses(service: str) -> list[str]:
        return sorted(a for eps in cluster.list_objects("EndpointSlice", "gates")
                      if eps["metadata"]["labels"].get("kubernetes.io/service-name") == service
                      for e in eps.get("endpoints") or [] for a in e["addresses"])

    others = slices(NS)
    assert others, "the golden namespace has EndpointSlices"
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "scoped"},
               "spec": {"selector": {"app": "gated"}, "clusterIP": "None", "publishNotReadyAddresses": True,
                        "ports": [{"name": "monitor", "port": 8222, "targetPort": "monitor"}]}}
    cluster.apply([service], "gates")
    try:
        assert len(eventually(lambda: addresses("scoped"), addresses("gated-all"), timeout=3)) == 3
        assert slices(NS) == others
    finally:
        cluster.store.delete(("Service", "gates", "scoped"))
