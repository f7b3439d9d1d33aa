"""Zone answers as CoreDNS's kubernetes plugin gives them (Kubernetes DNS spec 1.1.0), table-driven, no sockets.

The rules come from coredns ``plugin/kubernetes`` v1.11 (``parse.go`` ``parseRequest``, ``kubernetes.go``
``Records``/``findServices``/``findPods``/``Services``, ``reverse.go``, ``handler.go``) and
``plugin/backend_lookup.go`` (``A``, ``SRV``, ``PTR``, ``SOA``), with kubeadm's ``pods insecure`` and
``fallthrough in-addr.arpa ip6.arpa``.
"""

from __future__ import annotations

import dns.rcode
import dns.rdatatype
import pytest
from test_sandbox_dns_objects import (
    KUBE_DNS_IP,
    NATS_CLUSTER_IP,
    POD_IPS,
    cluster,
    endpoint,
    endpoint_slice,
    golden_services,
    namespaces,
)

from pytest_natsnet.sandbox.dnszone import DNS_KINDS, Answer, build_zone, dashed_hostname, dns_view

NOERROR, NXDOMAIN = dns.rcode.NOERROR, dns.rcode.NXDOMAIN
SVC = "natsnet.svc.cluster.local."
ALL_PODS = set(POD_IPS.values())


def ask(objects: list[dict[str, object]], qname: str, qtype: str, **zone_args: int) -> Answer:
    ttl, negative_ttl = zone_args.get("ttl", 5), zone_args.get("negative_ttl")
    return build_zone(objects, ttl=ttl, negative_ttl=negative_ttl).answer(qname, qtype)


def soa_owners(answer: Answer) -> set[str]:
    return {rrset.name.to_text() for rrset in answer.authority if rrset.rdtype == dns.rdatatype.SOA}


@pytest.mark.parametrize(
    ("qname", "qtype", "rcode", "answers"),
    [
        pytest.param("dns-version.cluster.local.", "TXT", NOERROR, {'"1.1.0"'}, id="dns-version"),
        pytest.param(f"nats.{SVC}", "A", NOERROR, {NATS_CLUSTER_IP}, id="clusterip-a"),
        pytest.param(f"NaTs.{SVC.upper()}", "A", NOERROR, {NATS_CLUSTER_IP}, id="case-insensitive"),
        pytest.param("kube-dns.kube-system.svc.cluster.local.", "A", NOERROR, {KUBE_DNS_IP}, id="kube-dns-a"),
        pytest.param(f"nats-headless.{SVC}", "A", NOERROR, ALL_PODS, id="headless-a-all-ready"),
        pytest.param(f"nats-1.nats-headless.{SVC}", "A", NOERROR, {POD_IPS["nats-1"]}, id="hostname-a"),
        pytest.param(
            f"_nats._tcp.nats.{SVC}",
            "SRV",
            NOERROR,
            {f"0 100 4222 nats.{SVC}"},
            id="clusterip-srv-targets-service",
        ),
        pytest.param(
            f"_cluster._tcp.nats-headless.{SVC}",
            "SRV",
            NOERROR,
            {f"0 33 6222 nats-{i}.nats-headless.{SVC}" for i in range(3)},
            id="headless-srv-targets-hostnames",
        ),
        pytest.param(
            "_dns._udp.kube-dns.kube-system.svc.cluster.local.",
            "SRV",
            NOERROR,
            {"0 100 53 kube-dns.kube-system.svc.cluster.local."},
            id="srv-udp-port",
        ),
        pytest.param(
            "_dns._tcp.kube-dns.kube-system.svc.cluster.local.", "SRV", NXDOMAIN, set(), id="srv-wrong-proto"
        ),
        pytest.param(f"_cluster._tcp.nats.{SVC}", "SRV", NXDOMAIN, set(), id="srv-port-not-on-service"),
        pytest.param("20.128.18.198.in-addr.arpa.", "PTR", NOERROR, {f"nats.{SVC}"}, id="ptr-clusterip"),
        pytest.param(
            "11.0.18.198.in-addr.arpa.",
            "PTR",
            NOERROR,
            {f"nats-1.nats-headless.{SVC}", f"198-18-0-11.nats.{SVC}"},
            id="ptr-pod-one-per-service",
        ),
        pytest.param(f"nats.{SVC}", "AAAA", NOERROR, set(), id="aaaa-existing-name-nodata"),
        pytest.param(f"nats-0.nats-headless.{SVC}", "AAAA", NOERROR, set(), id="aaaa-hostname-nodata"),
        pytest.param(f"nats.{SVC}", "MX", NOERROR, set(), id="other-type-nodata"),
        pytest.param("svc.cluster.local.", "A", NOERROR, set(), id="empty-non-terminal-svc"),
        pytest.param(SVC, "A", NOERROR, set(), id="empty-non-terminal-namespace"),
        pytest.param(f"_tcp.nats-headless.{SVC}", "A", NXDOMAIN, set(), id="proto-alone-is-an-endpoint-name"),
        pytest.param("cluster.local.", "A", NOERROR, set(), id="apex-nodata"),
        pytest.param("nosuchns.svc.cluster.local.", "A", NXDOMAIN, set(), id="unknown-namespace"),
        pytest.param(f"nope.{SVC}", "A", NXDOMAIN, set(), id="unknown-service"),
        pytest.param(f"nats-9.nats-headless.{SVC}", "A", NXDOMAIN, set(), id="unknown-hostname"),
    ],
)
def test_answers_per_spec(qname: str, qtype: str, rcode: dns.rcode.Rcode, answers: set[str]) -> None:
    answer = ask(cluster(), qname, qtype)
    assert (answer.rcode, set(answer.answer_texts())) == (rcode, answers)


