"""Real tests of the nft rulesets: a hub netns with a bridge, four pod netns, real TCP/UDP servers.

Needs root with ``ip`` and ``nft``; every namespace is named ``nntest-nft-<pid>-...`` and removed at teardown.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_natsnet.kube import Obj
from pytest_natsnet.sandbox.model import ContainerPort, PodNet
from pytest_natsnet.sandbox.nft import (
    SERVICE_TABLE,
    Chains,
    NftApplyError,
    apply,
    apply_each,
    enable_bridge_conntrack,
    policy_ruleset,
    policy_tables,
    service_table,
    table_script,
    table_update,
    tables_update,
)

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("nft"),
    reason="needs root with ip and nft (network namespaces)",
)

PREFIX = f"nntest-nft-{os.getpid()}"
HUB = f"{PREFIX}-hub"
BLOCKED_TIMEOUT = 0.6

SERVER = r"""
import socket, sys, threading
name, tcp, udp = sys.argv[1], sys.argv[2], sys.argv[3]
def serve_tcp(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(64)
    while True:
        c, _ = s.accept(); c.sendall(name.encode()); c.close()
def serve_udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", port))
    while True:
        _, peer = s.recvfrom(512); s.sendto(name.encode(), peer)
threads = [threading.Thread(target=serve_tcp, args=(int(p),)) for p in tcp.split(",") if p]
threads += [threading.Thread(target=serve_udp, args=(int(p),)) for p in udp.split(",") if p]
for t in threads: t.start()
print("ready", flush=True)
"""

PROBE = r"""
import errno, json, socket, sys, time
from concurrent.futures import ThreadPoolExecutor
def one(job):
    proto, host, port, timeout = job[:4]
    start = time.monotonic()
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET, kind); s.settimeout(timeout)
    try:
        if len(job) > 4:  # a source port of its own: no conntrack entry of an earlier flow can match this one
            s.bind(("0.0.0.0", job[4]))
        s.connect((host, port))
        if proto == "udp":
            s.send(b"ping")
        out = "ok:" + s.recv(64).decode()
    except socket.timeout:
        out = "timeout"
    except OSError as e:
        out = {errno.ECONNREFUSED: "refused", errno.EPERM: "eperm"}.get(e.errno, "error:" + str(e))
    finally:
        s.close()
    return [out, round(time.monotonic() - start, 3)]
jobs = json.loads(sys.argv[1])
with ThreadPoolExecutor(max_workers=int(sys.argv[2])) as pool:
    print(json.dumps(list(pool.map(one, jobs))))
