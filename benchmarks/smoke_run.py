"""Times the main job: the smoke matrix × every suite on the sandbox, one pytest-xdist worker per cell.

    sudo .venv/bin/python benchmarks/smoke_run.py [--runs 1] [--workers 11] [-- extra pytest args]

Reports the wall time against the 90 s target, per-cell time, and the timings the suites record in JUnit
(time to mesh, reconnect latency, DNS latency); always exits 0 (it reports, it does not judge).
"""

from __future__ import annotations

import argparse
import collections
import re
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 90.0
CELL = re.compile(r"\[(.*?)(-udp|-tcp)?\]$")


def run_once(workers: int, extra: list[str]) -> tuple[float, Path, str]:
    junit = Path(tempfile.mkdtemp(prefix="natsnet-bench-")) / "junit.xml"
    argv = [sys.executable, "-m", "pytest", "--natsnet", "--natsnet-provider=sandbox", "-p", "no:cacheprovider",
            "-q", "-n", str(workers), "--dist", "loadgroup", f"--junitxml={junit}", "-o", "junit_family=xunit1",
            str(ROOT / "suites"), *extra]
    started = time.monotonic()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    summary = next((line for line in reversed(done.stdout.splitlines()) if " in " in line), done.stdout[-200:])
    return elapsed, junit, summary.strip()


def per_cell(junit: Path) -> tuple[dict[str, float], dict[str, list[float]]]:
    cells: dict[str, float] = collections.defaultdict(float)
    properties: dict[str, list[float]] = collections.defaultdict(list)
    for case in ET.parse(junit).iter("testcase"):
        match = CELL.search(case.get("name", ""))
        if match:
            cells[match.group(1)] += float(case.get("time", 0))
        for prop in case.iter("property"):
            try:
                value = float(prop.get("value", ""))
            except ValueError:
                continue  # a text property (e.g. the log line that explains a declared failure)
            properties[prop.get("name", "")].append(value)
    return dict(cells), dict(properties)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--workers", type=int, default=11)
    parser.add_argument("extra", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    walls = []
    for index in range(args.runs):
        wall, junit, summary = run_once(args.workers, args.extra)
        walls.append(wall)
        cells, properties = per_cell(junit)
        print(f"run {index + 1}: {wall:.1f} s wall ({summary}); target <= {TARGET_SECONDS:g} s")
        print(f"  {'cell':45} {'tests (s)':>9}")
        for cell, seconds in sorted(cells.items(), key=lambda kv: -kv[1]):
            print(f"  {cell:45} {seconds:9.1f}")
        print(f"  {'recorded property':45} {'n':>3} {'min':>8} {'median':>8} {'max':>8}")
        for name, values in sorted((n, v) for n, v in properties.items() if v):
            print(f"  {name:45} {len(values):3} {min(values):8.3f} {statistics.median(values):8.3f} "
                  f"{max(values):8.3f}")
    if len(walls) > 1:
        print(f"wall over {len(walls)} runs: min {min(walls):.1f} s, median {statistics.median(walls):.1f} s, "
              f"max {max(walls):.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
