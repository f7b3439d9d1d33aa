"""Real tests of the in-process network plumbing: namespaces made as ``ip netns add`` makes them (iproute2 lists
and enters them), a pod's veth on the hub bridge with its address and default route, an outside client's route to
the node only, traffic between them, the processes of a namespace found, and a deleted namespace gone.

Needs root with ``ip`` (used here only to read what was made) and pyroute2; namespaces are named
``nntest-netns-<pid>-...``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_natsnet.sandbox import netns

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None or importlib.util.find_spec("pyroute2") is None,
    reason="needs root with ip and pyroute2")

PREFIX = f"nntest-netns-{os.getpid()}"


def _ip_json(namespace: str, *args: str) -> Any:
    argv = ["ip", "-n", namespace, "-j", *args]
    return json.loads(subprocess.run(argv, capture_output=True, text=True, check=True, timeout=20).stdout)


def _ping(namespace: str, address: str) -> bool:
    argv = ["ip", "netns", "exec", namespace, "busybox", "ping", "-c", "1", "-W", "1", address]
    return subprocess.run(argv, capture_output=True, timeout=20, check=False).returncode == 0


@pytest.fixture
def made() -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in reversed(names):
        netns.delete_netns(name)


def test_a_namespace_is_listed_by_iproute2_with_its_loopback_up_and_gone_after_deletion(made: list[str]) -> None:
    name = f"{PREFIX}-a"
    netns.add_netns(name)
    made.append(name)
    assert name in netns.list_netns()
    assert name in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    (lo,) = _ip_json(name, "link", "show", "lo")
    assert "UP" in lo["flags"]
    with pytest.raises(netns.PlumbingError, match="exists"):
        netns.add_netns(name)
    netns.delete_netns(name)
    assert name not in netns.list_netns()
    assert not os.path.exists(netns.netns_path(name))
    netns.delete_netns(name)  # quiet when gone


def test_pods_and_an_outside_client_get_their_links_addresses_and_routes(made: list[str]) -> None:
    hub, pod, other, outside = (f"{PREFIX}-{n}" for n in ("hub", "p1", "p2", "out"))
    own = os.stat("/proc/thread-self/ns/net").st_ino
    netns.create_hub(hub)
    made.append(hub)
    for name in (pod, other, outside):
        netns.add_netns(name)
        made.append(name)
    netns.attach_pod(hub, pod, "vnt1", "198.18.7.1")
    netns.attach_pod(hub, other, "vnt2", "198.18.7.2")
    netns.attach_outside(hub, outside, "vnt3", "198.19.7.3")

    bridges = {link["ifname"]: link for link in _ip_json(hub, "link", "show")}
    assert bridges["vnt1"]["master"] == netns.HUB_BRIDGE and bridges["vnt3"]["master"] == netns.OUTSIDE_BRIDGE
    assert "UP" in bridges["vnt1"]["flags"] and "UP" in bridges[netns.HUB_BRIDGE]["flags"]
    (eth0,) = _ip_json(pod, "addr", "show", "eth0")
    assert [(a["local"], a["prefixlen"]) for a in eth0["addr_info"] if a["family"] == "inet"] == [("198.18.7.1", 16)]
    assert [(r["dst"], r.get("gateway")) for r in _ip_json(pod, "route", "show") if r["dst"] == "default"] == [
        ("default", netns.HUB_ADDRESS)]
    assert {(r["dst"], r.get("gateway")) for r in _ip_json(outside, "route", "show")} == {
        ("198.19.0.0/16", None), (netns.HUB_ADDRESS, netns.OUTSIDE_ADDRESS)}
    assert os.stat("/proc/thread-self/ns/net").st_ino == own, "the caller's thread stayed in its namespace"

    assert _ping(pod, "198.18.7.2"), "pod to pod over the hub bridge"
    assert _ping(pod, netns.HUB_ADDRESS), "pod to the node"
    assert _ping(outside, netns.HUB_ADDRESS), "outside client to the node's address, forwarded by the hub"
    assert not _ping(outside, "198.18.7.1"), "an outside client has no route to a pod"


def test_pids_finds_exactly_the_processes_inside(made: list[str]) -> None:
    name = f"{PREFIX}-pids"
    netns.add_netns(name)
    made.append(name)
    assert netns.pids(name) == []
    sleeper = subprocess.Popen(["ip", "netns", "exec", name, "sleep", "30"])
    try:
        deadline = time.monotonic() + 10
        while sleeper.pid not in netns.pids(name) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert netns.pids(name) == [sleeper.pid]
        assert os.getpid() not in netns.pids(name)
    finally:
        sleeper.kill()
        sleeper.wait(timeout=10)
    assert netns.pids(name) == []
    assert netns.pids(f"{PREFIX}-never-made") == []


def test_inside_moves_only_the_block_and_a_child_forked_in_it(made: list[str]) -> None:
    name = f"{PREFIX}-inside"
    netns.add_netns(name)
    made.append(name)
    before = os.stat("/proc/thread-self/ns/net").st_ino
    with netns.inside(name):
        assert os.stat("/proc/thread-self/ns/net").st_ino == os.stat(netns.netns_path(name)).st_ino
        child = subprocess.Popen(["sleep", "30"])
    try:
        assert os.stat("/proc/thread-self/ns/net").st_ino == before
        assert netns.pids(name) == [child.pid]
    finally:
        child.kill()
        child.wait(timeout=10)
