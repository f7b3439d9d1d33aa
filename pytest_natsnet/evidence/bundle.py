"""Writes an evidence bundle: README.md on top, the raw material in sub-directories, no key material anywhere.

Every text goes through ``keymaterial.scrub``; Secrets are written only redacted (certificates as their
description); after writing, the whole directory is scanned and a hit removes the file and says so.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from pytest_natsnet import kube
from pytest_natsnet.evidence import dnslog, keymaterial, readme
from pytest_natsnet.evidence.certs import redacted_secret
from pytest_natsnet.evidence.collect import Raw
from pytest_natsnet.evidence.findings import Finding
from pytest_natsnet.evidence.model import Check, Observations
from pytest_natsnet.evidence.reach import reachability
from pytest_natsnet.evidence.reach import render as render_reach
from pytest_natsnet.evidence.readme import BundleContext
from pytest_natsnet.evidence.versions import component_versions
from pytest_natsnet.kube import Obj

README = "README.md"


def _clean(obj: Mapping[str, Any]) -> Obj:
    """An object without the noise (managedFields) and with Secrets redacted."""
    if kube.kind(obj) == "Secret":
        return redacted_secret(obj)
    out = dict(obj)
    metadata = dict(out.get("metadata") or {})
    metadata.pop("managedFields", None)
    out["metadata"] = metadata
    return out


class Writer:
    """Writes scrubbed files under one directory and remembers them (for the README's file list)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: list[str] = []

    def text(self, relative: str, content: str) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(keymaterial.scrub(content), encoding="utf-8")
        self.files.append(relative)

    def json(self, relative: str, data: Any) -> None:
        self.text(relative, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")

    def yaml(self, relative: str, objects: Iterable[Mapping[str, Any]]) -> None:
        self.text(relative, yaml.safe_dump_all([_clean(o) for o in objects], sort_keys=False))

    def gzip_lines(self, relative: str, lines: Sequence[str]) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(keymaterial.scrub("\n".join(lines) + "\n").encode(), mtime=0))
        self.files.append(relative)

    def copy(self, relative: str, source: Path) -> None:
        try:
            self.text(relative, source.read_text(encoding="utf-8", errors="replace"))
        except OSError as error:
            self.text(relative + ".missing.txt", f"{source}: {error}\n")


def _check_json(check: Check) -> dict[str, Any]:
    request = dict(check.request)
    tls = request.get("tls")
    if isinstance(tls, dict) and tls.get("ca_pem"):
        request["tls"] = {**tls, "ca_pem": "(the CA certificate of the cell: see tls/certificates.md)"}
    result = dataclasses.asdict(check.result) if check.result else None
    return {"key": check.key, "step": check.step, "subject": check.subject, "request": request,
            "skipped": check.skipped or None, "result": result}


def _certificates_markdown(obs: Observations) -> str:
    lines = ["# Certificates the servers mount", "",
             "Public descriptions only: no certificate or key is copied into the bundle.", ""]
    for where, certs in obs.certificates.items():
        lines.append(f"## {where}")
        lines.append("")
        for cert in certs:
            lines += [f"- subject: {cert.subject}", f"  - issuer: {cert.issuer}",
                      f"  - SANs: {', '.join(cert.sans) or 'none'}",
                      f"  - valid: {cert.not_before} to {cert.not_after}", f"  - CA: {'yes' if cert.is_ca else 'no'}"]
        lines.append("")
    return "\n".join(lines)


def write_bundle(directory: Path, ctx: BundleContext, obs: Observations, findings: Sequence[Finding], raw: Raw,
                 *, manifests: Sequence[Obj] = ()) -> Path:
    """Writes the bundle into ``directory`` (created; files of an earlier bundle there are replaced) and returns
    the README's path."""
    directory.mkdir(parents=True, exist_ok=True)
    out = Writer(directory)
    if ctx.failures:
        out.text("tests/failures.md", readme.failures_markdown(ctx.failures))
    for index, source in enumerate(ctx.values_files, 1):
        out.copy(f"values/{index:02d}-{source.name}", source)
    if manifests:
        out.yaml("manifests/rendered.yaml", manifests)
    for kind, items in raw.objects.items():
        if items:
            out.yaml(f"objects/{kind}.yaml", items)
    if raw.secrets:
        out.yaml("objects/Secret.redacted.yaml", raw.secrets)
    for name, text in sorted(raw.logs.items()):
        out.text(f"logs/{name}.log", text)
    for namespace, kinds in raw.others.items():
        for kind, items in kinds.items():
            out.yaml(f"namespaces/{namespace}/{kind}.yaml", items)
        for name, text in sorted(raw.other_logs.get(namespace, {}).items()):
            out.text(f"namespaces/{namespace}/logs/{name}.log", text)
    for server, bodies in obs.monitor.items():
        for path, body in bodies.items():
            out.json(f"nats/{server}{path.replace('/', '-')}.json", body)
    out.json("probes/checks.json", [_check_json(c) for c in obs.checks.values()])
    if obs.probe is not None:
        out.text("probes/resolv.conf", obs.probe.resolv_conf)
    reach, problems = reachability(obs)
    out.text("network/reachability.md", "\n".join([
        "# Reachability (model of the namespace's NetworkPolicies)", "", render_reach(reach) if reach else "(none)",
        "", *[f"- {r.line(obs.namespace)}" for r in reach], *[f"- could not evaluate: {p}" for p in problems], ""]))
    if obs.certificates:
        out.text("tls/certificates.md", _certificates_markdown(obs))
    queries = [q for q in (dnslog.parse(line) for line in raw.dns_log) if q is not None]
    rows = dnslog.summarise(queries)
    if raw.dns_log:
        search = obs.probe.search if obs.probe else ()
        out.text("dns/summary.md", "\n".join([
            "# Cluster DNS queries of the namespace", "", dnslog.headline(rows, search) + ".", "",
            "Sources: " + "; ".join(raw.dns_log_sources) + ".", "", dnslog.render(rows), "",
            "Raw lines (the namespace's pods' queries and queries for its names): queries.log.gz.", ""]))
        out.gzip_lines("dns/queries.log.gz", raw.dns_log)
    versions = component_versions(obs, raw.cluster, ctx.provider, ctx.tools)
    out.json("findings.json", [dataclasses.asdict(f) for f in findings])
    out.json("timings.json", dict(obs.timings))
    if ctx.reproduce:
        lines = [ctx.reproduce, *ctx.reattach,
                 f"values files: {', '.join(str(p) for p in ctx.values_files) or '(pre-rendered)'}",
                 f"declared failures: {', '.join(ctx.declared) or 'none (expected healthy)'}"]
        out.text("REPRODUCE.txt", "\n".join(lines) + "\n")
    files = [README, *out.files]
    out.text(README, readme.render(ctx, obs, findings, reach, problems, rows, raw.dns_log_sources, versions, files))
    _enforce_no_keys(directory)
    return directory / README


def _enforce_no_keys(directory: Path) -> None:
    """Removes any file the scanner finds key material in (it should find none) and records that it did."""
    hits = keymaterial.scan(directory)
    for hit in hits:
        path = Path(hit.split(": ", 1)[0])
        path.unlink(missing_ok=True)
    if hits:
        (directory / "REMOVED-KEY-MATERIAL.txt").write_text(
            "These files held key material and were removed:\n" + "\n".join(hits) + "\n")


def reset(directory: Path) -> None:
    """Removes an earlier bundle at ``directory`` (a rerun with the same run id)."""
    if directory.is_dir():
        shutil.rmtree(directory)