"""


@dataclass(frozen=True)
class Pod:
    net: PodNet
    netns: str
    tcp: tuple[int, ...]
    udp: tuple[int, ...] = ()


def _ns_label(namespace: str) -> dict[str, str]:
    return {"kubernetes.io/metadata.name": namespace}


PODS = [
    Pod(PodNet("a", "client", {"app": "client"}, "198.18.0.11", "veth-client"), f"{PREFIX}-client", ()),
    Pod(
        PodNet("a", "web", {"app": "web"}, "198.18.0.12", "veth-web-a", (ContainerPort("http", 5000),)),
        f"{PREFIX}-web-a",
        (5000, 6000),
        (7000,),
    ),
    Pod(
        PodNet("b", "web", {"app": "web"}, "198.18.0.13", "veth-web-b", (ContainerPort("http", 5001),)),
        f"{PREFIX}-web-b",
        (5001, 6000),
    ),
    Pod(
        PodNet("kube-system", "coredns", {"k8s-app": "kube-dns"}, "198.18.0.14", "veth-dns"),
        f"{PREFIX}-dns",
        (53,),
        (53,),
    ),
]
CLIENT, WEB_A, WEB_B, DNS = PODS
NAMESPACES = {"a": {}, "b": {"team": "b"}, "kube-system": {}}
DNS_IP, WEB_IP, EMPTY_IP = "198.18.128.10", "198.18.128.20", "198.18.128.21"


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True, timeout=20)


class Topology:
    """The hub + pods; servers are started by pid and stopped by pid."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.servers: list[subprocess.Popen[str]] = []
        self.probe_path = workdir / "probe.py"
        self.probe_path.write_text(PROBE)

    def build(self) -> None:
        _run("ip", "netns", "add", HUB)
        _run("ip", "-n", HUB, "link", "set", "lo", "up")
        _run("ip", "-n", HUB, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", HUB, "addr", "add", "198.18.0.1/16", "dev", "br0")
        _run("ip", "-n", HUB, "link", "set", "br0", "up")
        enable_bridge_conntrack(HUB)
        server_path = self.workdir / "server.py"
        server_path.write_text(SERVER)
        for pod in PODS:
            _run("ip", "netns", "add", pod.netns)
            _run("ip", "-n", pod.netns, "link", "set", "lo", "up")
            _run("ip", "-n", pod.netns, "link", "add", "eth0", "type", "veth", "peer", "name", pod.net.veth)
            _run("ip", "-n", pod.netns, "link", "set", pod.net.veth, "netns", HUB)
            _run("ip", "-n", HUB, "link", "set", pod.net.veth, "master", "br0", "up")
            _run("ip", "-n", pod.netns, "addr", "add", f"{pod.net.ip}/16", "dev", "eth0")
            _run("ip", "-n", pod.netns, "link", "set", "eth0", "up")
            _run("ip", "-n", pod.netns, "route", "add", "default", "via", "198.18.0.1")
            if pod.tcp or pod.udp:
                self._start_server(pod, server_path)

    def _start_server(self, pod: Pod, server_path: Path) -> None:
        argv = ["ip", "netns", "exec", pod.netns, sys.executable, str(server_path), pod.net.name]
        argv += [",".join(map(str, pod.tcp)), ",".join(map(str, pod.udp))]
        server = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.servers.append(server)
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"

    def teardown(self) -> None:
        for server in self.servers:
            server.kill()
            server.wait(timeout=10)
        for netns in [pod.netns for pod in PODS] + [HUB]:
            subprocess.run(["ip", "netns", "delete", netns], capture_output=True, timeout=20, check=False)

    def probe(
        self, jobs: Sequence[tuple[str, str, int]], netns: str = CLIENT.netns, parallel: int = 8
    ) -> list[str]:
        """Outcome per job (``ok:<pod>``, ``timeout``, ``refused``, ``eperm``, ``error:...``)."""
        payload = json.dumps([[proto, host, port, BLOCKED_TIMEOUT] for proto, host, port in jobs])
        argv = ["ip", "netns", "exec", netns, sys.executable, str(self.probe_path), payload, str(parallel)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
        results: list[list[Any]] = json.loads(done.stdout)
        for outcome, elapsed in results:
            if outcome == "timeout":
                assert elapsed >= BLOCKED_TIMEOUT * 0.9
        return [str(outcome) for outcome, _ in results]


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    topo = Topology(tmp_path_factory.mktemp("nft"))
    try:
        topo.build()
        yield topo
    finally:
        topo.teardown()


def service(namespace: str, name: str, cluster_ip: str, *ports: dict[str, Any]) -> Obj:
    return {
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"clusterIP": cluster_ip, "ports": list(ports)},
    }


def endpoint_slice(
    namespace: str, name: str, ports: list[dict[str, Any]], endpoints: list[tuple[Pod, bool]]
) -> Obj:
    return {
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{name}-x",
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": name},
        },
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": [
            {"addresses": [pod.net.ip], "conditions": {"ready": ready}} for pod, ready in endpoints
        ],
    }


