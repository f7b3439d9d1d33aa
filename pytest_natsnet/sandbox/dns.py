"""The sandbox's kube-dns: a real DNS server on UDP and TCP answering from the live objects file.

``python -m pytest_natsnet.sandbox.dns --listen IP [--port 53] --objects FILE --query-log FILE
[--zone cluster.local] [--ttl 5] [--negative-ttl N]``

``FILE`` is JSON ``{"objects": [...]}`` (Services, EndpointSlices, Pods, Namespaces), replaced atomically by
rename; it is re-read when its inode, size or mtime changes (checked at most every 50 ms, on demand). The
records are built by :mod:`pytest_natsnet.sandbox.dnszone`. Each query is one JSON line in the query log
(``ts, client, qname, qtype, proto, rcode, answers``). SIGTERM and SIGINT stop the server cleanly (exit 0).
Once both sockets are bound it prints ``natsnet-dns listening on IP:PORT`` on stdout.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.rrset

from pytest_natsnet.sandbox.dnszone import DEFAULT_TTL, DEFAULT_ZONE, Answer, Zone, build_zone, resolv_conf

__all__ = ["DnsServer", "ObjectsFile", "QueryLog", "main", "resolv_conf", "resolve_query"]

RELOAD_CHECK_INTERVAL = 0.05
TCP_IDLE_TIMEOUT = 10.0
UDP_DEFAULT_PAYLOAD = 512


class ObjectsFile:
    """The objects file as a zone, rebuilt when the file changes (stat at most every 50 ms)."""

    def __init__(self, path: Path, zone: str, ttl: int, negative_ttl: int | None) -> None:
        self.path = path
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

    def write(
        self, client: str, proto: str, question: tuple[str, str] | None, rcode: str, answers: list[str]
    ) -> None:
        qname, qtype = question or ("", "")
        record = {
            "ts": time.time(),
            "client": client,
            "qname": qname,
            "qtype": qtype,
            "proto": proto,
            "rcode": rcode,
            "answers": answers,
        }
        with self._lock:
            self._stream.write(json.dumps(record) + "\n")
            self._stream.flush()


@dataclass(frozen=True)
class Reply:
    """A wire response plus what the query log records about it."""

    wire: bytes
    question: tuple[str, str] | None
    rcode: str
    answers: list[str]


def _response_wire(response: dns.message.Message, max_size: int) -> bytes:
    """The response within ``max_size`` the way CoreDNS (miekg/dns ``Msg.Truncate``) shrinks it: the additional
    section goes first, silently; then answer records from the end, and only then is TC set."""
    try:
        return response.to_wire(max_size=max_size)
    except dns.exception.TooBig:
        response.additional.clear()
    while True:
        try:
            return response.to_wire(max_size=max_size)
        except dns.exception.TooBig:
            response.flags |= dns.flags.TC
            if response.authority:
                response.authority.clear()
                continue
            if not response.answer:
                raise
            last = response.answer[-1]
            if len(last) > 1:
                shrunk = dns.rrset.RRset(last.name, last.rdclass, last.rdtype)
                shrunk.update_ttl(last.ttl)
                for rdata in list(last)[:-1]:
                    shrunk.add(rdata)
                response.answer[-1] = shrunk
            else:
                response.answer.pop()


def resolve_query(wire: bytes, zone: Zone, max_size: int = 65535) -> Reply | None:
    """Answers one query message from ``zone``; ``None`` when it cannot be parsed at all (dropped)."""
    try:
        query = dns.message.from_wire(wire)
    except dns.exception.DNSException:
        return _formerr(wire)
    response = dns.message.make_response(query)
    if query.opcode() != dns.opcode.QUERY or len(query.question) != 1:
        rcode = dns.rcode.NOTIMP if query.opcode() != dns.opcode.QUERY else dns.rcode.FORMERR
        response.set_rcode(rcode)
        return Reply(response.to_wire(), None, dns.rcode.to_text(rcode), [])
    question = query.question[0]
    answer: Answer = zone.answer(question.name, question.rdtype)
    response.set_rcode(answer.rcode)
    if answer.authoritative:
        response.flags |= dns.flags.AA
    else:
        response.flags |= dns.flags.RA
    response.answer.extend(answer.answers)
    response.authority.extend(answer.authority)
    response.additional.extend(answer.additional)
    if query.edns >= 0:
        max_size = min(max_size, max(query.payload, UDP_DEFAULT_PAYLOAD))
    logged = (question.name.to_text().lower(), dns.rdatatype.to_text(question.rdtype))
    return Reply(
        _response_wire(response, max_size), logged, dns.rcode.to_text(answer.rcode), answer.answer_texts()
    )


def _formerr(wire: bytes) -> Reply | None:
    """FORMERR echoing the query id when at least the 12-byte header is there."""
    if len(wire) < 12:
        return None
    (query_id,) = struct.unpack("!H", wire[:2])
    response = dns.message.Message(id=query_id)
    response.flags = dns.flags.QR
    response.set_rcode(dns.rcode.FORMERR)
    return Reply(response.to_wire(), None, "FORMERR", [])


class _Handler(socketserver.BaseRequestHandler):
    server: _UDPServer | _TCPServer

    def answer(self, wire: bytes, proto: str, max_size: int) -> bytes | None:
        dns_server = self.server.dns_server
        reply = resolve_query(wire, dns_server.objects.zone(), max_size)
        if reply is None:
            return None
        client = str(self.client_address[0])
        dns_server.log.write(client, proto, reply.question, reply.rcode, reply.answers)
        return reply.wire


class _UDPHandler(_Handler):
    def handle(self) -> None:
        data, sock = self.request
        wire = self.answer(data, "udp", UDP_DEFAULT_PAYLOAD)
        if wire is not None:
            sock.sendto(wire, self.client_address)


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
            wire = self.answer(data, "tcp", 65535)
            if wire is None:
                return
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


class _UDPServer(socketserver.ThreadingUDPServer):
    daemon_threads = True
    allow_reuse_address = False
    """SO_REUSEADDR on UDP would let a second server bind the same port silently and split the queries."""

    def __init__(self, address: tuple[str, int], dns_server: DnsServer) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.dns_server = dns_server
        super().__init__(address, _UDPHandler)


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], dns_server: DnsServer) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.dns_server = dns_server
        super().__init__(address, _TCPHandler)


class DnsServer:
    """UDP + TCP on one address and port (port 0: a free port shared by both), answering from ``objects``."""

    def __init__(self, listen: str, port: int, objects: ObjectsFile, log: QueryLog) -> None:
        self.objects = objects
        self.log = log
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
    parser.add_argument("--ttl", type=_non_negative, default=DEFAULT_TTL, help="Answer TTL (default 5)")
    parser.add_argument(
        "--negative-ttl",
        type=_non_negative,
        default=None,
        help="SOA TTL and minimum, i.e. negative caching (default: follows --ttl, as CoreDNS; 0 disables)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        log_stream = args.query_log.open("a", encoding="utf-8")
    except OSError as err:
        print(f"natsnet-dns: --query-log {args.query_log}: {err.strerror}", file=sys.stderr)
        return 2
    with log_stream:
        objects = ObjectsFile(args.objects, args.zone, args.ttl, args.negative_ttl)
        try:
            server = DnsServer(args.listen, args.port, objects, QueryLog(log_stream))
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