@pytest.mark.parametrize(
    ("qname", "qtype", "soa"),
    [
        pytest.param(f"nats.{SVC}", "AAAA", "cluster.local.", id="nodata"),
        pytest.param(f"nope.{SVC}", "A", "cluster.local.", id="nxdomain"),
        pytest.param("in-addr.arpa.", "A", "in-addr.arpa.", id="reverse-apex-nodata"),
        pytest.param(f"nats.{SVC}", "A", None, id="positive-no-soa"),
    ],
)
def test_negative_answers_carry_the_soa_of_their_zone(qname: str, qtype: str, soa: str | None) -> None:
    answer = ask(cluster(), qname, qtype)
    assert soa_owners(answer) == ({soa} if soa else set())
    assert (answer.authoritative, answer.upstream) == (True, False)


def test_answer_owner_keeps_the_asked_case() -> None:
    answer = ask(cluster(), f"NATS.{SVC}", "A")
    assert [rrset.name.to_text() for rrset in answer.answers] == [f"NATS.{SVC}"]


@pytest.mark.parametrize(
    ("zone_args", "answer_ttl", "soa_ttl", "soa_minimum"),
    [
        pytest.param({}, 5, 5, 5, id="default-coredns-minttl-follows-ttl"),
        pytest.param({"ttl": 30}, 30, 30, 30, id="ttl-30"),
        pytest.param({"ttl": 30, "negative_ttl": 0}, 30, 0, 0, id="negative-caching-off"),
        pytest.param({"negative_ttl": 60}, 5, 60, 60, id="negative-ttl-60"),
    ],
)
def test_ttls(zone_args: dict[str, int], answer_ttl: int, soa_ttl: int, soa_minimum: int) -> None:
    positive = ask(cluster(), f"nats.{SVC}", "A", **zone_args)
    negative = ask(cluster(), f"nope.{SVC}", "A", **zone_args)
    (soa,) = negative.authority
    assert (positive.answers[0].ttl, soa.ttl, soa[0].minimum) == (answer_ttl, soa_ttl, soa_minimum)


def test_dns_version_ttl_is_coredns_fixed() -> None:
    assert ask(cluster(), "dns-version.cluster.local.", "TXT", ttl=1).answers[0].ttl == 28800


def test_headless_srv_additional_holds_target_addresses() -> None:
    answer = ask(cluster(), f"_cluster._tcp.nats-headless.{SVC}", "SRV")
    additional = {(rrset.name.to_text(), rd.to_text()) for rrset in answer.additional for rd in rrset}
    assert additional == {(f"{pod}.nats-headless.{SVC}", ip) for pod, ip in POD_IPS.items()}


