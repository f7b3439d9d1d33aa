"""Differential test: the same NetworkPolicies and peers through the pure model (``expect/netpol.py``) and
through the sandbox's real enforcement (``sandbox/nft.py`` rulesets in network namespaces, real TCP/UDP
servers and clients). The two truth tables must be identical, cell by cell.

Covered: ingress and egress isolation, ``namespaceSelector`` and ``podSelector`` in one peer (AND) versus two
peers (OR), ``ipBlock`` with ``except`` (pods and an address outside the pods), an ``ipBlock`` holding only the
kube-dns ClusterIP (judged after DNAT, so it allows nothing), named ports resolved per destination, ``endPort``,
UDP, DNS through the ClusterIP, and hairpin (a pod reaching itself through its own ClusterIP).

Needs root with ``ip`` and ``nft``; every namespace is ``nntest-diff-<pid>-...`` and removed at teardown.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_sandbox_nft_real import PROBE, SERVER

from pytest_natsnet.expect.netpol import (
    Endpoint,
    External,
    Flow,
    Peer,
    PortProbe,
    Verdict,
    evaluate,
    truth_table,
)
from pytest_natsnet.kube import Obj
from pytest_natsnet.sandbox.model import ContainerPort, PodNet
from pytest_natsnet.sandbox.nft import apply, enable_bridge_conntrack, policy_ruleset, service_ruleset
from pytest_natsnet.table import Comparison

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("nft"),
    reason="needs root with ip and nft (network namespaces)",
)

PREFIX = f"nntest-diff-{os.getpid()}"
HUB = f"{PREFIX}-hub"
BLOCKED_TIMEOUT = 0.5
UDP_SOURCE_PORTS = itertools.count(20000)
"""Source ports of the module's UDP probes, each used once (below the ephemeral range, above every server port)."""
KUBE_DNS_IP = "198.18.128.10"
NAMESPACES: dict[str, dict[str, str]] = {"x": {"team": "x"}, "y": {"team": "y"}, "kube-system": {}}


@dataclass(frozen=True)
class DiffPod:
    net: PodNet
    cluster_ip: str
    """Its own ClusterIP Service (``hp-<name>``, port 80 -> its ``http`` port) for the hairpin column."""

    @property
    def netns(self) -> str:
        return f"{PREFIX}-{self.net.veth}"

    @property
    def peer(self) -> Peer:
        ports = {p.name: (p.port, p.protocol) for p in self.net.ports if p.name}
        return Peer(self.net.namespace, self.net.name, self.net.labels, self.net.ip, ports)


def _pod(index: int, namespace: str, name: str, labels: dict[str, str], *ports: ContainerPort) -> DiffPod:
    net = PodNet(namespace, name, labels, f"198.18.0.{20 + index}", f"vd{index}", ports)
    return DiffPod(net, f"198.18.128.{100 + index}")


HTTP = "http"
PODS = [
    _pod(0, "x", "a", {"app": "a"}, ContainerPort(HTTP, 8080), ContainerPort("metrics", 9090)),
    _pod(1, "x", "b", {"app": "b"}, ContainerPort(HTTP, 8081)),
    _pod(2, "y", "a", {"app": "a"}, ContainerPort(HTTP, 8080)),
    _pod(3, "y", "c", {"app": "c"}, ContainerPort(HTTP, 8082), ContainerPort("metrics", 9090)),
    _pod(4, "kube-system", "coredns", {"k8s-app": "kube-dns"},
         ContainerPort("dns", 53, "UDP"), ContainerPort("dns-tcp", 53, "TCP")),
]
XA, XB, YA, YC, DNS = PODS
EXTERNAL = External("198.18.127.1", "ext")
EXTERNAL_NETNS, EXTERNAL_VETH = f"{PREFIX}-ext", "vdx"
COLUMNS = [PortProbe(HTTP), PortProbe(9090), PortProbe(7000), PortProbe(7001, "UDP"), PortProbe(53, "UDP")]
LISTEN_TCP = (8080, 8081, 8082, 9090, 7000, 53)
LISTEN_UDP = (7001, 53)


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True, timeout=20)


