"""Findings: pure functions of the observations, one detector per Failure Pattern, ranked by the table.

A finding names its pattern, says in one line what is wrong and why (``routes cannot form: lookup
nats-1.nats-headless times out; egress NetworkPolicy bug-egress allows no DNS``), the culprit objects or settings,
and the observations that support it. A detector reports only what it can support with an observation (a probe
answer, a log line, the mesh as ``/routez`` shows it, an object's status); a policy the model says blocks but
nothing shows enforced is left out, so a healthy deployment yields no finding.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_natsnet import kube
from pytest_natsnet.evidence import patterns as P
from pytest_natsnet.evidence import plan
from pytest_natsnet.evidence.model import Check, LogLine, Observations, distinct_peers, pod_ready, restarts
from pytest_natsnet.evidence.reach import DNS, PROBE, Reach, culprit_lines, reachability
from pytest_natsnet.expect.nats import is_ip, route_tls_name, san_covers, url_host
from pytest_natsnet.probe.model import Outcome

MAX_EVIDENCE = 8


@dataclass(frozen=True)
class Finding:
    pattern: str
    summary: str
    culprits: tuple[str, ...] = ()
    evidence: tuple[str, ...] = ()

    @property
    def title(self) -> str:
        return P.BY_ID[self.pattern].title if self.pattern in P.BY_ID else self.pattern

    def lines(self, indent: str = "   ") -> list[str]:
        """The finding as terminal lines: the summary, then culprits and evidence indented."""
        out = [f"[{self.pattern}] {self.summary}"]
        out += [f"{indent}culprit: {c}" for c in self.culprits]
        out += [f"{indent}evidence: {e}" for e in self.evidence]
        return out


# -- shared observations -------------------------------------------------------------------------------------


def _log_lines(obs: Observations, *categories: str, contains: str = "") -> list[LogLine]:
    found = [line for line in obs.log_lines if line.category in categories and contains in line.text]
    return sorted(found, key=lambda line: -line.count)


def _log_evidence(lines: Sequence[LogLine], limit: int = 3) -> list[str]:
    return [f"log {line.pod}{f' (×{line.count})' if line.count > 1 else ''}: {line.text}" for line in lines[:limit]]


def _check_line(check: Check) -> str:
    detail = check.result.detail if check.result else {}
    extra = ""
    if check.answers():
        extra = f" {', '.join(check.answers())}"
    elif detail.get("last_attempt_error") or detail.get("error"):
        extra = f" ({detail.get('last_attempt_error') or detail['error']})"
    elif detail.get("published") is not None:
        extra = f" ({detail['published']} published, none received)"
    elif isinstance(detail.get("roundtrip"), dict) and detail["roundtrip"].get("error"):
        extra = f" ({detail['roundtrip']['error']})"
    return f"probe: {check.subject} → {check.outcome}{extra}"


def missing_peers(obs: Observations) -> dict[str, list[str]]:
    """Server -> the other servers its ``/routez`` does not list (servers whose /routez did not answer are left
    out)."""
    names = [s.name for s in obs.servers]
    missing = {}
    for name in names:
        routez = (obs.monitor.get(name) or {}).get("/routez")
        if not isinstance(routez, dict):
            continue
        absent = [peer for peer in names if peer != name and peer not in distinct_peers(routez)]
        if absent:
            missing[name] = absent
    return missing


def _mesh_broken(obs: Observations) -> bool:
    return bool(missing_peers(obs))


def _dns_timed_out(obs: Observations) -> list[Check]:
    return [c for c in obs.checks.values() if c.request.get("kind") == "dns" and c.is_(Outcome.TIMEOUT)]


def _configmap_name(obs: Observations) -> str:
    sts = kube.find(obs.of_kind("StatefulSet"), "StatefulSet", obs.statefulset or "")
    volumes = (kube.spec(sts).get("template") or {}).get("spec", {}).get("volumes") if sts else None
    for volume in volumes or []:
        if "configMap" in volume:
            return str(volume["configMap"].get("name"))
    return "(nats.conf)"


# -- detectors, in the table's order -------------------------------------------------------------------------


def dns_blocked(obs: Observations, reach: Sequence[Reach]) -> list[Finding]:
    servers = {s.name for s in obs.servers} | {s.pod for s in obs.servers}
    blocked = [r for r in reach if r.source in servers and r.target == DNS and r.protocol == "UDP" and not r.allowed]
    timeouts = _dns_timed_out(obs)
    log = _log_lines(obs, "dns", contains="i/o timeout")
    if not timeouts and not log:
        return []  # nothing observed: DNS answers (a policy the model blocks is not enforced here)
    hosts = [h for h in plan.route_hosts(obs) if not is_ip(h)]
    host = hosts[1] if len(hosts) > 1 else (hosts[0] if hosts else "the route hosts")
    culprits = culprit_lines(blocked, obs.namespace)
    policy_names = sorted({p.split("/")[-1] for r in blocked for p, _, _ in r.culprits()})
    if blocked:
        where = "egress NetworkPolicy" if len(policy_names) == 1 else "egress NetworkPolicies"
        verb = "allows" if len(policy_names) == 1 else "allow"
        summary = f"routes cannot form: lookup {host} times out; {where} {', '.join(policy_names)} {verb} no DNS"
    else:
        summary = (f"routes cannot form: lookup {host} times out; cluster DNS does not answer (no NetworkPolicy of "
                   f"{obs.namespace} blocks it: look at kube-system)")
    evidence = [f"policy model: {r.line(obs.namespace)}" for r in blocked[:1]]
    evidence += [_check_line(c) for c in timeouts[:2]]
    evidence += _log_evidence(log)
    if not log:
        evidence.append("nats-server logs a blocked lookup only when Go's resolver gives up (~50 s on kind's "
                        "resolv.conf); none logged yet")
    return [Finding(P.DNS_BLOCKED_PATTERN, summary, tuple(culprits), tuple(evidence[:MAX_EVIDENCE]))]


def route_port_blocked(obs: Observations, reach: Sequence[Reach]) -> list[Finding]:
    names = {s.name for s in obs.servers}
    blocked = [r for r in reach if r.source in names and r.target in names and r.what == "route" and not r.allowed]
    missing = missing_peers(obs)
    confirmed = [r for r in blocked if r.target in missing.get(r.source, ()) or r.source in missing.get(r.target, ())]
    log = [line for line in _log_lines(obs, "route-error") if "dial tcp" in line.text and "timeout" in line.text]
    probe_blocked = [c for c in obs.checks.values() if c.key.startswith("tcp/") and c.is_(Outcome.BLOCKED)
                     and any(c.key == plan.tcp_key(s.pod, plan.cluster_port(s.config)) for s in obs.servers)]
    if not confirmed and not (log and blocked):
        return []
    first = (confirmed or blocked)[0]
    culprits = culprit_lines(blocked, obs.namespace)
    side = "egress" if not first.verdict.egress.allowed else "ingress"
    policy_names = sorted({p.split("/")[-1] for p, _, _ in first.culprits()})
    policies = "NetworkPolicy" if len(policy_names) == 1 else "NetworkPolicies"
    verb = "allows" if len(policy_names) == 1 else "allow"
    summary = (f"routes cannot form: {first.source} → {first.target}:{first.port} is blocked; {side} {policies} "
               f"{', '.join(policy_names)} {verb} no route port {first.port}")
    evidence = [f"policy model: {r.line(obs.namespace)}" for r in (confirmed or blocked)[:2]]
    evidence += [f"/routez: {server} has no route to {', '.join(peers)}" for server, peers in list(missing.items())[:2]]
    evidence += [_check_line(c) for c in probe_blocked[:2]]
    evidence += _log_evidence(log)
    return [Finding(P.ROUTE_PORT_BLOCKED, summary, tuple(culprits), tuple(evidence[:MAX_EVIDENCE]))]


def _why_unresolvable(obs: Observations, host: str) -> str:
    labels = host.rstrip(".").split(".")
    services = {kube.name(s) for s in obs.of_kind("Service")}
    pods = {kube.name(p) for p in obs.of_kind("Pod")}
    headless = obs.headless_service()
    if len(labels) >= 3 and labels[2] != obs.namespace and labels[2] != "svc":
        return f"it names namespace {labels[2]}; the servers run in {obs.namespace}"
    if len(labels) >= 2 and labels[1] not in services:
        return (f"there is no Service {labels[1]} in {obs.namespace}"
                + (f" (the headless Service is {kube.name(headless)})" if headless else ""))
    if labels[0] not in pods:
        return f"there is no pod {labels[0]} (the servers are {', '.join(s.pod for s in obs.servers)})"
    if len(labels) == 1:
        return "a bare pod name is not a DNS name; pods are <pod>.<headless Service>"
    return "the name is not published"


def _hidden(obs: Observations, host: str) -> bool:
    """A route host that names a server pod the headless Service hides (not Ready, no pNRA)."""
    headless = obs.headless_service()
    if headless is None or kube.spec(headless).get("publishNotReadyAddresses") is True:
        return False
    labels = host.split(".")
    pod = kube.find(obs.of_kind("Pod"), "Pod", labels[0])
    return pod is not None and len(labels) > 1 and labels[1] == kube.name(headless) and not pod_ready(pod)


def route_names_wrong(obs: Observations, reach: Sequence[Reach]) -> list[Finding]:
    del reach
    wrong = []
    for host in plan.route_hosts(obs):
        check = obs.check(plan.route_dns_key(host))
        if check is not None and check.is_(Outcome.NXDOMAIN) and not _hidden(obs, host):
            wrong.append((host, check))
    if not wrong:
        return []
    host, check = wrong[0]
    others = f" (and {len(wrong) - 1} more route host{'s' if len(wrong) > 2 else ''})" if len(wrong) > 1 else ""
    summary = (f"routes cannot form: route host {host} does not resolve (NXDOMAIN){others}: "
               f"{_why_unresolvable(obs, host)}")
    routes = sorted({url for s in obs.servers for url in s.routes if url_host(url) in {h for h, _ in wrong}})
    culprits = (f"ConfigMap {_configmap_name(obs)}: cluster.routes {', '.join(routes)}",)
    evidence = [_check_line(c) for _, c in wrong[:3]]
    evidence += _log_evidence(_log_lines(obs, "dns", contains="no such host"))
    return [Finding(P.ROUTE_NAMES_WRONG, summary, culprits, tuple(evidence[:MAX_EVIDENCE]))]


def _endpoint_conditions(obs: Observations, service: str, pod: str) -> str | None:
    for slice_ in obs.of_kind("EndpointSlice"):
        if kube.labels(slice_).get("kubernetes.io/service-name") != service:
            continue
        for endpoint in slice_.get("endpoints") or []:
            if (endpoint.get("targetRef") or {}).get("name") == pod or endpoint.get("hostname") == pod:
                conditions = endpoint.get("conditions") or {}
                return ", ".join(f"{k}={str(v).lower()}" for k, v in sorted(conditions.items()))
    return None


NOT_A_CAUSE = ("ImageNotEmulated",)
"""Container states that do not keep a pod from being Ready (the sandbox creates, but does not run, the chart's
reloader and exporter)."""


def _not_ready_reason(pod: Mapping[str, Any]) -> str:
    """Why a pod is not Ready: a container that is not running (its nats container first), else a readiness gate
    not True (or not set), else a failing readiness probe, else the Ready condition's reason."""
    status = pod.get("status") or {}
    conditions = {str(c.get("type")): c for c in status.get("conditions") or []}
    statuses = sorted(status.get("containerStatuses") or [], key=lambda c: c.get("name") != "nats")
    for container in statuses:
        state = container.get("state") or {}
        waiting, terminated = state.get("waiting") or {}, state.get("terminated") or {}
        if waiting.get("reason") in NOT_A_CAUSE:
            continue
        if waiting.get("reason") or terminated:
            why = waiting.get("reason") or f"exited {terminated.get('exitCode')} {terminated.get('reason') or ''}"
            return f"container {container.get('name')}: {str(why).strip()}"
    for gate in kube.spec(pod).get("readinessGates") or []:
        condition = conditions.get(str(gate.get("conditionType")))
        if condition is None:
            return f"readiness gate {gate.get('conditionType')} is not set"
        if condition.get("status") != "True":
            return f"readiness gate {gate.get('conditionType')} is {condition.get('status')}"
    if any(c.get("name") == "nats" and c.get("ready") is False for c in statuses):
        return "container nats is running but not ready (readiness probe failing)"
    ready = conditions.get("Ready") or {}
    reason = " ".join(str(ready.get(k)) for k in ("reason", "message") if ready.get(k))
    return reason or "Ready is not True"


