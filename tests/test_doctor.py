"""``natsnet doctor`` against cells deployed on one sandbox through its Kubernetes API: one cell per Failure Pattern
the sandbox reproduces, each seeded by a values file under tests/data/doctor/, and a healthy cell. The doctor must
name the seeded fault first (with its culprit), find nothing on the healthy cell, leave nothing of its own behind
(its probe pod) and change nothing else, and write a bundle free of key material."""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import SandboxApi, needs_sandbox, start_sandbox_up, stop_sandbox_up

from pytest_natsnet import kube
from pytest_natsnet.assembly import assemble_cell
from pytest_natsnet.deployment import ClusterTools, KubeDeployment
from pytest_natsnet.evidence import keymaterial
from pytest_natsnet.kubeclient import KubeClient
from pytest_natsnet.matrix import Scenario, load_matrix
from pytest_natsnet.providers.base import POD_GATE_CONDITION, ProviderInfo
from pytest_natsnet.providers.kubeapi import wait_until
from pytest_natsnet.settings import NatsnetSettings
from pytest_natsnet.tlsgen import new_ca

pytestmark = [needs_sandbox]
DATA = Path(__file__).parent / "data" / "doctor"
RUN_ID = f"dr{uuid.uuid4().hex[:4]}"


@dataclass(frozen=True)
class Fault:
    id: str
    values: str | None
    pattern: str | None
    """The pattern the doctor must name first (None: the healthy cell, nothing to find)."""
    says: tuple[str, ...] = ()
    """Phrases the first finding's summary (or culprits) must hold."""
    certs: str | None = None


FAULTS = (
    Fault("healthy", None, None),
    Fault("dns-blocked", "dns-blocked.yaml", "dns-blocked",
          ("routes cannot form: lookup nats-", "times out", "egress NetworkPolicy bug-egress allows no DNS")),
    Fault("routes-port-blocked", "routes-port-blocked.yaml", "route-port-blocked",
          ("routes cannot form", ":6222 is blocked", "no-route-port")),
    Fault("tls-san-mismatch", "tls-san-mismatch.yaml", "route-tls-mismatch",
          ("route certificate (Secret nats-route-tls) is valid for *.nats-headless.", "not nats-0.nats-headless"),
          certs="fqdn-only"),
    Fault("advertise-unreachable", "advertise-unreachable.yaml", "advertised-urls-unreachable",
          ("clients reconnect slowly: advertised URL nats.external.invalid:4222 (external name) does not resolve",)),
    Fault("pnra-false", "pnra-false.yaml", "peers-hidden-not-ready",
          ("peer nats-2 is not Ready", "publishNotReadyAddresses=false", "NXDOMAIN")),
    Fault("wrong-route-names", "wrong-route-names.yaml", "route-names-wrong",
          ("route host nats-0.nats-hdls does not resolve (NXDOMAIN)", "no Service nats-hdls",
           "the headless Service is nats-headless")),
)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory, real_kubectl: str) -> Iterator[SandboxApi]:
    """A sandbox whose DNS does not cache cluster answers (kind-1.32): a pod made not-ready is NXDOMAIN at once."""
    directory = tmp_path_factory.mktemp("doctor-sandbox")
    (directory / "home").mkdir()
    process, ready = start_sandbox_up(directory, ["--dns-profile", "kind-1.32"])
    try:
        yield SandboxApi(process, ready, real_kubectl, directory / "home")
    finally:
        code, out, err = stop_sandbox_up(process)
        assert code == 0, f"natsnet sandbox up exited {code}:\n{out}\n{err}"


def _deploy(fault: Fault, sandbox: SandboxApi, workdir: Path) -> KubeDeployment:
    matrix = load_matrix()
    files = (*matrix.base, *([DATA / fault.values] if fault.values else []))
    scenario = Scenario(id=fault.id, settings={}, values_files=files, certs=fault.certs, origin="marker")
    cell, _ = assemble_cell(NatsnetSettings(), scenario, RUN_ID, "reference", lambda: new_ca("doctor test"),
                            workdir=workdir / fault.id)
    tools = ClusterTools(sandbox.kubectl_bin, None, sandbox.kubeconfig, None)
    deployment = KubeDeployment(cell, ProviderInfo("test", True, True, False), KubeClient(sandbox.kubeconfig), tools)
    deployment.install(180)
    return deployment