DNS_PORTS = [
    {"name": "dns", "port": 53, "protocol": "UDP"},
    {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
]


def services_script(
    web_endpoints: list[tuple[Pod, bool]], pods: Sequence[PodNet] = (), policies: Sequence[Obj] = ()
) -> str:
    """kube-dns, ``a/web`` (80 -> named port http, resolved per endpoint), ``a/empty`` without endpoints."""
    return table_script("ip", SERVICE_TABLE, services_table(web_endpoints, pods, policies))


def services_table(
    web_endpoints: list[tuple[Pod, bool]], pods: Sequence[PodNet] = (), policies: Sequence[Obj] = (),
    web: bool = True,
) -> Chains:
    """The chains of :func:`services_script`; without ``web`` the ``a/web`` Service is gone."""
    services = [
        service("kube-system", "kube-dns", DNS_IP, *DNS_PORTS),
        service("a", "web", WEB_IP, {"name": "http", "port": 80, "targetPort": "http"}),
        service("a", "empty", EMPTY_IP, {"port": 80}, {"port": 81, "protocol": "UDP"}),
    ]
    slices = [
        endpoint_slice("kube-system", "kube-dns", DNS_PORTS, [(DNS, True)]),
        endpoint_slice(
            "a", "web", [{"name": "http", "port": 5000}], [(p, r) for p, r in web_endpoints if p is WEB_A]
        ),
        endpoint_slice(
            "a", "web", [{"name": "http", "port": 5001}], [(p, r) for p, r in web_endpoints if p is WEB_B]
        ),
        endpoint_slice("a", "empty", [{"port": 8080}], [(WEB_A, False)]),
    ]
    if not web:
        services, slices = [s for s in services if s["metadata"]["name"] != "web"], slices[:1] + slices[3:]
    return service_table(services, slices, pods, NAMESPACES, policies)


@pytest.fixture
def net(topology: Topology) -> Iterator[Topology]:
    """The topology with both endpoints ready and no policy; policies are cleared after the test."""
    apply(CLIENT.netns, services_script([(WEB_A, True), (WEB_B, True)]))
    try:
        yield topology
    finally:
        apply(HUB, policy_ruleset([p.net for p in PODS], NAMESPACES, []))


def enforce(*policies: Obj) -> None:
    apply(HUB, policy_ruleset([p.net for p in PODS], NAMESPACES, list(policies)))


def policy(namespace: str, name: str, **spec: Any) -> Obj:
    spec.setdefault("podSelector", {})
    return {"kind": "NetworkPolicy", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


# --- Services ----------------------------------------------------------------------


def _svc_listing(netns: str, chain: str | None = None) -> str:
    target = ["chain", "ip", "natsnet_svc", chain] if chain else ["table", "ip", "natsnet_svc"]
    argv = ["ip", "netns", "exec", netns, "nft", "list", *target]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def test_cluster_ip_never_picks_a_not_ready_endpoint(net: Topology) -> None:
    apply(CLIENT.netns, services_script([(WEB_A, True), (WEB_B, False)]))
    assert net.probe([("tcp", "198.18.0.12", 5000), ("tcp", "198.18.0.13", 5001)]) == ["ok:web", "ok:web"]
    assert "dnat to 198.18.0.13" not in _svc_listing(CLIENT.netns)
    assert net.probe([("tcp", WEB_IP, 80)] * 30, parallel=1) == ["ok:web"] * 30
    assert "counter packets 30 " in _svc_listing(CLIENT.netns, "svc_a_web_tcp_80_ep0")


def test_cluster_ip_with_both_ready_uses_both(net: Topology) -> None:
    apply(CLIENT.netns, services_script([(WEB_A, True), (WEB_B, True)]))
    net.probe([("tcp", WEB_IP, 80)] * 30, parallel=1)
    for index in (0, 1):
        argv = ["ip", "netns", "exec", CLIENT.netns, "nft", "list", "chain", "ip", "natsnet_svc"]
        listing = subprocess.run(
            [*argv, f"svc_a_web_tcp_80_ep{index}"], capture_output=True, text=True
        ).stdout
        assert "counter packets 0 " not in listing, f"endpoint {index} never chosen in 30 connects"


@pytest.mark.parametrize(
    ("job", "outcome"),
    [
        (("tcp", EMPTY_IP, 80), "refused"),
        (("udp", EMPTY_IP, 81), "refused"),
        (("tcp", WEB_IP, 81), "timeout"),
        (("udp", DNS_IP, 54), "timeout"),
    ],
    ids=["no-endpoints-tcp", "no-endpoints-udp", "unknown-port-tcp", "unknown-port-udp"],
)
def test_cluster_ip_without_endpoints_refuses_unknown_port_times_out(
    net: Topology, job: tuple[str, str, int], outcome: str
) -> None:
    """kube-proxy iptables mode: REJECT for a Service port without endpoints, no rule (lost) for a port the
    Service does not have (kubernetes pkg/proxy/iptables/proxier.go)."""
    assert net.probe([job]) == [outcome]


def test_hairpin_through_the_own_cluster_ip_obeys_the_pods_policies(net: Topology) -> None:
    """web-a reaching itself through the web ClusterIP: allowed without policy; with an ingress policy that
    admits only the client, dropped (on kind the node judges web-a -> web-a); its own pod IP stays local."""
    own = services_script([(WEB_A, True), (WEB_B, False)])
    web_in = policy("a", "web-in", podSelector={"matchLabels": {"app": "web"}},
                    ingress=[{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}])
    pods, nets = [p.net for p in PODS], [WEB_A.netns, CLIENT.netns]
    try:
        for netns in nets:
            apply(netns, own)
        assert _verdicts(net.probe([("tcp", WEB_IP, 80)], netns=WEB_A.netns)) == ["allowed"]
        with_policy = services_script([(WEB_A, True), (WEB_B, False)], pods, [web_in])
        for netns in nets:
            apply(netns, with_policy)
        enforce(web_in)
        assert net.probe([("tcp", WEB_IP, 80)], netns=WEB_A.netns) == ["timeout"]
        assert _verdicts(net.probe([("tcp", "198.18.0.12", 5000)], netns=WEB_A.netns)) == ["allowed"]
        assert _verdicts(net.probe([("tcp", WEB_IP, 80)])) == ["allowed"]
    finally:
        apply(WEB_A.netns, services_script([(WEB_A, True), (WEB_B, True)]))


def _listed_chains(netns: str) -> dict[str, list[str]]:
    """``ip natsnet_svc`` as nft lists it: chain -> its lines (counters as listed); a set or map -> its type and
    its elements, sorted (a hash set lists them in the order of its buckets)."""
    found: dict[str, list[str]] = {}
    current: list[str] = []
    for line in (raw.strip() for raw in _svc_listing(netns).replace(",\n", ", ").splitlines()):
        if line.startswith(("chain ", "set ", "map ")):
            name = line.split()[1] if line.startswith("chain ") else "@" + line.split()[1]
            current = found.setdefault(name, [])
        elif line.startswith("elements = { "):
            current.extend(sorted(" ".join(e.split()) for e in line[len("elements = { "):-2].split(", ")))
        elif line and line != "}" and not line.startswith("table "):
            current.append(line)
    return found


def test_updating_only_the_changed_chains_leaves_what_a_whole_table_would(net: Topology) -> None:
    """Each step applied as an update of the previous one lists exactly as the same step applied whole (in the
    web pod, where no traffic moves a counter), and traffic follows the updated rules."""
    web_in = policy("a", "web-in", podSelector={"matchLabels": {"app": "web"}}, policyTypes=["Ingress"],
                    ingress=[{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}])
    pods = [p.net for p in PODS]
    steps = [
        services_table([(WEB_A, True), (WEB_B, True)]),
        services_table([(WEB_A, True), (WEB_B, False)]),  # an endpoint chain changes
        services_table([(WEB_A, True), (WEB_B, False)], pods, [web_in]),  # hairpin chains appear
        services_table([], web=False),  # a Service and its chains go, the hairpin chains too
        services_table([(WEB_A, True), (WEB_B, True)]),
    ]
    try:
        apply(WEB_A.netns, table_script("ip", SERVICE_TABLE, steps[0]))
        for before, after in itertools.pairwise(steps):
            update = table_update("ip", SERVICE_TABLE, before, after)
            assert update and "delete table" not in update
            apply(WEB_A.netns, update)
            updated = _listed_chains(WEB_A.netns)
            apply(WEB_A.netns, table_script("ip", SERVICE_TABLE, after))
            assert updated == _listed_chains(WEB_A.netns)
        assert table_update("ip", SERVICE_TABLE, steps[-1], steps[-1]) == ""
        apply(CLIENT.netns, table_script("ip", SERVICE_TABLE, steps[0]))
        apply(CLIENT.netns, table_update("ip", SERVICE_TABLE, steps[0], steps[1]))
        assert net.probe([("tcp", WEB_IP, 80)] * 10, parallel=1) == ["ok:web"] * 10
        assert "dnat to 198.18.0.13" not in _svc_listing(CLIENT.netns)
    finally:
        apply(WEB_A.netns, services_script([(WEB_A, True), (WEB_B, True)]))


def test_dns_cluster_ip_over_udp_and_tcp(net: Topology) -> None:
    assert net.probe([("udp", DNS_IP, 53), ("tcp", DNS_IP, 53)]) == ["ok:coredns", "ok:coredns"]


# --- NetworkPolicy ----------------------------------------------------------------------

ALL_TARGETS = [
    ("tcp", "198.18.0.12", 5000),
    ("tcp", "198.18.0.12", 6000),
    ("udp", "198.18.0.12", 7000),
    ("tcp", "198.18.0.13", 5001),
    ("tcp", "198.18.0.13", 6000),
    ("udp", DNS_IP, 53),
    ("tcp", DNS_IP, 53),
]


def _verdicts(outcomes: Sequence[str]) -> list[str]:
    return ["allowed" if o.startswith("ok:") else o for o in outcomes]


def test_no_policy_everything_reachable(net: Topology) -> None:
    enforce()
    assert _verdicts(net.probe(ALL_TARGETS)) == ["allowed"] * len(ALL_TARGETS)


def test_default_deny_egress_times_out_silently(net: Topology) -> None:
    enforce(policy("a", "deny", policyTypes=["Egress"]))
    assert net.probe(ALL_TARGETS) == ["timeout"] * len(ALL_TARGETS)
    assert _verdicts(net.probe([("tcp", "198.18.0.13", 5001)], netns=DNS.netns)) == ["allowed"]


EGRESS_CASES = [
    pytest.param(
        [{"to": [{"podSelector": {"matchLabels": {"app": "web"}}}]}],
        ["allowed", "allowed", "allowed", "timeout", "timeout", "timeout", "timeout"],
        id="podSelector-own-namespace-all-ports",
    ),
    pytest.param(
        [{"to": [{"namespaceSelector": {"matchLabels": {"team": "b"}}}], "ports": [{"port": 6000}]}],
        ["timeout", "timeout", "timeout", "timeout", "allowed", "timeout", "timeout"],
        id="namespaceSelector-port",
    ),
    pytest.param(
        [
            {
                "to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "web"}}}],
                "ports": [{"port": "http"}],
            }
        ],
        ["allowed", "timeout", "timeout", "allowed", "timeout", "timeout", "timeout"],
        id="named-port-resolved-per-pod",
    ),
    pytest.param(
        [
            {
                "to": [{"ipBlock": {"cidr": "198.18.0.0/16", "except": ["198.18.0.13/32"]}}],
                "ports": [{"port": 5990, "endPort": 6010}],
            }
        ],
        ["timeout", "allowed", "timeout", "timeout", "timeout", "timeout", "timeout"],
        id="ipBlock-except-endPort",
    ),
    pytest.param(
        [{"ports": [{"port": 7000, "protocol": "UDP"}]}],
        ["timeout", "timeout", "allowed", "timeout", "timeout", "timeout", "timeout"],
        id="udp-port-anywhere",
    ),
]


@pytest.mark.parametrize(("rules", "expected"), EGRESS_CASES)
def test_egress_allow_rules(net: Topology, rules: list[dict[str, Any]], expected: list[str]) -> None:
    enforce(
        policy("a", "deny", policyTypes=["Egress"]),
        policy(
            "a", "allow", podSelector={"matchLabels": {"app": "client"}}, egress=rules, policyTypes=["Egress"]
        ),
    )
    assert _verdicts(net.probe(ALL_TARGETS)) == expected


def test_ingress_needs_both_ends(net: Topology) -> None:
    target = [("tcp", "198.18.0.13", 5001)]
    deny_in = policy("b", "deny-in")
    allow_in = policy(
        "b",
        "allow-in",
        ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "a"}}}]}],
    )
    deny_out = policy("a", "deny-out", policyTypes=["Egress"])
    allow_out = policy("a", "allow-out", egress=[{"ports": [{"port": "http"}]}], policyTypes=["Egress"])
    enforce(deny_in)
    assert net.probe(target) == ["timeout"]
    enforce(deny_in, allow_in)
    assert _verdicts(net.probe(target)) == ["allowed"]
    enforce(deny_in, allow_in, deny_out)
    assert net.probe(target) == ["timeout"]
    enforce(deny_in, deny_out, allow_out)
    assert net.probe(target) == ["timeout"]
    enforce(deny_in, allow_in, deny_out, allow_out)
    assert _verdicts(net.probe(target)) == ["allowed"]