def peers_hidden_not_ready(obs: Observations, reach: Sequence[Reach]) -> list[Finding]:
    del reach
    headless = obs.headless_service()
    if headless is None or kube.spec(headless).get("publishNotReadyAddresses") is True:
        return []
    hidden = [p for p in obs.server_pods() if not pod_ready(p)]
    if not hidden:
        return []
    pod = hidden[0]
    name = kube.name(pod)
    fqdn = plan.fqdn(name, kube.name(headless), obs.namespace, "svc", obs.zone)
    check = obs.check(plan.pod_dns_key(name))
    seen = f"{fqdn} → {check.outcome}" if check and check.result else f"{fqdn} is not published"
    value = kube.spec(headless).get("publishNotReadyAddresses")
    setting = f"publishNotReadyAddresses={str(value).lower() if value is not None else 'unset'}"
    summary = (f"peer {name} is not Ready ({_not_ready_reason(pod)}) and the headless Service {kube.name(headless)} "
               f"publishes only Ready pods ({setting}): {seen}; routes to it fail until it is Ready")
    culprits = (f"Service {kube.name(headless)}: spec.{setting}",)
    evidence = []
    for hidden_pod in hidden[:3]:
        conditions = _endpoint_conditions(obs, kube.name(headless), kube.name(hidden_pod))
        evidence.append(f"EndpointSlice of {kube.name(headless)}: {kube.name(hidden_pod)} "
                        f"{conditions or 'absent'}")
    if check is not None and check.result is not None:
        evidence.append(_check_line(check))
    lookups = _log_lines(obs, "dns", contains="no such host")
    about = [line for line in lookups if f'"{name}.' in line.text]
    evidence += _log_evidence([*about, *(line for line in lookups if line not in about)])
    return [Finding(P.PEERS_HIDDEN_NOT_READY, summary, culprits, tuple(evidence[:MAX_EVIDENCE]))]


