"""A failed (or kept) cell's bundle, written by the run before the cell is torn down.

The bundle is best effort and bounded: whatever goes wrong while collecting is written into it
(``bundle-error.txt``) instead of failing the run, and a deployment that does not take the kube path (a test's
fake) gets its own ``collect`` dump.
"""

from __future__ import annotations

import shlex
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_natsnet.evidence.bundle import reset, write_bundle
from pytest_natsnet.evidence.collect import observe
from pytest_natsnet.evidence.findings import Finding, analyse
from pytest_natsnet.evidence.readme import BundleContext, TestFailure
from pytest_natsnet.matrix import Scenario
from pytest_natsnet.providers.base import CLIENT_LABELS, Deployment, ProbeTarget


def reattach_commands(kubeconfig: str, context: str | None, namespace: str) -> tuple[str, ...]:
    argv = ["kubectl", "--kubeconfig", kubeconfig, *(["--context", context] if context else []), "-n", namespace,
            "get", "pods,svc,endpointslices,networkpolicies"]
    return (shlex.join(argv),)


def doctor_command(kubeconfig: str, context: str | None, namespace: str, release: str) -> str:
    argv = ["natsnet", "doctor", "--namespace", namespace, "--release", release, "--kubeconfig", kubeconfig]
    return shlex.join([*argv, *(["--context", context] if context else [])])


def sandbox_dns_lines(path: Path | None) -> Iterable[str]:
    if path is None or not path.is_file():
        return []
    with path.open(encoding="utf-8", errors="replace") as handle:
        return handle.readlines()


def capture(
    directory: Path,
    scenario: Scenario,
    deployment: Deployment,
    *,
    failed: bool,
    kept: bool,
    failures: Sequence[tuple[str, str]],
    reproduce: str,
    provider: Any = None,
) -> tuple[Path, list[Finding]]:
    """Writes the cell's bundle into ``directory``; returns the README (or the dump) and the findings."""
    reset(directory)
    directory.mkdir(parents=True, exist_ok=True)
    declared = tuple(sorted(scenario.expect))
    repro = _reproduce_text(reproduce, scenario)
    from pytest_natsnet.deployment import KubeDeployment

    if not isinstance(deployment, KubeDeployment):
        deployment.collect(directory)
        (directory / "REPRODUCE.txt").write_text(repro)
        return directory, []
    started = time.monotonic()
    try:
        query_log = getattr(provider, "dns_query_log", None)
        log_path = query_log() if callable(query_log) else None
        obs, raw = observe(deployment, ProbeTarget(deployment.namespace, dict(CLIENT_LABELS)),
                           release=deployment.release, client=deployment.client,
                           extra_dns_log=lambda: sandbox_dns_lines(log_path),
                           other_namespaces=deployment.namespaces[1:])
        findings = analyse(obs)
        tools = deployment.tools
        ctx = BundleContext(
            title=f"cell {scenario.id}",
            verdict="failed" if failed else "kept",
            declared=declared,
            failures=tuple(TestFailure(nodeid, text) for nodeid, text in failures),
            reproduce=reproduce,
            reattach=reattach_commands(str(tools.kubeconfig), tools.context, deployment.namespace) if kept else (),
            doctor=doctor_command(str(tools.kubeconfig), tools.context, deployment.namespace, deployment.release)
            if kept else None,
            values_files=tuple(scenario.values_files),
            provider=tuple(deployment.info.details),
            tools=_tools(tools),
        )
        readme = write_bundle(directory, ctx, obs, findings, raw, manifests=deployment.manifests.objects)
        return readme, findings
    except Exception as error:  # evidence must never break the run: keep what the plain dump can give
        (directory / "bundle-error.txt").write_text(
            f"the evidence bundle could not be written after {time.monotonic() - started:.1f} s: {error}\n\n"
            + traceback.format_exc())
        try:
            deployment.collect(directory / "dump")
        except Exception as dump_error:
            (directory / "bundle-error.txt").open("a").write(f"\nthe plain dump failed too: {dump_error}\n")
        (directory / "REPRODUCE.txt").write_text(repro)
        return directory, []


def _tools(tools: Any) -> Mapping[str, str | None]:
    return {"kubectl": getattr(tools, "kubectl", None), "helm": getattr(tools, "helm", None)}


def _reproduce_text(reproduce: str, scenario: Scenario) -> str:
    return (f"{reproduce}\n"
            f"values files: {', '.join(str(p) for p in scenario.values_files) or '(pre-rendered)'}\n"
            f"declared failures: {', '.join(sorted(scenario.expect)) or 'none (expected healthy)'}\n")
