"""Which probes the Debugging Flow runs, planned from what it has observed so far (pure).

Two batches, each one exec in the probe pod. The first asks only what is bounded whatever the cluster does:
DNS through dnspython with explicit timeouts, and TCP/HTTP to pod IPs (no name lookups through the C resolver,
which waits 20 s or more per name when DNS is blocked). The second follows from the first's answers: the URLs
the servers advertise (``/varz``), checked by name only when DNS works from the probe pod, and the
publish/subscribe round trip.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pytest_natsnet import kube
from pytest_natsnet.evidence.model import Check, Observations
from pytest_natsnet.expect.nats import is_ip, san_covers, url_host
from pytest_natsnet.probe.model import (
    DnsRequest,
    HttpRequest,
    NatsRequest,
    ProbeRequest,
    RelayRequest,
    TcpRequest,
    TlsOptions,
    Transport,
)

DNS_TIMEOUT = 2.0
TCP_TIMEOUT = 1.5
HTTP_TIMEOUT = 2.0
NATS_TIMEOUT = 2.0
RELAY_TIMEOUT = 3.0
DEFAULT_MONITOR_PORT = 8222
DEFAULT_CLUSTER_PORT = 6222
TRANSPORTS: tuple[Transport, ...] = ("udp", "tcp")

# -- keys (findings and the README look checks up by these) -------------------------------------------------


def client_dns_key(transport: str) -> str:
    return f"dns/client-fqdn/{transport}"


CLIENT_SHORT_KEY = "dns/client-short"
HEADLESS_KEY = "dns/headless"
DNS_TCP_KEY = "tcp/cluster-dns/53"
ROUNDTRIP_KEY = "nats/client-service"
RELAY_KEY = "relay/across-routes"


def pod_dns_key(pod: str) -> str:
    return f"dns/pod/{pod}"


def srv_key(port_name: str) -> str:
    return f"dns/srv/{port_name}"


def route_dns_key(host: str) -> str:
    return f"dns/route/{host}"


def advertise_dns_key(host: str) -> str:
    return f"dns/cluster-advertise/{host}"


def advertise_tcp_key(address: str) -> str:
    return f"tcp/cluster-advertise/{address}"


def tcp_key(pod: str, port: int) -> str:
    return f"tcp/{pod}/{port}"


def monitor_key(pod: str, path: str) -> str:
    return f"http/{pod}{path}"


def url_dns_key(url: str) -> str:
    return f"url/{url}/dns"


def url_tcp_key(url: str) -> str:
    return f"url/{url}/tcp"


# -- facts the plan needs --------------------------------------------------------------------------------------


def fqdn(*labels: str) -> str:
    return ".".join(label.strip(".") for label in labels if label) + "."


def monitor_port(pod: Mapping[str, Any], config: Mapping[str, Any] | None = None) -> int:
    if config and config.get("http_port"):
        return int(config["http_port"])
    for container in kube.spec(pod).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == "monitor":
                return int(port["containerPort"])
    return DEFAULT_MONITOR_PORT


def cluster_port(config: Mapping[str, Any]) -> int:
    return int((config.get("cluster") or {}).get("port") or DEFAULT_CLUSTER_PORT)


def bracketed(host: str) -> str:
    """A host for a URL: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


def nameserver(resolv_conf: str) -> str | None:
    for line in resolv_conf.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            return fields[1]
    return None


def zone_of(resolv_conf: str, namespace: str, default: str = "cluster.local") -> str:
    """The cluster domain from a pod's search list (``<ns>.svc.<zone>`` comes first under ClusterFirst)."""
    prefix = f"{namespace}.svc."
    for line in resolv_conf.splitlines():
        fields = line.split()
        if fields[:1] == ["search"]:
            for domain in fields[1:]:
                if domain.startswith(prefix):
                    return domain[len(prefix):].rstrip(".")
    return default


def route_hosts(obs: Observations) -> list[str]:
    """Every distinct host the servers' configured routes name (names and IPs), in order."""
    hosts: list[str] = []
    for server in obs.servers:
        for url in server.routes:
            host = url_host(url)
            if host and host not in hosts:
                hosts.append(host)
    return hosts


def cluster_advertise_addresses(obs: Observations) -> list[str]:
    addresses: list[str] = []
    for server in obs.servers:
        if server.advertise and server.advertise not in addresses:
            addresses.append(server.advertise)
    return addresses


def split_address(address: str, default_port: int) -> tuple[str, int]:
    """``host:port`` (or a URL) -> (host, port)."""
    parsed = urllib.parse.urlsplit(address if "://" in address else f"nats://{address}")
    return (parsed.hostname or "").lower(), int(parsed.port or default_port)


def port_name(service: Mapping[str, Any] | None, number: int) -> str | None:
    for port in kube.spec(service or {}).get("ports") or []:
        if int(port.get("port") or 0) == number and port.get("name"):
            return str(port["name"])
    return None


# -- the two batches -------------------------------------------------------------------------------------------


def _check(request: ProbeRequest, step: int, subject: str) -> Check:
    return Check(request.key, step, subject, request.to_json())


