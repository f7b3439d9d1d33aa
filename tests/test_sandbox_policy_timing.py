"""NetworkPolicy timing on a real sandbox (issue #12, row 7): a DNS-blocked cell forms no route when its
policies hold from the pods' first packet (the sandbox's default), and forms routes that stay when they hold only
after a learning window, as kind's kube-network-policies can (``expect/policytiming.py``: the rule and its
upstream source); every such route is explained as formed before the policy held.

Needs root with ``ip``, ``nft``, ``bwrap`` and ``nsenter``; both sandboxes are removed at teardown.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from golden_data import RENDERED

from pytest_natsnet.expect.policytiming import route_starts, routes_before_enforcement, server_starts
from pytest_natsnet.kube import Obj
from pytest_natsnet.sandbox import netns
from pytest_natsnet.sandbox.cluster import SandboxCluster
from pytest_natsnet.table import TruthTable

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(c) for c in ("ip", "nft", "bwrap", "nsenter")),
    reason="needs root with ip, nft, bwrap and nsenter (network namespaces)",
)

NATS_SERVER = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "nats-server"
NS = "natsnet"
SERVERS = ("nats-0", "nats-1", "nats-2")
DELAY = 3.0


def _objects() -> list[Obj]:
    docs = yaml.safe_load_all((RENDERED / "netpol-egress-no-dns.yaml").read_text())
    return [o for o in docs if o and not (o["metadata"].get("annotations") or {}).get("helm.sh/hook")]


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=3) as response:
        return json.load(response)


class Cell:
    """The DNS-blocked golden render in a sandbox; monitoring endpoints read from the node (policy-free)."""

    def __init__(self, cluster: SandboxCluster) -> None:
        self.cluster = cluster
        self.hub = netns.executor_in(cluster.hub, workers=3)

    def monitor(self, path: str) -> dict[str, dict[str, Any]]:
        pods = {p["metadata"]["name"]: p for p in self.cluster.list_objects("Pod", NS)}
        answers = {}
        for name in SERVERS:
            ip = (pods.get(name) or {}).get("status", {}).get("podIP")
            if ip:
                try:
                    answers[name] = self.hub.submit(_get_json, f"http://{ip}:8222{path}").result()
                except OSError:
                    continue
        return answers

    def peers(self) -> dict[str, set[str]]:
        return {body["server_name"]: {str(r["remote_name"]) for r in body.get("routes") or []}
                for body in self.monitor("/routez").values()}


@pytest.fixture(scope="module")
def cells(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[float, Cell]]:
    nats = NATS_SERVER if NATS_SERVER.is_file() else Path(shutil.which("nats-server") or "nats-server")
    started: dict[float, Cell] = {}
    try:
        for index, delay in enumerate((0.0, DELAY)):
            cluster = SandboxCluster(f"tp{os.getpid()}{index}", tmp_path_factory.mktemp(f"policy-{index}"), nats,
                                     "fast", policy_delay=delay)
            cluster.start()
            started[delay] = Cell(cluster)
            cluster.apply(_objects(), NS)
        deadline = time.monotonic() + 30
        while not all(len(c.monitor("/varz")) == len(SERVERS) for c in started.values()):
            assert time.monotonic() < deadline, "the servers' monitoring ports did not answer within 30 s"
            time.sleep(0.2)
        time.sleep(DELAY + 2)  # past the learning window: what formed has formed
        yield started
    finally:
        for cell in started.values():
            cell.hub.shutdown(wait=False, cancel_futures=True)
            cell.cluster.stop()
            left = [n for n in netns.list_netns() if f"-{cell.cluster.id}-" in n]
            assert left == [], f"network namespaces left behind by sandbox {cell.cluster.id}: {left}"


def test_policies_that_hold_from_the_first_packet_leave_a_dns_blocked_cell_without_routes(
    cells: dict[float, Cell],
) -> None:
    assert cells[0.0].peers() == {name: set() for name in SERVERS}


def test_a_learning_window_lets_routes_form_and_each_is_explained(cells: dict[float, Cell]) -> None:
    cell = cells[DELAY]
    peers = cell.peers()
    assert any(peers.values()), f"no route formed in the {DELAY:g} s learning window: {peers}"
    routez, starts = cell.monitor("/routez"), server_starts(cell.monitor("/varz"))
    routes = route_starts(routez)
    explained = routes_before_enforcement(TruthTable(SERVERS, SERVERS, False), routes, starts)
    unexplained = sorted({(r.server, r.remote) for r in routes} - set(explained))
    assert unexplained == [], f"routes not explained as formed before the policy held: {unexplained}"
    time.sleep(1.0)
    assert cell.peers() == peers, "routes formed in the window must stay: established flows are never judged"


def test_after_the_window_the_policy_holds_for_new_connections(cells: dict[float, Cell]) -> None:
    """The learned pods are filtered now: DNS from a server's namespace times out."""
    cell = cells[DELAY]
    argv = cell.cluster.exec_argv(NS, "nats-0", "nats", [
        "python3", "-c", "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.settimeout(1)\n"
        "s.sendto(b'\\x00' * 12, ('198.18.128.10', 53))\ntry:\n    s.recv(512)\n    print('answered')\n"
        "except OSError:\n    print('timeout')\n"])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    assert done.stdout.strip() == "timeout", done.stdout + done.stderr
