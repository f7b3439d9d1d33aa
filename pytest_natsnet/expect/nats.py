"""Expected NATS behaviour from parsed nats.conf per pod: route mesh, client connect_urls, TLS outcomes.

Pure. A cell is expected healthy (full mesh) unless it declares a documented failure; then the island model
says which route edges can still form, each with its reason. A misconfiguration is never absorbed into the
expectation of a healthy cell.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_natsnet import kube, natsconf
from pytest_natsnet.failures import DeclaredFailure
from pytest_natsnet.table import TruthTable

DNS_BLOCKED = DeclaredFailure.DNS_BLOCKED
MESH_SPLIT = DeclaredFailure.MESH_SPLIT
ROUTE_TLS_MISMATCH = DeclaredFailure.ROUTE_TLS_MISMATCH
LEARNED_URLS_UNREACHABLE = DeclaredFailure.LEARNED_URLS_UNREACHABLE
BOOTSTRAP_DEADLOCK = DeclaredFailure.BOOTSTRAP_DEADLOCK
KNOWN_FAILURES = frozenset(DeclaredFailure)
DEFAULT_CLIENT_PORT = 4222
_ENV_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


@dataclass(frozen=True)
class ServerConf:
    """One server: its pod, pod IP and parsed (env-substituted) nats.conf."""

    pod: str
    ip: str
    config: Mapping[str, Any]

    @property
    def name(self) -> str:
        return str(self.config.get("server_name") or self.pod)

    @property
    def cluster(self) -> Mapping[str, Any]:
        return dict(self.config.get("cluster") or {})

    @property
    def routes(self) -> tuple[str, ...]:
        return tuple(str(r) for r in self.cluster.get("routes") or ())

    @property
    def advertise(self) -> str | None:
        value = self.cluster.get("advertise") or self.cluster.get("cluster_advertise")
        return str(value) if value else None

    @property
    def no_advertise(self) -> bool:
        return bool(self.cluster.get("no_advertise", False))

    @property
    def client_advertise(self) -> str | None:
        value = self.config.get("client_advertise")
        return str(value) if value else None

    @property
    def client_port(self) -> int:
        return int(self.config.get("port") or DEFAULT_CLIENT_PORT)

    @property
    def route_tls(self) -> bool:
        return bool(self.cluster.get("tls"))

    @property
    def connect_retries(self) -> int:
        """``cluster.connect_retries``: how often a route learned by gossip is tried again (0, the default: never;
        a configured route is retried forever)."""
        try:
            return int(self.cluster.get("connect_retries") or 0)
        except (TypeError, ValueError):
            return 0


# ---------------------------------------------------------------------------------------------- inputs


def pod_env(pod: Mapping[str, Any], container: str = "nats") -> dict[str, str]:
    """The container's env as the kubelet expands it (``$(VAR)``, fieldRef name/namespace/podIP)."""
    containers = kube.spec(pod).get("containers") or []
    chosen = next((c for c in containers if c.get("name") == container), containers[0] if containers else {})
    fields = {"metadata.name": kube.name(pod), "metadata.namespace": kube.namespace_of(pod),
              "status.podIP": str((pod.get("status") or {}).get("podIP") or "")}
    env: dict[str, str] = {}
    for item in chosen.get("env") or []:
        if "value" in item:
            expand = _ENV_REF.sub(lambda m: env.get(m.group(1), m.group(0)), str(item["value"]))
            env[str(item["name"])] = expand
        elif (ref := (item.get("valueFrom") or {}).get("fieldRef")) is not None:
            env[str(item["name"])] = fields.get(str(ref.get("fieldPath")), "")
    return env


def server_confs(pods: Iterable[Mapping[str, Any]], conf_text: str) -> list[ServerConf]:
    """One :class:`ServerConf` per pod: the ConfigMap's nats.conf parsed with that pod's env."""
    return [ServerConf(kube.name(p), str((p.get("status") or {}).get("podIP") or ""),
                       natsconf.parse(conf_text, pod_env(p))) for p in pods]


def check_failures(failures: Iterable[str]) -> frozenset[DeclaredFailure]:
    """The declared failures as the vocabulary (loaders validate them first: an unknown one is a bug here)."""
    declared = frozenset(failures)
    unknown = sorted(declared - KNOWN_FAILURES)
    if unknown:
        raise ValueError(f"unknown declared failure(s) {unknown}; known: {sorted(KNOWN_FAILURES)}")
    return frozenset(DeclaredFailure(f) for f in declared)