def test_replies_pass_when_both_pods_are_isolated_both_ways(net: Topology) -> None:
    allow_web = policy(
        "a",
        "client-to-web",
        podSelector={"matchLabels": {"app": "client"}},
        egress=[{"to": [{"podSelector": {"matchLabels": {"app": "web"}}}]}],
        policyTypes=["Ingress", "Egress"],
    )
    web_accepts = policy(
        "a",
        "web-in",
        podSelector={"matchLabels": {"app": "web"}},
        ingress=[{"from": [{"podSelector": {}}]}],
        egress=[],
        policyTypes=["Ingress", "Egress"],
    )
    enforce(allow_web, web_accepts)
    assert _verdicts(net.probe([("tcp", "198.18.0.12", 5000), ("udp", "198.18.0.12", 7000)])) == [
        "allowed",
        "allowed",
    ]
    assert net.probe([("tcp", "198.18.0.11", 1)], netns=WEB_A.netns) == ["timeout"]


def test_hub_traffic_is_not_subject_to_policy(net: Topology) -> None:
    enforce(policy("a", "deny-all", policyTypes=["Ingress", "Egress"]))
    assert _verdicts(net.probe([("tcp", "198.18.0.12", 5000)], netns=HUB)) == ["allowed"]


CANONICAL_DNS_PEER = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
}


