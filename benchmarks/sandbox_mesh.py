"""Times the sandbox on the official chart's default render: route mesh formation and whole up+down.

Usage (root): ``.venv/bin/python benchmarks/sandbox_mesh.py [--runs 5] [--render FILE] [--nats-server PATH]``

Per run: (a) from the moment the LAST nats-server process started (its own log line) to a full mesh seen in
every server's ``/routez`` (distinct ``remote_name`` = N-1); (b) a whole sandbox from nothing to every
StatefulSet pod Ready and torn down again, as wall time and minus the chart's readiness
``initialDelaySeconds``.
Prints min/median/max against the targets and exits 0 (it reports; it asserts nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from pytest_natsnet import kube
from pytest_natsnet.kube import Obj
from pytest_natsnet.sandbox import netns
from pytest_natsnet.sandbox.cluster import SandboxCluster
from pytest_natsnet.sandbox.natsbin import find_nats_server

DEFAULT_RENDER = Path(__file__).resolve().parent.parent / "tests" / "golden" / "rendered" / "default.yaml"
NAMESPACE = "natsnet"
MESH_TARGET = 0.5
UP_DOWN_TARGET = 2.0
_STARTED = re.compile(r"^\[\d+\] (\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d+) \[INF\] Starting nats-server", re.M)


@dataclass(frozen=True)
class RunTimes:
    start_hub: float
    last_server_started: float
    mesh_after_last_start: float
    all_ready: float
    teardown: float

    @property
    def up_down(self) -> float:
        return self.all_ready + self.teardown


def load_render(path: Path) -> list[Obj]:
    docs = yaml.safe_load_all(path.read_text())
    return [o for o in docs if o and not (o["metadata"].get("annotations") or {}).get("helm.sh/hook")]


def readiness_delay(objects: Sequence[Obj]) -> float:
    """The largest readinessProbe initialDelaySeconds of the StatefulSets' containers."""
    delays = [
        float((c.get("readinessProbe") or {}).get("initialDelaySeconds", 0))
        for sts in kube.of_kind(objects, "StatefulSet")
        for c in kube.spec(sts).get("template", {}).get("spec", {}).get("containers") or []
    ]
    return max(delays, default=0.0)


def server_started_at(log: Path) -> float | None:
    """Epoch seconds of the server's own "Starting nats-server" line (local time, microseconds)."""
    text = log.read_text(errors="replace") if log.exists() else ""
    found = _STARTED.findall(text)
    if not found:
        return None
    return datetime.strptime(found[-1], "%Y/%m/%d %H:%M:%S.%f").timestamp()


def _routez_peers(url: str) -> set[str]:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            routez: dict[str, Any] = json.load(response)
    except OSError:
        return set()
    return {str(r["remote_name"]) for r in routez.get("routes") or [] if r.get("remote_name")}


def _pods(cluster: SandboxCluster) -> dict[str, Obj]:
    cluster.check()
    return {kube.name(p): p for p in cluster.list_objects("Pod", NAMESPACE)}