# ---------------------------------------------------------------------------------------------- names


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def url_host(url: str) -> str:
    """The host of ``nats://h:p``, ``tls://h:p`` or a bare ``h:p``."""
    parsed = urllib.parse.urlsplit(url if "://" in url else f"nats://{url}")
    return (parsed.hostname or "").lower()


def san_covers(sans: Iterable[str], hostname: str) -> bool:
    """Whether a cert with ``sans`` verifies ``hostname`` (an IP needs an IP SAN; ``*`` is one full label)."""
    host = hostname.lower().rstrip(".")
    for raw in sans:
        san = raw.strip().lower()
        if san.startswith(("ip:", "ip address:")):
            san, kind = san.split(":", 1)[1].strip(), "ip"
        else:
            san = san.removeprefix("dns:").strip()
            kind = "ip" if is_ip(san) else "dns"
        if is_ip(host):
            if kind == "ip" and ipaddress.ip_address(san) == ipaddress.ip_address(host):
                return True
            continue
        if kind != "dns":
            continue
        san = san.rstrip(".")
        if san == host:
            return True
        if san.startswith("*.") and "*" not in san[2:]:
            first, _, rest = host.partition(".")
            if first and rest == san[2:]:
                return True
    return False


def target_of(host: str, servers: Sequence[ServerConf]) -> ServerConf | None:
    """The server a route host names: its pod IP, or a name whose first label is the pod name."""
    for server in servers:
        if host == server.ip or host.split(".")[0] == server.pod.lower():
            return server
    return None


def route_tls_name(server: ServerConf) -> str | None:
    """nats-server's routeTLSName: the first non-IP host among the configured routes."""
    return next((h for h in map(url_host, server.routes) if h and not is_ip(h)), None)


# ---------------------------------------------------------------------------------------------- mesh


@dataclass(frozen=True)
class MeshExpectation:
    """Symmetric server × server table (True = a route connects them) with a reason per cell."""

    table: TruthTable[bool]
    reasons: Mapping[tuple[str, str], str]


def _dial_verdict(dialer: ServerConf, host: str, failures: frozenset[str],
                  sans: Sequence[str] | None) -> str | None:
    """None when the dial can succeed under the declared failures, else why it cannot."""
    if DNS_BLOCKED in failures and not is_ip(host):
        return f"dns-blocked: {host} needs DNS"
    if ROUTE_TLS_MISMATCH in failures and dialer.route_tls:
        name = host if not is_ip(host) else (route_tls_name(dialer) or host)
        if not san_covers(sans or (), name):
            return f"route-tls-mismatch: SANs do not cover {name}"
    return None


def expected_mesh(
    servers: Sequence[ServerConf],
    failures: Iterable[str] = frozenset(),
    route_sans: Sequence[str] | None = None,
) -> MeshExpectation:
    """Full N×N minus self for a healthy cell; the island model under declared failures."""
    declared = check_failures(failures)
    names = [s.name for s in servers]
    table = TruthTable(names, names, False)
    reasons: dict[tuple[str, str], str] = {(a, a): "self" for a in names}
    if not declared & {DNS_BLOCKED, MESH_SPLIT, ROUTE_TLS_MISMATCH}:
        for a in names:
            for b in names:
                if a != b:
                    table.set(a, b, True)
                    reasons[(a, b)] = "healthy cell: full mesh"
        return MeshExpectation(table, reasons)

    refused: dict[tuple[str, str], str] = {}
    _explicit_edges(servers, declared, route_sans, table, reasons, refused)
    _gossip_edges(servers, declared, route_sans, table, reasons, refused)
    for a in names:
        for b in names:
            if a != b and not table.get(a, b):
                reasons[(a, b)] = refused.get((a, b)) or refused.get((b, a)) or "no route can reach it"
    return MeshExpectation(table, reasons)


Reasons = dict[tuple[str, str], str]


def _connect(table: TruthTable[bool], reasons: Reasons, a: str, b: str, why: str) -> None:
    for x, y in ((a, b), (b, a)):
        table.set(x, y, True)
        reasons[(x, y)] = why


def _explicit_edges(servers: Sequence[ServerConf], declared: frozenset[str], sans: Sequence[str] | None,
                    table: TruthTable[bool], reasons: Reasons, refused: Reasons) -> None:
    for dialer in servers:
        for url in dialer.routes:
            host = url_host(url)
            target = target_of(host, servers)
            if target is None or target.name == dialer.name:
                continue
            verdict = _dial_verdict(dialer, host, declared, sans)
            if verdict is None:
                _connect(table, reasons, dialer.name, target.name, f"{dialer.name} dials route {url}")
            else:
                refused.setdefault((dialer.name, target.name), f"route {url}: {verdict}")