@pytest.mark.parametrize(
    ("ports", "expected"),
    [
        ([{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}], ["allowed", "allowed"]),
        ([{"port": 53, "protocol": "UDP"}], ["allowed", "timeout"]),
        ([{"port": 53}], ["timeout", "allowed"]),
    ],
    ids=["udp-and-tcp", "udp-only-blocks-tcp", "default-tcp-blocks-udp"],
)
def test_dns_egress_through_the_cluster_ip(
    net: Topology, ports: list[dict[str, Any]], expected: list[str]
) -> None:
    enforce(
        policy("a", "deny", policyTypes=["Egress"]),
        policy("a", "dns", egress=[{"to": [CANONICAL_DNS_PEER], "ports": ports}], policyTypes=["Egress"]),
    )
    assert _verdicts(net.probe([("udp", DNS_IP, 53), ("tcp", DNS_IP, 53)])) == expected


# --- applying ----------------------------------------------------------------------


def _listing(netns: str) -> str:
    argv = ["ip", "netns", "exec", netns, "nft", "-s", "list", "ruleset"]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def test_reapplying_is_idempotent(net: Topology) -> None:
    policies = [
        policy("a", "deny", policyTypes=["Egress"]),
        policy("a", "dns", egress=[{"to": [CANONICAL_DNS_PEER]}]),
    ]
    enforce(*policies)
    first = _listing(HUB)
    enforce(*policies)
    assert _listing(HUB) == first
    assert first.count("table bridge natsnet_np") == 1


