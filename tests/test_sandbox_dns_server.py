"""The DNS server wrapper on 127.0.0.1: UDP and TCP wire behaviour, reloads, query log, CLI and SIGTERM."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from test_sandbox_dns_objects import NATS_CLUSTER_IP, POD_IPS, cluster, endpoint

from pytest_natsnet.dnsprofile import FAST
from pytest_natsnet.sandbox.dns import (
    SO_RCVBUFFORCE,
    UDP_RECEIVE_BUFFER,
    DnsServer,
    ObjectsFile,
    QueryLog,
    resolve_query,
)
from pytest_natsnet.sandbox.dnszone import build_zone

SVC = "natsnet.svc.cluster.local."
REPO = Path(__file__).resolve().parent.parent


def write_objects(path: Path, objects: list[dict[str, Any]]) -> None:
    """Replaces the objects file atomically, as the controllers do."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"objects": objects}))
    os.replace(tmp, path)


def read_log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[DnsServer, Path, Path]]:
    objects, log_path = tmp_path / "objects.json", tmp_path / "queries.jsonl"
    write_objects(objects, cluster())
    with log_path.open("a") as stream:
        dns_server = DnsServer(
            "127.0.0.1", 0, ObjectsFile(objects, "cluster.local", 5, None), QueryLog(stream), FAST
        )
        dns_server.start()
        try:
            yield dns_server, objects, log_path
        finally:
            dns_server.stop()


def udp(port: int, qname: str, qtype: str = "A") -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(qname, qtype), "127.0.0.1", port=port, timeout=2)


def tcp(port: int, qname: str, qtype: str = "A") -> dns.message.Message:
    return dns.query.tcp(dns.message.make_query(qname, qtype), "127.0.0.1", port=port, timeout=2)


def texts(response: dns.message.Message) -> set[str]:
    return {rd.to_text() for rrset in response.answer for rd in rrset}


@pytest.mark.parametrize("query", [udp, tcp], ids=["udp", "tcp"])
@pytest.mark.parametrize(
    ("qname", "qtype", "rcode", "answers", "soa"),
    [
        (f"nats.{SVC}", "A", dns.rcode.NOERROR, {NATS_CLUSTER_IP}, False),
        (f"nats-headless.{SVC}", "A", dns.rcode.NOERROR, set(POD_IPS.values()), False),
        (f"nats-0.nats-headless.{SVC}", "AAAA", dns.rcode.NOERROR, set(), True),
        (f"nope.{SVC}", "A", dns.rcode.NXDOMAIN, set(), True),
        ("example.com.", "A", dns.rcode.NXDOMAIN, set(), True),
    ],
)
def test_wire_answers(
    server: tuple[DnsServer, Path, Path],
    query: Any,
    qname: str,
    qtype: str,
    rcode: int,
    answers: set[str],
    soa: bool,
) -> None:
    response = query(server[0].port, qname, qtype)
    assert (response.rcode(), texts(response), bool(response.authority)) == (rcode, answers, soa)


def test_flags_aa_in_zone_ra_outside(server: tuple[DnsServer, Path, Path]) -> None:
    inside, outside = udp(server[0].port, f"nats.{SVC}"), udp(server[0].port, "example.com.")
    assert (inside.flags & dns.flags.AA, inside.flags & dns.flags.RA) == (dns.flags.AA, 0)
    assert (outside.flags & dns.flags.AA, outside.flags & dns.flags.RA) == (0, dns.flags.RA)


def test_tcp_connection_carries_several_queries(server: tuple[DnsServer, Path, Path]) -> None:
    with socket.create_connection(("127.0.0.1", server[0].port), timeout=2) as conn:
        for qname in (f"nats.{SVC}", f"nats-1.nats-headless.{SVC}", f"nope.{SVC}"):
            wire = dns.message.make_query(qname, "A").to_wire()
            conn.sendall(struct.pack("!H", len(wire)) + wire)
            (length,) = struct.unpack("!H", conn.recv(2))
            data = b""
            while len(data) < length:
                data += conn.recv(length - len(data))
            response = dns.message.from_wire(data)
            assert response.question[0].name.to_text() == qname
    assert [e["qname"] for e in read_log(server[2]) if e["proto"] == "tcp"] == [
        f"nats.{SVC}",
        f"nats-1.nats-headless.{SVC}",
        f"nope.{SVC}",
    ]