def _gossip_edges(servers: Sequence[ServerConf], declared: frozenset[str], sans: Sequence[str] | None,
                  table: TruthTable[bool], reasons: Reasons, refused: Reasons) -> None:
    """Peers of a common server learn each other and one dials the other's gossip address (fixed point)."""
    names = [s.name for s in servers]
    changed = True
    while changed:
        changed = False
        for one in servers:
            for two in servers:
                if one.name >= two.name or table.get(one.name, two.name):
                    continue
                via = next((t for t in names if table.get(one.name, t) and table.get(two.name, t)), None)
                if via is None:
                    continue
                verdicts = [_gossip_verdict(one, two, declared, sans),
                            _gossip_verdict(two, one, declared, sans)]
                if verdicts[0] is None or verdicts[1] is None:
                    dialer, target = (one, two) if verdicts[0] is None else (two, one)
                    why = f"gossip via {via}: {dialer.name} dials {gossip_address(target)}"
                    _connect(table, reasons, dialer.name, target.name, why)
                    changed = True
                else:
                    refused[(one.name, two.name)] = f"gossip via {via} fails: {'; '.join(map(str, verdicts))}"


def gossip_address(server: ServerConf) -> str:
    """What peers dial for an implicit route: ``cluster.advertise``, else the pod IP."""
    return server.advertise or f"{server.ip}:{server.cluster.get('port', 6222)}"


def _gossip_verdict(dialer: ServerConf, target: ServerConf, failures: frozenset[str],
                    sans: Sequence[str] | None) -> str | None:
    if MESH_SPLIT in failures and target.advertise:
        return f"mesh-split: {target.name} advertises {target.advertise}"
    return _dial_verdict(dialer, url_host(gossip_address(target)), failures, sans)


UNRESOLVED_ROUTE = re.compile(r'Error trying to connect to route.*lookup for host "(?P<host>[^"]+)".*no such host')
"""nats-server's log line for a route whose host has no DNS record (NXDOMAIN)."""
DIALLED_ROUTE = re.compile(r"Error trying to connect to route.*dial tcp (?P<ip>[0-9.]+):\d+: "
                           r"(?:connect: connection refused|i/o timeout)")
"""nats-server's log line for a route dialled at an address where nobody answers (refused, or gone: timeout)."""


def routes_to(dialer: ServerConf, target: ServerConf, servers: Sequence[ServerConf]) -> bool:
    """Whether ``target`` is among ``dialer``'s configured routes (dialled again until it connects)."""
    return any(target_of(url_host(route), servers) is target for route in dialer.routes)


def unretried_gossip_lookups(
    servers: Sequence[ServerConf],
    replaced: str,
    logs_since_replacement: Mapping[str, Iterable[str]],
    old_ip: str | None = None,
) -> dict[tuple[str, str], str]:
    """Routes to a replaced server that stay missing, each with the log line that explains it (real NATS
    behaviour, not a flake). A peer learns the replaced server's gossip address, a DNS name, and tries it once:
    the route being implicit (learned by gossip, not configured) and ``cluster.connect_retries`` 0 (the default),
    it is never tried again. The one attempt fails when the name gives no usable answer at that moment:

    - NXDOMAIN (``lookup for host ... no such host``): the new pod is not Ready and ``publishNotReadyAddresses``
      is false, or no pod of that name exists between the old one's removal and the new one's creation, or the
      DNS cache still holds such an answer;
    - the replaced pod's old address ``old_ip`` (``dial tcp <old ip>: connection refused | i/o timeout``): the
      terminating pod's record is still published (``publishNotReadyAddresses`` true keeps it until the pod is
      gone), or the DNS cache still holds it (CoreDNS on kind up to 1.31 caches cluster answers 30 s).

    A peer with a configured route to the server, or with ``connect_retries``, tries again and is expected to
    connect. ``replaced`` and the keys of ``logs_since_replacement`` are pod names; the result maps (peer,
    replaced) server names, in both orders, to the explanation.
    """
    target = next((s for s in servers if s.pod == replaced), None)
    host = url_host(gossip_address(target)) if target is not None else ""
    if target is None or is_ip(host):
        return {}
    missing: dict[tuple[str, str], str] = {}
    for peer in servers:
        if peer.pod == replaced or routes_to(peer, target, servers):
            continue  # a configured route is retried until the name resolves
        if peer.connect_retries > 0:
            continue  # a gossiped route is retried too
        for line in logs_since_replacement.get(peer.pod, ()):
            unresolved = UNRESOLVED_ROUTE.search(line)
            dialled = DIALLED_ROUTE.search(line)
            if unresolved and unresolved.group("host").lower().rstrip(".") == host.rstrip("."):
                why = f"looked up {host} while it had no record (NXDOMAIN)"
            elif dialled and old_ip is not None and dialled.group("ip") == old_ip:
                why = f"dialled {replaced}'s old address {old_ip}, what {host} still answered"
            else:
                continue
            explained = f"implicit route not retried: {peer.name} {why}: {line.strip()}"
            missing[(peer.name, target.name)] = missing[(target.name, peer.name)] = explained
            break
    return missing


