"""End to end: the DNS server in its own network namespace, asked by dnspython (UDP, TCP) and by glibc.

The glibc tests hold the resolver model of ``expect/dnstiming.py`` against the real thing (glibc
``resolv/res_query.c``: a timeout ends the search list, the bare name is still asked; TC makes it ask again
over TCP).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_sandbox_dns_objects import NAMESPACE, POD_IPS, cluster, endpoint

from pytest_natsnet.expect.dnstiming import lookup_seconds, names_tried, parse_resolv_conf
from pytest_natsnet.sandbox.poddns import resolv_conf

DNS_IP = "198.18.128.10"
SVC = f"{NAMESPACE}.svc.cluster.local."
REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("bwrap"),
    reason="needs root, iproute2 (ip) and bubblewrap (bwrap) for network namespaces",
)

QUERY_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import dns.message, dns.query, dns.rcode
    results = []
    for qname, qtype, proto in json.loads(sys.argv[1]):
        query = dns.message.make_query(qname, qtype)
        send = dns.query.tcp if proto == "tcp" else dns.query.udp
        response = send(query, sys.argv[2], timeout=2)
        answers = sorted(rd.to_text() for rrset in response.answer for rd in rrset)
        results.append([dns.rcode.to_text(response.rcode()), answers])
    print(json.dumps(results))
    """
)


@dataclass
class NetnsDns:
    netns: str
    objects: Path
    query_log: Path
    workdir: Path

    def ask(self, questions: list[tuple[str, str, str]]) -> list[tuple[str, list[str]]]:
        """Runs dnspython inside the namespace; one (rcode, sorted answers) per (qname, qtype, proto)."""
        argv = [
            "ip",
            "netns",
            "exec",
            self.netns,
            sys.executable,
            "-c",
            QUERY_SCRIPT,
            json.dumps(questions),
            DNS_IP,
        ]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=True)
        return [(rcode, answers) for rcode, answers in json.loads(result.stdout)]

    def log(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.query_log.read_text().splitlines()]


def write_objects(path: Path, objects: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"objects": objects}))
    os.replace(tmp, path)


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 10)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("natsnet-dns listening on"):
        proc.kill()
        stderr = proc.stderr.read() if proc.stderr else ""
        pytest.fail(f"DNS server did not start in the netns: {line!r} {stderr}", pytrace=False)


@pytest.fixture
def netns_dns(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[NetnsDns]:
    """The server with the ``fast`` profile (no cache) unless the test is parametrized indirectly."""
    profile = getattr(request, "param", "fast")
    netns = f"nntest-dns-{os.getpid()}"
    env = NetnsDns(netns, tmp_path / "objects.json", tmp_path / "queries.jsonl", tmp_path)
    write_objects(env.objects, cluster())
    proc: subprocess.Popen[str] | None = None
    ip("netns", "add", netns)
    try:
        ip("-n", netns, "link", "set", "lo", "up")
        ip("-n", netns, "addr", "add", f"{DNS_IP}/32", "dev", "lo")
        argv = ["ip", "netns", "exec", netns, sys.executable, "-m", "pytest_natsnet.sandbox.dns"]
        argv += ["--listen", DNS_IP, "--objects", str(env.objects), "--query-log", str(env.query_log)]
        argv += ["--profile", profile]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
        wait_ready(proc)
        yield env
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0, "the DNS server did not stop cleanly on SIGTERM"
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, timeout=10)


def test_udp_and_tcp_answers_follow_the_objects_file(netns_dns: NetnsDns) -> None:
    questions = [
        (f"nats-headless.{SVC}", "A", "udp"),
        (f"nats-headless.{SVC}", "A", "tcp"),
        (f"nats-2.nats-headless.{SVC}", "A", "udp"),
        (f"nats-2.nats-headless.{SVC}", "AAAA", "tcp"),
        ("dns-version.cluster.local.", "TXT", "tcp"),
    ]
    all_pods = sorted(POD_IPS.values())
    assert netns_dns.ask(questions) == [
        ("NOERROR", all_pods),
        ("NOERROR", all_pods),
        ("NOERROR", [POD_IPS["nats-2"]]),
        ("NOERROR", []),
        ("NOERROR", ['"1.1.0"']),
    ]

    write_objects(
        netns_dns.objects, cluster([endpoint("nats-0"), endpoint("nats-1"), endpoint("nats-2", False)])
    )
    time.sleep(0.1)
    assert netns_dns.ask(questions[:3]) == [
        ("NOERROR", all_pods[:2]),
        ("NOERROR", all_pods[:2]),
        ("NXDOMAIN", []),
    ]
    log = netns_dns.log()
    assert {(e["client"], e["proto"]) for e in log} == {(DNS_IP, "udp"), (DNS_IP, "tcp")}
    assert [e["rcode"] for e in log if e["qname"] == f"nats-2.nats-headless.{SVC}" and e["qtype"] == "A"] == [
        "NOERROR",
        "NXDOMAIN",
    ]


