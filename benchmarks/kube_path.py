"""What the kube path costs per cell on the sandbox: calls, API requests and the time of each step.

Usage (root): ``.venv/bin/python benchmarks/kube_path.py [--cells default,pnra-false,...] [--probes 20]``

It starts ``natsnet sandbox up`` (as a run does), then for each cell does what a run does, step by step, timed:
assemble (reference rendering), install (namespace + ``kubectl apply --server-side``), wait until every pod is
Ready (the chart's readiness probe starts after 10 s: the sandbox's share is the time beyond that), the first
probe (probe pod created, program unpacked, probe session started), ``--probes`` more probes (a TCP connect to
the client Service, one batch each over the open session), and teardown. kubectl runs through a wrapper that
counts its invocations; the API server's access log gives the requests per cell (paths under the cell's
namespace, and the cluster-wide ones made while the cell was handled). Prints a table; exits 0: it reports, it
asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pytest_natsnet.assembly import assemble_cell  # noqa: E402
from pytest_natsnet.deployment import ClusterTools, KubeDeployment  # noqa: E402
from pytest_natsnet.kubeclient import KubeClient  # noqa: E402
from pytest_natsnet.matrix import load_matrix, scenario_by_id  # noqa: E402
from pytest_natsnet.probe.model import ProbeBatch, TcpRequest  # noqa: E402
from pytest_natsnet.providers.base import ProbeTarget, ProviderInfo  # noqa: E402
from pytest_natsnet.settings import NatsnetSettings  # noqa: E402
from pytest_natsnet.tlsgen import new_ca  # noqa: E402
from pytest_natsnet.tools import resolve_tool  # noqa: E402

READINESS_DELAY = 10.0
"""The chart's readinessProbe initialDelaySeconds: no pod can be Ready before it."""
WRAPPER = """#!/bin/sh
echo "$(basename "$0") $*" >> {log}
exec {real} "$@"
"""


def wrapped(name: str, real: str, directory: Path, log: Path) -> str:
    path = directory / name
    path.write_text(WRAPPER.format(log=log, real=real))
    path.chmod(0o755)
    return str(path)


def start_sandbox(directory: Path, dns: str) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    ready = directory / "ready.json"
    argv = [sys.executable, "-m", "pytest_natsnet.cli", "sandbox", "up", "--dir", str(directory / "state"),
            "--ready-file", str(ready), "--dns-profile", dns]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("natsnet sandbox up did not get ready")
        time.sleep(0.05)
    return process, json.loads(ready.read_text())


def access_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cells", default="default,pnra-false,advertise-pod-ip+tls,netpol-egress-dns")
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--dns", default="kind-1.32")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="natsnet-bench-kube-"))
    calls = work / "calls.log"
    kubectl = wrapped("kubectl", resolve_tool("kubectl").path, work, calls)
    process, ready = start_sandbox(work, args.dns)
    access_log = Path(ready["dir"]) / "apiserver.log"
    client = KubeClient(ready["kubeconfig"])
    info = ProviderInfo("sandbox", True, True, True)
    tools = ClusterTools(kubectl, None, Path(ready["kubeconfig"]), None)
    rows = []
    try:
        for index, cell_id in enumerate(args.cells.split(",")):
            seen_calls, seen_requests = len(access_lines(calls)), len(access_lines(access_log))
            t0 = time.monotonic()
            cell, _ = assemble_cell(NatsnetSettings(), scenario_by_id(load_matrix(), cell_id), f"b{index}",
                                    "reference", lambda: new_ca("bench"))
            t1 = time.monotonic()
            deployment = KubeDeployment(cell, info, client, tools)
            deployment.install(180)
            t2 = time.monotonic()
            batch = ProbeBatch((TcpRequest("client", "nats", 4222),)).to_json()
            target = ProbeTarget(cell.namespace)
            deployment.probe(target, batch, 60)
            t3 = time.monotonic()
            rounds = []
            for _ in range(args.probes):
                started = time.monotonic()
                deployment.probe(target, batch, 60)
                rounds.append(time.monotonic() - started)
            t4 = time.monotonic()
            deployment.teardown()
            t5 = time.monotonic()
            requests = access_lines(access_log)[seen_requests:]
            rows.append({
                "cell": cell_id, "assemble": t1 - t0, "install+ready": t2 - t1,
                "beyond delay": t2 - t1 - READINESS_DELAY, "first probe": t3 - t2,
                "probe median": statistics.median(rounds) if rounds else 0.0, "teardown": t5 - t4,
                "kubectl": len(access_lines(calls)[seen_calls:]),
                "API requests": len(requests),
                "in namespace": sum(1 for r in requests if f"/namespaces/{cell.namespace}/" in r),
            })
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    columns = ["cell", "assemble", "install+ready", "beyond delay", "first probe", "probe median", "teardown",
               "kubectl", "API requests", "in namespace"]
    widths = {c: max(len(c), 12) for c in columns}
    widths["cell"] = max(len(r["cell"]) for r in rows) if rows else 4
    print(f"sandbox API {ready['server']}, DNS profile {args.dns}, {args.probes} probes per cell, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print("  ".join(f"{c:>{widths[c]}}" for c in columns))
    for row in rows:
        cells = []
        for c in columns:
            value = row[c]
            cells.append(f"{value:>{widths[c]}.3f}" if isinstance(value, float) else f"{value!s:>{widths[c]}}")
        print("  ".join(cells))
    print("times in seconds; 'beyond delay' = install+ready minus the chart's 10 s readiness delay")
    return 0


if __name__ == "__main__":
    sys.exit(main())