def test_clusterip_srv_additional_holds_the_service_address() -> None:
    answer = ask(cluster(), f"_nats._tcp.nats.{SVC}", "SRV")
    assert [(r.name.to_text(), r[0].to_text()) for r in answer.additional] == [
        (f"nats.{SVC}", NATS_CLUSTER_IP)
    ]


@pytest.mark.parametrize(
    ("endpoints", "published"),
    [
        pytest.param([endpoint("nats-0", ready=None)], {"nats-0"}, id="ready-nil-is-ready"),
        pytest.param(
            [endpoint("nats-0", ready=True, serving=False)], {"nats-0"}, id="pnra-true-ready-not-serving"
        ),
        pytest.param(
            [endpoint("nats-0", ready=False), endpoint("nats-1")], {"nats-1"}, id="ready-false-hidden"
        ),
        pytest.param([endpoint("nats-0", ready=False, serving=True)], set(), id="only-unready-nxdomain"),
        pytest.param([], set(), id="no-endpoints-nxdomain"),
    ],
)
def test_headless_publishes_ready_endpoints_only(
    endpoints: list[dict[str, object]], published: set[str]
) -> None:
    zone = build_zone(cluster(endpoints))
    headless = zone.answer(f"nats-headless.{SVC}", "A")
    srv = zone.answer(f"_cluster._tcp.nats-headless.{SVC}", "SRV")
    expected_rcode = NOERROR if published else NXDOMAIN
    assert (headless.rcode, set(headless.answer_texts())) == (expected_rcode, {POD_IPS[p] for p in published})
    assert srv.rcode == expected_rcode
    for pod in POD_IPS:
        per_pod = zone.answer(f"{pod}.nats-headless.{SVC}", "A")
        assert per_pod.rcode == (NOERROR if pod in published else NXDOMAIN), pod


def test_headless_endpoints_are_gathered_across_slices() -> None:
    objects = [
        *namespaces(),
        *golden_services(),
        endpoint_slice("nats-headless", "nats-headless-1", [endpoint("nats-0")]),
        endpoint_slice(
            "nats-headless", "nats-headless-2", [endpoint("nats-1"), endpoint("nats-2", ready=False)]
        ),
        endpoint_slice("other", "other-1", [endpoint("nats-2")]),
    ]
    answer = build_zone(objects).answer(f"nats-headless.{SVC}", "A")
    assert set(answer.answer_texts()) == {POD_IPS["nats-0"], POD_IPS["nats-1"]}


def test_slice_in_another_namespace_is_ignored() -> None:
    foreign = endpoint_slice("nats-headless", "nats-headless-x", [endpoint("nats-0")])
    foreign["metadata"]["namespace"] = "elsewhere"
    answer = build_zone([*namespaces(), *golden_services(), foreign]).answer(f"nats-headless.{SVC}", "A")
    assert answer.rcode == NXDOMAIN


def test_endpoint_without_hostname_is_named_by_dashed_ip() -> None:
    zone = build_zone(cluster([endpoint("nats-0", hostname=False)]))
    dashed = f"{dashed_hostname(POD_IPS['nats-0'])}.nats-headless.{SVC}"
    srv = zone.answer(f"_nats._tcp.nats-headless.{SVC}", "SRV")
    assert dashed == f"198-18-0-10.nats-headless.{SVC}"
    assert srv.answer_texts() == [f"0 100 4222 {dashed}"]
    assert zone.answer(dashed, "A").answer_texts() == [POD_IPS["nats-0"]]


def test_pod_behind_two_headless_services_has_two_ptrs() -> None:
    second = {
        "kind": "Service",
        "metadata": {"name": "nats-other", "namespace": "natsnet"},
        "spec": {"clusterIP": "None", "ports": [{"name": "nats", "port": 4222}]},
    }
    objects = [*cluster(), second, endpoint_slice("nats-other", "nats-other-1", [endpoint("nats-0")])]
    answer = build_zone(objects).answer("10.0.18.198.in-addr.arpa.", "PTR")
    assert set(answer.answer_texts()) == {
        f"nats-0.nats-headless.{SVC}",
        f"nats-0.nats-other.{SVC}",
        f"198-18-0-10.nats.{SVC}",
    }


