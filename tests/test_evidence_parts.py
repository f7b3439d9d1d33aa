"""The evidence bundle's pure parts: the DNS query log summary, nats-server log extraction, certificate
descriptions and Secret redaction, and the key-material scrubber and scanner."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

import pytest

from pytest_natsnet.evidence import dnslog, keymaterial, natslogs
from pytest_natsnet.evidence.certs import describe_pem, describe_secret, redacted_secret
from pytest_natsnet.tlsgen import new_ca, tls_material

SEARCH = ("shop.svc.cluster.local", "svc.cluster.local", "cluster.local", "runner.internal")


def _sandbox_line(qname: str, rcode: str, ts: float, client: str = "10.0.0.10:5353", qtype: str = "A") -> str:
    return json.dumps({"ts": ts, "client": client, "qname": qname, "qtype": qtype, "proto": "udp", "rcode": rcode,
                       "answers": [], "replica": 0, "source": "kubernetes", "truncated": False})


def test_both_query_log_formats_parse() -> None:
    sandbox = dnslog.parse(_sandbox_line("Nats.shop.svc.cluster.local.", "NOERROR", 1700000000.5))
    coredns = dnslog.parse('2026-01-01T10:00:00.250Z [INFO] 10.0.0.10:41055 - 8049 "AAAA IN nats.shop.svc.cluster.'
                           'local. udp 52 false 512" NXDOMAIN qr,aa,rd 106 0.000149667s')
    assert sandbox is not None and coredns is not None
    assert (sandbox.qname, sandbox.qtype, sandbox.rcode, sandbox.client_ip, sandbox.ts) == (
        "nats.shop.svc.cluster.local.", "A", "NOERROR", "10.0.0.10", 1700000000.5)
    assert (coredns.qname, coredns.qtype, coredns.rcode, coredns.client_ip, coredns.proto) == (
        "nats.shop.svc.cluster.local.", "AAAA", "NXDOMAIN", "10.0.0.10", "udp")
    assert coredns.ts == pytest.approx(1767261600.25)
    assert dnslog.parse("[INFO] plugin/reload: Running configuration SHA512 = 1234") is None
    assert dnslog.parse("natsnet-dns listening on 198.18.0.2:53") is None


def test_relevant_queries_come_from_the_namespace_pods_or_ask_for_its_names() -> None:
    ours = dnslog.parse(_sandbox_line("kubernetes.default.svc.cluster.local.", "NOERROR", 1.0, "10.0.0.10:1"))
    name = dnslog.parse(_sandbox_line("nats.shop.svc.cluster.local.", "NOERROR", 1.0, "10.9.9.9:1"))
    other = dnslog.parse(_sandbox_line("nats.shopping.svc.cluster.local.", "NOERROR", 1.0, "10.9.9.9:1"))
    assert ours and name and other
    assert [dnslog.relevant(q, "shop", {"10.0.0.10"}) for q in (ours, name, other)] == [True, True, False]


def test_the_summary_counts_per_name_and_type_and_ignores_search_list_nxdomains() -> None:
    lines = [
        _sandbox_line("nats-1.nats-headless.shop.svc.cluster.local.", "NOERROR", 10.0),
        _sandbox_line("nats-1.nats-headless.shop.svc.cluster.local.", "NOERROR", 12.0),
        _sandbox_line("nats.shop.svc.cluster.local.shop.svc.cluster.local.", "NXDOMAIN", 11.0),
        _sandbox_line("nats.shop.svc.cluster.local.", "NOERROR", 11.5),
        *(_sandbox_line(f"nats.external.invalid.{suffix}.", "NXDOMAIN", 13.0) for suffix in SEARCH),
        _sandbox_line("nats.external.invalid.", "NXDOMAIN", 14.0),
    ]
    rows = dnslog.summarise(q for q in map(dnslog.parse, lines) if q)
    first = rows[0]
    assert (first.qname, first.qtype, first.count, dict(first.rcodes), first.first, first.last) == (
        "nats-1.nats-headless.shop.svc.cluster.local.", "A", 2, {"NOERROR": 2}, 10.0, 12.0)
    failing = dnslog.failing(rows, SEARCH)
    assert [(base, dict(codes)) for base, codes in failing] == [("nats.external.invalid", {"NXDOMAIN": 5})]
    headline = dnslog.headline(rows, SEARCH)
    assert headline == "9 queries for 8 names; never answered: nats.external.invalid (NXDOMAIN ×5)"
    assert dnslog.headline([], SEARCH).startswith("no query")
    table = dnslog.render(rows, limit=2)
    assert "| `nats-1.nats-headless.shop.svc.cluster.local.` | A | 2 | NOERROR 2 |" in table
    assert "(6 more names) | | 6 |" in table


TLS_LOG = """\
[7] 2026/11/29 03:48:45.829374 [INF] Listening for route connections on 0.0.0.0:6222
[7] 2026/11/29 03:48:45.845320 [ERR] Error trying to connect to route (attempt 1): dial tcp 198.18.0.16:6222: connect: connection refused
[7] 2026/11/29 03:48:46.882237 [ERR] 198.18.0.15:6222 - rid:10 - TLS route handshake error: tls: failed to verify certificate: x509: certificate is valid for *.h.ns.svc.cluster.local, not nats-1.h (CN=h SHA-256: abcd)
[7] 2026/11/29 03:48:47.882237 [ERR] 198.18.0.15:6222 - rid:14 - TLS route handshake error: tls: failed to verify certificate: x509: certificate is valid for *.h.ns.svc.cluster.local, not nats-1.h (CN=h SHA-256: abcd)
[7] 2026/11/29 03:48:48.901556 [ERR] 198.18.0.16:50856 - rid:6 - TLS route handshake error: remote error: tls: bad certificate
[7] 2026/11/29 03:48:49.901556 [ERR] 198.18.0.16:50999 - rid:9 - TLS route handshake error: remote error: tls: bad certificate
[7] 2026/11/29 03:48:49.901573 [INF] 198.18.0.16:50856 - rid:6 - Router connection closed: TLS Handshake Failure
[7] 2026/11/29 03:49:47.198149 [ERR] Error trying to connect to route (attempt 1): lookup for host "nats-1.h": lookup nats-1.h on 10.96.0.10:53: read udp 10.0.0.18:45638->10.96.0.10:53: i/o timeout
[7] 2026/11/29 03:49:48.198149 [ERR] Error trying to connect to route (attempt 1): lookup for host "nats-1.h": lookup nats-1.h on 10.96.0.10:53: read udp 10.0.0.18:33252->10.96.0.10:53: i/o timeout
[7] 2026/11/29 03:49:49.000000 [INF] 10.0.0.11:6222 - rid:20 - Route connection created
"""  # noqa: E501


def test_server_logs_fold_repeats_and_sort_problems_by_count() -> None:
    lines = natslogs.extract("nats-0", TLS_LOG)
    assert [(line.category, line.count) for line in lines] == [
        ("route-error", 1), ("tls", 2), ("tls", 2), ("route-closed", 1), ("dns", 2), ("route-created", 1)]
    tls = lines[1]
    assert tls.text.startswith("[7] 2026/11/29 03:48:46.882237 [ERR] 198.18.0.15:6222 - rid:10 - TLS route")
    assert tls.last == "2026/11/29 03:48:47.882237"
    assert [line.category for line in natslogs.problems(lines)] == ["tls", "tls", "dns", "route-error"]


def test_certificates_are_described_and_secrets_redacted() -> None:
    material = tls_material(new_ca("evidence test"), "fqdn-only", "shop")
    secret = next(s for s in material.secrets if s["metadata"]["name"] == "nats-route-tls")
    described = describe_secret(secret)
    assert sorted(described) == ["ca.crt", "tls.crt"]
    (leaf,) = described["tls.crt"]
    assert leaf.sans == ("*.nats-headless.shop.svc.cluster.local",) and not leaf.is_ca
    assert described["ca.crt"][0].is_ca and described["ca.crt"][0].subject == "CN=evidence test"
    redacted = redacted_secret({**secret, "metadata": {**secret["metadata"], "managedFields": [{"manager": "x"}]}})
    text = json.dumps(redacted)
    assert "data" not in redacted and "managedFields" not in text
    assert redacted["redactedData"]["tls.key"].startswith("(redacted: ")
    assert not [v for v in secret["data"].values() if v in text]
    key_pem = base64.b64decode(secret["data"]["tls.key"])
    assert describe_pem(key_pem) == [], "a key is never parsed as a certificate"


def _key_secret() -> tuple[str, str]:
    material = tls_material(new_ca("evidence test"), "good", "shop")
    secret = next(s for s in material.secrets if "tls.key" in (s.get("data") or {}))
    encoded = str(secret["data"]["tls.key"])
    return encoded, base64.b64decode(encoded).decode()


@pytest.mark.parametrize("prefix", ["", "x", "xy"], ids=["offset-0", "offset-1", "offset-2"])
def test_the_scanner_finds_keys_in_every_form(tmp_path: Path, prefix: str) -> None:
    encoded, pem = _key_secret()
    shifted = base64.b64encode(prefix.encode() + pem.encode()).decode()
    (tmp_path / "plain.log").write_text(f"before\n{pem}\nafter\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "secret.yaml").write_text(f"data:\n  tls.key: {encoded}\n")
    (tmp_path / "shifted.txt").write_text(shifted)
    (tmp_path / "escaped.json").write_text(json.dumps({"key": pem}))
    (tmp_path / "queries.log.gz").write_bytes(gzip.compress(pem.encode()))
    (tmp_path / "clean.txt").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    hits = keymaterial.scan(tmp_path)
    assert sorted(h.split(": ")[0].removeprefix(str(tmp_path) + "/") for h in hits) == sorted(
        ["escaped.json", "plain.log", "queries.log.gz", "shifted.txt", "sub/secret.yaml"])
    assert not [h for h in hits if "MII" in h or "PRIVATE KEY-----" in h], "a hit never quotes the key"


def test_scrubbing_removes_keys_and_keeps_the_rest() -> None:
    encoded, pem = _key_secret()
    text = f"nats-0 started\n{pem}\nroute up\ndata: {encoded}\n"
    scrubbed = keymaterial.scrub(text)
    assert keymaterial.key_material(scrubbed) == []
    assert scrubbed.count(keymaterial.SCRUBBED) == 2
    assert scrubbed.startswith("nats-0 started\n") and "route up" in scrubbed
    certificate = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----"
    assert keymaterial.scrub(certificate) == certificate
