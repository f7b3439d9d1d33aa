"""What the sandbox computes when a cell's objects change: NetworkPolicy and kube-proxy rules for N cells (#13).

Usage: ``.venv/bin/python benchmarks/network_rules.py [--cells 24] [--runs 20]``

Builds the pods and policies of ``--cells`` cells side by side (three nats servers, a probe and a nats-box each,
default-deny plus DNS egress plus the servers' own rules, as the ``netpol-egress-dns`` cells have; kube-dns in
``kube-system``) and times, in milliseconds of CPU per call: the hub's policy tables (``nft.policy_tables``), each
pod's kube-proxy table (``nft.service_tables_by_pod``), and the update script between two states that differ by
one more cell (``nft.tables_update``: what the hub applies) against the whole ruleset. Pure computation, no
namespace is touched. Exits 0: it reports, it asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pytest_natsnet.sandbox import nft
from pytest_natsnet.sandbox.model import ContainerPort, PodNet

DNS_POD = PodNet("kube-system", "coredns", {"k8s-app": "kube-dns"}, "198.18.0.2", "vdns")


def cell(index: int) -> tuple[list[PodNet], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """One cell's pods, policies, Services and EndpointSlices."""
    namespace = f"cell-{index}"
    servers = [PodNet(namespace, f"nats-{n}", {"app": "nats"}, f"198.18.{index + 1}.{10 + n}", f"vp{index}n{n}",
                      (ContainerPort("client", 4222), ContainerPort("cluster", 6222))) for n in range(3)]
    others = [PodNet(namespace, name, {"app": name}, f"198.18.{index + 1}.{20 + n}", f"vp{index}o{n}")
              for n, name in enumerate(("natsnet-probe", "nats-box"))]
    dns_peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}

    def policy(name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {"kind": "NetworkPolicy", "metadata": {"name": name, "namespace": namespace}, "spec": spec}

    policies = [
        policy("deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        policy("dns", {"podSelector": {}, "egress": [{"to": [dns_peer], "ports": [{"port": 53, "protocol": "UDP"},
                                                                                 {"port": 53, "protocol": "TCP"}]}]}),
        policy("nats", {"podSelector": {"matchLabels": {"app": "nats"}},
                        "ingress": [{"from": [{"podSelector": {}}], "ports": [{"port": "client"}, {"port": 6222}]}],
                        "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "nats"}}}],
                                    "ports": [{"port": "cluster"}]}]}),
    ]
    ports = [{"name": "nats", "port": 4222, "protocol": "TCP"}]
    services = [{"kind": "Service", "metadata": {"name": "nats", "namespace": namespace},
                 "spec": {"clusterIP": f"198.18.{128 + index}.20", "ports": ports}}]
    slices = [{"kind": "EndpointSlice", "metadata": {"name": "nats-x", "namespace": namespace,
                                                     "labels": {"kubernetes.io/service-name": "nats"}},
               "addressType": "IPv4", "ports": ports,
               "endpoints": [{"addresses": [p.ip], "conditions": {"ready": True}} for p in servers]}]
    return servers + others, policies, services, slices


def per_call(work: Callable[[], object], runs: int) -> float:
    started = time.process_time()
    for _ in range(runs):
        work()
    return (time.process_time() - started) / runs * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", type=int, default=24)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    pods, policies, services, slices = [DNS_POD], [], [], []
    namespaces: dict[str, dict[str, str]] = {"kube-system": {}}
    for index in range(args.cells):
        more_pods, more_policies, more_services, more_slices = cell(index)
        pods += more_pods
        policies += more_policies
        services += more_services
        slices += more_slices
        namespaces[f"cell-{index}"] = {}
    last = len(cell(args.cells - 1)[0])
    fewer = pods[:-last]
    print(f"{args.cells} cells, {len(pods)} pods, {len(policies)} policies, {len(services)} Services")
    compile_ms = per_call(lambda: nft.policy_tables(pods, namespaces, policies), args.runs)
    print(f"  hub policy tables:            {compile_ms:7.2f} ms per compile")
    tables_ms = per_call(lambda: nft.service_tables_by_pod(services, slices, pods, namespaces, policies), args.runs)
    print(f"  kube-proxy tables, every pod: {tables_ms:7.2f} ms per compile")
    before = nft.policy_tables(fewer, namespaces, policies)
    after = nft.policy_tables(pods, namespaces, policies)
    update, whole = nft.tables_update(before, after), nft.tables_script(after)
    print(f"  one more cell's pods: update {update.count(chr(10))} lines, whole ruleset {whole.count(chr(10))} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
