"""The sandbox's kube-dns: a real DNS server on UDP and TCP answering from the live objects file as the CoreDNS
of a chosen DNS profile would (:mod:`pytest_natsnet.dnsprofile`).

``python -m pytest_natsnet.sandbox.dns --listen IP [--port 53] --objects FILE --query-log FILE
[--zone cluster.local] [--profile kind-1.31] [--ttl N] [--negative-ttl N]``

``FILE`` is JSON ``{"objects": [...]}`` (Services, EndpointSlices, Pods, Namespaces), replaced atomically by
rename; it is re-read when its inode, size or mtime changes (checked at most every 50 ms, on demand). The
records come from :mod:`pytest_natsnet.sandbox.dnszone` (CoreDNS's ``kubernetes`` plugin), pass through one
cache per CoreDNS replica (:mod:`pytest_natsnet.sandbox.dnscache`), and are cut to the client's buffer the way
CoreDNS does (miekg/dns ``Msg.Truncate``: as many records as fit, in order, and TC whenever one is left out).
Names the plugin does not answer get the profile's upstream answer: NXDOMAIN (with the root SOA), SERVFAIL, or
none at all. Each query is one JSON line in the query log (``ts, client, qname, qtype, proto, rcode, answers,
replica, source, truncated``). SIGTERM and SIGINT stop the server cleanly (exit 0). Once both sockets are
bound it prints ``natsnet-dns listening on IP:PORT`` on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import secrets
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import IO, Any, TypeVar

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from pytest_natsnet.dnsprofile import DEFAULT_PROFILE, PROFILES, DnsProfile, Upstream, dns_profile
from pytest_natsnet.sandbox.dnscache import Key, ReplicaCache, Sections
from pytest_natsnet.sandbox.dnszone import DEFAULT_ZONE, Answer, Zone, build_zone

__all__ = ["DnsServer", "ObjectsFile", "QueryLog", "Reply", "Resolver", "main", "resolve_query", "truncated_wire"]

RELOAD_CHECK_INTERVAL = 0.05
TCP_IDLE_TIMEOUT = 10.0
UDP_DEFAULT_PAYLOAD = 512
TCP_MAX_SIZE = 65535
ROOT_SOA = ". 86400 IN SOA a.root-servers.net. nstld.verisign-grs.com. 2024010100 1800 900 604800 86400"
"""What an online upstream sends with an NXDOMAIN for a name that does not exist anywhere."""


class ObjectsFile:
    """The objects file as a zone, rebuilt when the file changes (stat at most every 50 ms)."""

    def __init__(self, path: Path, zone: str, ttl: int, negative_ttl: int | None) -> None:
        self.path = path
        self.zone_name = zone
        self._build: Callable[[list[dict[str, Any]]], Zone] = lambda objects: build_zone(
            objects, zone, ttl, negative_ttl
        )
        self._lock = threading.Lock()
        self._signature: tuple[int, int, int] | None = None
        self._checked = 0.0
        self._zone = self._build([])
        self.reloads = 0

    def zone(self) -> Zone:
        """The current zone, re-read first if the file changed since the last check."""
        now = time.monotonic()
        with self._lock:
            if now - self._checked >= RELOAD_CHECK_INTERVAL:
                self._checked = now
                self._reload_if_changed()
            return self._zone

    def _reload_if_changed(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return
        signature = (st.st_ino, st.st_size, st.st_mtime_ns)
        if signature == self._signature:
            return
        try:
            document = json.loads(self.path.read_text())
            objects = document["objects"]
            if not isinstance(objects, list):
                raise TypeError("'objects' is not a list")
        except (OSError, ValueError, KeyError, TypeError) as err:
            print(
                f"natsnet-dns: {self.path}: not reloaded ({err}); keeping the previous records",
                file=sys.stderr,
            )
            self._signature = signature
            return
        self._zone = self._build(objects)
        self._signature = signature
        self.reloads += 1
        for problem in self._zone.problems:
            print(f"natsnet-dns: {self.path}: {problem}", file=sys.stderr)


class QueryLog:
    """One JSON object per line; thread-safe; flushed per line so tests can read it while the server runs."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def write(self, client: str, proto: str, reply: Reply) -> None:
        qname, qtype = reply.question or ("", "")
        record = {
            "ts": time.time(),
            "client": client,
            "qname": qname,
            "qtype": qtype,
            "proto": proto,
            "rcode": reply.rcode,
            "answers": reply.answers,
            "replica": reply.replica,
            "source": reply.source,
            "truncated": reply.truncated,
        }
        with self._lock:
            self._stream.write(json.dumps(record) + "\n")
            self._stream.flush()


