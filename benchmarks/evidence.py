"""Times the evidence bundle and ``natsnet doctor`` on the smoke matrix's cells that declare a failure (and the
default cell), on one sandbox.

Usage (root): ``.venv/bin/python benchmarks/evidence.py [--runs 3] [--dns kind-1.32] [--cells ID ...]``

Per cell and run: the bundle a failed cell gets (``evidence.cell.capture``, the cell's probe pod already
running, as in a run) and a ``natsnet doctor`` pass (``doctor.command.examine``: its own probe pod, created and
removed). Prints min/median/max seconds against the 30 s per cell target, the slowest step, the bundle's size and
file count, and the findings; exits 0 (it reports; it asserts nothing).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pytest_natsnet.assembly import assemble_cell
from pytest_natsnet.doctor.command import DoctorOptions, examine
from pytest_natsnet.evidence.cell import capture
from pytest_natsnet.matrix import expand, load_matrix
from pytest_natsnet.providers.sandbox_provider import SandboxProvider
from pytest_natsnet.settings import NatsnetSettings
from pytest_natsnet.tlsgen import new_ca

TARGET = 30.0
DEFAULT_CELLS = ("default", "advertise-unreachable", "advertise-cluster-wrong+routes-seed", "tls-bad-sans",
                 "netpol-egress-no-dns")


def _size(directory: Path) -> tuple[int, int]:
    files = [p for p in directory.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def _stats(values: list[float]) -> str:
    return f"{min(values):5.1f} / {statistics.median(values):5.1f} / {max(values):5.1f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dns", default="kind-1.32", help="sandbox DNS profile (default kind-1.32)")
    parser.add_argument("--cells", nargs="*", default=list(DEFAULT_CELLS))
    args = parser.parse_args(argv)
    scenarios = {s.id: s for s in expand(load_matrix(), "full")}
    settings = NatsnetSettings(source="reference", sandbox_dns=args.dns)
    with tempfile.TemporaryDirectory(prefix="natsnet-bench-evidence-") as tmp:
        work = Path(tmp)
        provider = SandboxProvider(settings, work / "run")
        access = provider.start()
        authority = new_ca("benchmark")
        deployments = {}
        try:
            for cell_id in args.cells:
                cell, _ = assemble_cell(settings, scenarios[cell_id], "bench", "reference", lambda: authority,
                                        workdir=work / "cells" / cell_id)
                deployments[cell_id] = provider.deploy(cell, 180)
            print(f"{len(deployments)} cells deployed; {args.runs} runs each; min / median / max; target "
                  f"{TARGET:g} s per cell")
            for cell_id, deployment in deployments.items():
                bundle_times, doctor_times, steps = [], [], {}
                files = size = 0
                patterns: list[str] = []
                for run in range(args.runs):
                    started = time.monotonic()
                    readme, findings = capture(work / "bundles" / f"{cell_id}-{run}", scenarios[cell_id],
                                               deployment, failed=True, kept=False, failures=[],
                                               reproduce="pytest --natsnet", provider=provider)
                    bundle_times.append(time.monotonic() - started)
                    timings = json.loads((readme.parent / "timings.json").read_text())
                    steps = max(steps, timings, key=lambda t: t.get("total", 0.0)) if steps else timings
                    files, size = _size(readme.parent)
                    patterns = [f.pattern for f in findings]
                    started = time.monotonic()
                    examine(DoctorOptions(deployment.namespace, kubeconfig=Path(access.kubeconfig),
                                          out=work / "doctor" / f"{cell_id}-{run}"), io.StringIO())
                    doctor_times.append(time.monotonic() - started)
                slowest = max((k for k in steps if k != "total"), key=lambda k: steps[k], default="-")
                print(f"{cell_id:40} bundle {_stats(bundle_times)}  doctor {_stats(doctor_times)}  "
                      f"slowest step {slowest} {steps.get(slowest, 0.0):.1f} s  {files} files "
                      f"{size / 1024:.0f} KiB  findings: {', '.join(patterns) or 'none'}")
        finally:
            for deployment in deployments.values():
                deployment.teardown()
            provider.stop(keep=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