def _service(pod: DiffPod) -> Obj:
    return {
        "kind": "Service",
        "metadata": {"name": f"hp-{pod.net.name}", "namespace": pod.net.namespace},
        "spec": {"clusterIP": pod.cluster_ip, "ports": [{"name": HTTP, "port": 80, "targetPort": HTTP}]},
    }


def _slice(namespace: str, service: str, ports: list[dict[str, Any]], ip: str) -> Obj:
    return {
        "kind": "EndpointSlice",
        "metadata": {"name": f"{service}-x", "namespace": namespace,
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}],
    }


def _services() -> tuple[list[Obj], list[Obj]]:
    dns_ports = [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]
    services: list[Obj] = [{
        "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system"},
        "spec": {"clusterIP": KUBE_DNS_IP, "ports": dns_ports},
    }]
    slices = [_slice("kube-system", "kube-dns", dns_ports, DNS.net.ip)]
    for pod in PODS:
        http = next((p for p in pod.net.ports if p.name == HTTP), None)
        if http is None:
            continue
        services.append(_service(pod))
        slices.append(_slice(pod.net.namespace, f"hp-{pod.net.name}",
                             [{"name": HTTP, "port": http.port, "protocol": "TCP"}], pod.net.ip))
    return services, slices


class Network:
    """Hub bridge, one netns per pod (servers on every test port), an external client on the bridge."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.servers: list[subprocess.Popen[str]] = []
        self.probe_path = workdir / "probe.py"
        self.probe_path.write_text(PROBE)
        self.created: list[str] = []

    def _netns(self, name: str, veth: str, ip: str) -> None:
        _run("ip", "netns", "add", name)
        self.created.append(name)
        _run("ip", "-n", name, "link", "set", "lo", "up")
        _run("ip", "-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", veth)
        _run("ip", "-n", name, "link", "set", veth, "netns", HUB)
        _run("ip", "-n", HUB, "link", "set", veth, "master", "br0", "up")
        _run("ip", "-n", name, "addr", "add", f"{ip}/16", "dev", "eth0")
        _run("ip", "-n", name, "link", "set", "eth0", "up")
        _run("ip", "-n", name, "route", "add", "default", "via", "198.18.0.1")

    def build(self) -> None:
        _run("ip", "netns", "add", HUB)
        self.created.append(HUB)
        _run("ip", "-n", HUB, "link", "set", "lo", "up")
        _run("ip", "-n", HUB, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", HUB, "addr", "add", "198.18.0.1/16", "dev", "br0")
        _run("ip", "-n", HUB, "link", "set", "br0", "up")
        enable_bridge_conntrack(HUB)
        server_path = self.workdir / "server.py"
        server_path.write_text(SERVER)
        for pod in PODS:
            self._netns(pod.netns, pod.net.veth, pod.net.ip)
            argv = ["ip", "netns", "exec", pod.netns, sys.executable, str(server_path), pod.peer.key]
            argv += [",".join(map(str, LISTEN_TCP)), ",".join(map(str, LISTEN_UDP))]
            server = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            self.servers.append(server)
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        self._netns(EXTERNAL_NETNS, EXTERNAL_VETH, EXTERNAL.ip)

    def teardown(self) -> None:
        for server in self.servers:
            server.kill()
            server.wait(timeout=10)
        for name in reversed(self.created):
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=20, check=False)

    def enforce(self, policies: Sequence[Obj]) -> None:
        """Programs the policies as the sandbox does: the hub's bridge table, every pod's service table."""
        pods = [pod.net for pod in PODS]
        apply(HUB, policy_ruleset(pods, NAMESPACES, list(policies)))
        services, slices = _services()
        script = service_ruleset(services, slices, pods, NAMESPACES, list(policies))
        for pod in PODS:
            apply(pod.netns, script)

    def probe(self, netns: str, jobs: Sequence[tuple[str, str, int]]) -> list[str]:
        """``ok:<who answered>``, ``timeout``, ``refused`` per job, all jobs at once."""
        if not jobs:
            return []
        # Every UDP probe of the module from a source port never used before in it: a conntrack entry that an
        # earlier case's allowed flow left (UDP entries live 30-120 s) would otherwise let a new probe that happens
        # to reuse its ephemeral port through as "established", whatever the case's policies say.
        payload = json.dumps([
            [proto, host, port, BLOCKED_TIMEOUT, *([next(UDP_SOURCE_PORTS)] if proto == "udp" else [])]
            for proto, host, port in jobs
        ])
        argv = ["ip", "netns", "exec", netns, sys.executable, str(self.probe_path), payload, "64"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
        return [str(outcome) for outcome, _ in json.loads(done.stdout)]


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    net = Network(tmp_path_factory.mktemp("diff"))
    try:
        net.build()
        yield net
    finally:
        net.teardown()


# --- the two truth tables ------------------------------------------------------------------------------

Key = tuple[str, str, str]
"""(source, destination, column): the destination is a pod, ``dns via ClusterIP`` or ``itself via ClusterIP``."""


def model_table(policies: Sequence[Obj]) -> tuple[dict[Key, str], dict[Key, str]]:
    """The pure model's verdicts (and why), including DNS through the ClusterIP (evaluated after DNAT, on the
    DNS pod) and hairpin (source = destination)."""
    peers: list[Endpoint] = [pod.peer for pod in PODS] + [EXTERNAL]
    verdicts: dict[Key, Verdict] = {}
    for key, verdict in truth_table(peers, COLUMNS, policies, NAMESPACES).items():
        if key.dst != EXTERNAL.key:  # nothing listens outside; the external address is a source only
            verdicts[(key.src, key.dst, f"{key.port}/{key.protocol}")] = verdict
    for pod in PODS:
        for protocol in ("UDP", "TCP"):
            flow = Flow(pod.peer, DNS.peer, 53, protocol)
            verdicts[(pod.peer.key, "kube-dns ClusterIP", f"53/{protocol}")] = evaluate(flow, policies, NAMESPACES)
        if HTTP in pod.peer.ports:
            flow = Flow(pod.peer, pod.peer, HTTP)
            verdicts[(pod.peer.key, "itself via its ClusterIP", "http/TCP")] = evaluate(flow, policies, NAMESPACES)
    table = {key: "allowed" if verdict.allowed else "blocked" for key, verdict in verdicts.items()}
    return table, {key: verdict.reason() for key, verdict in verdicts.items()}


def _verdict(outcome: str) -> str:
    """An answer or a refusal means the packet reached the destination; a timeout means it was dropped."""
    if outcome.startswith("ok:") or outcome == "refused":
        return "allowed"
    return "blocked" if outcome == "timeout" else outcome


def real_table(network: Network, keys: Sequence[Key]) -> dict[Key, str]:
    """Every cell of ``keys`` probed for real, one probe process per source netns, all at once."""
    by_source: dict[str, list[tuple[Key, tuple[str, str, int]]]] = {}
    peers = {pod.peer.key: pod for pod in PODS}
    for key in keys:
        src, dst, column = key
        port_text, protocol = column.split("/")
        if dst == "kube-dns ClusterIP":
            job = (protocol.lower(), KUBE_DNS_IP, 53)
        elif dst == "itself via its ClusterIP":
            job = ("tcp", peers[src].cluster_ip, 80)
        else:
            target = peers[dst].peer
            number = int(port_text) if port_text.isdigit() else target.ports[port_text][0]
            job = (protocol.lower(), target.ip, number)
        source_netns = EXTERNAL_NETNS if src == EXTERNAL.key else peers[src].netns
        by_source.setdefault(source_netns, []).append((key, job))
    table: dict[Key, str] = {}
    with ThreadPoolExecutor(max_workers=len(by_source)) as pool:
        futures = {
            netns: pool.submit(network.probe, netns, [job for _, job in items]) for netns, items in by_source.items()
        }
        for netns, items in by_source.items():
            for (key, _), outcome in zip(items, futures[netns].result(), strict=True):
                table[key] = _verdict(outcome)
    return table


# --- the policy sets -------------------------------------------------------------------------------------


def policy(namespace: str, name: str, **spec: Any) -> Obj:
    spec.setdefault("podSelector", {})
    return {"kind": "NetworkPolicy", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def labels(**values: str) -> dict[str, Any]:
    return {"matchLabels": values}


DENY_X_EGRESS = policy("x", "deny-egress", policyTypes=["Egress"])
DNS_PORTS = [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
CASES: Mapping[str, list[Obj]] = {
    "no-policy": [],
    "ingress-same-namespace-only": [
        policy("x", "same-ns", ingress=[{"from": [{"podSelector": {}}]}]),
    ],
    "dns-by-ipblock-on-the-cluster-ip-allows-nothing": [
        DENY_X_EGRESS,
        policy("x", "dns-ip", egress=[{"to": [{"ipBlock": {"cidr": f"{KUBE_DNS_IP}/32"}}], "ports": DNS_PORTS}],
               policyTypes=["Egress"]),
    ],
    "dns-by-namespace-and-pod-selector": [
        DENY_X_EGRESS,
        policy("x", "dns", egress=[{
            "to": [{"namespaceSelector": labels(**{"kubernetes.io/metadata.name": "kube-system"}),
                    "podSelector": labels(**{"k8s-app": "kube-dns"})}],
            "ports": DNS_PORTS,
        }], policyTypes=["Egress"]),
    ],
    "namespace-and-pod-selector-together-is-and": [
        policy("y", "c-in", podSelector=labels(app="c"),
               ingress=[{"from": [{"namespaceSelector": labels(team="x"), "podSelector": labels(app="a")}]}]),
    ],
    "namespace-and-pod-selector-apart-is-or": [
        policy("y", "c-in", podSelector=labels(app="c"),
               ingress=[{"from": [{"namespaceSelector": labels(team="x")}, {"podSelector": labels(app="a")}]}]),
    ],
    "ipblock-with-except-and-an-outside-address": [
        policy("x", "b-in", podSelector=labels(app="b"),
               ingress=[{"from": [{"ipBlock": {"cidr": "198.18.0.0/16", "except": [f"{YA.net.ip}/32",
                                                                                  "198.18.127.0/24"]}}]}]),
        policy("y", "c-in", podSelector=labels(app="c"),
               ingress=[{"from": [{"ipBlock": {"cidr": "198.18.127.0/24"}}]}]),
    ],
    "named-ports-resolved-per-destination": [
        DENY_X_EGRESS,
        policy("x", "http-out", egress=[{"ports": [{"port": HTTP}]}], policyTypes=["Egress"]),
        policy("y", "metrics-in", ingress=[{"ports": [{"port": "metrics"}]}]),
    ],
    "end-port-and-udp": [
        DENY_X_EGRESS,
        policy("x", "range-out", policyTypes=["Egress"],
               egress=[{"ports": [{"port": 7000, "endPort": 8081}, {"port": 7001, "protocol": "UDP"}]}]),
    ],
    "hairpin-ingress-from-others-only": [
        policy("x", "a-in", podSelector=labels(app="a"), ingress=[{"from": [{"podSelector": labels(app="b")}]}]),
        policy("y", "c-out", podSelector=labels(app="c"), policyTypes=["Egress"],
               egress=[{"to": [{"podSelector": labels(app="a")}]}]),
        policy("y", "a-in", podSelector=labels(app="a"), ingress=[{"from": [{"podSelector": labels(app="a")}]}]),
    ],
}


@pytest.mark.parametrize("case", list(CASES))
def test_model_and_real_enforcement_agree(network: Network, case: str) -> None:
    policies = CASES[case]
    network.enforce(policies)
    expected, reasons = model_table(policies)
    observed = real_table(network, sorted(expected))
    assert set(expected.values()) <= {"allowed", "blocked"}
    if case != "no-policy":
        assert "blocked" in expected.values(), f"{case}: the policies block nothing, the case proves nothing"
    Comparison.from_dicts(expected, observed, reasons).assert_same(f"NetworkPolicy model vs nftables: {case}")
