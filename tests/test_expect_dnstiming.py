"""Waits derived from a pod's resolv.conf and the DNS profile, table-driven.

Go: ``src/net/dnsclient_unix.go`` (``nameList``, ``tryOneName``: every name, ``attempts`` x servers x
``timeout``), ``src/net/dnsconfig_unix.go`` (defaults ndots 1, timeout 5, attempts 2; ndots <= 15).
glibc: ``resolv/res_query.c`` ``__res_context_search`` (a timeout ends the search list, the bare name is still
tried), ``resolv/res_send.c`` ``send_dg`` (per-server wait ``(retrans << ns) / nscount``).
CoreDNS cache lifetimes: ``plugin/cache`` ``computeTTL`` with kubeadm's ``ttl 30`` / ``cache 30``.
"""

from __future__ import annotations

import pytest

from pytest_natsnet.dnsprofile import (
    FAST,
    KIND_1_31,
    KIND_1_31_OFFLINE,
    KIND_1_32,
    CachePolicy,
    DnsProfile,
    corefile,
    profile_from_corefile,
)
from pytest_natsnet.expect.dnstiming import (
    ResolvConf,
    candidate_names,
    change_visible_within,
    give_up_seconds,
    lookup_seconds,
    names_tried,
    parse_resolv_conf,
    seconds_per_name,
    stale_seconds,
)

SANDBOX_BEFORE = (
    "search ns.svc.cluster.local svc.cluster.local cluster.local\nnameserver 198.18.128.10\noptions ndots:5\n"
)
KIND_RUNNER = (
    "search ns.svc.cluster.local svc.cluster.local cluster.local abc.internal.cloudapp.net\n"
    "nameserver 10.96.0.10\noptions ndots:5\n"
)
KIND_TWO_DOMAINS = KIND_RUNNER.replace("cloudapp.net\n", "cloudapp.net corp.example\n")
ROUTE = "nats-0.nats-headless"


def test_parse_resolv_conf() -> None:
    conf = parse_resolv_conf(
        "# comment\nnameserver 10.0.0.1\nnameserver 10.0.0.2 ; x\ndomain a.example\nsearch b.example. c.example\n"
        "options ndots:2 timeout:3\noptions attempts:4 rotate\n"
    )
    assert conf == ResolvConf(
        ("10.0.0.1", "10.0.0.2"), ("b.example", "c.example"), 2, 3, 4,
        ("ndots:2", "timeout:3", "attempts:4", "rotate"),
    )
    assert parse_resolv_conf("search x\ndomain y\n").search == ("y",)
    assert parse_resolv_conf("") == ResolvConf()


@pytest.mark.parametrize(
    ("text", "name", "expected"),
    [
        pytest.param(SANDBOX_BEFORE, ROUTE, [
            f"{ROUTE}.ns.svc.cluster.local.", f"{ROUTE}.svc.cluster.local.", f"{ROUTE}.cluster.local.", f"{ROUTE}.",
        ], id="fewer-dots-than-ndots-suffixes-first"),
        pytest.param(SANDBOX_BEFORE, "a.b.c.d.e.f", [
            "a.b.c.d.e.f.", "a.b.c.d.e.f.ns.svc.cluster.local.", "a.b.c.d.e.f.svc.cluster.local.",
            "a.b.c.d.e.f.cluster.local.",
        ], id="ndots-reached-as-is-first"),
        pytest.param(SANDBOX_BEFORE, "nats.ns.svc.cluster.local.", ["nats.ns.svc.cluster.local."], id="rooted"),
        pytest.param("nameserver 1.1.1.1\n", "a.b", ["a.b."], id="no-search-default-ndots-1"),
        pytest.param("search x.example\noptions ndots:99\n", "a", ["a.x.example.", "a."], id="ndots-capped-15"),
    ],
)
def test_candidate_names(text: str, name: str, expected: list[str]) -> None:
    assert candidate_names(parse_resolv_conf(text), name) == expected


