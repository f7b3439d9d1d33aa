"""Cluster DNS behaviour as data: what the CoreDNS of a given kind node image does with TTLs, caching and names
outside the cluster zone, and what the node's resolv.conf adds to every pod.

A :class:`DnsProfile` is chosen by name (``--natsnet-sandbox-dns``): the sandbox runs its DNS server with it,
and the pure derivations in :mod:`pytest_natsnet.expect.dnstiming` read it to bound how long a stale answer can
live. Sources (upstream paths, as the behaviour is coded there):

- kubeadm's Corefile (kubernetes ``cmd/kubeadm/app/phases/addons/dns/manifests.go``):
  ``kubernetes <zone> in-addr.arpa ip6.arpa { pods insecure; fallthrough in-addr.arpa ip6.arpa; ttl 30 }``,
  ``forward . /etc/resolv.conf``, ``cache 30``; from Kubernetes 1.32 (kubernetes PR #128359) the cache block
  adds ``disable success <zone>`` and ``disable denial <zone>``, so cluster answers are no longer cached
  (reverse-zone and forwarded answers still are). kind installs CoreDNS with kubeadm, two replicas.
- CoreDNS ``plugin/cache`` (v1.11): ``cache 30`` caps positive and negative entries at 30 s; the floor is 5 s
  (``MinimalDefaultTTL``); SERVFAIL is kept 5 s; every answer's TTLs are rewritten to the cached duration.
- kubelet ``pkg/kubelet/network/dns/dns.go``: a ClusterFirst pod's search list is the three cluster domains
  followed by the node's own search domains (a GitHub-hosted runner has one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

Upstream = Literal["nxdomain", "servfail", "drop"]
UPSTREAM_MODES: tuple[Upstream, ...] = ("nxdomain", "servfail", "drop")

KIND_NODE_IMAGE = (
    "kindest/node:v1.37.0@sha256:a1ed56cfb0e7b93589bdf97c8cd566405a265939e3620fc4f5de89adff580ae5"
)
"""The node image ``kind-configs/default.yaml`` pins (kind v0.33.0's default, as its release notes publish it):
Kubernetes 1.37, whose kubeadm Corefile no longer caches cluster answers. The default profile models it."""
RUNNER_SEARCH_DOMAIN = "runner.internal"
"""Stand-in for the one search domain a CI runner's resolv.conf has (GitHub: ``<id>.internal.cloudapp.net``)."""


@dataclass(frozen=True)
class CachePolicy:
    """CoreDNS's ``cache`` plugin as the Corefile configures it."""

    max_ttl: int
    """``cache <TTL>``: cap of positive and negative entries (seconds)."""
    min_ttl: int = 5
    """Floor of positive and negative entries (CoreDNS ``MinimalDefaultTTL``)."""
    servfail_ttl: int = 5
    """How long a SERVFAIL answer is kept (``servfail`` default)."""
    cluster_zone: bool = True
    """False: answers of the cluster zone are never stored (``disable success <zone>`` and ``disable denial
    <zone>``); reverse-zone and forwarded answers still are."""


@dataclass(frozen=True)
class DnsProfile:
    """One target's DNS behaviour; the sandbox's DNS server and the expectations read the same data."""

    name: str
    description: str
    ttl: int
    """TTL of the kubernetes plugin's answers and of its SOA (negative caching): ``ttl 30`` in kubeadm."""
    cache: CachePolicy | None
    """None: no ``cache`` plugin (answers are never reused)."""
    replicas: int
    """CoreDNS replicas behind the kube-dns ClusterIP; each keeps its own cache."""
    upstream: Upstream
    """What ``forward . /etc/resolv.conf`` yields for names outside the cluster zone (and reverse names
    CoreDNS does not know): ``nxdomain`` (an online runner), ``servfail`` or ``drop`` (no answer: an offline
    runner, the client times out)."""
    node_search: tuple[str, ...]
    """The node's search domains, appended to every ClusterFirst pod's search list."""


KIND_1_31 = DnsProfile(
    name="kind-1.31",
    description="kind node image v1.31 or older (kind v0.24/v0.25 default): ttl 30, cache 30 holds cluster answers and "
    "NXDOMAIN, 2 CoreDNS replicas, upstream answers NXDOMAIN, one runner search domain",
    ttl=30,
    cache=CachePolicy(max_ttl=30),
    replicas=2,
    upstream="nxdomain",
    node_search=(RUNNER_SEARCH_DOMAIN,),
)
KIND_1_32 = DnsProfile(
    name="kind-1.32",
    description="kind node image v1.32 or newer (kind v0.26 on; the pinned v1.37): ttl 30, cache 30 except the "
    "cluster zone (disable success/denial), 2 replicas, upstream NXDOMAIN, one runner search domain",
    ttl=30,
    cache=CachePolicy(max_ttl=30, cluster_zone=False),
    replicas=2,
    upstream="nxdomain",
    node_search=(RUNNER_SEARCH_DOMAIN,),
)
KIND_1_31_OFFLINE = DnsProfile(
    name="kind-1.31-offline",
    description="kind-1.31 on a runner without a reachable upstream resolver: names outside the cluster time out",
    ttl=30,
    cache=CachePolicy(max_ttl=30),
    replicas=2,
    upstream="drop",
    node_search=(RUNNER_SEARCH_DOMAIN,),
)
FAST = DnsProfile(
    name="fast",
    description="debugging: ttl 5, no cache, one replica, instant NXDOMAIN upstream, no node search domain",
    ttl=5,
    cache=None,
    replicas=1,
    upstream="nxdomain",
    node_search=(),
)

PROFILES: dict[str, DnsProfile] = {p.name: p for p in (KIND_1_31, KIND_1_32, KIND_1_31_OFFLINE, FAST)}
DEFAULT_PROFILE = KIND_1_32.name


def dns_profile(name: str) -> DnsProfile:
    """The profile called ``name``; ValueError naming the known ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown DNS profile {name!r}; use one of {', '.join(PROFILES)}") from None


def is_cached(profile: DnsProfile, qname: str, zone: str) -> bool:
    """Whether ``profile``'s CoreDNS cache keeps answers (positive and negative alike) for ``qname``, given the
    cluster domain ``zone``."""
    if profile.cache is None:
        return False
    name, zone = qname.rstrip(".").lower(), zone.rstrip(".").lower()
    in_cluster_zone = name == zone or name.endswith("." + zone)
    return profile.cache.cluster_zone or not in_cluster_zone


def corefile(profile: DnsProfile, zone: str = "cluster.local") -> str:
    """The Corefile a kubeadm cluster with this profile's behaviour would carry (``kube-system/coredns``): what the
    sandbox publishes, so that reading the cluster's DNS domain and cache works as on kind."""
    lines = [".:53 {", "    errors", "    health {", "       lameduck 5s", "    }", "    ready",
             f"    kubernetes {zone} in-addr.arpa ip6.arpa {{", "       pods insecure",
             "       fallthrough in-addr.arpa ip6.arpa", f"       ttl {profile.ttl}", "    }",
             "    prometheus :9153", "    forward . /etc/resolv.conf {", "       max_concurrent 1000", "    }"]
    if profile.cache is not None:
        if profile.cache.cluster_zone:
            lines.append(f"    cache {profile.cache.max_ttl}")
        else:
            lines += [f"    cache {profile.cache.max_ttl} {{", f"       disable success {zone}",
                      f"       disable denial {zone}", "    }"]
    lines += ["    loop", "    reload", "    loadbalance", "}"]
    return "\n".join(lines) + "\n"


KUBERNETES_PLUGIN_TTL = 5
"""The ``kubernetes`` plugin's TTL when its block sets none (CoreDNS ``plugin/kubernetes``: ``ttl`` default 5)."""
CACHE_DEFAULT_MAX_TTL = 3600
"""``cache`` without a TTL: CoreDNS keeps positive entries up to 3600 s (denials 1800 s; the larger bounds both)."""


def profile_from_corefile(text: str, zone: str, base: DnsProfile = KIND_1_32) -> DnsProfile:
    """The DNS behaviour a cluster's Corefile (``kube-system/coredns``) configures for the zone ``zone``: the
    ``kubernetes`` block's ``ttl`` and the ``cache`` plugin's cap and ``disable success|denial`` zones, over
    ``base`` for what a Corefile does not say (replicas, upstream, node search domains)."""
    ttl_match = re.search(r"^\s*kubernetes\b[^{\n]*\{([^}]*)\}", text, re.MULTILINE)
    ttl = re.search(r"^\s*ttl\s+(\d+)", ttl_match.group(1), re.MULTILINE) if ttl_match else None
    cache_match = re.search(r"^\s*cache\b([^{\n]*)(\{[^}]*\})?", text, re.MULTILINE)
    zone_name = zone.rstrip(".").lower()
    cache = None
    if cache_match:
        cap = re.match(r"\s*(\d+)", cache_match.group(1))
        block = cache_match.group(2) or ""

        def disabled(kind: str) -> bool:
            return any(zone_name == z.rstrip(".").lower() or z == "."
                       for line in re.findall(rf"^\s*disable\s+{kind}\s+(.*)$", block, re.MULTILINE)
                       for z in line.split())

        cache = CachePolicy(max_ttl=int(cap.group(1)) if cap else CACHE_DEFAULT_MAX_TTL,
                            cluster_zone=not (disabled("success") and disabled("denial")))
    ttl_seconds = int(ttl.group(1)) if ttl else KUBERNETES_PLUGIN_TTL
    caching = ("no cache" if cache is None else f"cache {cache.max_ttl}"
               + ("" if cache.cluster_zone else f" except {zone_name}"))
    return replace(base, name="corefile", ttl=ttl_seconds, cache=cache,
                   description=f"read from the cluster's Corefile: ttl {ttl_seconds}, {caching}")