def _wait(condition: Any, timeout: float, what: str, poll: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError(f"{what} not reached within {timeout:g}s")


def one_run(index: int, objects: Sequence[Obj], nats_server: Path) -> RunTimes:
    sts = kube.of_kind(objects, "StatefulSet")[0]
    servers = [f"{kube.name(sts)}-{i}" for i in range(int(kube.spec(sts).get("replicas", 1)))]
    run_dir = Path(tempfile.mkdtemp(prefix=f"natsnet-bench-{os.getpid()}-"))
    cluster = SandboxCluster(f"bm{os.getpid()}{index}", run_dir, nats_server)
    began = time.monotonic()
    hub: ThreadPoolExecutor | None = None
    try:
        cluster.start()
        hub_up = time.monotonic()
        hub = netns.executor_in(cluster.hub, workers=len(servers))
        cluster.apply(list(objects), NAMESPACE)

        def started() -> list[float] | None:
            times = [server_started_at(cluster.log_path(NAMESPACE, s, "nats")) for s in servers]
            return None if None in times else [t for t in times if t is not None]

        last_start = max(_wait(started, 30, "every nats-server started"))
        last_start_mono = time.monotonic() - (time.time() - last_start)

        def meshed() -> bool:
            pods = _pods(cluster)
            urls = [f"http://{pods[s]['status']['podIP']}:8222/routez" for s in servers]
            assert hub is not None
            peers = list(hub.map(_routez_peers, urls))
            return all(p == set(servers) - {s} for s, p in zip(servers, peers, strict=True))

        _wait(meshed, 30, "full route mesh")
        mesh_done = time.monotonic()

        def ready() -> bool:
            status = cluster.list_objects("StatefulSet", NAMESPACE)[0]["status"]
            return bool(status.get("readyReplicas") == len(servers))

        _wait(ready, 60, "StatefulSet ready")
        ready_at = time.monotonic()
    finally:
        stop_began = time.monotonic()
        if hub is not None:
            hub.shutdown(wait=False, cancel_futures=True)
        cluster.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
        stopped = time.monotonic()
    return RunTimes(
        start_hub=hub_up - began,
        last_server_started=last_start_mono - began,
        mesh_after_last_start=mesh_done - last_start_mono,
        all_ready=ready_at - began,
        teardown=stopped - stop_began,
    )


def table(runs: Sequence[RunTimes], delay: float) -> str:
    rows: list[tuple[str, list[float], str]] = [
        ("start(): hub netns, bridge, kube-dns Ready", [r.start_hub for r in runs], ""),
        ("last nats-server process started", [r.last_server_started for r in runs], ""),
        ("(a) full mesh after the last server started", [r.mesh_after_last_start for r in runs],
         f"<= {MESH_TARGET:g} s"),
        ("all 3 pods Ready (wall)", [r.all_ready for r in runs], ""),
        ("teardown (stop())", [r.teardown for r in runs], ""),
        ("(b) sandbox up + down (wall)", [r.up_down for r in runs], f"<= {UP_DOWN_TARGET + delay:g} s"),
        (f"(b) up + down minus initialDelaySeconds {delay:g}", [r.up_down - delay for r in runs],
         f"<= {UP_DOWN_TARGET:g} s"),
    ]
    header = f"{'metric':52} {'min':>8} {'median':>8} {'max':>8}  target"
    lines = [header, "-" * len(header)]
    for label, values, target in rows:
        lines.append(
            f"{label:52} {min(values):8.3f} {statistics.median(values):8.3f} {max(values):8.3f}  {target}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="Number of runs (default 5)")
    parser.add_argument("--render", type=Path, default=DEFAULT_RENDER, help="A rendered chart (YAML stream)")
    parser.add_argument("--nats-server", type=Path, help="nats-server binary (default: the image tag's)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("sandbox_mesh: the sandbox needs root (network namespaces)", file=sys.stderr)
        return 0
    if not args.render.is_file():
        print(f"sandbox_mesh: --render {args.render}: no such file", file=sys.stderr)
        return 0
    objects = load_render(args.render)
    nats_server = args.nats_server
    if nats_server is None:
        found = find_nats_server("nats:2.14.2-alpine", allow_download=False)
        if found is None:
            print("sandbox_mesh: no nats-server binary: pass --nats-server PATH", file=sys.stderr)
            return 0
        nats_server = found.path
    delay = readiness_delay(objects)
    runs = []
    for index in range(args.runs):
        try:
            runs.append(one_run(index, objects, nats_server))
        except (TimeoutError, RuntimeError, OSError) as error:
            print(f"run {index + 1}: failed: {error}", file=sys.stderr)
            continue
        r = runs[-1]
        print(f"run {index + 1}/{args.runs}: mesh {r.mesh_after_last_start:.3f} s after last start, "
              f"up+down {r.up_down:.3f} s", flush=True)
    if runs:
        print(f"\n{args.render.name}: {len(runs)} runs, nats-server {nats_server}\n")
        print(table(runs, delay))
    return 0


if __name__ == "__main__":
    sys.exit(main())