@pytest.mark.parametrize(
    ("text", "flavour", "outcome", "count", "first", "last"),
    [
        pytest.param(KIND_RUNNER, "go", "timeout", 5, f"{ROUTE}.ns.svc.cluster.local.", f"{ROUTE}.", id="go-all"),
        pytest.param(KIND_RUNNER, "glibc", "timeout", 2, f"{ROUTE}.ns.svc.cluster.local.", f"{ROUTE}.",
                     id="glibc-timeout-ends-search-list-then-bare-name"),
        pytest.param(KIND_RUNNER, "glibc", "nxdomain", 5, f"{ROUTE}.ns.svc.cluster.local.", f"{ROUTE}.",
                     id="glibc-nxdomain-walks-all"),
    ],
)
def test_names_tried(text: str, flavour: str, outcome: str, count: int, first: str, last: str) -> None:
    names = names_tried(parse_resolv_conf(text), ROUTE, flavour, outcome)  # type: ignore[arg-type]
    assert (len(names), names[0], names[-1]) == (count, first, last)


@pytest.mark.parametrize(
    ("flavour", "expected"),
    [
        pytest.param("glibc", [f"{ROUTE}.ns.svc.cluster.local.", f"{ROUTE}.svc.cluster.local.",
                               f"{ROUTE}.cluster.local.", f"{ROUTE}.abc.internal.cloudapp.net.", f"{ROUTE}."],
                     id="glibc"),
        pytest.param("go", [f"{ROUTE}.ns.svc.cluster.local.", f"{ROUTE}.svc.cluster.local.",
                            f"{ROUTE}.cluster.local.", f"{ROUTE}.abc.internal.cloudapp.net.", f"{ROUTE}."], id="go"),
    ],
)
def test_offline_upstream_cluster_names_nxdomain_others_time_out(flavour: str, expected: list[str]) -> None:
    """kind on an offline runner, asked from another namespace: the cluster suffixes say NXDOMAIN at once, the
    runner suffix and the bare name go upstream and time out: 2 waits for both resolvers."""
    conf = parse_resolv_conf(KIND_RUNNER)

    def outcome(name: str) -> str:
        return "nxdomain" if name.endswith(".cluster.local.") else "timeout"

    assert names_tried(conf, ROUTE, flavour, outcome) == expected  # type: ignore[arg-type]
    assert lookup_seconds(conf, ROUTE, flavour, outcome) == 20.0  # type: ignore[arg-type]


def test_glibc_stops_at_the_first_answer() -> None:
    conf = parse_resolv_conf(KIND_RUNNER)
    assert names_tried(conf, ROUTE, "glibc", lambda n: "answer" if n.startswith(f"{ROUTE}.svc") else "nxdomain") == [
        f"{ROUTE}.ns.svc.cluster.local.", f"{ROUTE}.svc.cluster.local.",
    ]


def test_glibc_with_enough_dots_tries_as_is_then_the_first_suffix() -> None:
    conf = parse_resolv_conf(SANDBOX_BEFORE)
    assert names_tried(conf, "a.b.c.d.e.f", "glibc") == ["a.b.c.d.e.f.", "a.b.c.d.e.f.ns.svc.cluster.local."]


@pytest.mark.parametrize(
    ("text", "flavour", "seconds"),
    [
        pytest.param(SANDBOX_BEFORE, "go", 40.0, id="go-sandbox-before-4-names"),
        pytest.param(KIND_RUNNER, "go", 50.0, id="go-kind-one-runner-domain"),
        pytest.param(KIND_TWO_DOMAINS, "go", 60.0, id="go-kind-two-runner-domains"),
        pytest.param(KIND_RUNNER, "glibc", 20.0, id="glibc-kind"),
        pytest.param(KIND_RUNNER + "options timeout:1 attempts:1\n", "go", 5.0, id="go-options"),
        pytest.param("nameserver a\nnameserver b\noptions timeout:5\n", "go", 20.0, id="go-two-servers"),
        pytest.param("nameserver a\nnameserver b\nnameserver c\n", "glibc", 2 * (5 + 3 + 6), id="glibc-scaled"),
        pytest.param("nameserver a\noptions timeout:99 attempts:9\n", "glibc", 5 * 30.0, id="glibc-caps"),
    ],
)
def test_give_up_seconds(text: str, flavour: str, seconds: float) -> None:
    assert give_up_seconds(parse_resolv_conf(text), ROUTE, flavour) == seconds  # type: ignore[arg-type]


