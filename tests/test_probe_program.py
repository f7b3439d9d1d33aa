"""The probe program run for real on 127.0.0.1: a tiny DNS server, loopback nats-servers, sockets."""

from __future__ import annotations

import io
import json
import os
import queue
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from pytest_natsnet.probe import program

PROGRAM = Path(__file__).resolve().parents[1] / "pytest_natsnet" / "probe" / "program.py"
NATS_SERVER = Path(sys.executable).parent / "nats-server"


def run_program(payload: str, *args: str, env: Mapping[str, str] | None = None,
                timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(PROGRAM), *args], input=payload, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})}, check=False)


def run_batch(batch: Mapping[str, Any], env: Mapping[str, str] | None = None) -> dict[str, Any]:
    done = run_program(json.dumps(batch), env=env)
    assert "Traceback" not in done.stderr, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, timeout: float = 15.0) -> None:
    """Until something accepts TCP connections on 127.0.0.1:``port`` (a server just started), bounded."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


Zone = Mapping[str, Mapping[str, list[str]]]
"""qname (absolute, lowercase) -> rdtype -> rdata texts."""


def dns_answer(wire: bytes, zone: Zone) -> bytes:
    query = dns.message.from_wire(wire)
    response = dns.message.make_response(query)
    question = query.question[0]
    qname = question.name.to_text().lower()
    rdtype = dns.rdatatype.to_text(question.rdtype)
    if qname not in zone:
        response.set_rcode(dns.rcode.NXDOMAIN)
    elif zone[qname].get(rdtype):
        response.answer.append(dns.rrset.from_text_list(qname, 5, "IN", rdtype, zone[qname][rdtype]))
    return bytes(response.to_wire())


@dataclass
class DnsServer:
    port: int
    queries: list[tuple[str, str]]


@contextmanager
def dns_server(zone: Zone) -> Iterator[DnsServer]:
    """A UDP+TCP authoritative server for ``zone`` on 127.0.0.1 (one port for both)."""
    queries: list[tuple[str, str]] = []

    class Udp(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            data, sock = self.request
            queries.append(("udp", dns.message.from_wire(data).question[0].name.to_text()))
            sock.sendto(dns_answer(data, zone), self.client_address)

    class Tcp(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            length = int.from_bytes(self.request.recv(2), "big")
            data = b""
            while len(data) < length:
                data += self.request.recv(length - len(data))
            queries.append(("tcp", dns.message.from_wire(data).question[0].name.to_text()))
            reply = dns_answer(data, zone)
            self.request.sendall(len(reply).to_bytes(2, "big") + reply)

    tcp = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Tcp)
    port = tcp.server_address[1]
    udp = socketserver.ThreadingUDPServer(("127.0.0.1", port), Udp)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (tcp, udp)]
    for thread in threads:
        thread.start()
    try:
        yield DnsServer(port, queries)
    finally:
        for server in (tcp, udp):
            server.shutdown()
            server.server_close()


@dataclass
class NatsNode:
    name: str
    client_port: int
    cluster_port: int
    http_port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"


def varz(node: NatsNode) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{node.http_port}/varz", timeout=2) as response:
        data: dict[str, Any] = json.loads(response.read())
        return data


@contextmanager
def nats_cluster(directory: Path, size: int = 2, no_advertise: bool = False) -> Iterator[list[NatsNode]]:
    """``size`` nats-servers on loopback forming a full mesh, each telling clients every server's URL; killed on
    exit."""
    ports = [(free_port(), free_port(), free_port()) for _ in range(size)]
    routes = ", ".join(f'"nats://127.0.0.1:{cluster}"' for _, cluster, _ in ports)
    nodes: list[NatsNode] = []
    try:
        for index, (client, cluster, http) in enumerate(ports):
            name = f"probe-n{index}"
            conf = directory / f"{name}.conf"
            conf.write_text(
                f'server_name: "{name}"\nlisten: "127.0.0.1:{client}"\nhttp: "127.0.0.1:{http}"\n'
                f'cluster {{ name: "probe", listen: "127.0.0.1:{cluster}", '
                f"no_advertise: {str(no_advertise).lower()}, routes: [{routes}] }}\n"
            )
            process = subprocess.Popen([str(NATS_SERVER), "-c", str(conf)], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
            nodes.append(NatsNode(name, client, cluster, http, process))
        deadline = time.monotonic() + 15
        while True:
            try:
                states = [varz(n) for n in nodes]
                # routed, and (unless no_advertise) each server's client URLs gossiped: what clients are told
                if all(v.get("routes", 0) > 0 and (no_advertise or len(v.get("connect_urls") or []) == size)
                       for v in states):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("loopback nats cluster did not form within 15 s")
            time.sleep(0.1)
        yield nodes
    finally:
        for node in nodes:
            node.process.kill()
            node.process.wait(timeout=10)


# ------------------------------------------------------------------------------------ batch validation

MALFORMED = [
    ("not json", "{nope", "not valid JSON"),
    ("not an object", "[1, 2]", "must be a JSON object"),
    ("requests missing", "{}", "'requests' must be a list"),
    ("bad concurrency", '{"requests": [], "concurrency": 0}', "'concurrency' must be a positive integer"),
    ("unknown kind", '{"requests": [{"key": "a", "kind": "ping"}]}', "unknown kind 'ping'"),
    ("missing field", '{"requests": [{"key": "a", "kind": "tcp", "host": "x"}]}', "tcp request needs port"),
    ("no key", '{"requests": [{"kind": "tcp", "host": "x", "port": 1}]}', "non-empty string 'key'"),
    ("duplicate key", '{"requests": [{"key": "a", "kind": "http", "url": "http://x"},'
                      ' {"key": "a", "kind": "http", "url": "http://y"}]}', "duplicate key 'a'"),
]


@pytest.mark.parametrize(("payload", "message"), [(p, m) for _, p, m in MALFORMED],
                         ids=[i for i, _, _ in MALFORMED])
def test_malformed_batch_gets_top_level_error_without_traceback(payload: str, message: str) -> None:
    done = run_program(payload)
    answer = json.loads(done.stdout)
    assert done.returncode == 2
    assert message in answer["error"]
    assert answer["results"] == []
    assert "Traceback" not in done.stdout + done.stderr


def test_empty_batch_answers_with_context() -> None:
    answer = run_batch({"requests": []})
    assert answer["results"] == []
    assert answer["hostname"] == socket.gethostname()
    assert "resolv_conf" in answer and answer["elapsed_ms"] >= 0


# ---------------------------------------------------------------------------------------------- tcp / http


def test_tcp_outcomes_allowed_refused_blocked_unresolved() -> None:
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen(8)
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    fillers = []
    try:
        for _ in range(4):  # fill the accept queue: further SYNs are dropped, so the connect times out
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(full.getsockname())
            fillers.append(filler)
        time.sleep(0.1)
        closed = free_port()
        answer = run_batch({"requests": [
            {"key": "open", "kind": "tcp", "host": "127.0.0.1", "port": listening.getsockname()[1]},
            {"key": "closed", "kind": "tcp", "host": "127.0.0.1", "port": closed, "timeout": 1},
            {"key": "full", "kind": "tcp", "host": "127.0.0.1", "port": full.getsockname()[1],
             "timeout": 0.5},
            {"key": "noname", "kind": "tcp", "host": "no-such-host.invalid", "port": 80, "timeout": 1},
            {"key": "badport", "kind": "tcp", "host": "127.0.0.1", "port": "eighty"},
        ]})
    finally:
        for sock in (listening, full, *fillers):
            sock.close()
    outcomes = {r["key"]: r["outcome"] for r in answer["results"]}
    assert outcomes == {"open": "allowed", "closed": "refused", "full": "blocked", "noname": "unresolved",
                        "badport": "probe-error"}
    bad = answer["results"][4]
    assert "ValueError" in bad["detail"]["error"]
    assert all({"key", "kind", "outcome", "detail", "elapsed_ms"} <= set(r) for r in answer["results"])


def test_getaddrinfo_ok_and_gaierror() -> None:
    answer = run_batch({"requests": [
        {"key": "ip", "kind": "getaddrinfo", "name": "127.0.0.1", "port": 4222},
        {"key": "bad", "kind": "getaddrinfo", "name": "no-such-host.invalid", "port": 4222, "timeout": 3},
    ]})
    ok, bad = answer["results"]
    assert (ok["outcome"], ok["detail"]["addresses"]) == ("ok", ["127.0.0.1"])
    assert bad["outcome"] == "gaierror"
    assert bad["detail"]["errno"].startswith("EAI_")


# ---------------------------------------------------------------------------------------------- dns


@pytest.fixture
def zone_server() -> Iterator[DnsServer]:
    zone: dict[str, dict[str, list[str]]] = {
        "nats.ns1.svc.cluster.local.": {"A": ["198.18.128.20"]},
        "nats-0.nats-headless.ns1.svc.cluster.local.": {"A": ["198.18.0.10"]},
        "nats-headless.ns1.svc.cluster.local.": {"A": ["198.18.0.11", "198.18.0.10"]},
        "_cluster._tcp.nats-headless.ns1.svc.cluster.local.": {"SRV": [
            "0 50 6222 nats-1.nats-headless.ns1.svc.cluster.local.",
            "0 50 6222 NATS-0.nats-headless.ns1.svc.cluster.local."]},
        "dns-version.cluster.local.": {"TXT": ['"1.1.0"']},
        "10.0.18.198.in-addr.arpa.": {"PTR": ["nats-0.nats-headless.ns1.svc.cluster.local."]},
    }
    with dns_server(zone) as server:
        yield server


def resolv_env(tmp_path: Path, server: DnsServer, search: str = "ns1.svc.cluster.local svc.cluster.local",
               nameserver: str = "127.0.0.1") -> dict[str, str]:
    conf = tmp_path / "resolv.conf"
    conf.write_text(f"nameserver {nameserver}\nsearch {search} cluster.local\noptions ndots:5\n")
    return {program.RESOLV_CONF_ENV: str(conf), program.DNS_PORT_ENV: str(server.port)}


def dns_request(key: str, name: str, rdtype: str = "A", transport: str = "udp", search: bool = False,
                timeout: float = 2.0) -> dict[str, Any]:
    return {"key": key, "kind": "dns", "name": name, "rdtype": rdtype, "transport": transport,
            "search": search, "timeout": timeout}


def test_dns_rcodes_answers_and_search_path(tmp_path: Path, zone_server: DnsServer) -> None:
    answer = run_batch({"requests": [
        dns_request("fqdn", "nats.ns1.svc.cluster.local."),
        dns_request("fqdn-tcp", "nats-headless.ns1.svc.cluster.local.", transport="tcp"),
        dns_request("missing", "nats-9.nats-headless.ns1.svc.cluster.local."),
        dns_request("short", "nats-0.nats-headless", search=True),
        dns_request("short-no-search", "nats-0.nats-headless"),
        dns_request("srv", "_cluster._tcp.nats-headless.ns1.svc.cluster.local.", rdtype="SRV"),
        dns_request("txt", "dns-version.cluster.local.", rdtype="TXT", transport="tcp"),
        dns_request("ptr", "198.18.0.10", rdtype="PTR"),
        dns_request("nodata", "nats.ns1.svc.cluster.local.", rdtype="AAAA"),
        dns_request("badtype", "nats", rdtype="MX"),
    ]}, env=resolv_env(tmp_path, zone_server))
    results = {r["key"]: r for r in answer["results"]}
    summary = {k: (r["outcome"], r["detail"].get("answers")) for k, r in results.items() if k != "badtype"}
    assert summary == {
        "fqdn": ("NOERROR", ["198.18.128.20"]),
        "fqdn-tcp": ("NOERROR", ["198.18.0.10", "198.18.0.11"]),
        "missing": ("NXDOMAIN", []),
        "short": ("NOERROR", ["198.18.0.10"]),
        "short-no-search": ("NXDOMAIN", []),
        "srv": ("NOERROR", ["6222 nats-0.nats-headless.ns1.svc.cluster.local.",
                            "6222 nats-1.nats-headless.ns1.svc.cluster.local."]),
        "txt": ("NOERROR", ["1.1.0"]),
        "ptr": ("NOERROR", ["nats-0.nats-headless.ns1.svc.cluster.local."]),
        "nodata": ("NOERROR", []),
    }
    assert results["short"]["detail"]["qname"] == "nats-0.nats-headless.ns1.svc.cluster.local."
    assert results["short-no-search"]["detail"]["qname"] == "nats-0.nats-headless."
    assert results["badtype"]["outcome"] == "probe-error"
    assert "MX" in results["badtype"]["detail"]["error"]
    assert ("tcp", "dns-version.cluster.local.") in zone_server.queries
    assert "ndots:5" in answer["resolv_conf"]


def test_dns_short_name_from_other_namespace_is_nxdomain_after_every_suffix(
        tmp_path: Path, zone_server: DnsServer) -> None:
    env = resolv_env(tmp_path, zone_server, search="ns2.svc.cluster.local svc.cluster.local")
    answer = run_batch({"requests": [dns_request("short", "nats-0.nats-headless", search=True)]}, env=env)
    result = answer["results"][0]
    assert result["outcome"] == "NXDOMAIN"
    assert [t["qname"] for t in result["detail"]["names_tried"]] == [
        "nats-0.nats-headless.ns2.svc.cluster.local.", "nats-0.nats-headless.svc.cluster.local.",
        "nats-0.nats-headless.cluster.local.", "nats-0.nats-headless."]


def test_dns_silent_nameserver_is_timeout_not_nxdomain(tmp_path: Path) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        env = resolv_env(tmp_path, DnsServer(silent.getsockname()[1], []))
        request = dns_request("q", "nats.ns1.svc.cluster.local.", timeout=0.5)
        answer = run_batch({"requests": [request]}, env=env)
    finally:
        silent.close()
    assert answer["results"][0]["outcome"] == "timeout"


@pytest.mark.parametrize(("name", "search", "ndots", "expected"), [
    ("a.b.", ["s.x"], 5, ["a.b."]),
    ("a.b", ["s.x"], 5, ["a.b.s.x.", "a.b."]),
    ("a.b", ["s.x"], 1, ["a.b.", "a.b.s.x."]),
    ("a.b", ["s.x"], 1, ["a.b.", "a.b.s.x."]),
    ("a", [], 5, ["a."]),
])
def test_qnames_to_try_follows_ndots(name: str, search: list[str], ndots: int, expected: list[str]) -> None:
    assert program.qnames_to_try(name, search, ndots, use_search=True) == expected


def test_qnames_to_try_without_search_is_absolute_only() -> None:
    assert program.qnames_to_try("nats", ["ns.svc.cluster.local"], 5, use_search=False) == ["nats."]


RESOLV_CONFS = {
    "kubernetes": "search ns.svc.cluster.local svc.cluster.local cluster.local\nnameserver 198.18.128.10\n"
                  "options ndots:5\n",
    "comments and the last search wins": "# a comment\n; another\nsearch a.example\nnameserver 10.0.0.1\n"
                                         "nameserver 10.0.0.2\nsearch b.example. c.example\noptions edns0 ndots:2\n",
    "domain clears the search list": "search a.example\ndomain b.example\nnameserver 10.0.0.1\n",
    "no ndots, a lone keyword": "nameserver 10.0.0.1\nsearch\noptions ndots:x timeout:2\n",
}


@pytest.mark.parametrize("text", RESOLV_CONFS.values(), ids=RESOLV_CONFS.keys())
def test_resolv_conf_is_read_as_dnspython_reads_it(tmp_path: Path, text: str) -> None:
    import dns.resolver

    path = tmp_path / "resolv.conf"
    path.write_text(text)
    resolver = dns.resolver.Resolver(configure=False)
    resolver.read_resolv_conf(str(path))
    expected = ([str(ns) for ns in resolver.nameservers], [n.to_text() for n in resolver.search], resolver.ndots)
    assert program.read_resolv_conf(str(path)) == expected


def test_a_resolv_conf_without_nameserver_or_unreadable_is_a_check_error(tmp_path: Path) -> None:
    path = tmp_path / "resolv.conf"
    path.write_text("search a.example\n")
    with pytest.raises(program.CheckError, match="names no nameserver"):
        program.read_resolv_conf(str(path))
    with pytest.raises(program.CheckError, match="cannot read"):
        program.read_resolv_conf(str(tmp_path / "missing"))


def test_dnspython_is_imported_without_looking_up_installed_packages() -> None:
    """In a fresh interpreter (a probe pod's), dnspython's optional features are off without importing
    ``importlib.metadata``; names still parse; a process that has dnspython keeps its own."""
    script = ("import sys\n"
              "from pytest_natsnet.probe import program\n"
              "program.without_optional_dnspython_features()\n"
              "import dns.message, dns.name, dns.query, dns._features\n"
              "print(dns.name.from_text('nats.ns.svc.cluster.local').to_text(), dns._features.have('idna'),\n"
              "      'importlib.metadata' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=60,
                          check=True, cwd=Path(program.__file__).resolve().parents[2])
    assert done.stdout.split() == ["nats.ns.svc.cluster.local.", "False", "False"]
    program.without_optional_dnspython_features()  # this process imported dnspython: nothing changes
    assert hasattr(sys.modules["dns._features"], "_requirements")


# ---------------------------------------------------------------------------------------------- nats + http


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[NatsNode]]:
    with nats_cluster(tmp_path_factory.mktemp("probe-nats")) as nodes:
        yield nodes


def test_nats_connect_reports_info_discovery_and_roundtrip(cluster: list[NatsNode]) -> None:
    first, second = cluster
    answer = run_batch({"requests": [
        {"key": "ok", "kind": "nats", "servers": [first.url], "connect_timeout": 2, "roundtrip": True,
         "wait_discovered": 0, "dont_randomize": True, "tls": None},
        {"key": "down", "kind": "nats", "servers": [f"nats://127.0.0.1:{free_port()}"], "connect_timeout": 1},
        {"key": "tls-to-plain", "kind": "nats", "servers": [first.url], "connect_timeout": 1,
         "tls": {"ca_pem": "not a pem"}},
    ]})
    ok, down, tls = answer["results"]
    assert ok["outcome"] == "ok", ok
    info = ok["detail"]["server_info"]
    assert info["server_name"] == first.name
    assert sorted(info["connect_urls"]) == sorted(f"127.0.0.1:{n.client_port}" for n in cluster)
    assert ok["detail"]["connected_url"] == first.url
    assert ok["detail"]["discovered_servers"] == [f"nats://127.0.0.1:{second.client_port}"]
    assert ok["detail"]["roundtrip"]["ok"] is True
    assert {s["url"] for s in ok["detail"]["servers"]} >= {first.url}
    assert down["outcome"] == "failed"
    assert "ConnectionRefusedError" in down["detail"]["last_attempt_error"]
    assert tls["outcome"] == "probe-error"


def test_a_certificate_that_does_not_cover_the_name_fails_at_once_with_the_mismatch(tmp_path: Path) -> None:
    """TLS on loopback, a certificate for ``localhost``: dialled as ``localhost`` (or as the IP with that
    ``tls_hostname``) it connects; dialled as 127.0.0.1 it fails naming the IP mismatch, within the one attempt
    (nats-py's retry of such a server hung until the request's bound: 8 s per dial)."""
    from pytest_natsnet.tlsgen import issue, new_ca

    ca = new_ca()
    leaf = issue(ca, "nats", ["localhost"])
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    (tmp_path / "tls.crt").write_bytes(leaf.cert_pem)
    (tmp_path / "tls.key").write_bytes(leaf.key_pem)
    port = free_port()
    (tmp_path / "nats.conf").write_text(f'listen: "127.0.0.1:{port}"\ntls {{ cert_file: "{tmp_path}/tls.crt"\n'
                                        f'  key_file: "{tmp_path}/tls.key"\n  ca_file: "{tmp_path}/ca.pem" }}\n')
    server = subprocess.Popen([str(NATS_SERVER), "-c", str(tmp_path / "nats.conf")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    tls = {"ca_pem": ca.cert_pem.decode()}
    try:
        wait_listening(port)
        started = time.monotonic()
        answer = run_batch({"requests": [
            {"key": "by-ip", "kind": "nats", "servers": [f"tls://127.0.0.1:{port}"], "tls": tls},
            {"key": "by-name", "kind": "nats", "servers": [f"tls://localhost:{port}"], "tls": tls},
            {"key": "ip-as-name", "kind": "nats", "servers": [f"tls://127.0.0.1:{port}"],
             "tls": {**tls, "hostname": "localhost"}},
        ]})
        took = time.monotonic() - started
    finally:
        server.kill()
        server.wait(timeout=10)
    by_ip, by_name, ip_as_name = answer["results"]
    assert by_ip["outcome"] == "failed" and "IP address mismatch" in by_ip["detail"]["last_attempt_error"], by_ip
    assert by_ip["detail"]["error_class"] == "SSLCertVerificationError"
    assert by_name["outcome"] == "ok" and ip_as_name["outcome"] == "ok", answer
    assert took < 6.0, f"the batch took {took:.1f} s: the failed dial waited for its bound"


def test_jetstream_creates_publishes_with_acks_and_reports_the_stream(tmp_path: Path) -> None:
    """A JetStream server on loopback: create (twice: an existing stream is fine), acknowledged publishes, the
    stream's state; a stream that does not exist is a failure naming the server's error."""
    port = free_port()
    server = subprocess.Popen([str(NATS_SERVER), "-js", "-sd", str(tmp_path / "js"), "-a", "127.0.0.1",
                               "-p", str(port), "-n", "js-1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"nats://127.0.0.1:{port}"
    try:
        wait_listening(port)
        request = {"kind": "jetstream", "servers": [url], "stream": "ORDERS", "replicas": 1, "create": True}
        answer = run_batch({"requests": [{**request, "key": "first", "publish": 3}]})
        second = run_batch({"requests": [
            {**request, "key": "again", "publish": 2},
            {"key": "missing", "kind": "jetstream", "servers": [url], "stream": "NOPE"},
        ]})
    finally:
        server.kill()
        server.wait(timeout=10)
    first = answer["results"][0]
    assert first["outcome"] == "ok", first
    assert first["detail"]["acked"] == [1, 2, 3] and first["detail"]["state"]["messages"] == 3
    assert first["detail"]["server"] == "js-1" and first["detail"]["replicas"] == 1
    again, missing = second["results"]
    assert again["outcome"] == "ok" and again["detail"]["acked"] == [4, 5], again
    assert again["detail"]["state"]["messages"] == 5
    assert missing["outcome"] == "failed" and "stream not found" in missing["detail"]["error"], missing


def test_http_monitoring_endpoint_ok_with_json(cluster: list[NatsNode]) -> None:
    node = cluster[0]
    answer = run_batch({"requests": [
        {"key": "varz", "kind": "http", "url": f"http://127.0.0.1:{node.http_port}/varz"},
        {"key": "missing", "kind": "http", "url": f"http://127.0.0.1:{node.http_port}/nope"},
        {"key": "closed", "kind": "http", "url": f"http://127.0.0.1:{free_port()}/varz"},
        {"key": "scheme", "kind": "http", "url": "ftp://127.0.0.1/varz"},
    ]})
    varz_result, missing, closed, scheme = answer["results"]
    assert varz_result["outcome"] == "ok"
    assert varz_result["detail"]["status"] == 200
    assert varz_result["detail"]["json"]["server_name"] == node.name
    assert (missing["outcome"], missing["detail"]["status"]) == ("ok", 404)
    assert closed["outcome"] == "refused"
    assert scheme["outcome"] == "probe-error"


# ---------------------------------------------------------------------------------------------- watch


def read_events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class Lines:
    """A process's output lines gathered by a thread: ``seen`` so far and a queue of new ones."""

    def __init__(self, stream: Any) -> None:
        self.seen: list[str] = []
        self.new: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            self.new.put(line)
        self.new.put(None)


def queue_lines(stream: Any) -> Lines:
    return Lines(stream)


def wait_for_event(
    lines: Lines, wanted: Callable[[dict[str, Any]], bool], timeout: float = 10.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.new.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        lines.seen.append(line)
        if wanted(event := json.loads(line)):
            return dict(event)
    pytest.fail(f"no matching watch event within {timeout} s; got:\n{''.join(lines.seen)}", pytrace=False)


def drain(lines: Lines) -> list[str]:
    while (line := lines.new.get(timeout=10)) is not None:
        lines.seen.append(line)
    return lines.seen


@contextmanager
def started_watch(request: dict[str, Any]) -> Iterator[tuple[subprocess.Popen[str], Lines]]:
    """The probe program's ``watch`` with ``request`` on its stdin and its events queued; killed on exit."""
    watcher = subprocess.Popen([sys.executable, str(PROGRAM), "watch"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert watcher.stdin is not None and watcher.stdout is not None
        watcher.stdin.write(json.dumps(request) + "\n")
        watcher.stdin.flush()
        yield watcher, queue_lines(watcher.stdout)
    finally:
        if watcher.poll() is None:
            watcher.kill()
        watcher.wait()


def learned(event: dict[str, Any], node: NatsNode) -> bool:
    """The watch event says the client knows ``node``'s client URL (connect_urls of an INFO, or discovered)."""
    known = [*(event.get("connect_urls") or []), *(event.get("servers") or [])]
    return event["event"] in ("connected", "discovered") and any(
        str(url).removeprefix("nats://") == f"127.0.0.1:{node.client_port}" for url in known)


def test_watch_reconnects_to_learned_url_after_server_dies(tmp_path: Path) -> None:
    with nats_cluster(tmp_path) as (first, second):
        request = {"servers": [first.url], "subject": "natsnet.watch", "duration": 15.0,
                   "publish_interval": 0.05, "dont_randomize": True, "tls": None, "reconnect_time_wait": 0.2}
        with started_watch(request) as (watcher, lines):
            assert watcher.stdin is not None
            # The precondition: the client learned the second server (in the first INFO's connect_urls, or
            # gossiped later when the route's INFO reached the first server), not a number of messages.
            wait_for_event(lines, lambda e: learned(e, second))
            wait_for_event(lines, lambda e: e["event"] == "message" and e["seq"] >= 5)
            first.process.kill()
            back = wait_for_event(lines, lambda e: e["event"] == "reconnected")
            wait_for_event(lines, lambda e: e["event"] == "message" and e["seq"] >= back["next_seq"])
            watcher.stdin.close()  # EOF stops the watcher
            watcher.wait(timeout=10)
            err = watcher.stderr.read() if watcher.stderr else ""
    out = "".join(drain(lines))
    events = read_events(out)
    names = [e["event"] for e in events]
    assert "Traceback" not in err
    assert names[0] == "connected" and events[0]["server_name"] == first.name
    assert names[-1] == "summary"
    assert names.index("disconnected") < names.index("reconnected")
    reconnected = events[names.index("reconnected")]
    assert (reconnected["url"], reconnected["server_name"]) == (second.url, second.name)
    after = [e for e in events if e["event"] == "message" and e["seq"] >= reconnected["next_seq"]]
    assert after, "no message published after the reconnect was received"
    summary = events[-1]
    assert summary["reconnects"] == 1 and summary["last_url"] == second.url
    assert summary["received"] > 0 and summary["sent"] >= summary["received"] - 1
    assert all({"mono", "ts"} <= set(e) for e in events)


def test_watch_errors_say_which_urls_failed_since_they_worked(tmp_path: Path) -> None:
    with nats_cluster(tmp_path) as (first, second):
        request = {"servers": [first.url], "duration": 15.0, "dont_randomize": True, "tls": None,
                   "reconnect_time_wait": 0.1, "connect_timeout": 0.5}
        with started_watch(request) as (_, lines):
            wait_for_event(lines, lambda e: e["event"] == "connected" and len(e["connect_urls"]) == 2)
            first.process.kill()
            second.process.kill()
            gave_up = wait_for_event(lines, lambda e: e["event"] == "error" and bool(e.get("pool")) and all(
                p["failed_attempts"] >= 1 for p in e["pool"]))
    assert {p["url"]: p["discovered"] for p in gave_up["pool"]} == {first.url: False, second.url: True}


def test_watch_stops_on_stdin_eof_and_sigterm(cluster: list[NatsNode]) -> None:
    request = json.dumps({"servers": [cluster[0].url], "duration": 30, "publish_interval": 0.1})
    started = time.monotonic()
    done = run_program(request + "\n", "watch", timeout=15)  # stdin is a pipe closed after the request
    assert time.monotonic() - started < 10
    assert read_events(done.stdout)[-1]["event"] == "summary"
    watcher = subprocess.Popen([sys.executable, str(PROGRAM), "watch"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    try:
        assert watcher.stdin is not None and watcher.stdout is not None
        watcher.stdin.write(request + "\n")
        watcher.stdin.flush()
        first = json.loads(watcher.stdout.readline())
        watcher.terminate()
        out, _ = watcher.communicate(timeout=10)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    assert first["event"] == "connected"
    assert read_events(out)[-1]["event"] == "summary"


def test_watch_bad_request_is_an_event_not_a_traceback() -> None:
    done = run_program('{"servers": []}', "watch")
    events = read_events(done.stdout)
    assert done.returncode == 2
    assert events[0]["event"] == "error" and "servers" in events[0]["text"]
    assert "Traceback" not in done.stderr


def test_serve_runs_watches_beside_its_batches(cluster: list[NatsNode]) -> None:
    """A probe session's watch runs while batches are answered; its event lines begin with its id; ``unwatch``
    ends it with its summary; a bad watch request is that watch's error and summary, not the session's end;
    stdin EOF ends the program."""
    server = subprocess.Popen([sys.executable, str(PROGRAM), "serve"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdin is not None and server.stdout is not None
        stdin = server.stdin
        lines = queue_lines(server.stdout)

        def send(message: dict[str, Any]) -> None:
            stdin.write(json.dumps(message) + "\n")
            stdin.flush()

        send({"watch": "a", "request": {"servers": [cluster[0].url], "duration": 30, "publish_interval": 0.05}})
        send({"watch": "b", "request": {"servers": []}})
        wait_for_event(lines, lambda e: e.get("watch") == "a" and e["event"] == "message")
        send({"requests": [{"key": "t", "kind": "tcp", "host": "127.0.0.1", "port": cluster[0].client_port,
                            "timeout": 2.0}]})
        answer = wait_for_event(lines, lambda e: "results" in e)
        sent_before_unwatch = len(lines.seen)
        send({"unwatch": "a"})
        summary = wait_for_event(lines, lambda e: e.get("watch") == "a" and e["event"] == "summary")
        stdin.close()
        assert server.wait(timeout=15) == 0
        stderr = server.stderr.read() if server.stderr else ""
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert "Traceback" not in stderr
    assert [r["outcome"] for r in answer["results"]] == ["allowed"]
    events = [json.loads(line) for line in drain(lines)]
    watch_lines = [line for line in lines.seen if '"event"' in line]
    assert all(line.startswith(('{"watch": "a"', '{"watch": "b"')) for line in watch_lines)
    assert [e["event"] for e in events if e.get("watch") == "b"] == ["error", "summary"]
    assert "servers" in next(e["text"] for e in events if e.get("watch") == "b")
    assert summary["connected"] is True and summary["received"] > 0
    assert sent_before_unwatch < len(lines.seen), "the summary came after the unwatch"
    assert [e["event"] for e in events if e.get("watch") == "a"][-1] == "summary"


# ------------------------------------------------------------------------------------ TC: retry over TCP


@pytest.fixture
def big_zone_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """The sandbox's own DNS server (fast profile) with a headless Service of 60 ready endpoints."""
    from test_sandbox_dns_objects import cluster, endpoint

    from pytest_natsnet.dnsprofile import FAST
    from pytest_natsnet.sandbox.dns import DnsServer as SandboxDns
    from pytest_natsnet.sandbox.dns import ObjectsFile, QueryLog

    many = [{**endpoint("nats-0"), "addresses": [f"198.18.1.{i}"], "hostname": f"h{i}"} for i in range(60)]
    objects, log = tmp_path / "objects.json", tmp_path / "queries.jsonl"
    objects.write_text(json.dumps({"objects": cluster(many)}))
    with log.open("a") as stream:
        server = SandboxDns("127.0.0.1", 0, ObjectsFile(objects, "cluster.local", 5, None), QueryLog(stream), FAST)
        server.start()
        try:
            yield server.port, log
        finally:
            server.stop()


def test_dns_retries_over_tcp_when_the_udp_answer_is_truncated(
        tmp_path: Path, big_zone_server: tuple[int, Path]) -> None:
    """glibc ``res_send.c`` and Go ``dnsclient_unix.go``: TC set → the same question again over TCP."""
    port, log = big_zone_server
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 127.0.0.1\noptions ndots:5\n")
    env = {program.RESOLV_CONF_ENV: str(conf), program.DNS_PORT_ENV: str(port)}
    qname = "_cluster._tcp.nats-headless.natsnet.svc.cluster.local."
    answer = run_batch({"requests": [dns_request("srv", qname, rdtype="SRV")]}, env=env)
    result = answer["results"][0]
    assert (result["outcome"], len(result["detail"]["answers"])) == ("NOERROR", 60)
    assert (result["detail"]["truncated"], result["detail"]["tcp_retry"]) == (True, True)
    assert result["detail"]["names_tried"][0]["tcp_retry"] is True
    protos = [json.loads(line)["proto"] for line in log.read_text().splitlines()]
    assert protos == ["udp", "tcp"]


def test_dns_truncated_answer_with_tcp_blocked_fails_like_the_resolvers(tmp_path: Path) -> None:
    """A UDP-only path (TCP 53 closed): the truncated UDP answer is not used, the lookup fails."""

    class TruncatingUdp(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            data, sock = self.request
            response = dns.message.make_response(dns.message.from_wire(data))
            response.flags |= dns.flags.TC
            sock.sendto(response.to_wire(), self.client_address)

    udp = socketserver.ThreadingUDPServer(("127.0.0.1", free_port()), TruncatingUdp)
    thread = threading.Thread(target=udp.serve_forever, daemon=True)
    thread.start()
    try:
        conf = tmp_path / "resolv.conf"
        conf.write_text("nameserver 127.0.0.1\n")
        env = {program.RESOLV_CONF_ENV: str(conf), program.DNS_PORT_ENV: str(udp.server_address[1])}
        answer = run_batch({"requests": [dns_request("q", "nats.ns1.svc.cluster.local.")]}, env=env)
    finally:
        udp.shutdown()
        udp.server_close()
    result = answer["results"][0]
    assert result["outcome"] == "refused"
    assert (result["detail"]["truncated"], result["detail"]["tcp_retry"]) == (True, True)


def test_serve_answers_one_line_per_batch_line_in_one_process() -> None:
    """``serve``: the probe session of a probe pod; a bad line gets its own error answer and the next still works."""
    tcp = {"key": "t", "kind": "tcp", "host": "127.0.0.1", "port": 9, "timeout": 0.5}
    batches = [json.dumps({"requests": [tcp]}), "not json", json.dumps({"requests": [{**tcp, "key": "u"}]})]
    done = run_program("\n".join(batches) + "\n", "serve")
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 0 and len(answers) == 3
    assert [r["key"] for r in answers[0]["results"]] == ["t"]
    assert answers[1]["error"].startswith("batch is not valid JSON")
    assert [r["key"] for r in answers[2]["results"]] == ["u"]


def test_the_probe_bundle_imports_its_packages_from_bytecode_in_a_pod_with_this_python(
        tmp_path: Path, zone_server: DnsServer) -> None:
    """The bundle is one zip application carrying the packages' bytecode for this interpreter: written as the
    probe pod writes it and run in a container's time zone (UTC), the program loads that bytecode instead of
    compiling the sources, and answers a batch."""
    import zipfile

    from pytest_natsnet.deployment import PROBE_ARCHIVE
    from pytest_natsnet.probe.bundle import probe_bundle

    bundle = probe_bundle()
    with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
        names = archive.namelist()
    assert {"__main__.py", "__main__.pyc", "dns/message.py", "dns/message.pyc"} <= set(names)
    assert not [n for n in names if "__pycache__" in n]
    archive_path = tmp_path / PROBE_ARCHIVE.rsplit("/", 1)[-1]
    archive_path.write_bytes(bundle)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}, "TZ": "UTC",
           **resolv_env(tmp_path, zone_server)}
    batch = json.dumps({"requests": [dns_request("fqdn", "nats.ns1.svc.cluster.local.")]})
    done = subprocess.run([sys.executable, "-I", str(archive_path)], input=batch, env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(done.stdout)["results"][0]["outcome"] == "NOERROR", done.stdout
    compiles = ("import builtins, sys\n"
                "compiled = []\n"
                "real = builtins.compile\n"
                "builtins.compile = lambda src, name, *a, **k: compiled.append(name) or real(src, name, *a, **k)\n"
                f"sys.path.insert(0, {str(archive_path)!r})\n"
                "import zipimport\n"
                f"zipimport.zipimporter({str(archive_path)!r}).get_code('__main__')\n"
                "import dns.message, dns.query, dns.resolver, nats.aio.client\n"
                "print(len(sys.modules), [n for n in compiled if 'dns' in n or 'nats' in n or 'main' in n])\n")
    loaded = subprocess.run([sys.executable, "-I", "-c", compiles], env=env, capture_output=True, text=True,
                            timeout=60, check=True).stdout.split(" ", 1)
    assert int(loaded[0]) > 100 and loaded[1].strip() == "[]", loaded
