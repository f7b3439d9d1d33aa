"""The sandbox DNS's TTLs, cache and upstream per profile, against a fake clock (no sockets, no sleeping).

The rules are CoreDNS's ``plugin/cache`` v1.11 (``cache.go`` ``WriteMsg``/``computeTTL``/``key``, ``item.go``
``ttl``/``toMsg``, ``handler.go``), ``plugin/pkg/response/typify.go`` and ``plugin/pkg/dnsutil/ttl.go``, as
kubeadm's Corefile configures them (kubernetes ``cmd/kubeadm/app/phases/addons/dns/manifests.go``: ``ttl 30``,
``cache 30``, from 1.32 ``disable success|denial <zone>``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from test_sandbox_dns_objects import NATS_CLUSTER_IP, POD_IPS, cluster, endpoint

from pytest_natsnet.dnsprofile import (
    FAST,
    KIND_1_31,
    KIND_1_31_OFFLINE,
    KIND_1_32,
    PROFILES,
    CachePolicy,
    DnsProfile,
    dns_profile,
    is_cached,
)
from pytest_natsnet.sandbox.dns import Reply, Resolver
from pytest_natsnet.sandbox.dnscache import ResponseType, duration, minimal_ttl, typify
from pytest_natsnet.sandbox.dnszone import Zone, build_zone

SVC = "natsnet.svc.cluster.local."
POD2 = f"nats-2.nats-headless.{SVC}"
NOT_READY = [endpoint("nats-0"), endpoint("nats-1"), endpoint("nats-2", ready=False)]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class World:
    """A resolver over objects that a test can change, with a clock it can move."""

    def __init__(self, profile: DnsProfile, objects: list[dict[str, Any]] | None = None) -> None:
        self.clock = Clock()
        self.zone: Zone = build_zone(objects or cluster(), ttl=profile.ttl)
        self.resolver = Resolver(lambda: self.zone, profile, "cluster.local", self.clock)
        self.profile = profile

    def change(self, objects: list[dict[str, Any]]) -> None:
        self.zone = build_zone(objects, ttl=self.profile.ttl)

    def ask(self, qname: str, qtype: str = "A", flow: tuple[str, int, str] = ("198.18.0.50", 40000, "udp")) -> Reply:
        reply = self.resolver.resolve(dns.message.make_query(qname, qtype).to_wire(), 512, flow)
        assert reply is not None
        return reply

    def message(self, qname: str, qtype: str = "A", flow: tuple[str, int, str] = ("198.18.0.50", 40000, "udp")
                ) -> dns.message.Message:
        reply = self.ask(qname, qtype, flow)
        assert reply.wire is not None
        return dns.message.from_wire(reply.wire)


def ttls(message: dns.message.Message) -> set[int]:
    return {rrset.ttl for section in (message.answer, message.authority, message.additional) for rrset in section}


# --- the pure rules ------------------------------------------------------------------------------------


def _rrset(rdtype: str, ttl: int) -> dns.rrset.RRset:
    texts = {"A": "192.0.2.1", "SOA": ". . 1 1 1 1 1", "NS": "ns."}
    return dns.rrset.from_text("x.", ttl, "IN", rdtype, texts[rdtype])


@pytest.mark.parametrize(
    ("rcode", "answer", "authority", "kind"),
    [
        pytest.param(dns.rcode.NOERROR, ["A"], [], ResponseType.SUCCESS, id="answers"),
        pytest.param(dns.rcode.NOERROR, [], ["SOA"], ResponseType.NO_DATA, id="nodata"),
        pytest.param(dns.rcode.NXDOMAIN, [], ["SOA"], ResponseType.NAME_ERROR, id="nxdomain-with-soa"),
        pytest.param(dns.rcode.NXDOMAIN, [], [], ResponseType.OTHER, id="nxdomain-without-soa-not-cached"),
        pytest.param(dns.rcode.SERVFAIL, [], [], ResponseType.SERVER_ERROR, id="servfail"),
        pytest.param(dns.rcode.NOTIMP, [], [], ResponseType.SERVER_ERROR, id="notimp"),
        pytest.param(dns.rcode.REFUSED, [], [], ResponseType.OTHER, id="refused"),
        pytest.param(dns.rcode.NOERROR, [], ["NS"], ResponseType.DELEGATION, id="delegation"),
        pytest.param(dns.rcode.NOERROR, [], [], ResponseType.SUCCESS, id="empty-noerror"),
    ],
)
def test_typify(rcode: dns.rcode.Rcode, answer: list[str], authority: list[str], kind: ResponseType) -> None:
    """plugin/pkg/response/typify.go ``Typify``."""
    assert typify(rcode, [_rrset(t, 30) for t in answer], [_rrset(t, 30) for t in authority]) == kind


@pytest.mark.parametrize(
    ("kind", "record_ttls", "message_ttl", "cached_for"),
    [
        pytest.param(ResponseType.SUCCESS, [30, 28800], 30, 30, id="lowest-record-ttl"),
        pytest.param(ResponseType.SUCCESS, [28800], 3600, 30, id="capped-by-cache-30"),
        pytest.param(ResponseType.SUCCESS, [1], 1, 5, id="floored-at-5"),
        pytest.param(ResponseType.SUCCESS, [], 5, 5, id="no-records-5"),
        pytest.param(ResponseType.NAME_ERROR, [86400], 3600, 30, id="root-soa-capped"),
        pytest.param(ResponseType.NO_DATA, [30], 30, 30, id="nodata-soa"),
        pytest.param(ResponseType.SERVER_ERROR, [], 5, 5, id="servfail-5"),
    ],
)
def test_ttl_and_duration(kind: ResponseType, record_ttls: list[int], message_ttl: int, cached_for: int) -> None:
    """dnsutil/ttl.go ``MinimalTTL`` and cache.go ``computeTTL`` with ``cache 30`` (min 5, servfail 5)."""
    sections = [[_rrset("A", ttl) for ttl in record_ttls]]
    assert minimal_ttl(kind, sections) == message_ttl
    assert duration(CachePolicy(max_ttl=30), kind, message_ttl) == cached_for


def test_profiles_by_name() -> None:
    assert dns_profile("kind-1.31") is KIND_1_31
    assert set(PROFILES) == {"kind-1.31", "kind-1.32", "kind-1.31-offline", "fast"}
    with pytest.raises(ValueError) as raised:
        dns_profile("kind-1.0")
    known = "kind-1.31, kind-1.32, kind-1.31-offline, fast"
    assert str(raised.value) == f"unknown DNS profile 'kind-1.0'; use one of {known}"


@pytest.mark.parametrize(
    ("profile", "qname", "cached"),
    [
        (KIND_1_31, f"nats.{SVC}", True),
        (KIND_1_32, f"nats.{SVC}", False),
        (KIND_1_32, "10.0.18.198.in-addr.arpa.", True),
        (KIND_1_32, "example.com.", True),
        (FAST, "example.com.", False),
    ],
)
def test_what_is_cached(profile: DnsProfile, qname: str, cached: bool) -> None:
    assert is_cached(profile, qname, "cluster.local") is cached


# --- the server's behaviour per profile ---------------------------------------------------------------


def test_kind_1_31_serves_a_stale_positive_answer_for_30_seconds() -> None:
    """The pNRA not-ready case: once cached, a removed endpoint keeps resolving until the entry expires."""
    world = World(KIND_1_31)
    first = world.message(POD2)
    assert (first.answer[0].ttl, world.ask(POD2).source) == (30, "cache")
    world.change(cluster(NOT_READY))
    world.clock.now += 10
    stale = world.message(POD2)
    assert (stale.rcode(), stale.answer[0].ttl, bool(stale.flags & dns.flags.AA)) == (dns.rcode.NOERROR, 20, True)
    world.clock.now += 19.9
    assert world.ask(POD2).rcode == "NOERROR"
    world.clock.now += 0.1
    assert (world.ask(POD2).rcode, world.ask(POD2).source) == ("NXDOMAIN", "cache")


def test_kind_1_31_keeps_nxdomain_for_30_seconds() -> None:
    world = World(KIND_1_31, cluster(NOT_READY))
    negative = world.message(POD2)
    assert (negative.rcode(), ttls(negative)) == (dns.rcode.NXDOMAIN, {30})
    world.change(cluster())
    world.clock.now += 29
    assert world.ask(POD2).rcode == "NXDOMAIN"
    world.clock.now += 1
    assert world.ask(POD2).answers == [POD_IPS["nats-2"]]


def test_kind_1_32_does_not_cache_cluster_answers_but_still_writes_ttl_30() -> None:
    world = World(KIND_1_32)
    assert world.message(POD2).answer[0].ttl == 30
    world.change(cluster(NOT_READY))
    assert (world.ask(POD2).rcode, world.ask(POD2).source) == ("NXDOMAIN", "kubernetes")
    assert world.message("dns-version.cluster.local.", "TXT").answer[0].ttl == 30


def test_kind_1_32_still_caches_reverse_and_upstream_answers() -> None:
    world = World(KIND_1_32)
    world.ask("10.0.18.198.in-addr.arpa.", "PTR")
    world.ask("nats.natsnet.svc.cluster.local.runner.internal.")
    assert world.ask("10.0.18.198.in-addr.arpa.", "PTR").source == "cache"
    assert world.ask("nats.natsnet.svc.cluster.local.runner.internal.").source == "cache"


def test_fast_profile_has_no_cache_and_coredns_default_ttls() -> None:
    world = World(FAST)
    assert world.message(POD2).answer[0].ttl == 5
    assert world.message("dns-version.cluster.local.", "TXT").answer[0].ttl == 28800
    world.change(cluster(NOT_READY))
    assert world.ask(POD2).rcode == "NXDOMAIN"


def test_each_replica_has_its_own_cache() -> None:
    """Two CoreDNS replicas behind the ClusterIP: a flow on the other replica sees the change at once."""
    world = World(KIND_1_31)
    flows = [("198.18.0.50", port, "udp") for port in range(40000, 40064)]
    by_replica: dict[int, tuple[str, int, str]] = {}
    for flow in flows:
        by_replica.setdefault(world.resolver.replica_for(*flow), flow)
    assert sorted(by_replica) == [0, 1], "64 flows all landed on one replica"
    world.ask(POD2, flow=by_replica[0])
    world.change(cluster(NOT_READY))
    assert world.ask(POD2, flow=by_replica[0]).rcode == "NOERROR"
    assert world.ask(POD2, flow=by_replica[1]).rcode == "NXDOMAIN"
    assert world.ask(POD2, flow=by_replica[0]).replica == 0


def test_the_same_flow_stays_on_its_replica() -> None:
    world = World(KIND_1_31)
    flow = ("198.18.0.50", 41000, "tcp")
    assert len({world.resolver.replica_for(*flow) for _ in range(20)}) == 1


@pytest.mark.parametrize(
    ("profile", "rcode", "flags", "soa"),
    [
        pytest.param(KIND_1_31, "NXDOMAIN", dns.flags.RA, True, id="online-nxdomain-root-soa"),
        pytest.param(dataclasses.replace(KIND_1_31, upstream="servfail"), "SERVFAIL", dns.flags.RA, False,
                     id="servfail"),
    ],
)
def test_upstream_answers(profile: DnsProfile, rcode: str, flags: dns.flags.Flag, soa: bool) -> None:
    """``forward . /etc/resolv.conf``: not authoritative, recursion available, the upstream's rcode."""
    world = World(profile)
    message = world.message("nats-0.nats-headless.")
    assert dns.rcode.to_text(message.rcode()) == rcode
    assert message.flags & (dns.flags.AA | dns.flags.RA) == flags
    assert bool(message.authority) is soa
    assert world.ask("nats-0.nats-headless.").source == "cache"