@pytest.fixture(scope="module")
def cells(sandbox: SandboxApi, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, KubeDeployment]]:
    workdir = tmp_path_factory.mktemp("doctor-cells")
    deployed: dict[str, KubeDeployment] = {}
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            futures = {f.id: pool.submit(_deploy, f, sandbox, workdir) for f in FAULTS}
            for fault_id, future in futures.items():
                deployed[fault_id] = future.result(timeout=400)
        hidden = deployed["pnra-false"]
        hidden.set_pod_condition("nats-2", POD_GATE_CONDITION, False)
        wait_until(lambda: (not _ready(hidden, "nats-2"), "nats-2 still Ready"), 60, "nats-2 not Ready", poll=0.25)
        yield deployed
    finally:
        for deployment in deployed.values():
            deployment.teardown()


def _ready(deployment: KubeDeployment, pod: str) -> bool:
    live = deployment.client.get("Pod", pod, deployment.namespace) or {}
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (live.get("status") or {}).get("conditions") or [])


def _doctor(sandbox: SandboxApi, namespace: str, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "pytest_natsnet.cli", "doctor", "--namespace", namespace, "--kubeconfig",
            str(sandbox.kubeconfig), "--out", str(out), *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False,
                          env={**sandbox.env, "PATH": f"{Path(sandbox.kubectl_bin).parent}:{sandbox.env['PATH']}"})


WRITES = {"POST", "PUT", "PATCH", "DELETE"}
READ_SUBRESOURCES = ("/exec", "/log")
"""Requests with a write verb that change nothing: a command run in a container, a log read."""


def _access_log(sandbox: SandboxApi) -> Path:
    return Path(str(sandbox.ready["dir"])) / "apiserver.log"


def _writes(log: Path, offset: int, namespace: str) -> list[str]:
    """The API server's logged writes since ``offset`` to the namespace's objects, the doctor's own probe pods
    (``natsnet-doctor-*``) and read-like subresources aside. The cluster's own status changes (a readiness probe
    that fails on a loaded machine) are not requests, so they do not count."""
    with log.open() as lines:
        lines.seek(offset)
        found = []
        for line in lines:
            fields = line.split()
            if len(fields) < 3 or fields[1] not in WRITES:
                continue
            path = fields[2]
            if f"/namespaces/{namespace}/" in path and "natsnet-doctor-" not in path \
                    and not path.endswith(READ_SUBRESOURCES):
                found.append(" ".join(fields[1:3]))
    return found


@pytest.mark.parametrize("fault", FAULTS, ids=[f.id for f in FAULTS])
def test_the_doctor_names_the_seeded_fault(fault: Fault, cells: dict[str, KubeDeployment], sandbox: SandboxApi,
                                           tmp_path: Path) -> None:
    deployment = cells[fault.id]
    log_offset = _access_log(sandbox).stat().st_size
    done = _doctor(sandbox, deployment.namespace, tmp_path / "bundle")
    report = done.stdout + done.stderr
    print(report)  # shown with -s: what a user sees
    findings = json.loads((tmp_path / "bundle" / "findings.json").read_text())
    if fault.pattern is None:
        assert (done.returncode, findings) == (0, []), report
        assert "no findings" in done.stdout
    else:
        assert done.returncode == 1, report
        first = findings[0]
        assert first["pattern"] == fault.pattern, report
        said = " ".join([first["summary"], *first["culprits"]])
        missing = [phrase for phrase in fault.says if phrase not in said]
        assert not missing, f"the first finding lacks {missing}:\n{report}"
        assert f" 1. [{fault.pattern}] " in done.stdout, report
    readme = (tmp_path / "bundle" / "README.md").read_text()
    assert "# The Debugging Flow" in readme and "## 8. Publish/subscribe round trip" in readme
    assert keymaterial.scan(tmp_path / "bundle") == []
    pods = {kube.name(p) for p in deployment.objects("Pod")}
    assert not [p for p in pods if p.startswith("natsnet-doctor-")], "the doctor's probe pod was left behind"
    writes = _writes(_access_log(sandbox), log_offset, deployment.namespace)
    assert writes == [], f"the doctor changed the deployment it examined: {writes}"