def test_clusterip_service_endpoints_get_a_ptr_of_their_own() -> None:
    """reverse.go ``serviceRecordForIP``: every EndpointSlice with a ready address at the IP names it."""
    objects = [
        *namespaces(),
        *golden_services(),
        endpoint_slice("nats", "nats-1", [endpoint("nats-0", hostname=False)]),
    ]
    answer = build_zone(objects).answer("10.0.18.198.in-addr.arpa.", "PTR")
    assert (answer.rcode, answer.answer_texts()) == (NOERROR, [f"198-18-0-10.nats.{SVC}"])


def test_external_name_is_a_cname() -> None:
    service = {
        "kind": "Service",
        "metadata": {"name": "ext", "namespace": "natsnet"},
        "spec": {"type": "ExternalName", "externalName": "nats.example.com"},
    }
    zone = build_zone([*namespaces(), service])
    for qtype in ("A", "CNAME", "AAAA"):
        answer = zone.answer(f"ext.{SVC}", qtype)
        assert (answer.rcode, answer.answer_texts()) == (NOERROR, ["nats.example.com."]), qtype


def test_clusterip_service_without_an_ip_exists_with_no_address() -> None:
    service = {
        "kind": "Service",
        "metadata": {"name": "pending", "namespace": "natsnet"},
        "spec": {"ports": []},
    }
    answer = build_zone([*namespaces(), service]).answer(f"pending.{SVC}", "A")
    assert (answer.rcode, answer.answers) == (NOERROR, ())


def test_namespace_object_makes_its_svc_name_exist() -> None:
    zone = build_zone([{"kind": "Namespace", "metadata": {"name": "empty"}}])
    assert zone.answer("empty.svc.cluster.local.", "A").rcode == NOERROR
    assert zone.answer("other.svc.cluster.local.", "A").rcode == NXDOMAIN


def test_custom_zone() -> None:
    zone = build_zone(cluster(), zone="k8s.example")
    assert zone.answer("nats.natsnet.svc.k8s.example.", "A").answer_texts() == [NATS_CLUSTER_IP]
    assert zone.answer(f"nats.{SVC}", "A").upstream


def test_endpoint_slice_update_changes_the_answers() -> None:
    before = build_zone(cluster()).answer(f"nats-2.nats-headless.{SVC}", "A")
    moved = [endpoint("nats-0"), endpoint("nats-1")]
    moved.append({**endpoint("nats-2"), "addresses": ["198.18.0.42"]})
    after = build_zone(cluster(moved)).answer(f"nats-2.nats-headless.{SVC}", "A")
    assert (before.answer_texts(), after.answer_texts()) == ([POD_IPS["nats-2"]], ["198.18.0.42"])


def test_bad_address_skips_the_service_and_says_why() -> None:
    bad = endpoint_slice("nats-headless", "bad", [{"addresses": ["not-an-ip"], "hostname": "x"}])
    zone = build_zone([*namespaces(), *golden_services(), bad])
    assert len(zone.problems) == 1 and "natsnet/nats-headless" in zone.problems[0]
    assert zone.answer(f"nats.{SVC}", "A").answer_texts() == [NATS_CLUSTER_IP]


# --- row 9: the name shapes CoreDNS answers (or refuses) beyond the spec's minimum ---------------------

NS_POD = "natsnet.pod.cluster.local."