def route_names(obs: Observations) -> list[tuple[str, str]]:
    """(server, name) for every name a server's routes verify: the literal route hosts, and for routes by IP
    (configured or gossiped) the routeTLSName nats-server uses, else the IP."""
    names = []
    for server in obs.servers:
        for url in server.routes:
            host = url_host(url)
            names.append((server.name, host if not is_ip(host) else (route_tls_name(server) or host)))
        gossip = route_tls_name(server)
        if gossip is None:
            for peer in obs.servers:
                if peer.name != server.name:
                    names.append((server.name, peer.ip))
    return list(dict.fromkeys(names))


def route_tls_mismatch(obs: Observations, reach: Sequence[Reach]) -> list[Finding]:
    del reach
    if not any(s.route_tls for s in obs.servers):
        return []
    log = _log_lines(obs, "tls", contains="x509")
    certs = [c for c in obs.certificates.get(obs.route_cert or "", ()) if not c.is_ca]
    if not certs:
        if not log:
            return []
        return [Finding(P.ROUTE_TLS_SAN_MISMATCH, "routes cannot form: route TLS handshakes fail certificate "
                        "verification (the certificate could not be read)", (), tuple(_log_evidence(log)))]
    sans = [s for cert in certs for s in cert.sans]
    uncovered = [(server, name) for server, name in route_names(obs) if name and not san_covers(sans, name)]
    if not uncovered:
        return []
    names = list(dict.fromkeys(name for _, name in uncovered))
    secret = (obs.route_cert or "").split("/")[0]
    summary = (f"routes cannot form: the route certificate ({secret}) is valid for {', '.join(sans) or 'no name'}, "
               f"not {', '.join(names[:3])}{' …' if len(names) > 3 else ''}, the name{'s' if len(names) > 1 else ''} "
               f"routes dial")
    routes = sorted({url for s in obs.servers for url in s.routes})
    culprits = (f"{secret}: SANs {', '.join(sans)}", f"ConfigMap {_configmap_name(obs)}: cluster.routes "
                f"{', '.join(routes[:3])}{' …' if len(routes) > 3 else ''}")
    evidence = [f"certificate: {certs[0].line()}"]
    evidence += _log_evidence(log)
    if _mesh_broken(obs):
        evidence += [f"/routez: {s} has no route to {', '.join(p)}" for s, p in list(missing_peers(obs).items())[:2]]
    return [Finding(P.ROUTE_TLS_SAN_MISMATCH, summary, culprits, tuple(evidence[:MAX_EVIDENCE]))]