def test_secret_data_never_reaches_the_bundle(cells: dict[str, KubeDeployment], sandbox: SandboxApi,
                                              tmp_path: Path) -> None:
    """The TLS cell's Secrets hold keys and certificates: not one of their values, raw or base64, is in any file."""
    deployment = cells["tls-san-mismatch"]
    _doctor(sandbox, deployment.namespace, tmp_path / "bundle")
    secrets = deployment.objects("Secret")
    values = [v for s in secrets for v in (s.get("data") or {}).values() if len(str(v)) > 40]
    assert len(values) >= 6, "expected the CA, client and route Secrets with certificates and keys"
    texts = [p.read_bytes().decode("utf-8", "replace") for p in (tmp_path / "bundle").rglob("*") if p.is_file()]
    import base64

    decoded = [base64.b64decode(v).decode("utf-8", "replace").strip().splitlines()[1] for v in values]
    leaks = [v[:20] for v in [*values, *decoded] if any(v in text for text in texts)]
    assert not leaks
    assert "Secret nats-route-tls/tls.crt" in (tmp_path / "bundle" / "tls" / "certificates.md").read_text()


def test_a_namespace_that_does_not_exist_is_one_line(sandbox: SandboxApi, tmp_path: Path) -> None:
    done = _doctor(sandbox, "no-such-namespace", tmp_path / "bundle")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "natsnet doctor: --namespace no-such-namespace: does not exist in context natsnet-sandbox; name the "
        "namespace the NATS release runs in")
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "bundle").exists()


@pytest.mark.parametrize(("labels", "says"), [
    ("app.kubernetes.io/name=nats,app.kubernetes.io/instance=nats,app.kubernetes.io/component=nats",
     "Service nats, nats-headless selects them: the probe pod would become its endpoint"),
    ("just-a-word", "'just-a-word' is not key=value"),
])
def test_probe_labels_that_would_disturb_the_deployment_are_refused(
        labels: str, says: str, cells: dict[str, KubeDeployment], sandbox: SandboxApi, tmp_path: Path) -> None:
    deployment = cells["healthy"]
    log_offset = _access_log(sandbox).stat().st_size
    done = _doctor(sandbox, deployment.namespace, tmp_path / "bundle", "--probe-labels", labels)
    assert done.returncode == 2 and says in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert _writes(_access_log(sandbox), log_offset, deployment.namespace) == []
    assert not (tmp_path / "bundle").exists()


def test_the_write_filter_counts_changes_to_the_namespace_only(tmp_path: Path) -> None:
    log = tmp_path / "apiserver.log"
    log.write_text("10:00:00 PATCH /apis/apps/v1/namespaces/cell/statefulsets/nats 200 1.0ms\n")
    offset = log.stat().st_size
    log.write_text(log.read_text() + "".join(f"10:00:01 {line} 200 1.0ms\n" for line in [
        "GET /api/v1/namespaces/cell/pods",
        "PATCH /api/v1/namespaces/cell/pods/natsnet-doctor-1a2b",
        "POST /api/v1/namespaces/cell/pods/nats-0/exec",
        "DELETE /api/v1/namespaces/other/pods/nats-0",
        "PATCH /api/v1/namespaces/cell/pods/nats-1/status",
        "DELETE /api/v1/namespaces/cell/services/nats",
    ]))
    assert _writes(log, offset, "cell") == ["PATCH /api/v1/namespaces/cell/pods/nats-1/status",
                                            "DELETE /api/v1/namespaces/cell/services/nats"]
