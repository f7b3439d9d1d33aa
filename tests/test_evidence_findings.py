"""Findings are pure functions of the observations: one case per Failure Pattern (the fault, named with its
culprit), its negative twins (the same objects without the observed failure find nothing), and the ranking."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from evidence_builders import (
    EGRESS_DNS,
    EGRESS_NATS_PORTS,
    IPS,
    NAMES,
    NS,
    healthy,
    pod,
    policy,
    server,
)

from pytest_natsnet.evidence import patterns as P
from pytest_natsnet.evidence import plan
from pytest_natsnet.evidence.findings import analyse
from pytest_natsnet.evidence.model import CertInfo, LogLine, Observations

NO_MESH = {n: [] for n in NAMES}
DNS_TIMEOUTS = {k: ("timeout", {}) for k in (plan.client_dns_key("udp"), plan.client_dns_key("tcp"),
                                              plan.CLIENT_SHORT_KEY, plan.HEADLESS_KEY)}
BUG_EGRESS = policy("bug-egress", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [EGRESS_NATS_PORTS]})
NO_ROUTE_PORT = policy("no-route-port", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
    {"to": [{"podSelector": {}}], "ports": [{"port": 4222}, {"port": 8222}]}, EGRESS_DNS]})
ROUTE_TIMEOUT_LOG = LogLine("nats-0", "[1] 2026/01/01 00:00:01.000000 [ERR] Error trying to connect to route "
                                      "(attempt 1): dial tcp 10.0.0.11:6222: i/o timeout", "route-error", 3)
TLS_LOG = LogLine("nats-0", "[1] ... [ERR] 10.0.0.11:6222 - rid:5 - TLS route handshake error: tls: failed to "
                            "verify certificate: x509: certificate is valid for "
                            "*.nats-headless.shop.svc.cluster.local, not nats-1.nats-headless", "tls", 40)
FQDN_ONLY = CertInfo("CN=nats-headless", "CN=ca", (f"*.nats-headless.{NS}.svc.cluster.local",), "2026-01-01T00:00:00Z",
                     "2027-01-01T00:00:00Z")
SHORT_TOO = dataclasses.replace(FQDN_ONLY, sans=(*FQDN_ONLY.sans, "*.nats-headless"))


def _tls(cert: CertInfo, routes: list[str] | None = None) -> dict[str, object]:
    servers = [server(n, routes=routes, cluster={"tls": {"cert_file": "/etc/nats-certs/cluster/tls.crt"}})
               for n in NAMES]
    return {"servers": servers, "certificates": {"Secret nats-route-tls/tls.crt": [cert]},
            "route_cert": "Secret nats-route-tls/tls.crt"}


def _ungated_with_reloader(name: str) -> dict[str, object]:
    obj = pod(name, ready=False, gate=False)
    obj["status"]["conditions"] = [c for c in obj["status"]["conditions"] if c["type"] == "Ready"]
    obj["status"]["containerStatuses"].insert(0, {"name": "reloader", "ready": False,
                                                  "state": {"waiting": {"reason": "ImageNotEmulated"}}})
    return obj


def _probe_failing(name: str) -> dict[str, object]:
    obj = pod(name, ready=False)
    obj["status"]["containerStatuses"] = [{"name": "nats", "ready": False, "restartCount": 0,
                                           "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]
    return obj


def _advertise(address: str) -> list[object]:
    return [server(n, cluster={"advertise": address}) for n in NAMES]


def _connect_urls(urls: list[str]) -> dict[str, dict[str, object]]:
    return {n: {"server_name": n, "connect_urls": urls} for n in NAMES}


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[], Observations]
    patterns: tuple[str, ...]
    """The patterns found, in rank order (empty: nothing)."""
    says: tuple[str, ...] = ()
    """Phrases in the first finding's summary and culprits."""