@dataclass(frozen=True)
class Reply:
    """A wire response (None: the query is left unanswered) plus what the query log records about it."""

    wire: bytes | None
    question: tuple[str, str] | None
    rcode: str
    answers: list[str] = field(default_factory=list)
    replica: int | None = None
    source: str = "kubernetes"
    """``kubernetes`` (the zone), ``upstream`` (the profile's stand-in), ``cache``, or ``server`` (errors)."""
    truncated: bool = False


def truncated_wire(response: dns.message.Message, max_size: int) -> tuple[bytes, bool]:
    """``response`` within ``max_size`` bytes (at least 512) as CoreDNS sends it (miekg/dns ``Msg.Truncate``):
    records in order (answer, authority, additional) as long as they fit, none after the first that does not,
    TC set whenever a record was left out; the EDNS OPT record is always kept. Returns the wire and TC."""
    size = max(max_size, UDP_DEFAULT_PAYLOAD)
    try:
        return response.to_wire(max_size=size), bool(response.flags & dns.flags.TC)
    except dns.exception.TooBig:
        pass
    records = [
        (section, rrset, rdata)
        for section, rrsets in enumerate((response.answer, response.authority, response.additional))
        for rrset in rrsets
        for rdata in rrset
    ]

    def first(count: int) -> bytes | None:
        candidate = dns.message.Message(id=response.id)
        candidate.flags = response.flags | dns.flags.TC
        candidate.question = list(response.question)
        if response.opt is not None:
            candidate.use_edns(response.edns, response.ednsflags, response.payload, options=list(response.options))
        targets = (candidate.answer, candidate.authority, candidate.additional)
        for section, rrset, rdata in records[:count]:
            single = dns.rrset.RRset(rrset.name, rrset.rdclass, rrset.rdtype)
            single.add(rdata, rrset.ttl)
            targets[section].append(single)
        try:
            return candidate.to_wire(max_size=size)
        except dns.exception.TooBig:
            return None

    low, high = 0, len(records) - 1  # the full message does not fit; a prefix of ``low`` records does
    best = first(0)
    while low < high:
        middle = (low + high + 1) // 2
        wire = first(middle)
        if wire is None:
            high = middle - 1
        else:
            low, best = middle, wire
    if best is None:
        raise ValueError(f"even the header and question exceed {size} bytes")
    return best, True


def _upstream(mode: Upstream) -> Sections | None:
    """The stand-in for ``forward . /etc/resolv.conf``: an online resolver's NXDOMAIN, a SERVFAIL, or nothing."""
    if mode == "drop":
        return None
    if mode == "servfail":
        return Sections(dns.rcode.SERVFAIL, True)
    soa = dns.rrset.from_text_list(".", 86400, "IN", "SOA", [ROOT_SOA.split(" SOA ", 1)[1]])
    return Sections(dns.rcode.NXDOMAIN, True, authority=(soa,))


def _question_text(question: dns.rrset.RRset) -> tuple[str, str]:
    return question.name.to_text().lower(), dns.rdatatype.to_text(question.rdtype)


def _answer_texts(sections: Sections) -> list[str]:
    return [rd.to_text() for rrset in sections.answer for rd in rrset]


