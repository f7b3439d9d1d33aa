"""Network namespaces, veth links and per-thread ``setns``: the sandbox's kernel plumbing, done in-process.

The hub namespace is the node. It holds the pod bridge ``br0`` (the node's address 198.18.0.1 on the pod
network 198.18.0.0/16: pods 198.18.0.0/17, Service ClusterIPs 198.18.128.0/17) and the outside bridge ``br1``
(198.19.0.1 on 198.19.0.0/16): the network a kind node's address lives on, where a client outside the cluster
sits. An outside client has a route to the node's address and to nothing else of the cluster: no pod IP, no
ClusterIP, as a CI runner next to a kind cluster; it reaches the cluster only through the node's NodePorts
(``nft.node_table``), which the hub forwards and masquerades like kube-proxy.

Namespaces are made as iproute2's ``ip netns add`` makes them (a bind mount of the namespace at
``/run/netns/NAME``, that directory a shared mount point), so ``ip netns`` and ``nft`` see them; links,
addresses and routes go over rtnetlink (pyroute2) from a thread inside the namespace. No ``ip`` process per
pod: a pod's network took ~10 of them, each a fork and exec from the sandbox's reconcile loop.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SHARED = 1 << 20
MNT_DETACH = 2
RTPROT_BOOT = 3
"""The routes' origin ``ip route add`` gives them."""
NETNS_RUN_DIR = "/run/netns"
HUB_BRIDGE = "br0"
HUB_ADDRESS = "198.18.0.1"
POD_PREFIX_LEN = 16
OUTSIDE_BRIDGE = "br1"
OUTSIDE_ADDRESS = "198.19.0.1"
"""The node's address on the outside network (the hub forwards what reaches it for a NodePort)."""
OUTSIDE_PREFIX_LEN = 16

T = TypeVar("T")
_libc = ctypes.CDLL(None, use_errno=True)
_run_dir_lock = threading.Lock()
_run_dir_shared = False


class PlumbingError(RuntimeError):
    """A plumbing step failed; names it and says why."""

    def __init__(self, step: str, output: str) -> None:
        self.step = step
        self.output = output
        super().__init__(f"{step} failed: {output.strip()}")


def netns_path(netns: str) -> str:
    return f"{NETNS_RUN_DIR}/{netns}"