CASES = (
    Case("healthy", healthy, ()),
    Case("dns blocked by an egress policy", lambda: healthy(policies=[BUG_EGRESS], mesh=NO_MESH,
                                                          outcomes=DNS_TIMEOUTS),
         (P.DNS_BLOCKED_PATTERN, P.MESH_INCOMPLETE),
         ("routes cannot form: lookup nats-1.nats-headless times out; egress NetworkPolicy bug-egress allows no DNS",
          "NetworkPolicy bug-egress (egress of nats-0, nats-1, nats-2)")),
    Case("a policy the model says blocks DNS but that is not enforced finds nothing",
         lambda: healthy(policies=[BUG_EGRESS]), ()),
    Case("dns that times out without any policy blames cluster DNS",
         lambda: healthy(mesh=NO_MESH, outcomes=DNS_TIMEOUTS), (P.DNS_BLOCKED_PATTERN, P.MESH_INCOMPLETE),
         ("cluster DNS does not answer", "look at kube-system")),
    Case("routes port blocked", lambda: healthy(policies=[NO_ROUTE_PORT], mesh=NO_MESH,
                                                log_lines=[ROUTE_TIMEOUT_LOG]),
         (P.ROUTE_PORT_BLOCKED, P.MESH_INCOMPLETE),
         ("nats-0 → nats-1:6222 is blocked; egress NetworkPolicy no-route-port allows no route port 6222",)),
    Case("a route port policy with a full mesh (not enforced) finds nothing",
         lambda: healthy(policies=[NO_ROUTE_PORT]), ()),
    Case("wrong route names", lambda: healthy(
        servers=[server(n, routes=[f"nats://{m}.nats-hdls:6222" for m in NAMES]) for n in NAMES], mesh=NO_MESH,
        outcomes={plan.route_dns_key(f"{m}.nats-hdls"): ("NXDOMAIN", {}) for m in NAMES}),
         (P.ROUTE_NAMES_WRONG, P.MESH_INCOMPLETE),
         ("route host nats-0.nats-hdls does not resolve (NXDOMAIN) (and 2 more route hosts): there is no Service "
          "nats-hdls in shop (the headless Service is nats-headless)", "cluster.routes nats://nats-0.nats-hdls:6222")),
    Case("a route naming another namespace", lambda: healthy(
        servers=[server(n, routes=["nats://nats-0.nats-headless.other:6222"]) for n in NAMES],
        outcomes={plan.route_dns_key("nats-0.nats-headless.other"): ("NXDOMAIN", {})}),
         (P.ROUTE_NAMES_WRONG,), ("it names namespace other; the servers run in shop",)),
    Case("a not-ready peer hidden by publishNotReadyAddresses=false", lambda: healthy(
        pnra=False, pods=[pod("nats-0"), pod("nats-1"), pod("nats-2", ready=False, gate=False)],
        outcomes={plan.pod_dns_key("nats-2"): ("NXDOMAIN", {})}),
         (P.PEERS_HIDDEN_NOT_READY, P.PODS_NOT_READY),
         ("peer nats-2 is not Ready (readiness gate natsnet.io/ready is False)", "publishNotReadyAddresses=false",
          f"nats-2.nats-headless.{NS}.svc.cluster.local. → NXDOMAIN", "Service nats-headless")),
    Case("a not-ready peer with publishNotReadyAddresses=true is only not ready",
         lambda: healthy(pods=[pod("nats-0"), pod("nats-1"), pod("nats-2", ready=False)]), (P.PODS_NOT_READY,),
         ("nats-2 is not Ready",)),
    Case("publishNotReadyAddresses=false with every server Ready finds nothing", lambda: healthy(pnra=False), ()),
    Case("route TLS certificate without the short names routes dial",
         lambda: healthy(**_tls(FQDN_ONLY), mesh=NO_MESH, log_lines=[TLS_LOG]),
         (P.ROUTE_TLS_SAN_MISMATCH, P.MESH_INCOMPLETE),
         (f"the route certificate (Secret nats-route-tls) is valid for *.nats-headless.{NS}.svc.cluster.local, not "
          "nats-0.nats-headless", "Secret nats-route-tls: SANs")),
    Case("a route certificate that covers the short names finds nothing", lambda: healthy(**_tls(SHORT_TOO)), ()),
    Case("routes by IP need IP SANs", lambda: healthy(**_tls(SHORT_TOO, routes=[f"nats://{IPS['nats-0']}:6222"])),
         (P.ROUTE_TLS_SAN_MISMATCH,), ("not 10.0.0.10",)),
    Case("a cluster.advertise nobody resolves", lambda: healthy(
        servers=_advertise("nats-unreachable.invalid:6222"), mesh={"nats-0": ["nats-1", "nats-2"],
                                                                    "nats-1": ["nats-0"], "nats-2": ["nats-0"]},
        outcomes={plan.advertise_dns_key("nats-unreachable.invalid"): ("NXDOMAIN", {})}),
         (P.CLUSTER_ADVERTISE_UNREACHABLE, P.MESH_INCOMPLETE),
         ("nats-0, nats-1, nats-2 advertise cluster address nats-unreachable.invalid:6222, which does not resolve",)),
    Case("a cluster.advertise that resolves and connects finds nothing",
         lambda: healthy(servers=_advertise(f"nats-0.nats-headless.{NS}.svc.cluster.local:6222")), ()),
    Case("an advertised external name", lambda: healthy(
        varz=_connect_urls(["nats.external.invalid:4222"]),
        outcomes={plan.url_dns_key("nats.external.invalid:4222"): ("NXDOMAIN", {}),
                  plan.url_tcp_key("nats.external.invalid:4222"): ("unresolved", {})}),
         (P.ADVERTISED_URLS_UNREACHABLE,),
         ("clients reconnect slowly: advertised URL nats.external.invalid:4222 (external name) does not resolve from "
          "the probe pod (NXDOMAIN)",)),
    Case("an advertised pod IP that does not connect", lambda: healthy(
        varz=_connect_urls(["10.0.0.10:4222", "10.0.0.11:4222"]),
        outcomes={plan.url_tcp_key("10.0.0.11:4222"): ("blocked", {"error": "TimeoutError: timed out"})}),
         (P.ADVERTISED_URLS_UNREACHABLE,),
         ("advertised URL 10.0.0.11:4222 (pod IP) is not reachable from the probe pod (blocked)",
          "cluster.no_advertise=false")),
    Case("advertised pod IPs that connect find nothing",
         lambda: healthy(varz=_connect_urls(["10.0.0.10:4222", "10.0.0.11:4222"])), ()),
    Case("a split mesh with no known cause", lambda: healthy(mesh={"nats-0": ["nats-1"], "nats-1": ["nats-0"],
                                                                   "nats-2": []}),
         (P.MESH_INCOMPLETE,), ("nats-0 routes to 1 of 2 peers (not nats-2)",)),
    Case("a replaced pod whose readiness gate is not set yet, beside a container the sandbox does not run",
         lambda: healthy(pods=[pod("nats-0"), pod("nats-1"), _ungated_with_reloader("nats-2")]), (P.PODS_NOT_READY,),
         ("nats-2 is not Ready (readiness gate natsnet.io/ready is not set)",)),
    Case("a server whose readiness probe fails", lambda: healthy(
        pods=[pod("nats-0"), pod("nats-1"), _probe_failing("nats-2")]), (P.PODS_NOT_READY,),
         ("nats-2 is not Ready (container nats is running but not ready (readiness probe failing))",)),
    Case("restarts", lambda: healthy(pods=[pod("nats-0", restarts=2), pod("nats-1"), pod("nats-2")]),
         (P.PODS_NOT_READY,), ("nats-0 restarted 2 times; last exit 1 Error",)),
    Case("a round trip that fails", lambda: healthy(outcomes={plan.RELAY_KEY: ("failed", {"published": 30})}),
         (P.ROUNDTRIP_FAILED,), ("(30 published, none received)",)),
)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_findings(case: Case) -> None:
    findings = analyse(case.build())
    assert tuple(f.pattern for f in findings) == case.patterns, [f.summary for f in findings]
    if case.says:
        said = " ".join([findings[0].summary, *findings[0].culprits])
        assert [s for s in case.says if s not in said] == [], said


