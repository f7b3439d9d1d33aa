"""UDP truncation as CoreDNS does it: miekg/dns ``msg_truncate.go`` ``Truncate`` behind coredns
``request/request.go`` ``Scrub`` and ``plugin/pkg/edns/edns.go`` ``Size``.

- the buffer is the client's EDNS payload (at least 512), or 512 without EDNS; over TCP always 65535;
- records are kept in order (answer, authority, additional) while they fit; after the first that does not, none;
- TC is set whenever any record was left out, the additional section included;
- the EDNS OPT record is kept (its size is reserved first).
"""

from __future__ import annotations

import json

import dns.flags
import dns.message
import dns.rrset
import pytest
from test_sandbox_dns_objects import NAMESPACE, cluster, endpoint

from pytest_natsnet.dnsprofile import FAST
from pytest_natsnet.sandbox.dns import Resolver, truncated_wire
from pytest_natsnet.sandbox.dnszone import build_zone


def response_with(answer: list[str], additional: list[str], authority: list[str]) -> dns.message.Message:
    query = dns.message.make_query("q.example.", "TXT")
    response = dns.message.make_response(query)
    for section, texts in ((response.answer, answer), (response.authority, authority),
                           (response.additional, additional)):
        for index, text in enumerate(texts):
            section.append(dns.rrset.from_text(f"r{index}.example.", 30, "IN", "TXT", f'"{text}"'))
    return response


def kept(wire: bytes) -> tuple[list[int], list[int], list[int], bool]:
    message = dns.message.from_wire(wire)
    sizes = [[len(rrset[0].strings[0]) for rrset in section]
             for section in (message.answer, message.authority, message.additional)]
    return sizes[0], sizes[1], sizes[2], bool(message.flags & dns.flags.TC)


@pytest.mark.parametrize(
    ("answer", "authority", "additional", "expected"),
    [
        pytest.param([100, 100], [], [100], ([100, 100], [], [100], False), id="fits-untouched"),
        pytest.param([120, 120, 120], [], [120], ([120, 120, 120], [], [], True), id="additional-left-out-sets-tc"),
        pytest.param([120, 120, 120], [], [100, 20], ([120, 120, 120], [], [], True),
                     id="nothing-after-the-first-that-does-not-fit"),
        pytest.param([200, 255, 20], [], [], ([200], [], [], True), id="answers-kept-in-order-only"),
        pytest.param([200, 200], [100], [20], ([200, 200], [], [], True), id="authority-left-out-sets-tc"),
    ],
)
def test_truncate_rules(
    answer: list[int], authority: list[int], additional: list[int], expected: tuple[object, ...]
) -> None:
    response = response_with(["a" * n for n in answer], ["c" * n for n in additional], ["b" * n for n in authority])
    wire, truncated = truncated_wire(response, 512)
    assert len(wire) <= 512
    assert kept(wire) == expected
    assert truncated is expected[3]


def test_opt_record_is_kept_and_its_room_reserved() -> None:
    query = dns.message.make_query("q.example.", "TXT", use_edns=0, payload=600)
    response = dns.message.make_response(query)
    for index in range(8):
        response.answer.append(dns.rrset.from_text(f"r{index}.example.", 30, "IN", "TXT", f'"{"a" * 100}"'))
    wire, truncated = truncated_wire(response, 600)
    message = dns.message.from_wire(wire)
    assert truncated and len(wire) <= 600 and message.edns == 0
    assert len(message.answer) == 4  # 27 header+question, 11 OPT, then 123 + 3 x 116 bytes of records


def _srv_reply(payload: int | None, proto: str) -> tuple[int, bool]:
    many = [{**endpoint("nats-0"), "addresses": [f"198.18.1.{i}"], "hostname": f"h{i}"} for i in range(60)]
    zone = build_zone(cluster(many))
    resolver = Resolver(lambda: zone, FAST)
    qname = f"_cluster._tcp.nats-headless.{NAMESPACE}.svc.cluster.local."
    if payload is None:
        query = dns.message.make_query(qname, "SRV", use_edns=False)
    else:
        query = dns.message.make_query(qname, "SRV", use_edns=0, payload=payload)
    reply = resolver.resolve(query.to_wire(), 65535, ("198.18.0.9", 5353, proto))
    assert reply is not None and reply.wire is not None
    return len(reply.wire), reply.truncated


@pytest.mark.parametrize(
    ("payload", "proto", "limit", "truncated"),
    [
        pytest.param(None, "udp", 512, True, id="udp-no-edns-512"),
        pytest.param(100, "udp", 512, True, id="udp-edns-below-512-is-512"),
        pytest.param(1232, "udp", 1232, True, id="udp-edns-1232"),
        pytest.param(1232, "tcp", 65535, False, id="tcp-ignores-edns-payload"),
    ],
)
def test_buffer_size_per_transport(payload: int | None, proto: str, limit: int, truncated: bool) -> None:
    size, was_truncated = _srv_reply(payload, proto)
    assert size <= limit and was_truncated is truncated
    if truncated:
        assert size > limit - 100, f"{size} bytes: the buffer of {limit} was not filled"


def test_long_namespace_srv_sets_tc_when_additional_records_do_not_fit() -> None:
    """Row 5 of issue #12: three SRV targets fit in 512 bytes, their A records do not; CoreDNS sets TC."""
    long_ns = "natsnet-6be413-advertise-cluster-wrong-routes-seed-36c0e5c9"
    objects = json.loads(json.dumps(cluster()).replace(f'"{NAMESPACE}"', f'"{long_ns}"'))
    zone = build_zone(objects)
    query = dns.message.make_query(f"_cluster._tcp.nats-headless.{long_ns}.svc.cluster.local", "SRV")
    reply = Resolver(lambda: zone, FAST).resolve(query.to_wire(), 65535)
    assert reply is not None and reply.wire is not None
    message = dns.message.from_wire(reply.wire)
    assert (reply.truncated, len(message.answer[0])) == (True, 3)
    assert len(message.additional) < 3