def test_policy_updates_leave_what_the_whole_ruleset_would(net: Topology) -> None:
    """The hub's policy tables updated chain by chain (pods isolated one after another, a policy gone) list
    exactly as each step applied whole, and traffic follows the updated rules."""
    pods = [p.net for p in PODS]
    deny = policy("a", "deny", policyTypes=["Egress"])
    dns = policy("a", "dns", egress=[{"to": [CANONICAL_DNS_PEER]}])
    steps = [policy_tables(pods[:1], NAMESPACES, []), policy_tables(pods[:1], NAMESPACES, [deny]),
             policy_tables(pods, NAMESPACES, [deny, dns]), policy_tables(pods, NAMESPACES, [dns]),
             policy_tables(pods, NAMESPACES, [])]
    try:
        apply(HUB, tables_update(None, steps[0]))
        for before, after in itertools.pairwise(steps):
            update = tables_update(before, after)
            assert "delete table" not in update
            apply(HUB, update)
            updated = _listing(HUB)
            apply(HUB, tables_update(None, after))
            assert updated == _listing(HUB)
        apply(HUB, tables_update(steps[-1], steps[1]))
        assert net.probe(ALL_TARGETS[:1]) == ["timeout"]
    finally:
        enforce()


def test_a_failing_script_raises_with_nft_message_and_changes_nothing(net: Topology) -> None:
    enforce(policy("a", "deny", policyTypes=["Egress"]))
    before = _listing(HUB)
    broken = (
        policy_ruleset([p.net for p in PODS], NAMESPACES, [])
        + "table bridge natsnet_np {\n\tchain x {\n\t\tbogus\n\t}\n}\n"
    )
    with pytest.raises(NftApplyError) as raised:
        apply(HUB, broken)
    assert raised.value.script == broken
    assert "bogus" in raised.value.message and "Error" in raised.value.message
    assert HUB in str(raised.value)
    assert _listing(HUB) == before
    assert net.probe([("tcp", "198.18.0.12", 5000)]) == ["timeout"]


def test_apply_each_programs_every_namespace_and_returns_only_the_refusals(net: Topology) -> None:
    """Many network namespaces at once: each gets its own script; one that nft refuses is reported by name and
    changes nothing there, and the others are programmed all the same."""
    marked = {pod.netns: f"table ip natsnet_mark_test {{\n\tchain c {{\n\t\tcomment \"{pod.net.name}\"\n\t}}\n}}\n"
              for pod in PODS[1:]}
    refused = apply_each({**marked, PODS[0].netns: "table ip natsnet_mark_test {\n\tbogus\n}\n"})
    assert list(refused) == [PODS[0].netns] and "bogus" in refused[PODS[0].netns].message
    assert "natsnet_mark_test" not in _listing(PODS[0].netns)
    for pod in PODS[1:]:
        assert f'comment "{pod.net.name}"' in _listing(pod.netns)
    for pod in PODS[1:]:
        apply(pod.netns, "delete table ip natsnet_mark_test\n")
    assert apply_each({}) == {}


def test_apply_in_a_missing_netns_raises() -> None:
    with pytest.raises(NftApplyError, match="nntest-nft-missing"):
        apply("nntest-nft-missing", "table ip x\n")
