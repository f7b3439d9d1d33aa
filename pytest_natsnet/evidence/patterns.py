"""The Failure Patterns table: what goes wrong with clustered NATS on Kubernetes, ranked root cause first.

A finding names one pattern; findings are shown in the table's order, so the cause comes before the symptoms it
explains (blocked DNS before the routes that cannot form because of it). Pure data.
"""

from __future__ import annotations

from dataclasses import dataclass

from pytest_natsnet.expect.nats import DNS_BLOCKED, LEARNED_URLS_UNREACHABLE, MESH_SPLIT, ROUTE_TLS_MISMATCH


@dataclass(frozen=True)
class Pattern:
    id: str
    title: str
    symptom: str
    cause: str
    fix: str
    root_cause: bool = True
    """False for a symptom (a split mesh, unready pods): shown after the causes that may explain it."""
    declares: str | None = None
    """The matrix's declared failure this pattern reproduces (``charts-values/matrix.yaml``), if any."""


DNS_BLOCKED_PATTERN = "dns-blocked"
ROUTE_PORT_BLOCKED = "route-port-blocked"
ROUTE_NAMES_WRONG = "route-names-wrong"
PEERS_HIDDEN_NOT_READY = "peers-hidden-not-ready"
ROUTE_TLS_SAN_MISMATCH = "route-tls-mismatch"
CLUSTER_ADVERTISE_UNREACHABLE = "cluster-advertise-unreachable"
ADVERTISED_URLS_UNREACHABLE = "advertised-urls-unreachable"
MESH_INCOMPLETE = "mesh-incomplete"
PODS_NOT_READY = "pods-not-ready"
ROUNDTRIP_FAILED = "roundtrip-failed"

PATTERNS: tuple[Pattern, ...] = (
    Pattern(DNS_BLOCKED_PATTERN, "Pods cannot reach cluster DNS",
            "route lookups time out (`lookup ... i/o timeout` after ~50 s); no route forms",
            "an egress NetworkPolicy isolates the pods and no rule allows kube-dns on UDP and TCP 53",
            "allow egress to namespace kube-system, pods k8s-app=kube-dns, ports 53/UDP and 53/TCP",
            declares=DNS_BLOCKED),
    Pattern(ROUTE_PORT_BLOCKED, "The route port is blocked between servers",
            "route dials time out (`dial tcp <pod>:6222: i/o timeout`); no route forms",
            "a NetworkPolicy isolates the servers (egress or ingress) without allowing the cluster port",
            "allow the cluster port (6222) between the server pods, in egress and, when isolated, in ingress"),
    Pattern(ROUTE_NAMES_WRONG, "Route URLs name hosts that do not resolve",
            "`lookup for host ...: no such host`; no route forms to those servers",
            "cluster.routes name a Service or pod that does not exist (wrong headless Service name, namespace "
            "or StatefulSet name)",
            "route to <pod>.<headless Service of the StatefulSet>, or let the chart render the routes"),
    Pattern(PEERS_HIDDEN_NOT_READY, "Not-ready peers are hidden from the routes",
            "a not-ready server's name gives NXDOMAIN; routes to it fail until it is Ready",
            "the headless Service has publishNotReadyAddresses=false, so DNS publishes only Ready pods; a server "
            "that is Ready only with its routes never becomes reachable (nats-io/k8s#441)",
            "set publishNotReadyAddresses: true on the headless Service (the chart's default)"),
    Pattern(ROUTE_TLS_SAN_MISMATCH, "Route TLS certificates do not cover the names routes dial",
            "`TLS route handshake error: ... x509: certificate is valid for ..., not <host>`",
            "the route certificate's SANs lack the literal host of the route URLs (short names, or pod IPs for "
            "gossiped routes)",
            "add the dialled names (e.g. *.<headless>, *.<headless>.<ns>.svc.<zone>) to the SANs, or route by "
            "the FQDNs the certificate has (routeURLs.useFQDN)",
            declares=ROUTE_TLS_MISMATCH),
    Pattern(CLUSTER_ADVERTISE_UNREACHABLE, "Servers advertise a cluster address peers cannot dial",
            "routes learned through gossip never form: a partial mesh",
            "cluster.advertise names a host or port the other servers cannot resolve or reach",
            "advertise <pod>.<headless>.<ns>.svc.<zone>:6222 (or drop advertise to gossip pod IPs)"),
    Pattern(ADVERTISED_URLS_UNREACHABLE, "Clients are handed URLs they cannot use",
            "clients reconnect slowly or not at all after their server goes away",
            "client_advertise (or the pod IPs in connect_urls) is not resolvable or reachable from client pods",
            "advertise a name clients can resolve, or set cluster.no_advertise so clients keep their seed URLs",
            declares=LEARNED_URLS_UNREACHABLE),
    Pattern(MESH_INCOMPLETE, "The route mesh is incomplete", "/routez lists fewer peers than there are servers",
            "see the findings above; otherwise the servers' logs", "", root_cause=False, declares=MESH_SPLIT),
    Pattern(PODS_NOT_READY, "Servers are not Ready or restart", "pods not Ready, restarts, warning events",
            "probes failing (readiness, startup, liveness) or a readiness gate held False", "", root_cause=False),
    Pattern(ROUNDTRIP_FAILED, "Messages do not flow", "a publish/subscribe round trip fails",
            "see the findings above", "", root_cause=False),
)

BY_ID: dict[str, Pattern] = {p.id: p for p in PATTERNS}


def rank(pattern_id: str) -> int:
    """The pattern's place in the table (0 first); unknown ids last."""
    for index, pattern in enumerate(PATTERNS):
        if pattern.id == pattern_id:
            return index
    return len(PATTERNS)


def table_markdown() -> str:
    """The table as Markdown (docs and the bundle README's appendix)."""
    lines = ["| # | Pattern | Symptom | Cause | Fix |", "|---|---|---|---|---|"]
    for index, p in enumerate(PATTERNS, 1):
        lines.append(f"| {index} | `{p.id}`: {p.title} | {p.symptom} | {p.cause} | {p.fix or '-'} |")
    return "\n".join(lines)
