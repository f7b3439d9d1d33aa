"""CoreDNS's ``cache`` plugin (coredns ``plugin/cache`` v1.11): what it stores, for how long, and what it sends.

One :class:`ReplicaCache` per CoreDNS replica: kube-proxy spreads clients over the replicas, and each keeps its
own entries, so two queries a second apart can see different ages of the same name. The rules, each from the
file it is coded in:

- a response is typed (``plugin/pkg/response/typify.go``): answers + NOERROR = success; SOA + NOERROR = no data;
  SOA + NXDOMAIN = name error; SERVFAIL/NOTIMP = server error; anything else (REFUSED, NXDOMAIN without SOA, ...)
  is not cached;
- its TTL is the lowest TTL of all its records (``plugin/pkg/dnsutil/ttl.go`` ``MinimalTTL``; 5 s when it has
  none), clamped to [5, ``cache <TTL>``] (``cache.go`` ``computeTTL``); a server error is kept 5 s;
- every record of the reply, cached or not, carries that duration as its TTL (``cache.go`` ``WriteMsg``);
- a stored entry answers while ``duration - whole seconds elapsed > 0``, with the remaining seconds as TTL and
  AA set (``item.go``); entries are keyed by lowercased name, type, DO and CD (``cache.go`` ``hash``);
- ``disable success|denial <zone>`` keeps the zone's answers out of the store, not their TTL rewrite.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

from pytest_natsnet.dnsprofile import CachePolicy

MINIMAL_DEFAULT_TTL = 5
MAXIMUM_DEFAULT_TTL = 3600

Key = tuple[str, int, bool, bool]
"""(lowercased qname, qtype, DO, CD)."""


class ResponseType(StrEnum):
    SUCCESS = "success"
    NO_DATA = "no-data"
    NAME_ERROR = "name-error"
    SERVER_ERROR = "server-error"
    DELEGATION = "delegation"
    OTHER = "other"


def typify(rcode: int, answer: Sequence[dns.rrset.RRset], authority: Sequence[dns.rrset.RRset]) -> ResponseType:
    """``response.Typify`` for a plain query response."""
    if answer and rcode == dns.rcode.NOERROR:
        return ResponseType.SUCCESS
    soa = any(r.rdtype == dns.rdatatype.SOA for r in authority)
    ns = any(r.rdtype == dns.rdatatype.NS for r in authority)
    if soa and rcode == dns.rcode.NOERROR:
        return ResponseType.NO_DATA
    if soa and rcode == dns.rcode.NXDOMAIN:
        return ResponseType.NAME_ERROR
    if rcode in (dns.rcode.SERVFAIL, dns.rcode.NOTIMP):
        return ResponseType.SERVER_ERROR
    if ns and rcode == dns.rcode.NOERROR:
        return ResponseType.DELEGATION
    if rcode == dns.rcode.NOERROR:
        return ResponseType.SUCCESS
    return ResponseType.OTHER


def minimal_ttl(kind: ResponseType, sections: Sequence[Sequence[dns.rrset.RRset]]) -> int:
    """``dnsutil.MinimalTTL``: the lowest record TTL (at most an hour); 5 s for other types or no records."""
    if kind not in (ResponseType.SUCCESS, ResponseType.NAME_ERROR, ResponseType.NO_DATA):
        return MINIMAL_DEFAULT_TTL
    ttls = [rrset.ttl for section in sections for rrset in section]
    return min([MAXIMUM_DEFAULT_TTL, *ttls]) if ttls else MINIMAL_DEFAULT_TTL


def duration(policy: CachePolicy, kind: ResponseType, message_ttl: int) -> int:
    """How long the cache keeps (and the TTL it writes on) a response of ``kind`` whose records say
    ``message_ttl``."""
    if kind == ResponseType.SERVER_ERROR:
        return policy.servfail_ttl
    return max(policy.min_ttl, min(message_ttl, policy.max_ttl))


def with_ttl(rrsets: Sequence[dns.rrset.RRset], ttl: int) -> tuple[dns.rrset.RRset, ...]:
    """Copies of ``rrsets`` whose records all carry ``ttl`` (``filterRRSlice``)."""
    copies = []
    for rrset in rrsets:
        copy = dns.rrset.RRset(rrset.name, rrset.rdclass, rrset.rdtype)
        for rdata in rrset:
            copy.add(rdata, ttl)
        copies.append(copy)
    return tuple(copies)


@dataclass(frozen=True)
class Sections:
    """What a response carries besides its header: rcode, RA, and the three record sections."""

    rcode: dns.rcode.Rcode
    recursion_available: bool
    answer: tuple[dns.rrset.RRset, ...] = ()
    authority: tuple[dns.rrset.RRset, ...] = ()
    additional: tuple[dns.rrset.RRset, ...] = ()

    def retimed(self, ttl: int) -> Sections:
        return Sections(
            self.rcode,
            self.recursion_available,
            with_ttl(self.answer, ttl),
            with_ttl(self.authority, ttl),
            with_ttl(self.additional, ttl),
        )


@dataclass
class _Item:
    sections: Sections
    duration: int
    stored: float


@dataclass
class ReplicaCache:
    """The entries of one CoreDNS replica. ``cluster_zone``: the zone ``policy.cluster_zone`` may exclude."""

    policy: CachePolicy
    cluster_zone: dns.name.Name
    clock: Callable[[], float] = time.monotonic
    _items: dict[Key, _Item] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: Key) -> tuple[Sections, int] | None:
        """The stored response with its TTLs set to the seconds it has left, and those seconds; None on a
        miss or an expired entry."""
        found = self.peek(key)
        if found is None:
            return None
        item, remaining = found
        return item.sections.retimed(remaining), remaining

    def peek(self, key: Key) -> tuple[_Item, int] | None:
        """The stored entry (compared by identity: a new answer is a new entry) and the seconds it has left;
        None on a miss or an expired entry, which is dropped."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            remaining = item.duration - int(self.clock() - item.stored)
            if remaining <= 0:
                del self._items[key]
                return None
        return item, remaining

    def admit(self, key: Key, qname: dns.name.Name, sections: Sections) -> tuple[Sections, bool]:
        """The response as the cache plugin sends it (TTLs rewritten), and whether it was stored."""
        kind = typify(sections.rcode, sections.answer, sections.authority)
        seconds = duration(
            self.policy, kind, minimal_ttl(kind, (sections.answer, sections.authority, sections.additional))
        )
        retimed = sections.retimed(seconds)
        storable = kind != ResponseType.OTHER and seconds > 0
        in_cluster_zone = qname.is_subdomain(self.cluster_zone)
        if not storable or (in_cluster_zone and not self.policy.cluster_zone):
            return retimed, False
        with self._lock:
            self._items[key] = _Item(retimed, seconds, self.clock())
        return retimed, True

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