def test_objects_file_update_changes_answers(server: tuple[DnsServer, Path, Path]) -> None:
    dns_server, objects, _ = server
    assert udp(dns_server.port, f"nats-2.nats-headless.{SVC}").rcode() == dns.rcode.NOERROR
    write_objects(objects, cluster([endpoint("nats-0"), endpoint("nats-1"), endpoint("nats-2", ready=False)]))
    deadline = time.monotonic() + 2
    while udp(dns_server.port, f"nats-2.nats-headless.{SVC}").rcode() != dns.rcode.NXDOMAIN:
        assert time.monotonic() < deadline, "the update was not picked up within 2 s"
        time.sleep(0.02)
    assert texts(udp(dns_server.port, f"nats-headless.{SVC}")) == {POD_IPS["nats-0"], POD_IPS["nats-1"]}


def test_broken_objects_file_keeps_previous_records(server: tuple[DnsServer, Path, Path]) -> None:
    dns_server, objects, _ = server
    udp(dns_server.port, f"nats.{SVC}")
    tmp = objects.with_suffix(".tmp")
    tmp.write_text("{not json")
    os.replace(tmp, objects)
    time.sleep(0.06)
    assert texts(udp(dns_server.port, f"nats.{SVC}")) == {NATS_CLUSTER_IP}


def test_objects_file_created_after_start_is_picked_up(tmp_path: Path) -> None:
    objects = ObjectsFile(tmp_path / "later.json", "cluster.local", 5, None)
    assert objects.zone().answer(f"nats.{SVC}", "A").rcode == dns.rcode.NXDOMAIN
    write_objects(tmp_path / "later.json", cluster())
    time.sleep(0.06)
    assert objects.zone().answer(f"nats.{SVC}", "A").answer_texts() == [NATS_CLUSTER_IP]
    assert objects.reloads == 1


def test_port_in_use_is_an_error_not_a_shared_socket(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with (tmp_path / "q.log").open("a") as stream, pytest.raises(OSError):
            DnsServer(
                "127.0.0.1",
                port,
                ObjectsFile(tmp_path / "o.json", "cluster.local", 5, None),
                QueryLog(stream),
            )


def test_query_log_lines(server: tuple[DnsServer, Path, Path]) -> None:
    udp(server[0].port, f"NATS.{SVC}")
    tcp(server[0].port, f"nope.{SVC}", "AAAA")
    first, second = read_log(server[2])
    assert set(first) == {
        "ts", "client", "qname", "qtype", "proto", "rcode", "answers", "replica", "source", "truncated"
    }
    assert (first["replica"], first["source"], first["truncated"]) == (0, "kubernetes", False)
    assert (
        first["client"],
        first["qname"],
        first["qtype"],
        first["proto"],
        first["rcode"],
        first["answers"],
    ) == (
        "127.0.0.1",
        f"nats.{SVC}",
        "A",
        "udp",
        "NOERROR",
        [NATS_CLUSTER_IP],
    )
    assert (second["qtype"], second["proto"], second["rcode"], second["answers"]) == (
        "AAAA",
        "tcp",
        "NXDOMAIN",
        [],
    )
    assert abs(first["ts"] - time.time()) < 10


def test_udp_truncates_and_tcp_carries_big_answers(tmp_path: Path) -> None:
    many = [{**endpoint("nats-0"), "addresses": [f"198.18.1.{i}"], "hostname": f"h{i}"} for i in range(60)]
    zone = build_zone(cluster(many))
    query = dns.message.make_query(f"_cluster._tcp.nats-headless.{SVC}", "SRV").to_wire()
    small, big = resolve_query(query, zone), resolve_query(query, zone, "tcp")
    assert small is not None and big is not None and small.wire is not None and big.wire is not None
    truncated, full = dns.message.from_wire(small.wire), dns.message.from_wire(big.wire)
    assert bool(truncated.flags & dns.flags.TC) is True and small.truncated
    assert 0 < len(truncated.answer[0]) < 60 and truncated.additional == []
    assert len(small.wire) <= 512
    assert (bool(full.flags & dns.flags.TC), len(full.answer[0]), len(full.additional)) == (False, 60, 60)


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        pytest.param(b"\x12\x34" + b"\x00" * 10 + b"\xff", "FORMERR", id="garbage-after-header"),
        pytest.param(b"\x12", None, id="shorter-than-header"),
    ],
)
def test_malformed_queries(wire: bytes, expected: str | None) -> None:
    reply = resolve_query(wire, build_zone([]))
    assert (reply.rcode if reply else None) == expected
    if reply is not None:
        assert dns.message.from_wire(reply.wire).id == 0x1234