def test_seconds_per_name_defaults() -> None:
    assert seconds_per_name(parse_resolv_conf("nameserver 10.96.0.10\n"), "go") == 10.0


@pytest.mark.parametrize(
    ("profile", "qname", "seconds"),
    [
        pytest.param(KIND_1_31, "nats-0.nats-headless.ns.svc.cluster.local.", 30, id="kind-1.31-cluster-30"),
        pytest.param(KIND_1_32, "nats-0.nats-headless.ns.svc.cluster.local.", 0, id="kind-1.32-cluster-0"),
        pytest.param(KIND_1_32, "10.0.18.198.in-addr.arpa.", 30, id="kind-1.32-reverse-30"),
        pytest.param(KIND_1_32, "nats.runner.internal.", 30, id="kind-1.32-upstream-30"),
        pytest.param(KIND_1_31_OFFLINE, "nats.ns.svc.cluster.local.", 30, id="offline-cluster-30"),
        pytest.param(FAST, "nats.ns.svc.cluster.local.", 0, id="fast-0"),
    ],
)
def test_stale_seconds(profile: object, qname: str, seconds: int) -> None:
    assert stale_seconds(profile, qname) == seconds  # type: ignore[arg-type]


def test_change_visible_within_adds_controller_lag_to_the_longest_cache() -> None:
    names = ["nats-2.nats-headless.ns.svc.cluster.local.", "12.0.18.198.in-addr.arpa."]
    assert change_visible_within(KIND_1_31, names, 2.0) == 32.0
    assert change_visible_within(KIND_1_32, names[:1], 2.0) == 2.0


KUBEADM_1_31 = """.:53 {
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30
    loop
}
"""
KUBEADM_1_32 = KUBEADM_1_31.replace("    cache 30\n", """    cache 30 {
       disable success cluster.local
       disable denial cluster.local
    }
""")


@pytest.mark.parametrize(
    ("text", "ttl", "cache"),
    [
        pytest.param(KUBEADM_1_31, 30, CachePolicy(max_ttl=30), id="kubeadm-1.31-caches-the-zone"),
        pytest.param(KUBEADM_1_32, 30, CachePolicy(max_ttl=30, cluster_zone=False), id="kubeadm-1.32-does-not"),
        pytest.param(KUBEADM_1_31.replace("       ttl 30\n", ""), 5, CachePolicy(max_ttl=30), id="plugin-default-ttl"),
        pytest.param(KUBEADM_1_31.replace("    cache 30\n", ""), 30, None, id="no-cache"),
        pytest.param(KUBEADM_1_31.replace("cache 30", "cache"), 30, CachePolicy(max_ttl=3600), id="cache-default-cap"),
        pytest.param(KUBEADM_1_32.replace("    disable denial cluster.local\n", ""), 30, CachePolicy(max_ttl=30),
                     id="only-success-disabled-still-caches-nxdomain"),
    ],
)
def test_the_dns_cache_is_read_from_the_corefile(text: str, ttl: int, cache: CachePolicy | None) -> None:
    profile = profile_from_corefile(text, "cluster.local")
    assert (profile.ttl, profile.cache) == (ttl, cache)


@pytest.mark.parametrize("profile", [KIND_1_31, KIND_1_32, FAST], ids=lambda p: p.name)
def test_a_profiles_own_corefile_reads_back_as_that_profile(profile: DnsProfile) -> None:
    read = profile_from_corefile(corefile(profile, "corp.example"), "corp.example")
    assert (read.ttl, read.cache) == (profile.ttl, profile.cache)
    assert stale_seconds(read, "nats-0.nats.ns.svc.corp.example", "corp.example") == stale_seconds(
        profile, "nats-0.nats.ns.svc.corp.example", "corp.example")
