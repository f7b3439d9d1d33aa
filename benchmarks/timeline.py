"""Where a run's time goes (issue #13): each cell's chain of tests, and how long the kube path's calls take.

Usage (root): ``.venv/bin/python benchmarks/timeline.py [--matrix smoke] [--top 12] [-- extra pytest args]``

Runs ``pytest --natsnet`` over the shipped suites on the sandbox as a user would (no ``-n``: the plugin chooses
the workers) with a small plugin loaded in every process, which writes one JSON line per test phase (setup, call,
teardown: when it ended and how long it took) and per call of the kube path that a test waits on (the cell's
readiness wait, a probe batch, the probe pod's preparation, an exec, a watch, object reads). Prints the wall
time, the cells in the order they finished with each phase of 1 s or more (the chain that sets the wall time),
and a latency table per kind of call. Exits 0: it reports, it asserts nothing.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CELL = re.compile(r"\[(.*?)(-udp|-tcp)?\]$")

PLUGIN = '''
import functools, json, os, time

OUT = os.environ["NATSNET_TIMELINE"]


def _write(record):
    with open(OUT, "a") as stream:
        stream.write(json.dumps(record) + "\\n")


def pytest_runtest_logreport(report):
    if getattr(report, "node", None) is None:  # the xdist controller sees each worker's report again (with .node)
        _write({"phase": report.when, "id": report.nodeid, "end": time.time(), "seconds": report.duration,
                "outcome": report.outcome, "pid": os.getpid()})


def pytest_sessionstart(session):
    _write({"mark": "worker session start" if hasattr(session.config, "workerinput") else "session start",
            "at": time.time(), "pid": os.getpid()})


import atexit

atexit.register(lambda: _write({"mark": "process exit (atexit)", "at": time.time(), "pid": os.getpid()}))


def pytest_sessionfinish(session):
    _write({"mark": "worker session finish" if hasattr(session.config, "workerinput") else "session finish",
            "at": time.time(), "pid": os.getpid()})


def pytest_unconfigure(config):
    _write({"mark": "worker unconfigure" if hasattr(config, "workerinput") else "unconfigure",
            "at": time.time(), "pid": os.getpid()})


def _timed(cls, name, label):
    original = getattr(cls, name)

    @functools.wraps(original)
    def wrapper(self, *args, **kwargs):
        started = time.time()
        try:
            return original(self, *args, **kwargs)
        finally:
            _write({"call": label, "end": time.time(), "seconds": time.time() - started, "pid": os.getpid()})

    setattr(cls, name, wrapper)


from pytest_natsnet import deployment as _deployment, kubeclient as _kubeclient

for _name, _label in [("wait_ready", "cell ready (wait)"), ("probe", "probe batch"),
                      ("_ensure_probe_pod", "probe pod prepared"), ("watch", "watch started")]:
    _timed(_deployment.KubeDeployment, _name, _label)
for _name in ("exec", "exec_stream", "list", "get", "apply", "logs"):
    _timed(_kubeclient.KubeClient, _name, f"client.{_name}")
from pytest_natsnet import session as _session

_timed(_session.NatsnetRun, "manifests", "cell assembled")
_timed(_session.NatsnetRun, "start_cluster", "cluster started (controller)")
_timed(_session.NatsnetRun, "finish", "run finished (cluster stopped)")
_timed(_session.NatsnetRun, "release", "cell released")
_timed(_session.NatsnetRun, "provider", "provider attached")
_timed(_deployment.KubeDeployment, "_install_chart", "cell installed (to ready)")
_timed(_deployment.ClusterTools, "run", "kubectl/helm run")
'''


def run(matrix: str, extra: list[str], workdir: Path) -> tuple[float, Path, str, tuple[float, float]]:
    (workdir / "natsnet_timeline_plugin.py").write_text(PLUGIN)
    records = workdir / "timeline.jsonl"
    env = {**os.environ, "NATSNET_TIMELINE": str(records),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(workdir), os.environ.get("PYTHONPATH")]))}
    argv = [sys.executable, "-m", "pytest", "--natsnet", "--natsnet-provider=sandbox", "--natsnet-source=reference",
            f"--natsnet-matrix={matrix}", "-p", "natsnet_timeline_plugin", "-p", "no:cacheprovider", "-q",
            "-o", "testpaths=suites", str(ROOT / "suites"), *extra]
    started, began = time.monotonic(), time.time()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    summary = next((line for line in reversed(done.stdout.splitlines()) if " in " in line), done.stdout[-300:])
    return time.monotonic() - started, records, summary.strip(), (began, time.time())


def report(records: list[dict[str, Any]], top: int, bounds: tuple[float, float] | None = None) -> None:
    phases = [r for r in records if "phase" in r]
    calls = [r for r in records if "call" in r]
    if not phases:
        print("no test phase recorded")
        return
    start = min(r["end"] - r["seconds"] for r in phases)
    cells: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for record in phases:
        match = CELL.search(record["id"])
        cells[match.group(1) if match else "?"].append(record)
    ends = {cell: max(r["end"] for r in rs) - start for cell, rs in cells.items()}
    marks = collections.defaultdict(list)
    for record in records:
        if "mark" in record:
            marks[record["mark"]].append(record["at"])
    if bounds:
        for mark, times in sorted(marks.items()):
            print(f"{mark}: {min(times) - bounds[0]:.1f}-{max(times) - bounds[0]:.1f} s after the command")
        by_pid: dict[int, dict[str, float]] = collections.defaultdict(dict)
        for record in records:
            if "mark" in record:
                by_pid[record["pid"]][record["mark"]] = record["at"]
        exits = sorted((marks_of["process exit (atexit)"] - bounds[0], marks_of["worker unconfigure"] - bounds[0])
                       for marks_of in by_pid.values()
                       if "worker unconfigure" in marks_of and "process exit (atexit)" in marks_of)
        if exits:
            print("workers: last atexit at " + ", ".join(f"{e:.1f}" for e, _ in exits[-3:])
                  + f" s; the last unconfigured at {max(u for _, u in exits):.1f} s")
        last = max(r["end"] for r in phases)
        print(f"the first test phase began {start - bounds[0]:.1f} s after the command (collection, the sandbox, "
              f"the workers); the command exited {bounds[1] - last:.1f} s after the last one ended (teardown)")
    print("cells by when they finished (the first sets the wall time); phases of 1 s or more, in order:")
    for cell in sorted(ends, key=lambda c: -ends[c])[:top]:
        print(f"  {cell}: done after {ends[cell]:.1f} s")
        for r in sorted(cells[cell], key=lambda r: r["end"]):
            if r["seconds"] >= 1.0:
                test = r["id"].rsplit("::", 1)[-1].split("[")[0]
                print(f"    {r['end'] - r['seconds'] - start:6.1f} +{r['seconds']:5.1f} s  {r['phase']:8} {test}")
    print(f"  {'call':22} {'n':>6} {'total s':>8} {'median s':>9} {'p90 s':>7} {'max s':>7}")
    by_call: dict[str, list[float]] = collections.defaultdict(list)
    for record in calls:
        by_call[record["call"]].append(record["seconds"])
    for name, values in sorted(by_call.items(), key=lambda kv: -sum(kv[1])):
        values.sort()
        print(f"  {name:22} {len(values):6} {sum(values):8.1f} {statistics.median(values):9.3f} "
              f"{values[int(len(values) * 0.9)]:7.3f} {values[-1]:7.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matrix", default="smoke")
    parser.add_argument("--top", type=int, default=12, help="cells shown (the last to finish first)")
    parser.add_argument("extra", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="natsnet-timeline-") as workdir:
        wall, path, summary, bounds = run(args.matrix, args.extra, Path(workdir))
        records = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    print(f"{args.matrix}: {wall:.1f} s wall ({summary})")
    report(records, args.top, bounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
