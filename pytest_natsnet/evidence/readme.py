"""The bundle's README.md: what failed, why (the findings), how to reproduce, then the Debugging Flow step by step
with the observations that matter and links to the raw material beside it. Pure: data in, Markdown out."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pytest_natsnet import kube
from pytest_natsnet.evidence import dnslog, natslogs
from pytest_natsnet.evidence import patterns as P
from pytest_natsnet.evidence.findings import Finding, missing_peers, route_names
from pytest_natsnet.evidence.model import STEPS, Check, Observations, distinct_peers, pod_ready, restarts
from pytest_natsnet.evidence.reach import Reach
from pytest_natsnet.evidence.reach import render as render_reach
from pytest_natsnet.expect.nats import is_ip, san_covers


@dataclass(frozen=True)
class TestFailure:
    __test__ = False  # not a pytest test class

    nodeid: str
    text: str


@dataclass(frozen=True)
class BundleContext:
    """What the bundle says beyond the observations: who made it and how to get back to the same state."""

    title: str
    """``cell tls-bad-sans`` or ``namespace shop``."""
    verdict: str
    """``failed``, ``kept`` or ``doctor``."""
    declared: tuple[str, ...] = ()
    failures: tuple[TestFailure, ...] = ()
    reproduce: str | None = None
    reattach: tuple[str, ...] = ()
    doctor: str | None = None
    values_files: tuple[Path, ...] = ()
    provider: tuple[str, ...] = ()
    tools: Mapping[str, str | None] = field(default_factory=dict)


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _check_rows(checks: Sequence[Check]) -> list[list[object]]:
    rows: list[list[object]] = []
    for check in checks:
        detail = check.result.detail if check.result else {}
        seen = ", ".join(check.answers()) or str(detail.get("error") or detail.get("address") or "")
        if check.skipped:
            seen = f"skipped: {check.skipped}"
        rows.append([check.subject, f"**{check.outcome}**" if check.result and not check.works else check.outcome,
                     seen])
    return rows


def _head(ctx: BundleContext, obs: Observations, findings: Sequence[Finding]) -> list[str]:
    lines = [f"# natsnet evidence: {ctx.title} ({ctx.verdict})", ""]
    expected = ", ".join(ctx.declared) if ctx.declared else "none: expected healthy"
    lines.append(f"Namespace `{obs.namespace}`, release `{obs.release}`, StatefulSet `{obs.statefulset or '?'}` "
                 f"with {len(obs.servers)} servers. Declared failures: {expected}.")
    lines.append("")
    if ctx.failures:
        lines += ["## What failed", ""]
        for failure in ctx.failures:
            first = next((line.strip() for line in failure.text.splitlines() if line.strip()), "")
            lines.append(f"- `{failure.nodeid}`: {first}")
        lines += ["", "The failed tests' full tables: [tests/failures.md](tests/failures.md).", ""]
    lines += ["## Why: findings, ranked by the Failure Patterns", ""]
    if not findings:
        lines.append("The Debugging Flow found nothing wrong: DNS answers, the servers are Ready and fully meshed, "
                     "advertised URLs work from a client pod and a message crosses the routes.")
    for index, finding in enumerate(findings, 1):
        lines.append(f"{index}. **{finding.title}** (`{finding.pattern}`): {finding.summary}")
        lines += [f"   - culprit: {c}" for c in finding.culprits]
        lines += [f"   - {e}" for e in finding.evidence]
    declared = [P.BY_ID[f.pattern].declares for f in findings if P.BY_ID[f.pattern].declares]
    if ctx.declared:
        unmatched = sorted(set(ctx.declared) - set(d for d in declared if d))
        lines += ["", "Declared failures reproduced by the findings: "
                  + (", ".join(sorted(set(ctx.declared) - set(unmatched))) or "none")
                  + (f"; not seen: {', '.join(unmatched)}" if unmatched else "") + "."]
    if obs.gaps:
        lines += ["", "Not observed (the flow went on without it):", ""]
        lines += [f"- {gap}" for gap in obs.gaps]
    lines.append("")
    lines += ["## Reproduce", ""]
    if ctx.reproduce:
        lines += ["Rerun just this cell:", "", "```sh", ctx.reproduce, "```", ""]
    if ctx.reattach:
        lines += ["The cell was kept; reattach to it:", "", "```sh", *ctx.reattach, "```", ""]
    if ctx.doctor:
        lines += ["Walk the Debugging Flow again against it:", "", "```sh", ctx.doctor, "```", ""]
    if ctx.values_files:
        lines.append("Values files (copied into [values/](values/)): "
                     + ", ".join(f"`{p.name}`" for p in ctx.values_files) + ".")
        lines.append("")
    return lines


def _dns_step(obs: Observations) -> list[str]:
    lines = [f"## 1. {STEPS[1]}", ""]
    if obs.probe:
        resolv = [line for line in obs.probe.resolv_conf.splitlines() if line and not line.startswith("#")]
        lines.append(f"From pod `{obs.probe.pod}` in `{obs.probe.namespace}` (labels "
                     f"{', '.join(f'{k}={v}' for k, v in obs.probe.labels.items()) or 'none'}); its resolv.conf: "
                     f"`{' / '.join(resolv) or '?'}`.")
        lines.append("")
    checks = obs.checks_of_step(1)
    lines += _table(["query", "outcome", "answers"], _check_rows(checks)) if checks else ["(no DNS probe ran)"]
    return [*lines, ""]


def _endpoints_step(obs: Observations) -> list[str]:
    lines = [f"## 2. {STEPS[2]}", ""]
    rows = []
    for service in obs.of_kind("Service"):
        pnra = kube.spec(service).get("publishNotReadyAddresses")
        for slice_ in obs.of_kind("EndpointSlice"):
            if kube.labels(slice_).get("kubernetes.io/service-name") != kube.name(service):
                continue
            for endpoint in slice_.get("endpoints") or []:
                conditions = endpoint.get("conditions") or {}
                kind = "headless" if kube.spec(service).get("clusterIP") == "None" else "ClusterIP"
                rows.append([kube.name(service), f"{kind}{', pNRA' if pnra else ''}",
                             (endpoint.get("targetRef") or {}).get("name", "?"),
                             ", ".join(endpoint.get("addresses") or []), endpoint.get("hostname") or "",
                             *(str(conditions.get(k, "")).lower() for k in ("ready", "serving", "terminating"))])
    lines += _table(["Service", "type", "pod", "addresses", "hostname", "ready", "serving", "terminating"], rows) \
        if rows else ["(no EndpointSlice)"]
    return [*lines, "", "Objects: [objects/](objects/).", ""]


def _pods_step(obs: Observations) -> list[str]:
    lines = [f"## 3. {STEPS[3]}", ""]
    rows = []
    for pod in obs.of_kind("Pod"):
        status = pod.get("status") or {}
        rows.append([kube.name(pod), status.get("phase", ""), "yes" if pod_ready(pod) else "**no**", restarts(pod),
                     status.get("podIP", "")])
    lines += _table(["pod", "phase", "Ready", "restarts", "IP"], rows) if rows else ["(no pods)"]
    headless = obs.headless_service()
    if headless is not None:
        pnra = kube.spec(headless).get("publishNotReadyAddresses") is True
        hidden = [kube.name(p) for p in obs.server_pods() if not pod_ready(p)]
        lines += ["", f"Headless Service `{kube.name(headless)}` publishNotReadyAddresses="
                      f"{str(kube.spec(headless).get('publishNotReadyAddresses')).lower()}: "
                  + ("not-ready servers stay in DNS." if pnra else
                     f"not-ready servers disappear from DNS ({', '.join(hidden) or 'none is not Ready now'}).")]
    warnings = [e for e in obs.of_kind("Event") if e.get("type") == "Warning"]
    if warnings:
        lines += ["", "Warning events:", ""]
        lines += [f"- {(e.get('involvedObject') or {}).get('name')}: {e.get('reason')}: {e.get('message')}"
                  for e in warnings[-8:]]
    return [*lines, ""]


def _logs_step(obs: Observations) -> list[str]:
    lines = [f"## 4. {STEPS[4]}", ""]
    created: dict[str, int] = {}
    closed: dict[str, int] = {}
    for line in obs.log_lines:
        if line.category == "route-created":
            created[line.pod] = created.get(line.pod, 0) + line.count
        elif line.category == "route-closed":
            closed[line.pod] = closed.get(line.pod, 0) + line.count
    for server in obs.servers:
        lines.append(f"- {server.pod}: {created.get(server.pod, 0)} route connections created, "
                     f"{closed.get(server.pod, 0)} closed ([log](logs/{server.pod}.nats.log))")
    problems = natslogs.problems(obs.log_lines)
    lines += ["", "Route, DNS, TLS and authorization errors (repeats folded):" if problems else
              "No route, DNS, TLS or authorization error in the servers' logs.", ""]
    for line in problems[:12]:
        lines.append(f"- {line.pod} ×{line.count}{f' (last {line.last})' if line.count > 1 else ''}: `{line.text}`")
    if len(problems) > 12:
        lines.append(f"- … {len(problems) - 12} more distinct messages in [logs/](logs/)")
    return [*lines, ""]


def _urls_step(obs: Observations) -> list[str]:
    lines = [f"## 5. {STEPS[5]}", ""]
    rows = []
    for server in obs.servers:
        varz = (obs.monitor.get(server.name) or {}).get("/varz") or {}
        routez = (obs.monitor.get(server.name) or {}).get("/routez")
        peers = ", ".join(sorted(distinct_peers(routez))) if isinstance(routez, Mapping) else "(no /routez)"
        settings = []
        if server.no_advertise:
            settings.append("cluster.no_advertise")
        if server.client_advertise:
            settings.append(f"client_advertise {server.client_advertise}")
        if server.advertise:
            settings.append(f"cluster.advertise {server.advertise}")
        rows.append([server.name, ", ".join(varz.get("connect_urls") or []) or "none", "; ".join(settings) or "-",
                     peers])
    lines += _table(["server", "/varz connect_urls", "advertise settings", "/routez peers"], rows)
    missing = missing_peers(obs)
    lines += ["", "Mesh: " + ("complete." if not missing else
                             "; ".join(f"{s} lacks {', '.join(p)}" for s, p in missing.items()) + ".")]
    checks = obs.checks_of_step(5)
    urls = [c for c in checks if not c.key.startswith("http/")]
    if urls:
        lines += ["", "Advertised addresses, checked from the probe pod:", ""]
        lines += _table(["check", "outcome", "observed"], _check_rows(urls))
    return [*lines, "", "Bodies: [nats/](nats/).", ""]


def _network_step(obs: Observations, reach: Sequence[Reach], problems: Sequence[str]) -> list[str]:
    lines = [f"## 6. {STEPS[6]}", ""]
    policies = obs.of_kind("NetworkPolicy")
    if not policies:
        lines.append(f"No NetworkPolicy in `{obs.namespace}`.")
    for policy in policies:
        spec = kube.spec(policy)
        lines.append(f"- `{kube.name(policy)}`: podSelector `{json.dumps(spec.get('podSelector') or {})}`, "
                     f"policyTypes {', '.join(spec.get('policyTypes') or ['Ingress'])}, "
                     f"{len(spec.get('egress') or [])} egress and {len(spec.get('ingress') or [])} ingress rules")
    if reach:
        lines += ["", "What the policies allow (model, ✓ allowed ✗ blocked):", "", render_reach(list(reach))]
        blocked = [r for r in reach if not r.allowed]
        if blocked:
            lines += ["", "Blocked, and why:", ""]
            lines += [f"- {r.line(obs.namespace)}" for r in blocked[:10]]
            if len(blocked) > 10:
                lines.append(f"- … {len(blocked) - 10} more in [network/reachability.md](network/reachability.md)")
    lines += [f"- model could not evaluate: {p}" for p in problems]
    observed = obs.checks_of_step(6)
    if observed:
        lines += ["", "Observed from the probe pod:", ""]
        lines += _table(["check", "outcome", "observed"], _check_rows(observed))
    return [*lines, ""]


def _tls_step(obs: Observations) -> list[str]:
    lines = [f"## 7. {STEPS[7]}", ""]
    if not obs.certificates:
        return [*lines, "TLS is off (no certificate is mounted by the servers).", ""]
    for where, certs in obs.certificates.items():
        for cert in certs:
            role = " (route certificate)" if where == obs.route_cert else (
                " (client certificate)" if where == obs.client_cert else "")
            lines.append(f"- {where}{role}: {cert.line()}")
    route = [c for c in obs.certificates.get(obs.route_cert or "", ()) if not c.is_ca]
    if route:
        sans = [s for c in route for s in c.sans]
        rows = [[server, name, "yes" if san_covers(sans, name) else "**no**",
                 "IP: needs an IP SAN" if is_ip(name) else ""] for server, name in route_names(obs)]
        lines += ["", "Names the routes dial, against the route certificate's SANs:", ""]
        lines += _table(["server", "dialled name", "covered", "note"], rows)
    return [*lines, "", "Details: [tls/certificates.md](tls/certificates.md).", ""]


def _roundtrip_step(obs: Observations) -> list[str]:
    lines = [f"## 8. {STEPS[8]}", ""]
    checks = obs.checks_of_step(8)
    if not checks:
        return [*lines, "(not run)", ""]
    rows = []
    for check in checks:
        detail = check.result.detail if check.result else {}
        seen = detail.get("last_attempt_error") or detail.get("error") or (
            f"via {detail.get('connected_url')}" if detail.get("connected_url") else "")
        if check.skipped:
            seen = f"skipped: {check.skipped}"
        rows.append([check.subject, f"**{check.outcome}**" if check.result and not check.works else check.outcome,
                     seen])
    return [*lines, *_table(["check", "outcome", "observed"], rows), ""]


def render(ctx: BundleContext, obs: Observations, findings: Sequence[Finding], reach: Sequence[Reach],
           reach_problems: Sequence[str], dns_rows: Sequence[dnslog.NameSummary], dns_sources: Sequence[str],
           versions: Sequence[tuple[str, str]], files: Sequence[str]) -> str:
    lines = _head(ctx, obs, findings)
    lines += ["# The Debugging Flow", ""]
    lines += _dns_step(obs)
    lines += ["DNS query log: " + dnslog.headline(dns_rows, obs.probe.search if obs.probe else ()) + (
        f" (from {'; '.join(dns_sources)}; summary in [dns/summary.md](dns/summary.md))" if dns_sources
        else " (the cluster's DNS pods log no queries: CoreDNS logs only errors without its `log` plugin)") + ".", ""]
    lines += _endpoints_step(obs)
    lines += _pods_step(obs)
    lines += _logs_step(obs)
    lines += _urls_step(obs)
    lines += _network_step(obs, reach, reach_problems)
    lines += _tls_step(obs)
    lines += _roundtrip_step(obs)
    lines += ["# Versions", ""]
    lines += _table(["component", "version"], versions)
    lines += ["", "# Files", ""]
    lines += [f"- [{f}]({f})" for f in files]
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in obs.timings.items())
    lines += ["", f"Collected in: {timing or '-'}.", "", "<details><summary>The Failure Patterns table</summary>", "",
              P.table_markdown(), "", "</details>", ""]
    return "\n".join(lines)


def failures_markdown(failures: Sequence[TestFailure]) -> str:
    parts = ["# Failed tests", ""]
    for failure in failures:
        text = failure.text if len(failure.text) <= 200_000 else failure.text[:200_000] + "\n…(cut)"
        parts += [f"## {failure.nodeid}", "", "```", text.rstrip(), "```", ""]
    return "\n".join(parts)