def cluster_advertise_unreachable(obs: Observations, reach: Sequence[Reach]) -> list[Finding]:
    del reach
    if not plan.dns_works(obs):
        return []
    bad: list[tuple[str, Check]] = []
    for address in plan.cluster_advertise_addresses(obs):
        host, _ = plan.split_address(address, plan.DEFAULT_CLUSTER_PORT)
        dns = obs.check(plan.advertise_dns_key(host))
        tcp = obs.check(plan.advertise_tcp_key(address))
        if dns is not None and dns.result is not None and not dns.works:
            bad.append((address, dns))
        elif tcp is not None and tcp.result is not None and not tcp.works:
            bad.append((address, tcp))
    if not bad:
        return []
    address, check = bad[0]
    who = [s.name for s in obs.servers if s.advertise == address]
    verb = "does not resolve" if check.request.get("kind") == "dns" else "is not reachable"
    summary = (f"routes learned through gossip cannot form: {', '.join(who) or 'a server'} advertise"
               f"{'s' if len(who) == 1 else ''} cluster address {address}, which {verb} from the probe pod "
               f"({check.outcome})")
    evidence = [_check_line(c) for _, c in bad[:3]]
    evidence += [f"/routez: {s} has no route to {', '.join(p)}" for s, p in list(missing_peers(obs).items())[:3]]
    evidence += _log_evidence(_log_lines(obs, "route-error", "dns"))
    culprits = (f"ConfigMap {_configmap_name(obs)}: cluster.advertise {address}",)
    return [Finding(P.CLUSTER_ADVERTISE_UNREACHABLE, summary, culprits, tuple(evidence[:MAX_EVIDENCE]))]