def test_servfail_is_kept_five_seconds() -> None:
    world = World(dataclasses.replace(KIND_1_31, upstream="servfail"))
    world.ask("example.com.")
    world.clock.now += 4.9
    assert world.ask("example.com.").source == "cache"
    world.clock.now += 0.1
    assert world.ask("example.com.").source == "upstream"


def test_cached_upstream_answer_comes_back_authoritative() -> None:
    """item.go ``toMsg`` sets AA on every answer built from the cache."""
    world = World(KIND_1_31)
    world.ask("example.com.")
    assert world.message("example.com.").flags & dns.flags.AA


def test_offline_upstream_leaves_the_query_unanswered() -> None:
    world = World(KIND_1_31_OFFLINE)
    reply = world.ask("nats.natsnet.svc.cluster.local.runner.internal.")
    assert (reply.wire, reply.rcode, reply.source) == (None, "no answer", "upstream")
    assert world.ask(f"nats.{SVC}").answers == [NATS_CLUSTER_IP]


@pytest.mark.parametrize("profile", [KIND_1_31, KIND_1_32], ids=lambda p: p.name)
def test_cache_key_has_type_and_ignores_case(profile: DnsProfile) -> None:
    world = World(profile)
    world.ask("10.0.18.198.in-addr.arpa.", "PTR")
    assert world.ask("10.0.18.198.IN-ADDR.ARPA.", "PTR").source == "cache"
    assert world.ask("10.0.18.198.in-addr.arpa.", "TXT").source != "cache"