def _checked(result: int, step: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise PlumbingError(step, f"{errno.errorcode.get(code, code)}: {os.strerror(code)}")


def enter(path: str) -> None:
    """Moves the calling thread (only it) into the network namespace at ``path``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


@contextlib.contextmanager
def inside(netns: str) -> Iterator[None]:
    """The calling thread inside ``netns`` for the block, back in its own network namespace after it (a child
    process forked meanwhile keeps ``netns``)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        enter(netns_path(netns))
        try:
            yield
        finally:
            _checked(_libc.setns(own, CLONE_NEWNET), "setns back to the thread's own network namespace")
    finally:
        os.close(own)


def _on_thread(work: Callable[[], T], name: str) -> T:
    """Runs ``work`` on a thread of its own (it may move that thread into another network namespace) and returns
    its result or raises its error."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, work()))
        except BaseException as error:  # handed to the caller
            outcome.append((False, error))

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    thread.join()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def in_netns(netns: str, work: Callable[[], T]) -> T:
    """``work()`` run on a thread inside ``netns`` (sockets it opens, netlink's included, belong there)."""

    def entered() -> T:
        enter(netns_path(netns))
        return work()

    return _on_thread(entered, f"netns-{netns}")


def _share_run_dir() -> None:
    """``/run/netns`` as a shared mount point (iproute2's rule): a namespace bound or unbound there later is seen
    by every mount namespace made since (bubblewrap's), so none keeps a deleted namespace alive."""
    global _run_dir_shared
    with _run_dir_lock:
        if _run_dir_shared:
            return
        os.makedirs(NETNS_RUN_DIR, mode=0o755, exist_ok=True)
        directory = NETNS_RUN_DIR.encode()
        if _libc.mount(b"", directory, b"none", MS_SHARED | MS_REC, None) != 0:  # not a mount point yet
            _checked(_libc.mount(directory, directory, b"none", MS_BIND | MS_REC, None),
                     f"mount --bind {NETNS_RUN_DIR}")
            _checked(_libc.mount(b"", directory, b"none", MS_SHARED | MS_REC, None),
                     f"mount --make-shared {NETNS_RUN_DIR}")
        _run_dir_shared = True


def _ipr() -> Any:
    """An rtnetlink socket in the calling thread's network namespace."""
    from pyroute2 import IPRoute  # imported on the first namespace: ~0.3 s, once per process

    return IPRoute()


def add_netns(netns: str) -> None:
    """A new network namespace bound at ``/run/netns/NAME``, its loopback up (``ip netns add`` and
    ``ip -n NAME link set lo up``)."""
    _share_run_dir()
    path = netns_path(netns)
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    except FileExistsError:
        raise PlumbingError(f"creating network namespace {netns}", f"{path} exists") from None

    def create() -> None:
        _checked(_libc.unshare(CLONE_NEWNET), f"unshare of network namespace {netns}")
        _checked(_libc.mount(b"/proc/thread-self/ns/net", path.encode(), b"none", MS_BIND, None),
                 f"mount --bind of network namespace {netns}")
        with _ipr() as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")

    try:
        _on_thread(create, f"netns-add-{netns}")
    except BaseException:
        delete_netns(netns)
        raise


def delete_netns(netns: str) -> None:
    """``ip netns delete``: the bind mount detached and its file removed; the namespace ends with its last
    process. Quiet when it is gone already."""
    path = netns_path(netns)
    if os.path.exists(path):
        _libc.umount2(path.encode(), MNT_DETACH)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def list_netns() -> list[str]:
    """The names under ``/run/netns`` (``ip netns list``)."""
    try:
        return sorted(os.listdir(NETNS_RUN_DIR))
    except FileNotFoundError:
        return []


def pids(netns: str) -> list[int]:
    """The processes in ``netns`` (``ip netns pids``): those whose ``/proc/PID/ns/net`` is that namespace."""
    try:
        wanted = os.stat(netns_path(netns))
    except FileNotFoundError:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                inode = os.stat(f"/proc/{entry}/ns/net")
            except OSError:  # gone meanwhile, or a kernel thread
                continue
            if (inode.st_ino, inode.st_dev) == (wanted.st_ino, wanted.st_dev):
                found.append(int(entry))
    return found


def _configure(netns: str, steps: Callable[[Any], None]) -> None:
    def configure() -> None:
        with _ipr() as ipr:
            steps(ipr)

    in_netns(netns, configure)


def _index(ipr: Any, ifname: str) -> int:
    """The link's index, asked by name (not a dump of every link: the hub has one per pod)."""
    try:
        return int(ipr.link("get", ifname=ifname)[0]["index"])
    except Exception as error:  # pyroute2's NetlinkError: ENODEV
        raise PlumbingError(f"looking up link {ifname}", str(error)) from None


def create_hub(hub: str) -> None:
    """The node: a namespace with the pod bridge and the node address (kubelet probes come from here), and the
    outside bridge; it routes between them (what crosses is decided by ``nft.node_table``)."""
    add_netns(hub)

    def bridges(ipr: Any) -> None:
        for bridge, address, prefix in ((HUB_BRIDGE, HUB_ADDRESS, POD_PREFIX_LEN),
                                        (OUTSIDE_BRIDGE, OUTSIDE_ADDRESS, OUTSIDE_PREFIX_LEN)):
            ipr.link("add", ifname=bridge, kind="bridge")
            index = _index(ipr, bridge)
            ipr.addr("add", index=index, address=address, prefixlen=prefix)
            ipr.link("set", index=index, state="up")
        with open("/proc/sys/net/ipv4/ip_forward", "w") as forward:  # this thread's namespace: the hub's
            forward.write("1\n")

    _configure(hub, bridges)


def _attach(hub: str, netns: str, veth: str, bridge: str, address: str, prefix: int,
            route: tuple[str, str]) -> None:
    """The namespace's eth0 as a veth whose peer ``veth`` is a port of ``bridge`` in the hub; ``address`` on it
    and ``route`` (destination, gateway)."""

    def hub_side(ipr: Any) -> None:  # one message: made, a port of the bridge, up
        ipr.link("add", ifname=veth, kind="veth", peer={"ifname": "eth0", "net_ns_fd": netns_path(netns)},
                 master=_index(ipr, bridge), state="up")

    def pod_side(ipr: Any) -> None:
        index = _index(ipr, "eth0")
        ipr.addr("add", index=index, address=address, prefixlen=prefix)
        ipr.link("set", index=index, state="up")
        ipr.route("add", dst=route[0], gateway=route[1], proto=RTPROT_BOOT)

    _configure(hub, hub_side)
    _configure(netns, pod_side)


def attach_pod(hub: str, pod_netns: str, veth: str, ip: str) -> None:
    """Creates the pod's eth0 as a veth whose peer ``veth`` is a port of the hub bridge."""
    _attach(hub, pod_netns, veth, HUB_BRIDGE, ip, POD_PREFIX_LEN, ("0.0.0.0/0", HUB_ADDRESS))


def attach_outside(hub: str, client_netns: str, veth: str, ip: str) -> None:
    """A client outside the cluster: eth0 on the outside bridge, a route to the node's address only."""
    _attach(hub, client_netns, veth, OUTSIDE_BRIDGE, ip, OUTSIDE_PREFIX_LEN, (f"{HUB_ADDRESS}/32", OUTSIDE_ADDRESS))


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
