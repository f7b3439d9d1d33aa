"""Applicability from the cell's objects: values files that bring a feature outside the matrix axes get the suite
that checks it (rendered with the built-in reference chart, decided by the pure functions the suites call)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from pytest_natsnet import applicability, kube
from pytest_natsnet.expect.nats import ServerConf, server_confs
from pytest_natsnet.kube import Obj
from pytest_natsnet.matrix import load_matrix
from pytest_natsnet.providers.base import POD_GATE_CONDITION
from pytest_natsnet.sources.reference import render
from pytest_natsnet.values import compose

BRINGS = Path(__file__).parent / "values-dirs" / "brings-features"
NS = "natsnet"


def deployed(values_file: Path | None) -> tuple[list[Obj], list[Obj], list[ServerConf]]:
    """(NetworkPolicies, server pods, their parsed nats.conf) of base + ``values_file``, as the suites see them."""
    files = [*load_matrix().base, *([values_file] if values_file else [])]
    composed = compose(files)
    objects = render(composed.values, NS, extra_resources=composed.extra_resources)
    for obj in objects:
        obj.setdefault("metadata", {}).setdefault("namespace", NS)
    sts = kube.of_kind(objects, "StatefulSet")[0]
    template = kube.spec(sts)["template"]
    pods = [
        {"kind": "Pod", "metadata": {**copy.deepcopy(template["metadata"]), "name": f"nats-{i}", "namespace": NS},
         "spec": copy.deepcopy(template["spec"]), "status": {"podIP": f"198.18.0.{10 + i}"}}
        for i in range(int(kube.spec(sts)["replicas"]))
    ]  # fmt: skip
    conf = next(iter(kube.of_kind(objects, "ConfigMap")[0]["data"].values()))
    return kube.of_kind(objects, "NetworkPolicy"), pods, server_confs(pods, conf)


def decisions(values_file: Path | None) -> dict[str, str | None]:
    policies, pods, servers = deployed(values_file)
    return {
        "dns_egress": applicability.egress_policies(policies, NS),
        "tls_names clients": applicability.client_tls(servers),
        "tls_names routes": applicability.route_tls(servers),
        "advertise learned URLs": applicability.advertising(servers),
        "dns_records not-ready pod": applicability.readiness_gate(pods, POD_GATE_CONDITION),
    }


def applying(values_file: Path | None) -> set[str]:
    return {suite for suite, reason in decisions(values_file).items() if reason is None}


def test_the_base_alone_brings_only_the_readiness_gate() -> None:
    reasons = decisions(None)
    assert applying(None) == {"dns_records not-ready pod"}
    assert reasons["dns_egress"] == (
        "no NetworkPolicy in the cell's namespace restricts egress (none has policyTypes Egress)"
    )
    assert reasons["tls_names clients"] == "no server's nats.conf has a tls block for clients"
    assert reasons["tls_names routes"] == "no server's nats.conf has a cluster.tls block"
    assert reasons["advertise learned URLs"] == (
        "every server's nats.conf has cluster.no_advertise: true (clients learn no URLs)"
    )


@pytest.mark.parametrize(
    ("values_file", "brought"),
    [
        ("brings-netpol.yaml", {"dns_egress"}),
        ("brings-tls-and-advertise.yaml", {"tls_names clients", "tls_names routes", "advertise learned URLs"}),
        ("brings-advertise.yaml", {"advertise learned URLs"}),
    ],
)
def test_a_values_file_that_brings_a_feature_gets_its_suite(values_file: str, brought: set[str]) -> None:
    assert applying(BRINGS / values_file) == {"dns_records not-ready pod", *brought}


def test_an_ingress_only_policy_does_not_make_dns_egress_apply() -> None:
    ingress = {"kind": "NetworkPolicy", "metadata": {"name": "in", "namespace": NS},
               "spec": {"podSelector": {}, "ingress": [{}]}}  # fmt: skip
    egress = {"kind": "NetworkPolicy", "metadata": {"name": "out", "namespace": NS},
              "spec": {"podSelector": {}, "egress": [{}]}}  # fmt: skip
    elsewhere = {**egress, "metadata": {"name": "out", "namespace": "other"}}
    assert applicability.egress_policies([ingress], NS) is not None
    assert applicability.egress_policies([ingress, egress], NS) is None  # policyTypes defaults to Egress too
    assert applicability.egress_policies([elsewhere], NS) is not None


def test_a_cell_that_declares_dns_blocked_gets_dns_egress_even_without_a_policy() -> None:
    assert applicability.egress_policies([], NS, declared={"dns-blocked"}) is None


def test_route_tls_without_routes_does_not_apply() -> None:
    server = ServerConf("nats-0", "198.18.0.10", {"cluster": {"tls": {"verify": True}}})
    assert applicability.route_tls([server]) == (
        "the TLS servers configure no routes (their hostnames are what route TLS verifies)"
    )


def test_the_bootstrap_suite_applies_to_jetstream_cells_from_their_objects() -> None:
    """JetStream in nats.conf; not-ready addresses published on the headless Service; the store on a claim (the
    StatefulSet's claim template becomes the pod's volume) - read from the rendered cell, not from its name."""
    from pytest_natsnet.resources import charts_values_dir
    from pytest_natsnet.sandbox.controllers import statefulset_pod

    _, _, plain = deployed(None)
    assert applicability.jetstream(plain) == "no server's nats.conf has a jetstream block"
    files = [*load_matrix().base, charts_values_dir() / "jetstream.yaml"]
    composed = compose(files)
    objects = render(composed.values, NS)
    for obj in objects:
        obj.setdefault("metadata", {}).setdefault("namespace", NS)
    _, pods, confs = deployed(charts_values_dir() / "jetstream.yaml")
    assert applicability.jetstream(confs) is None
    services = kube.of_kind(objects, "Service")
    assert applicability.publishes_not_ready(services, "nats-headless") is None
    assert "does not publish not-ready addresses" in str(applicability.publishes_not_ready(services, "nats"))
    sts = kube.of_kind(objects, "StatefulSet")[0]
    assert applicability.store_on_claim(statefulset_pod(sts, 0)) is None
    assert "mounts no PersistentVolumeClaim" in str(applicability.store_on_claim(pods[0]))
