"""Step 6 as a model: which flows the namespace's NetworkPolicies allow between the servers, cluster DNS and the
probe pod (``expect/netpol.py`` semantics), for DNS (53 UDP/TCP) and the client, route and monitoring ports. Pure.

Only the policies of the deployment's namespace are known to the flow; policies elsewhere (for example ingress
policies on kube-dns in kube-system) are outside the model and show only in the probes' observations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_natsnet import kube
from pytest_natsnet.evidence.model import Observations
from pytest_natsnet.evidence.plan import cluster_port, monitor_port
from pytest_natsnet.expect.netpol import Flow, Peer, PolicyError, Verdict, evaluate

DNS = "cluster DNS"
PROBE = "probe"


@dataclass(frozen=True)
class Reach:
    source: str
    target: str
    port: int
    protocol: str
    what: str
    """``DNS``, ``client``, ``route``, ``monitoring``."""
    verdict: Verdict

    @property
    def allowed(self) -> bool:
        return self.verdict.allowed

    def culprits(self) -> list[tuple[str, str, str]]:
        """The policies isolating the blocked end(s) of the flow: (``ns/name``, direction, pod)."""
        if self.verdict.allowed:
            return []
        ends = []
        if not self.verdict.egress.allowed:
            ends += [(p, "egress", self.source) for p in self.verdict.egress.policies]
        if not self.verdict.ingress.allowed:
            ends += [(p, "ingress", self.target) for p in self.verdict.ingress.policies]
        return ends

    def line(self, namespace: str = "") -> str:
        """``nats-0 → cluster DNS 53/UDP (DNS): blocked: ...``; policies of ``namespace`` named without it."""
        reason = self.verdict.reason().replace(f"{namespace}/", "") if namespace else self.verdict.reason()
        return f"{self.source} → {self.target} {self.port}/{self.protocol} ({self.what}): {reason}"


def culprit_lines(rows: Sequence[Reach], namespace: str) -> list[str]:
    """One line per policy: ``NetworkPolicy name (egress of nats-0, nats-1)``, in policy order."""
    pods: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        for policy, direction, pod in row.culprits():
            where = pods.setdefault((policy, direction), [])
            if pod not in where:
                where.append(pod)
    return [f"NetworkPolicy {policy.removeprefix(namespace + '/')} ({direction} of {', '.join(where)})"
            for (policy, direction), where in sorted(pods.items())]


def _ports(pod: Mapping[str, Any]) -> dict[str, tuple[int, str]]:
    ports = {}
    for container in kube.spec(pod).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") and port.get("containerPort"):
                ports[str(port["name"])] = (int(port["containerPort"]), str(port.get("protocol") or "TCP"))
    return ports


def peer_of(pod: Mapping[str, Any], default_namespace: str) -> Peer:
    return Peer(kube.namespace_of(pod, default_namespace), kube.name(pod), kube.labels(pod),
                str((pod.get("status") or {}).get("podIP") or ""), _ports(pod))


def dns_peer(obs: Observations) -> Peer:
    """A cluster DNS pod as seen (kube-system, k8s-app=kube-dns), else kubeadm's labels for one."""
    if obs.dns_pods:
        return peer_of(obs.dns_pods[0], "kube-system")
    return Peer("kube-system", "kube-dns", {"k8s-app": "kube-dns"}, "", {"dns": (53, "UDP"), "dns-tcp": (53, "TCP")})


def reachability(obs: Observations) -> tuple[list[Reach], list[str]]:
    """Every modelled flow and its verdict; plus the problems that kept some from being modelled."""
    policies = obs.of_kind("NetworkPolicy")
    labels = dict(obs.namespace_labels)
    labels.setdefault(obs.namespace, {})
    labels.setdefault("kube-system", {})
    rows: list[Reach] = []
    problems: list[str] = []
    dns = dns_peer(obs)
    servers = [(peer_of(p, obs.namespace), obs.server(kube.name(p))) for p in obs.server_pods()]
    sources: list[tuple[str, Peer]] = [(peer.name, peer) for peer, _ in servers]
    if obs.probe is not None:
        sources.append((PROBE, Peer(obs.probe.namespace, obs.probe.pod, dict(obs.probe.labels))))

    def add(source: str, src: Peer, target: str, dst: Peer, port: int, protocol: str, what: str) -> None:
        try:
            verdict = evaluate(Flow(src, dst, port, protocol), policies, labels, default_namespace=obs.namespace)
        except PolicyError as error:
            if str(error) not in problems:
                problems.append(str(error))
            return
        rows.append(Reach(source, target, port, protocol, what, verdict))

    for name, src in sources:
        for protocol in ("UDP", "TCP"):
            add(name, src, DNS, dns, 53, protocol, "DNS")
        for dst, server in servers:
            if dst.name == src.name or server is None:
                continue
            for port, what in ((server.client_port, "client"), (cluster_port(server.config), "route"),
                               (monitor_port(_pod(obs, dst.name), server.config), "monitoring")):
                add(name, src, dst.name, dst, port, "TCP", what)
    return rows, problems


def _pod(obs: Observations, name: str) -> dict[str, Any]:
    return kube.find(obs.of_kind("Pod"), "Pod", name) or {}


def render(rows: list[Reach]) -> str:
    """Markdown: one row per source, one column per target and port; ✓ allowed, ✗ blocked."""
    sources = list(dict.fromkeys(r.source for r in rows))
    order = [DNS, *sources]
    columns: list[tuple[str, int, str]] = []
    for row in rows:
        column = (row.target, row.port, row.protocol)
        if column not in columns:
            columns.append(column)
    columns.sort(key=lambda c: (order.index(c[0]) if c[0] in order else len(order), c[1], c[2]))
    cell = {(r.source, r.target, r.port, r.protocol): r for r in rows}
    header = "| from \\ to | " + " | ".join(f"{t} {p}/{proto}" for t, p, proto in columns) + " |"
    lines = [header, "|---" * (len(columns) + 1) + "|"]
    for source in sources:
        marks = []
        for target, port, protocol in columns:
            found = cell.get((source, target, port, protocol))
            marks.append("" if found is None else ("✓" if found.allowed else "✗"))
        lines.append(f"| {source} | " + " | ".join(marks) + " |")
    return "\n".join(lines)