def advertised_urls_unreachable(obs: Observations, reach: Sequence[Reach]) -> list[Finding]:
    del reach
    bad: list[tuple[str, list[str], Check]] = []
    for url, servers in plan.advertised_urls(obs).items():
        dns = obs.check(plan.url_dns_key(url))
        tcp = obs.check(plan.url_tcp_key(url))
        if dns is not None and dns.result is not None and not dns.works and plan.dns_works(obs):
            bad.append((url, servers, dns))
        elif tcp is not None and tcp.result is not None and not tcp.works:
            bad.append((url, servers, tcp))
    if not bad:
        return []
    url, servers, check = bad[0]
    kind = plan.classify_url(url, obs)
    verb = "does not resolve from the probe pod" if check.request.get("kind") == "dns" or check.is_(
        Outcome.UNRESOLVED) else "is not reachable from the probe pod"
    summary = f"clients reconnect slowly: advertised URL {url} ({kind}) {verb} ({check.outcome})"
    if len(bad) > 1:
        summary += f"; {len(bad) - 1} more advertised URL{'s' if len(bad) > 2 else ''} fail the same way"
    advertising = [s for s in obs.servers if s.client_advertise and url.startswith(s.client_advertise.split(":")[0])]
    culprits = ((f"ConfigMap {_configmap_name(obs)}: client_advertise {advertising[0].client_advertise}",)
                if advertising else (f"connect_urls gossiped by {', '.join(servers)} (cluster.no_advertise=false)",))
    evidence = [f"/varz connect_urls of {', '.join(s)}: {u} ({plan.classify_url(u, obs)})" for u, s, _ in bad[:3]]
    evidence += [_check_line(c) for _, _, c in bad[:3]]
    return [Finding(P.ADVERTISED_URLS_UNREACHABLE, summary, culprits, tuple(evidence[:MAX_EVIDENCE]))]