class Resolver:
    """The kube-dns Service as clients see it: ``profile.replicas`` CoreDNS replicas, each with its own cache,
    picked per client flow (address, port, protocol) as kube-proxy's random DNAT does for a new connection."""

    def __init__(
        self,
        zone: Callable[[], Zone],
        profile: DnsProfile,
        cluster_zone: str = DEFAULT_ZONE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.zone = zone
        self.profile = profile
        origin = dns.name.from_text(cluster_zone.rstrip(".") + ".")
        self.caches: list[ReplicaCache] = []
        if profile.cache is not None:
            self.caches = [ReplicaCache(profile.cache, origin, clock) for _ in range(profile.replicas)]
        self._salt = secrets.token_hex(4)
        self._queries: dict[bytes, _Query] = {}
        self._answers: tuple[Zone | None, dict[bytes, Answer]] = (None, {})
        self._rendered: dict[tuple[bytes, int, int, str], _Rendered] = {}

    def replica_for(self, client: str, port: int, proto: str) -> int:
        return zlib.crc32(f"{self._salt}|{client}|{port}|{proto}".encode()) % max(1, self.profile.replicas)

    def resolve(self, wire: bytes, max_size: int, flow: tuple[str, int, str] = ("", 0, "udp")) -> Reply | None:
        """Answers one query message; ``None`` when it cannot be parsed at all (dropped, not logged).

        The same query bytes (its id aside) are parsed once, and a reply rendered for them is sent again (with the
        new id) while what it was rendered from holds: the same cache entry with the same seconds left, or an equal
        answer from the zone (the objects file is re-read many times a second in a busy run: the zone object
        changes, most of its answers do not). A full run asks ~1,400 queries a second, most of them the same
        names again (nats-server retrying routes through the search path)."""
        body = wire[2:]
        query = self._queries.get(body)
        if query is None:
            parsed = _parse(wire)
            if not isinstance(parsed, _Query):
                return parsed
            query = self._remember(self._queries, body, parsed)
        replica = self.replica_for(*flow)
        memo_key = (body, replica, max_size, flow[2])
        rendered = self._rendered.get(memo_key)
        cache = self.caches[replica] if self.caches else None
        hit = cache.peek(query.key) if cache is not None else None
        if hit is not None:
            entry, remaining = hit
            if rendered is not None and rendered.entry is entry and rendered.remaining == remaining:
                return rendered.reply_with_id(wire)
            sections = entry.sections.retimed(remaining)
            reply = self._render(query, sections, True, "cache", replica, max_size, flow[2])
            return self._remember(self._rendered, memo_key, _Rendered(reply, entry=entry, remaining=remaining)
                                  ).reply_with_id(wire)
        answer = self._answer(body, query)
        if rendered is not None and rendered.entry is None and rendered.answer == answer:
            if rendered.answer is not answer:  # a new zone, the same answer: compared by identity from now on
                rendered = self._remember(self._rendered, memo_key, replace(rendered, answer=answer))
            if cache is not None and rendered.admitted is not None:  # stored the first time: stored again
                cache.admit(query.key, query.question.name, rendered.admitted)
            return rendered.reply_with_id(wire)
        if answer.upstream:
            upstream = _upstream(self.profile.upstream)
            if upstream is None:
                reply = Reply(None, query.logged, "no answer", replica=replica, source="upstream")
                self._remember(self._rendered, memo_key, _Rendered(reply, answer=answer))
                return reply
            sections, authoritative, source = upstream, False, "upstream"
        else:
            sections = Sections(answer.rcode, False, answer.answers, answer.authority, answer.additional)
            authoritative, source = answer.authoritative, "kubernetes"
        admitted, stored = sections, False
        if cache is not None:
            sections, stored = cache.admit(query.key, query.question.name, sections)
        reply = self._render(query, sections, authoritative, source, replica, max_size, flow[2])
        rendered = _Rendered(reply, answer=answer, admitted=admitted if stored else None)
        return self._remember(self._rendered, memo_key, rendered).reply_with_id(wire)

    def _answer(self, body: bytes, query: _Query) -> Answer:
        """The current zone's answer to the query (asked of each zone once per query's bytes)."""
        zone = self.zone()
        answers = self._answers
        if answers[0] is not zone:
            answers = self._answers = (zone, {})
        found = answers[1].get(body)
        if found is None:
            found = self._remember(answers[1], body, zone.answer(query.question.name, query.question.rdtype))
        return found

    @staticmethod
    def _remember(memo: dict[Any, T], key: Any, value: T) -> T:
        if len(memo) >= MEMO_LIMIT:
            memo.clear()
        memo[key] = value
        return value

    @staticmethod
    def _render(query: _Query, sections: Sections, authoritative: bool, source: str, replica: int, max_size: int,
                proto: str) -> Reply:
        response = dns.message.make_response(query.message)
        response.set_rcode(sections.rcode)
        response.flags &= ~(dns.flags.AA | dns.flags.RA)
        response.flags |= (dns.flags.AA if authoritative else 0) | (dns.flags.RA if sections.recursion_available else 0)
        response.answer.extend(sections.answer)
        response.authority.extend(sections.authority)
        response.additional.extend(sections.additional)
        reply_wire, truncated = truncated_wire(response, min(max_size, _client_buffer(query.message, proto)))
        rcode_text = dns.rcode.to_text(sections.rcode)
        return Reply(reply_wire, query.logged, rcode_text, _answer_texts(sections), replica, source, truncated)


T = TypeVar("T")
MEMO_LIMIT = 50_000
"""Queries and replies kept for repeated queries; all are dropped when there are more (a full run asks ~10,000
names)."""


@dataclass(frozen=True)
class _Query:
    """A parsed query: the message, its question, its cache key and what the query log says of it."""

    message: dns.message.Message
    question: dns.rrset.RRset
    key: Key
    logged: tuple[str, str]


def _parse(wire: bytes) -> _Query | Reply | None:
    """The query, or the error reply a malformed one gets (None: not even a header)."""
    try:
        message = dns.message.from_wire(wire)
    except dns.exception.DNSException:
        return _formerr(wire)
    if message.opcode() != dns.opcode.QUERY or len(message.question) != 1:
        response = dns.message.make_response(message)
        rcode = dns.rcode.NOTIMP if message.opcode() != dns.opcode.QUERY else dns.rcode.FORMERR
        response.set_rcode(rcode)
        return Reply(response.to_wire(), None, dns.rcode.to_text(rcode), source="server")
    question = message.question[0]
    logged = _question_text(question)
    key: Key = (logged[0], int(question.rdtype), bool(message.ednsflags & dns.flags.DO),
                bool(message.flags & dns.flags.CD))
    return _Query(message, question, key, logged)


@dataclass(frozen=True)
class _Rendered:
    """A reply and what it was rendered from: a replica's cache ``entry`` with ``remaining`` seconds (the TTLs it
    carries), or the zone's ``answer`` (compared by value: rcode and records; a zone's TTLs are fixed for the
    server's life) with what the cache stored of it (``admitted``, None when it stored nothing)."""

    reply: Reply
    entry: object | None = None
    remaining: int = 0
    answer: Answer | None = None
    admitted: Sections | None = None

    def reply_with_id(self, wire: bytes) -> Reply:
        """The reply to a query with ``wire``'s id (the reply was rendered for the first query with its bytes)."""
        kept = self.reply
        return kept if kept.wire is None else replace(kept, wire=wire[:2] + kept.wire[2:])


def _client_buffer(query: dns.message.Message, proto: str) -> int:
    """coredns ``edns.Size``: over TCP 65535, over UDP the EDNS payload (at least 512), else 512."""
    if proto == "tcp":
        return TCP_MAX_SIZE
    return max(query.payload, UDP_DEFAULT_PAYLOAD) if query.edns >= 0 else UDP_DEFAULT_PAYLOAD


def resolve_query(wire: bytes, zone: Zone, proto: str = "udp", profile: DnsProfile | str = "fast") -> Reply | None:
    """One query against ``zone`` with ``profile`` (default: no cache) over ``proto``."""
    chosen = dns_profile(profile) if isinstance(profile, str) else profile
    return Resolver(lambda: zone, chosen, zone.origin.to_text()).resolve(wire, TCP_MAX_SIZE, ("", 0, proto))


def _formerr(wire: bytes) -> Reply | None:
    """FORMERR echoing the query id when at least the 12-byte header is there."""
    if len(wire) < 12:
        return None
    (query_id,) = struct.unpack("!H", wire[:2])
    response = dns.message.Message(id=query_id)
    response.flags = dns.flags.QR
    response.set_rcode(dns.rcode.FORMERR)
    return Reply(response.to_wire(), None, "FORMERR", source="server")


def _answer(dns_server: DnsServer, wire: bytes, client_address: Any, proto: str, max_size: int) -> bytes | None:
    """The reply to one query, logged; None when it gets none."""
    client, port = str(client_address[0]), int(client_address[1])
    reply = dns_server.resolver.resolve(wire, max_size, (client, port, proto))
    if reply is None:
        return None
    dns_server.log.write(client, proto, reply)
    return reply.wire


class _Handler(socketserver.BaseRequestHandler):
    server: _TCPServer

    def answer(self, wire: bytes, proto: str, max_size: int) -> bytes | None:
        return _answer(self.server.dns_server, wire, self.client_address, proto, max_size)


class _TCPHandler(_Handler):
    def handle(self) -> None:
        conn: socket.socket = self.request
        conn.settimeout(TCP_IDLE_TIMEOUT)
        while True:
            header = _recv_exact(conn, 2)
            if header is None:
                return
            (length,) = struct.unpack("!H", header)
            data = _recv_exact(conn, length)
            if data is None:
                return
            wire = self.answer(data, "tcp", TCP_MAX_SIZE)
            if wire is None:
                continue
            conn.sendall(struct.pack("!H", len(wire)) + wire)


def _recv_exact(conn: socket.socket, size: int) -> bytes | None:
    chunks = b""
    while len(chunks) < size:
        try:
            chunk = conn.recv(size - len(chunks))
        except OSError:
            return None
        if not chunk:
            return None
        chunks += chunk
    return chunks


UDP_RECEIVE_BUFFER = 16 * 1024 * 1024
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


class _UDPServer:
    """Answers each datagram in one receive loop: resolving never blocks (no upstream is asked, nothing sleeps),
    and a thread per query cost more than the answer (~29,000 queries in a smoke run: nats-server retrying routes
    through the search path); socketserver's request machinery around each datagram cost as much again."""

    def __init__(self, address: tuple[str, int], dns_server: DnsServer) -> None:
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.dns_server = dns_server
        self.socket = socket.socket(family, socket.SOCK_DGRAM)
        self._stop = threading.Event()
        try:
            self._enlarge_receive_queue()
            self.socket.bind(address)  # no SO_REUSEADDR: a second server on the port would split the queries
        except OSError:
            self.socket.close()
            raise
        self.server_address: tuple[str, int] = self.socket.getsockname()[:2]

    def _enlarge_receive_queue(self) -> None:
        """A receive queue that holds a burst: with every cell's servers retrying routes through the search path
        (the full matrix's deadlocked cells: ~1,400 queries/s) the default queue (~200 KiB) overflowed and the
        kernel dropped 5% of the queries (``Udp: RcvbufErrors``), which clients saw as timeouts CoreDNS would not
        give. As root the buffer may exceed ``net.core.rmem_max``."""
        for option in (SO_RCVBUFFORCE, socket.SO_RCVBUF):
            with contextlib.suppress(OSError):
                self.socket.setsockopt(socket.SOL_SOCKET, option, UDP_RECEIVE_BUFFER)
                break

    def serve_forever(self, poll_interval: float = 0.1) -> None:
        self.socket.settimeout(poll_interval)
        while not self._stop.is_set():
            try:
                data, client = self.socket.recvfrom(TCP_MAX_SIZE)
            except TimeoutError:
                continue
            except OSError:  # closed under us, or an ICMP error reported on the socket
                if self._stop.is_set():
                    return
                continue
            wire = _answer(self.dns_server, data, client, "udp", TCP_MAX_SIZE)
            if wire is not None:
                with contextlib.suppress(OSError):
                    self.socket.sendto(wire, client)

    def shutdown(self) -> None:
        self._stop.set()

    def server_close(self) -> None:
        self.socket.close()


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], dns_server: DnsServer) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.dns_server = dns_server
        super().__init__(address, _TCPHandler)


