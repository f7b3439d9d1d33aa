"""A pod's resolv.conf as the kubelet composes it, table-driven.

Every rule is kubernetes ``pkg/kubelet/network/dns/dns.go`` (``GetPodDNS``, ``getPodDNSType``,
``generateSearchesForDNSClusterFirst``, ``appendDNSConfig``, ``mergeDNSOptions``, ``formDNSSearchFitsLimits``)
plus containerd's ``parseDNSOptions`` for the file layout (search, nameserver lines, options).
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_natsnet.sandbox.poddns import NodeResolv, PodDnsConfig, pod_dns_config, resolv_conf

KUBE_DNS = "10.96.0.10"
RUNNER = NodeResolv(("172.18.0.1",), ("abc.internal.cloudapp.net",), ("edns0", "trust-ad", "ndots:0"))
CLUSTER = ("ns1.svc.cluster.local", "svc.cluster.local", "cluster.local")


def pod(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "ns1"}, "spec": spec}


@pytest.mark.parametrize(
    ("spec", "node", "expected"),
    [
        pytest.param(
            {},
            RUNNER,
            PodDnsConfig((KUBE_DNS,), (*CLUSTER, "abc.internal.cloudapp.net"), ("ndots:5",)),
            id="cluster-first-default-appends-node-search-drops-node-options",
        ),
        pytest.param(
            {"dnsPolicy": "ClusterFirst"},
            NodeResolv(("1.1.1.1",)),
            PodDnsConfig((KUBE_DNS,), CLUSTER, ("ndots:5",)),
            id="cluster-first-node-without-search",
        ),
        pytest.param(
            {"dnsPolicy": "ClusterFirst"},
            NodeResolv(("1.1.1.1",), ("cluster.local", "corp.example", "corp.example")),
            PodDnsConfig((KUBE_DNS,), (*CLUSTER, "corp.example"), ("ndots:5",)),
            id="cluster-first-duplicates-dropped",
        ),
        pytest.param(
            {"dnsPolicy": "ClusterFirst", "hostNetwork": True},
            RUNNER,
            PodDnsConfig(RUNNER.nameservers, RUNNER.search, RUNNER.options),
            id="host-network-cluster-first-falls-back-to-default",
        ),
        pytest.param(
            {"dnsPolicy": "ClusterFirstWithHostNet", "hostNetwork": True},
            RUNNER,
            PodDnsConfig((KUBE_DNS,), (*CLUSTER, "abc.internal.cloudapp.net"), ("ndots:5",)),
            id="cluster-first-with-host-net",
        ),
        pytest.param(
            {"dnsPolicy": "Default"},
            RUNNER,
            PodDnsConfig(RUNNER.nameservers, RUNNER.search, RUNNER.options),
            id="default-is-the-node",
        ),
        pytest.param(
            {
                "dnsPolicy": "None",
                "dnsConfig": {
                    "nameservers": ["192.0.2.53"],
                    "searches": ["ns1.svc.cluster.local", "my.dns.search.suffix"],
                    "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
                },
            },
            RUNNER,
            PodDnsConfig(("192.0.2.53",), ("ns1.svc.cluster.local", "my.dns.search.suffix"), ("ndots:2", "edns0")),
            id="none-is-only-dns-config",
        ),
        pytest.param(
            {
                "dnsConfig": {
                    "nameservers": ["192.0.2.53", KUBE_DNS],
                    "searches": ["extra.example", "svc.cluster.local"],
                    "options": [{"name": "ndots", "value": "1"}, {"name": "timeout", "value": "2"}],
                }
            },
            RUNNER,
            PodDnsConfig(
                (KUBE_DNS, "192.0.2.53"),
                (*CLUSTER, "abc.internal.cloudapp.net", "extra.example"),
                ("ndots:1", "timeout:2"),
            ),
            id="cluster-first-plus-dns-config-appended-merged",
        ),
    ],
)
def test_pod_dns_config(spec: dict[str, Any], node: NodeResolv, expected: PodDnsConfig) -> None:
    assert pod_dns_config(pod(**spec), [KUBE_DNS], "cluster.local", node) == expected


def test_resolv_conf_layout_is_containerds() -> None:
    config = pod_dns_config(pod(), [KUBE_DNS], "cluster.local", RUNNER)
    assert config.resolv_conf() == (
        "search ns1.svc.cluster.local svc.cluster.local cluster.local abc.internal.cloudapp.net\n"
        "nameserver 10.96.0.10\n"
        "options ndots:5\n"
    )
    assert PodDnsConfig((), (), ()).resolv_conf() == ""


@pytest.mark.parametrize(
    ("namespace", "zone", "node_search", "text"),
    [
        (
            "natsnet",
            "cluster.local",
            (),
            "search natsnet.svc.cluster.local svc.cluster.local cluster.local\n"
            "nameserver 198.18.128.10\noptions ndots:5\n",
        ),
        (
            "other",
            "example.test.",
            ("runner.internal",),
            "search other.svc.example.test svc.example.test example.test runner.internal\n"
            "nameserver 198.18.128.10\noptions ndots:5\n",
        ),
    ],
)
def test_resolv_conf_cluster_first(namespace: str, zone: str, node_search: tuple[str, ...], text: str) -> None:
    assert resolv_conf(namespace, "198.18.128.10", zone, node_search) == text


def test_more_than_three_nameservers_are_cut_with_a_warning() -> None:
    spec = {"dnsConfig": {"nameservers": ["192.0.2.1", "192.0.2.2", "192.0.2.3"]}}
    config = pod_dns_config(pod(**spec), [KUBE_DNS], "cluster.local", RUNNER)
    assert config.nameservers == (KUBE_DNS, "192.0.2.1", "192.0.2.2")
    assert config.warnings == (
        "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: "
        "10.96.0.10 192.0.2.1 192.0.2.2",
    )


@pytest.mark.parametrize(
    ("extra", "kept"),
    [
        pytest.param([f"d{i}.example" for i in range(40)], 32, id="at-most-32-domains"),
        pytest.param(["x" * 254 + ".example"], 4, id="domain-over-253-chars-dropped"),
        pytest.param([("y" * 60 + f".{i}.example") for i in range(31)], 31, id="line-over-2048-chars-cut-from-end"),
    ],
)
def test_search_line_limits(extra: list[str], kept: int) -> None:
    config = pod_dns_config(pod(dnsConfig={"searches": extra}), [KUBE_DNS], "cluster.local", RUNNER)
    assert len(config.search) == kept
    assert config.search[:4] == (*CLUSTER, "abc.internal.cloudapp.net")
    assert len(" ".join(config.search)) <= 2048
    assert len(config.warnings) == 1 and config.warnings[0].startswith("Search Line limits were exceeded")


def test_none_without_dns_config_is_empty_and_says_so() -> None:
    config = pod_dns_config(pod(dnsPolicy="None"), [KUBE_DNS], "cluster.local", RUNNER)
    assert (config.nameservers, config.search, config.options) == ((), (), ())
    assert "dnsPolicy None without dnsConfig" in config.warnings[0]
