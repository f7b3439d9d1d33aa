"""A pod's network, made and removed, as the sandbox does it for every pod (#13).

Usage (root): ``.venv/bin/python benchmarks/pod_network.py [--pods 50] [--ballast-mib 400]``

Makes a hub (the node's namespace with its bridge), then ``--pods`` pod namespaces, each attached to the hub with a
veth, its address and default route, then removes them after a sweep for the processes still inside (what the
sandbox does when a pod goes), two ways: with the iproute2 commands the sandbox ran until the seventh session (ten
``ip`` processes per pod: ``netns add``, ``link set lo up``, five link/addr/route commands, ``netns pids``,
``netns delete``) and in-process (``sandbox/netns.py``: a thread per namespace, rtnetlink through pyroute2, the
``/proc`` scan in Python). Reports wall milliseconds and CPU milliseconds (this process and its children) per pod.
``--ballast-mib`` makes this process as large as the sandbox's (its resident memory ~380 MiB in a full run), which
is what each fork copies the page tables of. Exits 0: it reports, it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pytest_natsnet.sandbox import gc, netns

PREFIX = f"nnbench-{os.getpid()}"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], capture_output=True, check=True, timeout=20)


def with_iproute2(hub: str, pod: str, veth: str, address: str) -> None:
    _ip("netns", "add", pod)
    _ip("-n", pod, "link", "set", "lo", "up")
    _ip("-n", hub, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", pod)
    _ip("-n", hub, "link", "set", veth, "master", netns.HUB_BRIDGE, "up")
    _ip("-n", pod, "addr", "add", f"{address}/{netns.POD_PREFIX_LEN}", "dev", "eth0")
    _ip("-n", pod, "link", "set", "eth0", "up")
    _ip("-n", pod, "route", "add", "default", "via", netns.HUB_ADDRESS)


def remove_with_iproute2(pod: str) -> None:
    subprocess.run(["ip", "netns", "pids", pod], capture_output=True, check=False, timeout=20)
    _ip("netns", "delete", pod)


def in_process(hub: str, pod: str, veth: str, address: str) -> None:
    netns.add_netns(pod)
    netns.attach_pod(hub, pod, veth, address)


def remove_in_process(pod: str) -> None:
    gc.kill_netns_processes(pod)
    netns.delete_netns(pod)


def cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(label: str, hub: str, pods: int, make: Callable[[str, str, str, str], None],
            remove: Callable[[str], None]) -> None:
    names = [f"{PREFIX}-{label[:2]}{n}" for n in range(pods)]
    wall, used = time.perf_counter(), cpu()
    for n, name in enumerate(names):
        make(hub, name, f"vb{label[:2]}{n}", f"198.18.{100 + n // 200}.{1 + n % 200}")
    made_wall, made_cpu = time.perf_counter() - wall, cpu() - used
    wall, used = time.perf_counter(), cpu()
    for name in names:
        remove(name)
    gone_wall, gone_cpu = time.perf_counter() - wall, cpu() - used
    print(f"  {label:<12} make: {1000 * made_wall / pods:6.2f} ms wall {1000 * made_cpu / pods:6.2f} ms CPU   "
          f"remove: {1000 * gone_wall / pods:6.2f} ms wall {1000 * gone_cpu / pods:6.2f} ms CPU   (per pod)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--ballast-mib", type=int, default=400)
    options = parser.parse_args()
    if os.geteuid() != 0:
        print("pod_network.py: needs root (network namespaces)", file=sys.stderr)
        return 2
    ballast = bytearray(options.ballast_mib << 20)
    for offset in range(0, len(ballast), 4096):  # resident, as the sandbox's heap is
        ballast[offset] = 1
    hub = f"{PREFIX}-hub"
    netns.create_hub(hub)
    try:
        print(f"pod network, {options.pods} pods, this process {options.ballast_mib} MiB larger; "
              f"{len(os.listdir('/proc'))} entries in /proc")
        netns.add_netns(f"{PREFIX}-warm")  # pyroute2 imported once, outside the measurement
        netns.delete_netns(f"{PREFIX}-warm")
        for _ in range(2):
            measure("iproute2", hub, options.pods, with_iproute2, remove_with_iproute2)
            measure("in-process", hub, options.pods, in_process, remove_in_process)
    finally:
        for name in netns.list_netns():
            if name.startswith(PREFIX):
                netns.delete_netns(name)
    del ballast
    return 0


if __name__ == "__main__":
    sys.exit(main())