def test_no_dns_in_the_probe_pod_skips_name_lookups_through_the_c_resolver() -> None:
    """With DNS blocked, a getaddrinfo of an advertised name would hang for 20 s or more: those checks are planned
    as skipped, and a skipped check is no evidence of an unreachable URL."""
    obs = healthy(varz=_connect_urls(["nats-0.nats-headless.shop.svc.cluster.local:4222"]),
                  outcomes={**DNS_TIMEOUTS, **{plan.pod_dns_key(n): ("timeout", {}) for n in NAMES},
                            plan.srv_key("cluster"): ("timeout", {}),
                            **{plan.route_dns_key(f"{n}.nats-headless"): ("timeout", {}) for n in NAMES},
                            plan.url_dns_key("nats-0.nats-headless.shop.svc.cluster.local:4222"): ("timeout", {})})
    tcp = obs.check(plan.url_tcp_key("nats-0.nats-headless.shop.svc.cluster.local:4222"))
    assert tcp is not None and tcp.result is None and "DNS gives no answers" in tcp.skipped
    assert obs.check(plan.ROUNDTRIP_KEY) is not None and obs.check(plan.ROUNDTRIP_KEY).skipped  # type: ignore[union-attr]
    assert P.ADVERTISED_URLS_UNREACHABLE not in [f.pattern for f in analyse(obs)]