def test_truncated_answers_are_cached_whole() -> None:
    """The cache stores what the plugin wrote; truncation happens per client afterwards (ScrubWriter)."""
    many = [{**endpoint("nats-0"), "addresses": [f"198.18.1.{i}"], "hostname": f"h{i}"} for i in range(60)]
    world = World(dataclasses.replace(KIND_1_31, replicas=1), cluster(many))
    qname = f"_cluster._tcp.nats-headless.{SVC}"
    assert world.ask(qname, "SRV").truncated
    query = dns.message.make_query(qname, "SRV").to_wire()
    cached = world.resolver.resolve(query, 65535, ("198.18.0.50", 40001, "tcp"))
    assert cached is not None and cached.wire is not None
    assert (cached.source, cached.truncated) == ("cache", False)
    assert len(dns.message.from_wire(cached.wire).answer[0]) == 60


@pytest.mark.parametrize("profile", [KIND_1_31, KIND_1_32, FAST], ids=lambda p: p.name)
def test_a_repeated_query_gets_its_own_id_and_the_current_answer(profile: DnsProfile) -> None:
    """The resolver keeps the reply it rendered for a query's bytes: asked again with another id it answers with
    that id, with the TTL the cache entry has left, and with the new zone once the cache no longer holds the
    name (kind-1.32 and fast at once, kind-1.31 when its entry expires)."""
    world = World(profile)
    query = dns.message.make_query(POD2, "A")
    answers = []
    for query_id in (1, 2):
        query.id = query_id
        reply = world.resolver.resolve(query.to_wire(), 512, ("198.18.0.50", 40000, "udp"))
        assert reply is not None and reply.wire is not None
        answers.append(dns.message.from_wire(reply.wire))
    assert [a.id for a in answers] == [1, 2]
    assert answers[0].answer == answers[1].answer
    world.clock.now += 3
    query.id = 3
    later = world.resolver.resolve(query.to_wire(), 512, ("198.18.0.50", 40000, "udp"))
    assert later is not None and later.wire is not None
    expected_ttl = 27 if profile.cache is not None and profile.cache.cluster_zone else answers[0].answer[0].ttl
    assert (dns.message.from_wire(later.wire).id, dns.message.from_wire(later.wire).answer[0].ttl) == (3, expected_ttl)
    world.change(cluster(NOT_READY))
    world.clock.now += 30
    query.id = 4
    after = world.resolver.resolve(query.to_wire(), 512, ("198.18.0.50", 40000, "udp"))
    assert after is not None and (after.rcode, dns.message.from_wire(after.wire or b"").id) == ("NXDOMAIN", 4)


def test_a_zone_read_again_with_the_same_records_answers_without_rendering_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In a busy run the objects file is read again many times a second: a new zone whose answer to a name is the
    same sends the reply already rendered (a full run's DNS server spent its time parsing and rendering the same
    few thousand replies); a changed answer is rendered anew."""
    world = World(KIND_1_32)
    rendered: list[str] = []
    render = Resolver._render

    def counted(*args: Any) -> Reply:
        reply = render(*args)
        rendered.append(reply.rcode)
        return reply

    monkeypatch.setattr(Resolver, "_render", staticmethod(counted))
    first = world.ask(POD2)
    world.change(cluster())  # the same objects: a new zone object
    again = world.ask(POD2)
    world.change(cluster(NOT_READY))
    gone = world.ask(POD2)
    assert (first.answers, again.answers, gone.rcode) == ([POD_IPS["nats-2"]], [POD_IPS["nats-2"]], "NXDOMAIN")
    assert rendered == ["NOERROR", "NXDOMAIN"]