def first_batch(obs: Observations) -> list[Check]:
    """Steps 1, 5 (monitoring endpoints) and 6: bounded, no C-resolver lookups."""
    ns, zone = obs.namespace, obs.zone
    checks: list[Check] = []
    client, headless = obs.client_service(), obs.headless_service()
    if client is not None:
        name = fqdn(kube.name(client), ns, "svc", zone)
        for transport in TRANSPORTS:
            checks.append(_check(DnsRequest(client_dns_key(transport), name, "A", transport, timeout=DNS_TIMEOUT),
                                 1, f"A {name} over {transport.upper()} (client Service, FQDN)"))
        checks.append(_check(DnsRequest(CLIENT_SHORT_KEY, kube.name(client), "A", search=True, timeout=DNS_TIMEOUT),
                             1, f"A {kube.name(client)} through the search list (client Service, short name)"))
    if headless is not None:
        hname = fqdn(kube.name(headless), ns, "svc", zone)
        checks.append(_check(DnsRequest(HEADLESS_KEY, hname, "A", timeout=DNS_TIMEOUT), 1,
                             f"A {hname} (headless Service: one address per published server)"))
        for pod in obs.server_pods():
            pname = fqdn(kube.name(pod), kube.name(headless), ns, "svc", zone)
            checks.append(_check(DnsRequest(pod_dns_key(kube.name(pod)), pname, "A", timeout=DNS_TIMEOUT), 1,
                                 f"A {pname} (StatefulSet pod FQDN)"))
        cport = cluster_port(obs.servers[0].config) if obs.servers else DEFAULT_CLUSTER_PORT
        named = port_name(headless, cport)
        if named:
            srv = fqdn(f"_{named}", "_tcp", kube.name(headless), ns, "svc", zone)
            checks.append(_check(DnsRequest(srv_key(named), srv, "SRV", timeout=DNS_TIMEOUT), 1,
                                 f"SRV {srv} (route port of the headless Service)"))
    for host in route_hosts(obs):
        if not is_ip(host):
            checks.append(_check(DnsRequest(route_dns_key(host), host, "A", search=True, timeout=DNS_TIMEOUT), 1,
                                 f"A {host} through the search list, as the servers resolve their routes"))
    for address in cluster_advertise_addresses(obs):
        host, _ = split_address(address, DEFAULT_CLUSTER_PORT)
        if host and not is_ip(host):
            checks.append(_check(DnsRequest(advertise_dns_key(host), host, "A", search=True, timeout=DNS_TIMEOUT),
                                 5, f"A {host} (cluster.advertise: what peers dial for gossiped routes)"))
    for pod in obs.server_pods():
        ip = str((pod.get("status") or {}).get("podIP") or "")
        server = obs.server(kube.name(pod))
        if not ip or server is None:
            continue
        mport = monitor_port(pod, server.config)
        for port, what in ((server.client_port, "client port"), (cluster_port(server.config), "route port"),
                           (mport, "monitoring port")):
            checks.append(_check(TcpRequest(tcp_key(kube.name(pod), port), ip, port, timeout=TCP_TIMEOUT), 6,
                                 f"TCP {ip}:{port} ({kube.name(pod)} {what})"))
        for path in ("/varz", "/routez"):
            checks.append(_check(HttpRequest(monitor_key(kube.name(pod), path), f"http://{bracketed(ip)}:{mport}{path}",
                                             timeout=HTTP_TIMEOUT), 5, f"GET {path} of {kube.name(pod)}"))
    server_ip = nameserver(obs.probe.resolv_conf) if obs.probe else None
    if server_ip:
        checks.append(_check(TcpRequest(DNS_TCP_KEY, server_ip, 53, timeout=TCP_TIMEOUT), 6,
                             f"TCP {server_ip}:53 (the pod's nameserver)"))
    return checks


def dns_works(obs: Observations) -> bool:
    """Whether the probe pod gets DNS answers at all (any planned DNS check answered, NXDOMAIN included)."""
    answered = [c for c in obs.checks.values() if c.request.get("kind") == "dns" and c.result is not None]
    return any(c.outcome in ("NOERROR", "NXDOMAIN") for c in answered)


def advertised_urls(obs: Observations) -> dict[str, list[str]]:
    """URL -> the servers that hand it to clients (``/varz`` connect_urls; the config when /varz is missing)."""
    urls: dict[str, list[str]] = {}
    for server in obs.servers:
        varz = (obs.monitor.get(server.name) or {}).get("/varz")
        listed = list(varz.get("connect_urls") or []) if isinstance(varz, Mapping) else []
        if not isinstance(varz, Mapping) and server.client_advertise and not server.no_advertise:
            listed = [server.client_advertise]
        for url in listed:
            servers = urls.setdefault(str(url), [])
            if server.name not in servers:
                servers.append(server.name)
    return urls