def test_the_first_batch_dials_only_addresses() -> None:
    """Every TCP and HTTP check of the first batch targets an IP: nothing in it can wait on the C resolver."""
    from pytest_natsnet.expect.nats import is_ip, url_host

    first = plan.first_batch(healthy(checks={}))
    hosts = [str(c.request.get("host") or url_host(str(c.request.get("url")))) for c in first
             if c.request["kind"] in ("tcp", "http")]
    assert hosts and all(is_ip(h) for h in hosts), hosts
    keys = {c.key for c in first}
    assert {plan.client_dns_key("udp"), plan.client_dns_key("tcp"), plan.CLIENT_SHORT_KEY, plan.HEADLESS_KEY,
            plan.srv_key("cluster"), plan.tcp_key("nats-1", 6222), plan.monitor_key("nats-2", "/routez"),
            plan.route_dns_key("nats-0.nats-headless"), plan.DNS_TCP_KEY} <= keys


@pytest.mark.parametrize(("url", "kind"), [
    ("10.0.0.10:4222", "pod IP"), ("192.0.2.1:4222", "other IP"), ("nats:4222", "internal name"),
    ("nats.shop:4222", "internal name"), ("nats-0.nats-headless.shop:4222", "internal name"),
    ("nats.shop.svc.cluster.local:4222", "internal name"), ("nats.external.invalid:4222", "external name"),
    ("nats.example.com:4222", "external name"),
])
def test_advertised_urls_are_classified(url: str, kind: str) -> None:
    assert plan.classify_url(url, healthy()) == kind


def test_the_table_ranks_causes_before_symptoms() -> None:
    causes = [p.id for p in P.PATTERNS if p.root_cause]
    symptoms = [p.id for p in P.PATTERNS if not p.root_cause]
    assert max(P.rank(c) for c in causes) < min(P.rank(s) for s in symptoms)
    assert P.rank(P.DNS_BLOCKED_PATTERN) == 0 and P.rank("unknown") == len(P.PATTERNS)
    assert {p.declares for p in P.PATTERNS if p.declares} == {"dns-blocked", "mesh-split", "route-tls-mismatch",
                                                              "learned-urls-unreachable"}