@pytest.mark.parametrize(
    ("qname", "qtype", "rcode", "answers"),
    [
        pytest.param(f"1-2-3-4.{NS_POD}", "A", NOERROR, {"1.2.3.4"}, id="pods-insecure-any-ip"),
        pytest.param(f"198-18-0-10.{NS_POD}", "A", NOERROR, {"198.18.0.10"}, id="pods-insecure-pod-ip"),
        pytest.param(f"x.1-2-3-4.{NS_POD}", "A", NOERROR, {"1.2.3.4"}, id="pods-insecure-ignores-left-label"),
        pytest.param(f"1-2-3-4.{NS_POD}", "AAAA", NOERROR, set(), id="pods-insecure-v4-aaaa-nodata"),
        pytest.param(f"2001-db8--1.{NS_POD}", "AAAA", NOERROR, {"2001:db8::1"}, id="pods-insecure-v6"),
        pytest.param(f"1-2-3.{NS_POD}", "A", NXDOMAIN, set(), id="pods-insecure-not-an-ip"),
        pytest.param("1-2-3-4.nosuchns.pod.cluster.local.", "A", NXDOMAIN, set(), id="pods-unknown-namespace"),
        pytest.param(NS_POD, "A", NOERROR, set(), id="pod-namespace-nodata"),
        pytest.param("pod.cluster.local.", "A", NOERROR, set(), id="pod-apex-nodata"),
        pytest.param(f"198-18-0-10.nats.{SVC}", "A", NOERROR, {"198.18.0.10"}, id="clusterip-endpoint-hostname"),
        pytest.param(f"198-18-0-99.nats.{SVC}", "A", NXDOMAIN, set(), id="clusterip-unknown-endpoint"),
        pytest.param(f"nats.{SVC}", "SRV", NOERROR, {f"0 100 4222 nats.{SVC}"}, id="srv-bare-clusterip-name"),
        pytest.param(
            "kube-dns.kube-system.svc.cluster.local.",
            "SRV",
            NOERROR,
            {"0 50 53 kube-dns.kube-system.svc.cluster.local."},
            id="srv-bare-name-same-port-twice-deduplicated",
        ),
        pytest.param(
            f"nats-0.nats-headless.{SVC}",
            "SRV",
            NOERROR,
            {f"0 33 {port} nats-0.nats-headless.{SVC}" for port in (4222, 6222, 8222)},
            id="srv-bare-endpoint-name-every-port",
        ),
        pytest.param(f"_nats._tcp.nats.{SVC}", "A", NOERROR, {NATS_CLUSTER_IP}, id="a-on-srv-name"),
        pytest.param(f"_nats._udp.nats.{SVC}", "SRV", NXDOMAIN, set(), id="srv-wrong-protocol"),
        pytest.param(f"nats._tcp.nats.{SVC}", "SRV", NOERROR, {f"0 100 4222 nats.{SVC}"}, id="underscore-optional"),
        pytest.param(f"a.b.c.nats.{SVC}", "A", NXDOMAIN, set(), id="too-many-labels"),
        pytest.param("foo.cluster.local.", "A", NXDOMAIN, set(), id="neither-svc-nor-pod"),
        pytest.param("dns-version.cluster.local.", "A", NXDOMAIN, set(), id="dns-version-is-txt-only"),
        pytest.param(f"nats.{SVC}", "TXT", NOERROR, set(), id="txt-existing-name-nodata"),
        pytest.param("svc.cluster.local.", "TXT", NXDOMAIN, set(), id="txt-without-records-nxdomain"),
        pytest.param(f"nope.{SVC}", "SOA", NOERROR, set(), id="soa-below-apex-nodata"),
        pytest.param(f"nats.{SVC}", "CNAME", NOERROR, set(), id="cname-of-clusterip-nodata"),
    ],
)
def test_coredns_name_shapes(qname: str, qtype: str, rcode: dns.rcode.Rcode, answers: set[str]) -> None:
    """coredns plugin/kubernetes ``parse.go``, ``kubernetes.go`` (``findPods`` in insecure mode,
    ``findServices`` endpoint and port matching, ``Services`` for TXT), ``handler.go`` (SOA, CNAME)."""
    answer = ask(cluster(), qname, qtype)
    assert (answer.rcode, set(answer.answer_texts()), answer.upstream) == (rcode, answers, False)


def test_srv_on_bare_headless_name_lists_every_endpoint_and_port() -> None:
    """backend_lookup.go ``SRV``: one record per (endpoint, port), weight floor(100 / records)."""
    answer = ask(cluster(), f"nats-headless.{SVC}", "SRV")
    assert set(answer.answer_texts()) == {
        f"0 11 {port} {pod}.nats-headless.{SVC}" for pod in POD_IPS for port in (4222, 6222, 8222)
    }