def mesh_incomplete(obs: Observations, reach: Sequence[Reach]) -> list[Finding]:
    del reach
    missing = missing_peers(obs)
    if not missing:
        return []
    total = len(obs.servers) - 1
    parts = [f"{server} routes to {total - len(peers)} of {total} peers (not {', '.join(peers)})"
             for server, peers in missing.items()]
    summary = "the route mesh is incomplete: " + "; ".join(parts[:3]) + (" …" if len(parts) > 3 else "")
    evidence = _log_evidence(_log_lines(obs, "route-error", "dns", "tls", "auth", "duplicate"))
    return [Finding(P.MESH_INCOMPLETE, summary, (), tuple(evidence[:MAX_EVIDENCE]))]


def pods_not_ready(obs: Observations, reach: Sequence[Reach]) -> list[Finding]:
    del reach
    problems = []
    for pod in obs.server_pods():
        name = kube.name(pod)
        if not pod_ready(pod):
            problems.append(f"{name} is not Ready ({_not_ready_reason(pod)})")
        count = restarts(pod)
        if count:
            last = next(((s.get("lastState") or {}).get("terminated") or {} for s in
                         (pod.get("status") or {}).get("containerStatuses") or [] if s.get("restartCount")), {})
            why = f"; last exit {last.get('exitCode')} {last.get('reason') or ''}".rstrip() if last else ""
            problems.append(f"{name} restarted {count} time{'s' if count > 1 else ''}{why}")
    sts = kube.find(obs.of_kind("StatefulSet"), "StatefulSet", obs.statefulset or "")
    if sts is not None:
        wanted = int(kube.spec(sts).get("replicas") or 0)
        present = len(obs.server_pods())
        if present < wanted:
            problems.append(f"StatefulSet {kube.name(sts)} has {present} of {wanted} pods")
    if not problems:
        return []
    warnings = [e for e in obs.of_kind("Event") if e.get("type") == "Warning"
                and (e.get("involvedObject") or {}).get("name") in {s.pod for s in obs.servers}]
    evidence = _log_evidence(_log_lines(obs, "fatal"))
    evidence += [f"event {(e.get('involvedObject') or {}).get('name')}: {e.get('reason')}: {e.get('message')}"
                 for e in warnings[-3:]]
    return [Finding(P.PODS_NOT_READY, "servers are not all Ready: " + "; ".join(problems[:3]), (), tuple(evidence))]


def roundtrip_failed(obs: Observations, reach: Sequence[Reach]) -> list[Finding]:
    del reach
    failed = [c for c in (obs.check(plan.ROUNDTRIP_KEY), obs.check(plan.RELAY_KEY))
              if c is not None and c.result is not None and not c.works]
    if not failed:
        return []
    summary = "messages do not flow: " + _check_line(failed[0]).removeprefix("probe: ")
    return [Finding(P.ROUNDTRIP_FAILED, summary, (), tuple(_check_line(c) for c in failed[1:]))]


Detector = Callable[[Observations, Sequence[Reach]], list[Finding]]
DETECTORS: tuple[tuple[str, Detector], ...] = (
    (P.DNS_BLOCKED_PATTERN, dns_blocked),
    (P.ROUTE_PORT_BLOCKED, route_port_blocked),
    (P.ROUTE_NAMES_WRONG, route_names_wrong),
    (P.PEERS_HIDDEN_NOT_READY, peers_hidden_not_ready),
    (P.ROUTE_TLS_SAN_MISMATCH, route_tls_mismatch),
    (P.CLUSTER_ADVERTISE_UNREACHABLE, cluster_advertise_unreachable),
    (P.ADVERTISED_URLS_UNREACHABLE, advertised_urls_unreachable),
    (P.MESH_INCOMPLETE, mesh_incomplete),
    (P.PODS_NOT_READY, pods_not_ready),
    (P.ROUNDTRIP_FAILED, roundtrip_failed),
)


def analyse(obs: Observations) -> list[Finding]:
    """Every finding the observations support, ranked by the Failure Patterns table."""
    reach, _ = reachability(obs)
    found: list[Finding] = []
    for _, detect in DETECTORS:
        found += detect(obs, reach)
    return sorted(found, key=lambda f: P.rank(f.pattern))


__all__ = ["DETECTORS", "PROBE", "Finding", "analyse", "missing_peers", "route_names"]