def test_notify_opcode_is_not_implemented() -> None:
    query = dns.message.make_query(f"nats.{SVC}", "A")
    query.set_opcode(dns.opcode.NOTIFY)
    reply = resolve_query(query.to_wire(), build_zone([]))
    assert reply is not None and reply.rcode == "NOTIMP"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "pytest_natsnet.sandbox.dns", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=20, cwd=REPO)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        pytest.param(["--listen", "nope"], "--listen: invalid IP address value: 'nope'", id="bad-listen"),
        pytest.param(
            ["--listen", "127.0.0.1", "--ttl", "-1"], "--ttl: invalid non-negative integer", id="ttl"
        ),
        pytest.param(
            ["--listen", "198.18.250.250", "--port", "0"], "--listen 198.18.250.250", id="not-local"
        ),
    ],
)
def test_cli_usage_errors_are_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    result = run_cli(*args, "--objects", str(tmp_path / "o.json"), "--query-log", str(tmp_path / "q.log"))
    assert result.returncode == 2
    assert needle in result.stderr and "Traceback" not in result.stderr


def test_cli_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    objects, log_path = tmp_path / "objects.json", tmp_path / "q.log"
    write_objects(objects, cluster())
    argv = [sys.executable, "-m", "pytest_natsnet.sandbox.dns", "--listen", "127.0.0.1", "--port", "0"]
    argv += ["--objects", str(objects), "--query-log", str(log_path), "--ttl", "7"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        assert ready, "no ready line within 10 s"
        line = proc.stdout.readline()
        assert line.startswith("natsnet-dns listening on 127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        response = udp(port, f"nats.{SVC}")
        assert (texts(response), response.answer[0].ttl) == ({NATS_CLUSTER_IP}, 7)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert len(read_log(log_path)) == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="a receive buffer above net.core.rmem_max needs root")
def test_a_burst_of_queries_is_queued_not_dropped(server: tuple[DnsServer, Path, Path]) -> None:
    """Thousands of queries sent at once (the full matrix's deadlocked cells retrying routes) all get an answer:
    the kernel queues them for the server instead of dropping what exceeds a default-sized buffer."""
    dns_server, _, _ = server
    burst = 4000
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, UDP_RECEIVE_BUFFER)  # the answers queue too
        for query_id in range(burst):
            query = dns.message.make_query(f"q{query_id}.nats.natsnet.svc.cluster.local.", "A")
            query.id = query_id % 65536
            client.sendto(query.to_wire(), ("127.0.0.1", dns_server.port))
        answered = 0
        deadline = time.monotonic() + 30
        while answered < burst and time.monotonic() < deadline:
            if select.select([client], [], [], 1.0)[0]:
                client.recv(4096)
                answered += 1
    assert answered == burst, f"{burst - answered} of {burst} queries sent at once got no answer"