class DnsServer:
    """UDP + TCP on one address and port (port 0: a free port shared by both), answering from ``objects`` as
    ``profile``'s CoreDNS would."""

    def __init__(
        self,
        listen: str,
        port: int,
        objects: ObjectsFile,
        log: QueryLog,
        profile: DnsProfile | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.objects = objects
        self.log = log
        self.resolver = Resolver(objects.zone, profile or dns_profile(DEFAULT_PROFILE), objects.zone_name, clock)
        self._udp, self._tcp = self._bind(listen, port)
        self.port = int(self._udp.server_address[1])
        self._threads: list[threading.Thread] = []

    def _bind(self, listen: str, port: int) -> tuple[_UDPServer, _TCPServer]:
        attempts = 5 if port == 0 else 1
        for attempt in range(attempts):
            udp = _UDPServer((listen, port), self)
            try:
                return udp, _TCPServer((listen, int(udp.server_address[1])), self)
            except OSError:
                udp.server_close()
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def start(self) -> None:
        for server in (self._udp, self._tcp):
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        for server in (self._udp, self._tcp):
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=2)


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def _ip(text: str) -> str:
    return str(ipaddress.ip_address(text))


_ip.__name__ = "IP address"
_non_negative.__name__ = "non-negative integer"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_natsnet.sandbox.dns", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--listen", required=True, type=_ip, help="Address to bind (UDP and TCP)")
    parser.add_argument("--port", type=int, default=53, help="Port (default 53; 0 picks a free one)")
    parser.add_argument("--objects", required=True, type=Path, help="JSON file {'objects': [...]}")
    parser.add_argument("--query-log", required=True, type=Path, help="JSON-lines query log (appended)")
    parser.add_argument("--zone", default=DEFAULT_ZONE, help="Cluster domain (default cluster.local)")
    parser.add_argument(
        "--profile", choices=sorted(PROFILES), default=DEFAULT_PROFILE,
        help=f"DNS profile: TTL, cache, replicas, upstream (default {DEFAULT_PROFILE})",
    )
    parser.add_argument("--ttl", type=_non_negative, default=None, help="Answer TTL (default: the profile's)")
    parser.add_argument(
        "--negative-ttl",
        type=_non_negative,
        default=None,
        help="SOA minimum, i.e. negative caching (default: follows --ttl, as CoreDNS)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    profile = dns_profile(args.profile)
    try:
        log_stream = args.query_log.open("a", encoding="utf-8")
    except OSError as err:
        print(f"natsnet-dns: --query-log {args.query_log}: {err.strerror}", file=sys.stderr)
        return 2
    with log_stream:
        ttl = profile.ttl if args.ttl is None else args.ttl
        objects = ObjectsFile(args.objects, args.zone, ttl, args.negative_ttl)
        try:
            server = DnsServer(args.listen, args.port, objects, QueryLog(log_stream), profile)
        except OSError as err:
            print(f"natsnet-dns: --listen {args.listen} --port {args.port}: {err.strerror}", file=sys.stderr)
            return 2
        server.start()
        print(f"natsnet-dns listening on {args.listen}:{server.port}", flush=True)
        while not stop.wait(0.2):
            pass
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
