"""A pod's ``/etc/resolv.conf`` as the kubelet composes it and the container runtime writes it.

Rules of kubernetes ``pkg/kubelet/network/dns/dns.go`` (``GetPodDNS``, ``getPodDNSType``,
``generateSearchesForDNSClusterFirst``, ``appendDNSConfig``, ``mergeDNSOptions``, ``formDNSConfigFitsLimits``)
and containerd's ``parseDNSOptions`` (one ``search`` line, one ``nameserver`` line each, one ``options`` line):

- ``dnsPolicy: ClusterFirst`` (the default): the cluster DNS Service IP is the only nameserver; the search list is
  ``<ns>.svc.<zone> svc.<zone> <zone>`` followed by the node's search domains (duplicates dropped); options are
  ``ndots:5`` (the node's options are not kept). With ``hostNetwork: true`` it falls back to ``Default``;
- ``ClusterFirstWithHostNet``: as ClusterFirst, also on the host network;
- ``Default``: the node's nameservers, search domains and options;
- ``None``: nothing but ``dnsConfig``;
- ``dnsConfig`` (any policy): its nameservers and searches are appended (duplicates dropped), its options merged
  by name, the pod's value winning;
- limits: at most 3 nameservers, at most 32 search domains, none longer than 253 characters, the search line at
  most 2048 characters (domains dropped from the end); each cut is a ``DNSConfigForming`` warning.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_OPTIONS = ("ndots:5",)
MAX_NAMESERVERS = 3
MAX_SEARCH_PATHS = 32
MAX_SEARCH_LINE_CHARS = 2048
MAX_SEARCH_DOMAIN_CHARS = 253


@dataclass(frozen=True)
class NodeResolv:
    """The node's own resolver configuration (what the kubelet's ``--resolv-conf`` file says)."""

    nameservers: tuple[str, ...]
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class PodDnsConfig:
    """The runtime's DNS config for one pod, and the kubelet's warnings about it."""

    nameservers: tuple[str, ...]
    search: tuple[str, ...]
    options: tuple[str, ...]
    warnings: tuple[str, ...] = ()

    def resolv_conf(self) -> str:
        """The file containerd writes (empty when there is nothing to say)."""
        lines = []
        if self.search:
            lines.append("search " + " ".join(self.search))
        lines += [f"nameserver {server}" for server in self.nameservers]
        if self.options:
            lines.append("options " + " ".join(self.options))
        return "".join(line + "\n" for line in lines)


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _merge_options(existing: Sequence[str], extra: Iterable[Mapping[str, Any]]) -> tuple[str, ...]:
    """``mergeDNSOptions``: by option name, the pod's value wins (Go's map order is unspecified; kept in order)."""
    merged: dict[str, str] = {}
    for text in existing:
        name, _, value = text.partition(":")
        merged[name] = value
    for option in extra:
        given = option.get("value")
        merged[str(option.get("name", ""))] = "" if given is None else str(given)
    return tuple(f"{name}:{value}" if value else name for name, value in merged.items() if name)


def _fit(config: PodDnsConfig) -> PodDnsConfig:
    """``formDNSConfigFitsLimits``."""
    warnings = list(config.warnings)
    nameservers = config.nameservers
    if len(nameservers) > MAX_NAMESERVERS:
        nameservers = nameservers[:MAX_NAMESERVERS]
        warnings.append(
            "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line "
            f"is: {' '.join(nameservers)}"
        )
    search = list(config.search)
    exceeded = len(search) > MAX_SEARCH_PATHS
    search = search[:MAX_SEARCH_PATHS]
    fitting = [s for s in search if len(s) <= MAX_SEARCH_DOMAIN_CHARS]
    exceeded = exceeded or len(fitting) != len(search)
    while fitting and len(" ".join(fitting)) > MAX_SEARCH_LINE_CHARS:
        fitting.pop()
        exceeded = True
    if exceeded:
        warnings.append(
            "Search Line limits were exceeded, some search paths have been omitted, the applied search line "
            f"is: {' '.join(fitting)}"
        )
    return PodDnsConfig(nameservers, tuple(fitting), config.options, tuple(warnings))


def pod_dns_config(
    pod: Mapping[str, Any], cluster_dns: Sequence[str], zone: str, node: NodeResolv
) -> PodDnsConfig:
    """The DNS config the kubelet hands the runtime for ``pod`` (``GetPodDNS``)."""
    spec = pod.get("spec") or {}
    namespace = str((pod.get("metadata") or {}).get("namespace") or "default")
    policy = str(spec.get("dnsPolicy") or "ClusterFirst")
    host_network = bool(spec.get("hostNetwork"))
    warnings: list[str] = []
    if policy == "ClusterFirst" and host_network:
        policy = "Default"
    if policy not in ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"):
        warnings.append(f"invalid dnsPolicy {policy!r}: falling back to ClusterFirst")
        policy = "ClusterFirst"
    if policy == "None":
        config = PodDnsConfig((), (), ())
    elif policy == "Default" or not cluster_dns:
        config = PodDnsConfig(node.nameservers, node.search, node.options)
    else:
        zone = zone.rstrip(".")
        cluster_search = (f"{namespace}.svc.{zone}", f"svc.{zone}", zone)
        config = PodDnsConfig(tuple(cluster_dns), _unique((*cluster_search, *node.search)), DEFAULT_OPTIONS)
    dns_config = spec.get("dnsConfig")
    if dns_config:
        config = PodDnsConfig(
            _unique((*config.nameservers, *(str(s) for s in dns_config.get("nameservers") or []))),
            _unique((*config.search, *(str(s) for s in dns_config.get("searches") or []))),
            _merge_options(config.options, dns_config.get("options") or []),
        )
    elif policy == "None":
        warnings.append("dnsPolicy None without dnsConfig: the API server would reject this pod")
    return _fit(PodDnsConfig(config.nameservers, config.search, config.options, tuple(warnings)))


def resolv_conf(namespace: str, nameserver: str, zone: str, node_search: Sequence[str] = ()) -> str:
    """``/etc/resolv.conf`` of a ClusterFirst pod in ``namespace`` on a node with ``node_search``."""
    pod = {"metadata": {"namespace": namespace}, "spec": {}}
    return pod_dns_config(pod, [nameserver], zone, NodeResolv((), tuple(node_search))).resolv_conf()