def glibc_argv(env: NetnsDns, resolv: str) -> list[str]:
    """``ip netns exec ... bwrap ...`` with only ``resolv`` as /etc/resolv.conf, no hosts entry for cluster names."""
    etc = env.workdir / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "resolv.conf").write_text(resolv)
    (etc / "nsswitch.conf").write_text("hosts: files dns\n")
    (etc / "hosts").write_text("127.0.0.1 localhost\n")
    binds = [
        arg
        for f in ("resolv.conf", "nsswitch.conf", "hosts")
        for arg in ("--ro-bind", str(etc / f), f"/etc/{f}")
    ]
    root = ["--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib"]
    root += ["--symlink", "usr/lib64", "/lib64", "--proc", "/proc", "--dev", "/dev", "--dir", "/etc"]
    return ["ip", "netns", "exec", env.netns, "bwrap", *root, *binds]


def test_glibc_resolves_a_short_name_through_the_search_path(netns_dns: NetnsDns) -> None:
    argv = [*glibc_argv(netns_dns, resolv_conf(NAMESPACE, DNS_IP, "cluster.local")), "getent", "hosts"]

    found = subprocess.run([*argv, "nats-0.nats-headless"], capture_output=True, text=True, timeout=30)
    missing = subprocess.run([*argv, "nats-9.nats-headless"], capture_output=True, text=True, timeout=30)

    assert (found.returncode, found.stdout.split()[:2]) == (
        0,
        [POD_IPS["nats-0"], f"nats-0.nats-headless.{SVC}"[:-1]],
    )
    assert (missing.returncode, missing.stdout) == (2, "")
    asked = [e["qname"] for e in netns_dns.log() if e["qname"].startswith("nats-0.")]
    assert asked[0] == f"nats-0.nats-headless.{SVC}", "glibc must try <ns>.svc.<zone> first (ndots:5)"
    walked = {e["qname"] for e in netns_dns.log() if e["qname"].startswith("nats-9.")}
    assert walked == {
        f"nats-9.nats-headless.{SVC}",
        "nats-9.nats-headless.svc.cluster.local.",
        "nats-9.nats-headless.cluster.local.",
        "nats-9.nats-headless.",
    }


QUICK = "options ndots:5 timeout:1 attempts:2\n"


@pytest.mark.parametrize("netns_dns", ["kind-1.31-offline"], indirect=True)
def test_glibc_ends_the_search_list_at_a_timeout_then_asks_the_bare_name(netns_dns: NetnsDns) -> None:
    """kind on an offline runner: the runner's search domain goes upstream and gets no answer; glibc gives up
    on the search list there, still asks the bare name (which times out too) and fails, as the model says."""
    resolv = resolv_conf(NAMESPACE, DNS_IP, "cluster.local", ["runner.internal"]).replace("options ndots:5\n", QUICK)
    argv = [*glibc_argv(netns_dns, resolv), "getent", "ahosts", "nats-9.nats-headless"]
    started = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    asked = list(dict.fromkeys(e["qname"] for e in netns_dns.log() if e["qname"].startswith("nats-9.")))
    conf = parse_resolv_conf(resolv)

    def outcome(name: str) -> str:
        return "nxdomain" if name.endswith(".cluster.local.") else "timeout"

    assert result.returncode == 2
    assert asked == names_tried(conf, "nats-9.nats-headless", "glibc", outcome)  # type: ignore[arg-type]
    assert asked[-2:] == ["nats-9.nats-headless.runner.internal.", "nats-9.nats-headless."]
    expected = lookup_seconds(conf, "nats-9.nats-headless", "glibc", outcome)  # type: ignore[arg-type]
    assert expected == 4.0
    assert expected - 0.5 <= elapsed < expected + 3, f"glibc gave up after {elapsed:.1f}s"


def test_glibc_retries_over_tcp_when_the_udp_answer_is_truncated(netns_dns: NetnsDns) -> None:
    """60 ready endpoints do not fit in 512 bytes: the server sets TC and glibc asks again over TCP."""
    many = [{**endpoint("nats-0"), "addresses": [f"198.18.1.{i}"], "hostname": f"h{i}"} for i in range(60)]
    write_objects(netns_dns.objects, cluster(many))
    time.sleep(0.1)
    argv = [*glibc_argv(netns_dns, resolv_conf(NAMESPACE, DNS_IP, "cluster.local")), "getent", "ahostsv4"]
    result = subprocess.run([*argv, f"nats-headless.{SVC}"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert len({line.split()[0] for line in result.stdout.splitlines()}) == 60
    entries = [e for e in netns_dns.log() if e["qname"] == f"nats-headless.{SVC}" and e["qtype"] == "A"]
    assert [(e["proto"], e["truncated"]) for e in entries] == [("udp", True), ("tcp", False)]