def allowing_missing(
    expected: MeshExpectation, observed: TruthTable[bool], explained: Mapping[tuple[str, str], str]
) -> MeshExpectation:
    """``expected`` where each explained route that is indeed missing is expected missing, with its reason."""
    table = TruthTable(expected.table.rows, expected.table.cols, False)
    reasons = dict(expected.reasons)
    for key, value in expected.table.as_dict().items():
        table.set(*key, value)
    for (a, b), why in explained.items():
        if not observed.get(a, b) and not observed.get(b, a):
            table.set(a, b, False)
            reasons[(a, b)] = why
    return MeshExpectation(table, reasons)


def allowing_present(
    expected: MeshExpectation, observed: TruthTable[bool], explained: Mapping[tuple[str, str], str]
) -> MeshExpectation:
    """``expected`` where each explained route that is indeed present is expected present, with its reason
    (routes a DNS-blocked cell formed before its NetworkPolicy held: ``expect.policytiming``)."""
    table = TruthTable(expected.table.rows, expected.table.cols, False)
    reasons = dict(expected.reasons)
    for key, value in expected.table.as_dict().items():
        table.set(*key, value)
    for (a, b), why in explained.items():
        if observed.get(a, b) or observed.get(b, a):
            table.set(a, b, True)
            reasons[(a, b)] = why
    return MeshExpectation(table, reasons)


def observed_mesh(names: Sequence[str], routez: Mapping[str, Mapping[str, Any]]) -> TruthTable[bool]:
    """From each server's ``/routez``: (A, B) is True when B is among A's distinct ``remote_name``s."""
    table = TruthTable(names, names, False)
    for server, body in routez.items():
        for route in body.get("routes") or []:
            remote = str(route.get("remote_name") or "")
            if server in names and remote in names and remote != server:
                table.set(server, remote, True)
    return table


def expected_routes(server: ServerConf) -> tuple[str, ...]:
    """The configured routes exactly as rendered (``/varz.cluster.urls`` lists them as host:port)."""
    return server.routes


# ---------------------------------------------------------------------------------------------- clients


def client_url(server: ServerConf) -> str:
    if server.client_advertise:
        advertised = server.client_advertise
        return advertised if ":" in advertised.rsplit("]", 1)[-1] else f"{advertised}:{server.client_port}"
    return f"{server.ip}:{server.client_port}"


def expected_connect_urls(
    servers: Sequence[ServerConf], mesh: TruthTable[bool] | None = None
) -> dict[str, frozenset[str]]:
    """Per server, the ``connect_urls`` its clients get: none under no_advertise, else itself and peers."""
    expected: dict[str, frozenset[str]] = {}
    for server in servers:
        if server.no_advertise:
            expected[server.name] = frozenset()
            continue
        peers = [p for p in servers if p.name == server.name or (
            not p.no_advertise and (mesh is None or mesh.get(server.name, p.name)))]
        expected[server.name] = frozenset(client_url(p) for p in peers) if len(peers) > 1 else frozenset()
    return expected


@dataclass(frozen=True)
class TlsExpectation:
    ok: bool
    verified_name: str
    reason: str


def expected_client_tls(
    sans: Sequence[str], dialled_host: str, tls_hostname: str | None = None
) -> TlsExpectation:
    """A client dialling ``dialled_host`` verifies ``tls_hostname`` if given, else the dialled host."""
    name = (tls_hostname or dialled_host).lower()
    if san_covers(sans, name):
        return TlsExpectation(True, name, f"SANs cover {name}")
    kind = "IP address mismatch" if is_ip(name) else "Hostname mismatch"
    return TlsExpectation(False, name, f"{kind}, certificate is not valid for '{name}'")
