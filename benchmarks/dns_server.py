"""The sandbox's DNS server under the queries a cell's servers send: CPU per query (issue #13).

Usage: ``.venv/bin/python benchmarks/dns_server.py [--queries 20000] [--clients 24] [--profile kind-1.32]
[--runs 3] [--rewrite-every 0.05]``

Starts ``python -m pytest_natsnet.sandbox.dns`` on 127.0.0.1 with 50 namespaces' chart Services (headless
``nats-headless`` with three ready pods, ClusterIP ``nats``), then sends the mix a nats-server route retry
produces through a pod's search path (``ndots:5``): each pod name tried with the pod's search domains first
(NXDOMAIN), then as written (A and AAAA), from ``--clients`` sockets (so both CoreDNS replicas and their caches
answer), while the objects file is written again every ``--rewrite-every`` seconds (the same objects in a new
file: in a busy run the sandbox rewrites it many times a second and the server reads it again). Reports per run:
queries answered per second (one client at a time, waiting for each answer) and the server's CPU (user + system
from ``/proc``) per query in microseconds. Exits 0: it reports, it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import dns.message

ROOT = Path(__file__).resolve().parent.parent
CLOCK = os.sysconf("SC_CLK_TCK")
NAMESPACE = "natsnet"
NAMESPACES = 50
"""Cells at once: each one's servers ask for their own names (a full run: two dozen cells, each queried by its
three servers and its probes)."""
PODS = ("nats-0", "nats-1", "nats-2")


def objects(namespaces: int = NAMESPACES) -> list[dict[str, Any]]:
    """The chart's two Services and their EndpointSlices in each of ``namespaces`` namespaces, as the sandbox
    writes them for its DNS server."""
    return [obj for index in range(namespaces) for obj in namespace_objects(f"{NAMESPACE}-{index}", index)]


def namespace_objects(namespace: str, index: int) -> list[dict[str, Any]]:
    """One cell's Services and EndpointSlices."""
    ports = [{"name": "nats", "port": 4222, "protocol": "TCP"}, {"name": "cluster", "port": 6222, "protocol": "TCP"}]

    def service(name: str, cluster_ip: str, publish: bool) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
                "spec": {"clusterIP": cluster_ip, "clusterIPs": [cluster_ip], "ports": ports,
                         "publishNotReadyAddresses": publish, "type": "ClusterIP"}}

    endpoints = [{"addresses": [f"198.18.{index}.{10 + number}"], "conditions": {"ready": True}, "hostname": pod,
                  "targetRef": {"kind": "Pod", "name": pod}} for number, pod in enumerate(PODS)]
    slices = [{"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
               "metadata": {"name": f"{svc}-abcde", "namespace": namespace,
                            "labels": {"kubernetes.io/service-name": svc}},
               "endpoints": endpoints, "ports": ports} for svc in ("nats", "nats-headless")]
    namespace_object = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    return [namespace_object, service("nats", f"198.18.{128 + index}.20", False),
            service("nats-headless", "None", True), *slices]


def queries(namespaces: int = NAMESPACES) -> list[bytes]:
    """A route retry to every pod of every namespace through its search path, A and AAAA, as nats-server's
    resolver asks."""
    wires = []
    for index in range(namespaces):
        namespace = f"{NAMESPACE}-{index}"
        search = (f"{namespace}.svc.cluster.local", "svc.cluster.local", "cluster.local")
        for pod in PODS:
            name = f"{pod}.nats-headless.{namespace}.svc.cluster.local"
            for qname in [f"{name}.{domain}." for domain in search] + [f"{name}."]:
                for qtype in ("A", "AAAA"):
                    wires.append(dns.message.make_query(qname, qtype, use_edns=False).to_wire())
    return wires


def cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK


def start(directory: Path, profile: str) -> tuple[subprocess.Popen[str], int]:
    objects_file = directory / "objects.json"
    objects_file.write_text(json.dumps({"objects": objects()}))
    argv = [sys.executable, "-m", "pytest_natsnet.sandbox.dns", "--listen", "127.0.0.1", "--port", "0",
            "--objects", str(objects_file), "--query-log", str(directory / "queries.jsonl"), "--profile", profile]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert process.stdout is not None
    line = process.stdout.readline()
    if "listening on" not in line:
        process.kill()
        raise SystemExit(f"dns server did not start: {line!r}")
    return process, int(line.rsplit(":", 1)[1])


def rewrite(objects_file: Path) -> None:
    """The objects file written again, atomically, as the sandbox does."""
    scratch = objects_file.with_suffix(".tmp")
    scratch.write_text(json.dumps({"objects": objects()}))
    os.replace(scratch, objects_file)


def run(count: int, clients: int, profile: str, rewrite_every: float) -> tuple[float, float]:
    """Queries per second and server CPU microseconds per query."""
    with tempfile.TemporaryDirectory(prefix="natsnet-dnsbench-") as tmp:
        process, port = start(Path(tmp), profile)
        rewritten = time.monotonic()
        try:
            sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(clients)]
            for sock in sockets:
                sock.settimeout(2.0)
            wires = queries()
            cpu_before, began = cpu_of(process.pid), time.monotonic()
            for number in range(count):
                if rewrite_every and time.monotonic() - rewritten >= rewrite_every:
                    rewrite(Path(tmp) / "objects.json")
                    rewritten = time.monotonic()
                sock = sockets[number % clients]
                wire = wires[number % len(wires)]
                query = (number % 65536).to_bytes(2, "big") + wire[2:]
                sock.sendto(query, ("127.0.0.1", port))
                answer = sock.recv(65535)
                if answer[:2] != query[:2]:
                    raise SystemExit(f"answer {answer[:2]!r} to query {query[:2]!r}")
            elapsed, cpu = time.monotonic() - began, cpu_of(process.pid) - cpu_before
            for sock in sockets:
                sock.close()
        finally:
            process.terminate()
            process.wait(timeout=10)
    return count / elapsed, cpu / count * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=20000)
    parser.add_argument("--clients", type=int, default=24)
    parser.add_argument("--profile", default="kind-1.32")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rewrite-every", type=float, default=0.05, help="seconds; 0: never")
    args = parser.parse_args()
    print(f"{args.queries} queries from {args.clients} sockets, profile {args.profile}, objects file written "
          f"again every {args.rewrite_every:g} s")
    for number in range(1, args.runs + 1):
        rate, micros = run(args.queries, args.clients, args.profile, args.rewrite_every)
        print(f"run {number}: {rate:8.0f} queries/s   server CPU {micros:6.1f} us per query")
    return 0


if __name__ == "__main__":
    sys.exit(main())