def classify_url(url: str, obs: Observations) -> str:
    """``pod IP``, ``other IP``, ``internal name`` (the cluster domain, a short name, ``<svc>.<ns>``,
    ``<pod>.<svc>[.<ns>]``) or ``external name``."""
    host, _ = split_address(url, 4222)
    pod_ips = {str((p.get("status") or {}).get("podIP") or "") for p in obs.of_kind("Pod")}
    if is_ip(host):
        return "pod IP" if host in pod_ips else "other IP"
    zone = obs.zone.rstrip(".").lower()
    labels = host.rstrip(".").split(".")
    if host.rstrip(".").endswith("." + zone) or len(labels) == 1 or labels[-1] == "svc":
        return "internal name"
    services = {kube.name(s) for s in obs.of_kind("Service")}
    namespaces = set(obs.namespace_labels) | {obs.namespace}
    if len(labels) == 2 and (labels[1] in namespaces or labels[1] in services):
        return "internal name"
    if len(labels) == 3 and labels[1] in services and labels[2] in namespaces:
        return "internal name"
    return "external name"


@dataclass(frozen=True)
class ClientTls:
    """How the probe dials a TLS client port: the CA to trust and the name to verify."""

    ca_pem: str
    hostname: str | None


def client_tls_name(obs: Observations, candidates: Iterable[str]) -> str | None:
    """The first of ``candidates`` the client certificate covers (None without a client certificate)."""
    certs = obs.certificates.get(obs.client_cert or "") or ()
    sans = [s for cert in certs if not cert.is_ca for s in cert.sans]
    return next((name for name in candidates if san_covers(sans, name)), None)


def second_batch(obs: Observations, tls: ClientTls | None) -> list[Check]:
    """Step 5 (advertised URLs and cluster.advertise by name) and step 8 (round trip), from the first answers."""
    checks: list[Check] = []
    resolving = dns_works(obs)
    why_not = "DNS gives no answers from the probe pod (step 1): a lookup through the C resolver would hang"
    for url, servers in advertised_urls(obs).items():
        host, port = split_address(url, 4222)
        kind = classify_url(url, obs)
        who = ", ".join(servers)
        if not is_ip(host):
            checks.append(_check(DnsRequest(url_dns_key(url), host, "A", search=True, timeout=DNS_TIMEOUT), 5,
                                 f"A {host} ({kind} advertised by {who})"))
        request = TcpRequest(url_tcp_key(url), host, port, timeout=TCP_TIMEOUT)
        check = _check(request, 5, f"TCP {host}:{port} ({kind} advertised by {who})")
        if is_ip(host) or resolving:
            checks.append(check)
        else:
            checks.append(Check(check.key, check.step, check.subject, check.request, skipped=why_not))
    for address in cluster_advertise_addresses(obs):
        host, port = split_address(address, DEFAULT_CLUSTER_PORT)
        request = TcpRequest(advertise_tcp_key(address), host, port, timeout=TCP_TIMEOUT)
        check = _check(request, 5, f"TCP {host}:{port} (cluster.advertise)")
        checks.append(check if is_ip(host) or resolving else
                      Check(check.key, check.step, check.subject, check.request, skipped=why_not))
    checks += _roundtrip(obs, tls, resolving)
    return checks


def _roundtrip(obs: Observations, tls: ClientTls | None, resolving: bool) -> list[Check]:
    pods = [p for p in obs.server_pods() if (p.get("status") or {}).get("podIP")]
    if not pods:
        return []
    client = obs.client_service()
    scheme = "tls" if tls else "nats"
    port = obs.servers[0].client_port if obs.servers else 4222
    checks: list[Check] = []
    if client is not None:
        host = fqdn(kube.name(client), obs.namespace, "svc", obs.zone).rstrip(".")
        options = TlsOptions(tls.ca_pem, client_tls_name(obs, [host]) or host) if tls else None
        request = NatsRequest(ROUNDTRIP_KEY, (f"{scheme}://{host}:{port}",), tls=options,
                              connect_timeout=NATS_TIMEOUT)
        check = _check(request, 8, f"connect to {scheme}://{host}:{port} and round trip a message")
        checks.append(check if resolving else Check(check.key, 8, check.subject, check.request,
                                                    skipped="DNS gives no answers from the probe pod (step 1)"))
    first, last = pods[0], pods[-1]
    if first is not last:
        ips = [str(p["status"]["podIP"]) for p in (first, last)]
        hostname = None
        if tls:
            headless = obs.headless_service()
            candidates = [fqdn(kube.name(first), kube.name(headless), obs.namespace, "svc", obs.zone).rstrip(".")
                          if headless else "",
                          fqdn(kube.name(client), obs.namespace, "svc", obs.zone).rstrip(".") if client else ""]
            hostname = client_tls_name(obs, [c for c in candidates if c])
        options = TlsOptions(tls.ca_pem, hostname) if tls else None
        relay = RelayRequest(RELAY_KEY, (f"{scheme}://{bracketed(ips[0])}:{port}",),
                             (f"{scheme}://{bracketed(ips[1])}:{port}",),
                             tls=options, connect_timeout=NATS_TIMEOUT, timeout=RELAY_TIMEOUT)
        checks.append(_check(relay, 8, f"publish on {kube.name(first)}, subscribe on {kube.name(last)} "
                                       "(a message must cross the routes)"))
    return checks