def test_clusterip_endpoints_srv_targets_dashed_names() -> None:
    """findServices: an endpoint query on a ClusterIP Service lists that endpoint's ports."""
    answer = ask(cluster(), f"198-18-0-10.nats.{SVC}", "SRV")
    assert answer.answer_texts() == [f"0 100 4222 198-18-0-10.nats.{SVC}"]


@pytest.mark.parametrize(
    ("qname", "qtype"),
    [
        pytest.param("example.com.", "A", id="outside-zone"),
        pytest.param(f"nats-0.nats-headless.{SVC}x.", "A", id="outside-zone-suffix"),
        pytest.param("nats-0.nats-headless.", "A", id="short-name-absolute"),
        pytest.param("nats.natsnet.svc.cluster.local.runner.internal.", "A", id="node-search-domain"),
        pytest.param("99.0.18.198.in-addr.arpa.", "PTR", id="reverse-unknown-ip-falls-through"),
        pytest.param("10.0.18.198.in-addr.arpa.", "A", id="reverse-non-ptr-falls-through"),
        pytest.param("0.18.198.in-addr.arpa.", "PTR", id="reverse-partial-falls-through"),
    ],
)
def test_names_the_plugin_does_not_answer_go_upstream(qname: str, qtype: str) -> None:
    """kubernetes handler.go: outside its zones the plugin calls the next one (``forward``); in the reverse zones
    a name error falls through too (kubeadm: ``fallthrough in-addr.arpa ip6.arpa``)."""
    answer = ask(cluster(), qname, qtype)
    assert (answer.upstream, answer.answers, answer.authority) == (True, (), ())


def test_axfr_is_refused() -> None:
    assert ask(cluster(), "cluster.local.", "AXFR").rcode == dns.rcode.REFUSED


def test_external_name_to_an_in_zone_target_follows_it() -> None:
    """backend_lookup.go ``A``: a CNAME into the zone is followed; the answer holds the CNAME and the address."""
    service = {
        "kind": "Service",
        "metadata": {"name": "alias", "namespace": "natsnet"},
        "spec": {"type": "ExternalName", "externalName": f"nats.{SVC}"},
    }
    answer = build_zone([*cluster(), service]).answer(f"alias.{SVC}", "A")
    assert answer.answer_texts() == [f"nats.{SVC}", NATS_CLUSTER_IP]


def test_the_dns_view_of_the_objects_builds_the_same_zone_and_leaves_pods_and_noise_out() -> None:
    """The sandbox writes ``dns_view`` of each object for the DNS server: the zone built from it is the zone
    built from the whole objects, and a change the zone does not read (a pod's status, managedFields, another
    label) leaves the view as it was."""
    external = {"kind": "Service", "metadata": {"name": "ext", "namespace": "natsnet"},
                "spec": {"type": "ExternalName", "externalName": "nats.example.com"}}
    pod = {"kind": "Pod", "metadata": {"name": "nats-0", "namespace": "natsnet"}, "status": {"podIP": "198.18.0.9"}}
    objects = [*cluster([endpoint("nats-0"), endpoint("nats-1", ready=False), endpoint("nats-2", ready=None)]),
               external, pod]
    view = [dns_view(o) for o in objects if o["kind"] in DNS_KINDS]
    full, viewed = build_zone(objects), build_zone(view)
    assert (viewed.namespaces, viewed.services, viewed.endpoints, viewed.problems) == (
        full.namespaces, full.services, full.endpoints, full.problems)
    for qname, qtype in ((f"nats-headless.{SVC}", "A"), (f"ext.{SVC}", "CNAME"), (f"nats-0.nats-headless.{SVC}", "A"),
                         (f"_nats._tcp.nats.{SVC}", "SRV")):
        assert viewed.answer(qname, qtype).answer_texts() == full.answer(qname, qtype).answer_texts()
    noisy = [{**o, "metadata": {**o["metadata"], "managedFields": [{"manager": "x"}], "resourceVersion": "9",
                                "labels": {**(o["metadata"].get("labels") or {}), "other": "y"}},
              "status": {"changed": True}} for o in objects if o["kind"] in DNS_KINDS]
    assert [dns_view(o) for o in noisy] == view
