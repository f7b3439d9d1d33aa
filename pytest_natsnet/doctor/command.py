"""``natsnet doctor --namespace NS``: walks the Debugging Flow against a live deployment through the same kube path
as the providers, prints the findings ranked by the Failure Patterns, and writes the same bundle a failed cell
gets. Read-only: the only thing it creates is its own short-lived probe pod, removed at the end (also on Ctrl-C).
"""

from __future__ import annotations

import datetime
import shutil
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from pytest_natsnet import kube
from pytest_natsnet.deployment import ClusterTools, KubeDeployment
from pytest_natsnet.errors import ConfigError, NatsnetError
from pytest_natsnet.evidence.bundle import write_bundle
from pytest_natsnet.evidence.collect import observe
from pytest_natsnet.evidence.findings import Finding, analyse
from pytest_natsnet.evidence.model import Observations
from pytest_natsnet.evidence.readme import BundleContext
from pytest_natsnet.kubeclient import KubeClient, KubeError
from pytest_natsnet.providers.base import CLIENT_LABELS, CellManifests, ProbeTarget, ProviderInfo

DEFAULT_TIMEOUT = 60.0
PROBE_PREFIX = "natsnet-doctor"


@dataclass(frozen=True)
class DoctorOptions:
    namespace: str
    release: str = "nats"
    kubeconfig: Path | None = None
    context: str | None = None
    out: Path | None = None
    timeout: float = DEFAULT_TIMEOUT
    kubectl: str | None = None
    probe_labels: Mapping[str, str] | None = None
    """The probe pod's labels (default: an application client's, ``app.kubernetes.io/name=natsnet-client``): give
    your clients' labels to probe as they are let through the namespace's NetworkPolicies."""


def parse_labels(text: str) -> dict[str, str]:
    """``k=v,k2=v2`` -> labels; ConfigError naming the option otherwise."""
    labels = {}
    for item in (part.strip() for part in text.split(",") if part.strip()):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--probe-labels {text}", f"{item!r} is not key=value", "write k=v[,k2=v2]")
        labels[key.strip()] = value.strip()
    return labels


def _selected_by(client: KubeClient, namespace: str, labels: Mapping[str, str]) -> list[str]:
    """The Services of the namespace whose selector the labels match (a probe pod with them would be an
    endpoint)."""
    return [kube.name(s) for s in client.list("Service", namespace)
            if kube.service_selector_matches(kube.spec(s).get("selector"), labels)]


def _cluster(options: DoctorOptions) -> tuple[Path, str]:
    from pytest_natsnet.providers.existing import current_context, default_kubeconfig

    kubeconfig = options.kubeconfig or default_kubeconfig()
    if not kubeconfig.is_file():
        raise ConfigError(f"--kubeconfig {kubeconfig}", "does not exist", "pass --kubeconfig FILE or set $KUBECONFIG")
    return kubeconfig, options.context or current_context(kubeconfig)


def bundle_dir(options: DoctorOptions) -> Path:
    if options.out is not None:
        return options.out
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    return Path("natsnet-doctor") / f"{options.namespace}-{stamp}"


def examine(options: DoctorOptions, say: TextIO = sys.stderr) -> tuple[Observations, list[Finding], Path]:
    """The flow against ``options.namespace``; the findings and the bundle's README."""
    kubeconfig, context = _cluster(options)
    client = KubeClient(kubeconfig, context)
    try:
        exists = client.get("Namespace", options.namespace, None) is not None
    except KubeError as error:
        if error.status != 403:
            raise
        exists = True  # may not read namespaces: the flow says what it could not see
    if not exists:
        raise ConfigError(f"--namespace {options.namespace}", f"does not exist in context {context}",
                          "name the namespace the NATS release runs in")
    info = ProviderInfo("doctor", None, True, False, details=(f"context {context} of {kubeconfig}",))
    kubectl = options.kubectl or shutil.which("kubectl") or ""
    tools = ClusterTools(kubectl, None, kubeconfig, context)
    cell = CellManifests("doctor", options.namespace, options.release, (), "existing")
    deployment = KubeDeployment(cell, info, client, tools)
    labels = dict(options.probe_labels if options.probe_labels is not None else CLIENT_LABELS)
    endpoints_of = _selected_by(client, options.namespace, labels)
    if endpoints_of:
        raise ConfigError(f"--probe-labels {','.join(f'{k}={v}' for k, v in labels.items())}",
                          f"Service {', '.join(endpoints_of)} selects them: the probe pod would become its endpoint",
                          "give labels a client carries, not a server")
    target = ProbeTarget(options.namespace, labels, name=f"{PROBE_PREFIX}-{uuid.uuid4().hex[:6]}")
    say.write(f"natsnet doctor: walking the Debugging Flow in {options.namespace} (context {context}) from probe "
              f"pod {target.pod_name} …\n")
    try:
        obs, raw = observe(deployment, target, release=options.release, budget=options.timeout, client=client)
    finally:
        try:
            client.delete("Pod", target.pod_name, options.namespace, grace_seconds=0)
        except NatsnetError as error:
            say.write(f"natsnet doctor: could not remove probe pod {target.pod_name}: {error}; delete it with "
                      f"kubectl -n {options.namespace} delete pod {target.pod_name}\n")
    findings = analyse(obs)
    command = ["natsnet", "doctor", "--namespace", options.namespace, "--release", options.release,
               "--kubeconfig", str(kubeconfig), "--context", context]
    ctx = BundleContext(title=f"namespace {options.namespace}", verdict="doctor", doctor=" ".join(command),
                        provider=info.details, tools={"kubectl": kubectl or None})
    readme = write_bundle(bundle_dir(options), ctx, obs, findings, raw)
    return obs, findings, readme


def report_lines(obs: Observations, findings: list[Finding], readme: Path) -> list[str]:
    """What the command prints: the deployment, the findings (ranked) with their evidence, the gaps, the bundle."""
    lines = [f"natsnet doctor: namespace {obs.namespace}, release {obs.release}: StatefulSet "
             f"{obs.statefulset or '(none found)'} with {len(obs.servers)} servers; flow took "
             f"{obs.timings.get('total', 0.0):.1f} s"]
    if findings:
        lines.append(f"{len(findings)} finding{'s' if len(findings) > 1 else ''}, root causes first:")
        for index, finding in enumerate(findings, 1):
            first, *rest = finding.lines(indent="      ")
            lines += [f"{index:>2}. {first}", *rest]
    elif obs.statefulset:
        lines.append("no findings: DNS answers, the servers are Ready and fully meshed, advertised URLs work from a "
                     "client pod and a message crosses the routes")
    for gap in obs.gaps:
        lines.append(f"not observed: {gap}")
    lines.append(f"bundle: {readme}")
    return lines


def run(options: DoctorOptions, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """0: nothing found; 1: findings (or no NATS StatefulSet to examine); 2: bad input (one line)."""
    try:
        obs, findings, readme = examine(options, err)
    except ConfigError as error:
        err.write(f"natsnet doctor: {' '.join(str(error).split())}\n")
        return 2
    except NatsnetError as error:
        err.write(f"natsnet doctor: {' '.join(str(error).split())[:800]}\n")
        return 2
    except KeyboardInterrupt:
        err.write("natsnet doctor: interrupted (its probe pod was removed)\n")
        return 130
    for line in report_lines(obs, findings, readme):
        out.write(line + "\n")
    return 1 if findings or not obs.statefulset else 0
