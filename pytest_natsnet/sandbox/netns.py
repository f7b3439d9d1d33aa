"""Network namespaces, veth links and per-thread ``setns``: the sandbox's kernel plumbing.

The hub namespace is the node. It holds the pod bridge ``br0`` (the node's address 198.18.0.1 on the pod
network 198.18.0.0/16: pods 198.18.0.0/17, Service ClusterIPs 198.18.128.0/17) and the outside bridge ``br1``
(198.19.0.1 on 198.19.0.0/16): the network a kind node's address lives on, where a client outside the cluster
sits. An outside client has a route to the node's address and to nothing else of the cluster: no pod IP, no
ClusterIP, as a CI runner next to a kind cluster; it reaches the cluster only through the node's NodePorts
(``nft.node_table``), which the hub forwards and masquerades like kube-proxy.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

CLONE_NEWNET = 0x40000000
HUB_BRIDGE = "br0"
HUB_ADDRESS = "198.18.0.1"
POD_PREFIX_LEN = 16
OUTSIDE_BRIDGE = "br1"
OUTSIDE_ADDRESS = "198.19.0.1"
"""The node's address on the outside network (the hub forwards what reaches it for a NodePort)."""
OUTSIDE_PREFIX_LEN = 16


class SandboxCommandError(RuntimeError):
    """A plumbing command failed; carries the argv and output."""

    def __init__(self, argv: Sequence[str], returncode: int, output: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.output = output
        super().__init__(f"{' '.join(argv)} failed with exit code {returncode}: {output.strip()}")


def run(argv: Sequence[str], *, input: str | None = None, timeout: float = 20.0, check: bool = True) -> str:
    """Runs a command (argv list, bounded) and returns its combined output."""
    proc = subprocess.run(
        list(argv), input=input, capture_output=True, text=True, timeout=timeout, check=False
    )
    output = proc.stdout + proc.stderr
    if check and proc.returncode != 0:
        raise SandboxCommandError(argv, proc.returncode, output)
    return output


def netns_path(netns: str) -> str:
    return f"/run/netns/{netns}"


def add_netns(netns: str) -> None:
    run(["ip", "netns", "add", netns])
    run(["ip", "-n", netns, "link", "set", "lo", "up"])


def delete_netns(netns: str) -> None:
    if os.path.exists(netns_path(netns)):
        run(["ip", "netns", "delete", netns], check=False)


def list_netns() -> list[str]:
    out = run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def create_hub(hub: str) -> None:
    """The node: a namespace with the pod bridge and the node address (kubelet probes come from here), and the
    outside bridge; it routes between them (what crosses is decided by ``nft.node_table``)."""
    add_netns(hub)
    for bridge, address in ((HUB_BRIDGE, f"{HUB_ADDRESS}/{POD_PREFIX_LEN}"),
                            (OUTSIDE_BRIDGE, f"{OUTSIDE_ADDRESS}/{OUTSIDE_PREFIX_LEN}")):
        run(["ip", "-n", hub, "link", "add", bridge, "type", "bridge"])
        run(["ip", "-n", hub, "addr", "add", address, "dev", bridge])
        run(["ip", "-n", hub, "link", "set", bridge, "up"])
    run(["ip", "netns", "exec", hub, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])


def attach_pod(hub: str, pod_netns: str, veth: str, ip: str) -> None:
    """Creates the pod's eth0 as a veth whose peer ``veth`` is a port of the hub bridge."""
    run(["ip", "-n", hub, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", pod_netns])
    run(["ip", "-n", hub, "link", "set", veth, "master", HUB_BRIDGE, "up"])
    run(["ip", "-n", pod_netns, "addr", "add", f"{ip}/{POD_PREFIX_LEN}", "dev", "eth0"])
    run(["ip", "-n", pod_netns, "link", "set", "eth0", "up"])
    run(["ip", "-n", pod_netns, "route", "add", "default", "via", HUB_ADDRESS])


def attach_outside(hub: str, client_netns: str, veth: str, ip: str) -> None:
    """A client outside the cluster: eth0 on the outside bridge, a route to the node's address only."""
    run(["ip", "-n", hub, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", client_netns])
    run(["ip", "-n", hub, "link", "set", veth, "master", OUTSIDE_BRIDGE, "up"])
    run(["ip", "-n", client_netns, "addr", "add", f"{ip}/{OUTSIDE_PREFIX_LEN}", "dev", "eth0"])
    run(["ip", "-n", client_netns, "link", "set", "eth0", "up"])
    run(["ip", "-n", client_netns, "route", "add", f"{HUB_ADDRESS}/32", "via", OUTSIDE_ADDRESS])


def enter(path: str) -> None:
    """Moves the calling thread (only it) into the network namespace at ``path``."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def executor_in(netns: str, workers: int = 4) -> ThreadPoolExecutor:
    """Threads that live in ``netns``: sockets they open belong to that network namespace.

    The network namespace is a per-thread attribute in Linux, so each worker enters it once at start.
    """
    return ThreadPoolExecutor(
        max_workers=workers,
        thread_name_prefix=f"netns-{netns}",
        initializer=enter,
        initargs=(netns_path(netns),),
    )
