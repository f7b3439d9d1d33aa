"""One natsnet run: the chosen provider and source, the cells, their concurrent deployment and evidence."""

from __future__ import annotations

import concurrent.futures
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pytest_natsnet import kube
from pytest_natsnet.errors import ConfigError, NatsnetError
from pytest_natsnet.failures import DeclaredFailure
from pytest_natsnet.kube import MANAGED_BY_LABEL, MANAGED_BY_VALUE, RUN_ID_LABEL, SCENARIO_LABEL, Obj
from pytest_natsnet.matrix import Matrix, Scenario, namespace_for
from pytest_natsnet.providers.base import CellManifests, Deployment, Provider
from pytest_natsnet.settings import NatsnetSettings
from pytest_natsnet.tlsgen import CertificateAuthority, TlsMaterial, new_ca, tls_material

TLS_SECRETS = ("nats-ca", "nats-client-tls", "nats-route-tls")


@dataclass
class Cell:
    """One deployed cell, as the suites see it."""

    scenario: Scenario
    deployment: Deployment
    tls: TlsMaterial | None
    deploy_seconds: float
    disturbed: bool = False
    """A test deleted a pod: the next test first waits for the cell to be whole again (see the plugin)."""

    @property
    def expect(self) -> frozenset[DeclaredFailure]:
        """The documented failures this cell declares (empty: expected healthy)."""
        return self.scenario.expect


def docker_answers(timeout: float = 5.0) -> bool:
    """True when a Docker engine answers ``docker info`` (kind needs one)."""
    if shutil.which("docker") is None:
        return False
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def choose_provider(requested: str, docker: bool) -> tuple[str, str]:
    """The provider and why, for the run header (``auto``: kind when Docker answers, else the sandbox)."""
    if requested != "auto":
        return requested, f"--natsnet-provider={requested}"
    if docker:
        return "kind", "auto: a Docker engine answers"
    return (
        "sandbox",
        "auto: no Docker engine answers (docker info), so the Docker-free sandbox runs the cells",
    )


def make_provider(name: str, settings: NatsnetSettings, run_id: str, run_dir: Path) -> Provider:
    if name == "sandbox":
        from pytest_natsnet.providers.sandbox_provider import SandboxProvider

        return SandboxProvider(run_id)
    if name == "kind":
        from pytest_natsnet.providers.kind import KindProvider

        return KindProvider(settings, run_dir)
    if name == "existing":
        from pytest_natsnet.providers.existing import ExistingProvider

        return ExistingProvider(settings, run_id)
    raise ConfigError(
        "--natsnet-provider", f"unknown provider {name!r}", "use auto, kind, existing or sandbox"
    )


def secrets_referenced(objects: Sequence[Obj]) -> set[str]:
    names = set()
    for obj in objects:
        template = kube.spec(obj).get("template", {}) if kube.kind(obj) != "Pod" else obj
        for volume in (template.get("spec") or {}).get("volumes") or []:
            if "secret" in volume:
                names.add(str(volume["secret"]["secretName"]))
    return names


def repro_command(settings: NatsnetSettings, scenario: Scenario, provider: str, source: str) -> str:
    argv = [
        "pytest",
        "--natsnet",
        f"--natsnet-provider={provider}",
        f"--natsnet-source={source}",
        f"--natsnet-matrix={settings.matrix}",
        f"--natsnet-scenario={scenario.id}",
    ]
    if settings.manifests:
        argv.append(f"--natsnet-manifests={settings.manifests}")
    if settings.chart_named:
        argv += [f"--natsnet-chart={settings.chart}", f"--natsnet-chart-version={settings.chart_version}"]
    for directory in settings.values_dirs:
        argv.append(f"--natsnet-values-dir={directory}")
    return shlex.join(argv)


@dataclass
class NatsnetRun:
    """Everything one pytest session owns; created lazily by the first natsnet fixture."""

    settings: NatsnetSettings
    matrix: Matrix
    provider_name: str
    provider_reason: str
    source: str
    source_reason: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    prefetch_window: int = 0
    """How many cells (this one included) deploy ahead; 0 means --natsnet-parallel."""
    failed_cells: set[str] = field(default_factory=set)
    _provider: Provider | None = None
    _ca: CertificateAuthority | None = None
    _futures: dict[str, concurrent.futures.Future[Cell]] = field(default_factory=dict)
    _pool: concurrent.futures.ThreadPoolExecutor | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _cells: dict[str, Cell] = field(default_factory=dict)
    _started: float = field(default_factory=time.monotonic)

    @property
    def run_dir(self) -> Path:
        return Path(os.environ.get("NATSNET_RUN_DIR", "/tmp")) / f"natsnet-run-{self.run_id}"

    def provider(self) -> Provider:
        with self._lock:
            if self._provider is None:
                provider = make_provider(self.provider_name, self.settings, self.run_id, self.run_dir)
                provider.start()
                self._provider = provider
            return self._provider

    def _certificate_authority(self) -> CertificateAuthority:
        with self._lock:
            if self._ca is None:
                self._ca = new_ca(f"pytest-natsnet run {self.run_id}")
            return self._ca

    def manifests(self, scenario: Scenario) -> tuple[CellManifests, TlsMaterial | None]:
        """Renders the cell and adds what the chart expects to exist (TLS Secrets)."""
        from pytest_natsnet.sources import render_cell

        namespace = namespace_for(self.run_id, scenario.id)
        objects = render_cell(self.settings, scenario, namespace, source=self.source)
        tls = None
        present = {kube.name(o) for o in kube.of_kind(objects, "Secret")}
        if scenario.certs or set(TLS_SECRETS) & (secrets_referenced(objects) - present):
            tls = tls_material(self._certificate_authority(), scenario.certs or "good", namespace)
            objects = [*tls.secrets, *objects]
        labels = {
            MANAGED_BY_LABEL: MANAGED_BY_VALUE,
            RUN_ID_LABEL: self.run_id,
            SCENARIO_LABEL: re.sub(r"[^A-Za-z0-9]+$", "", re.sub(r"[^A-Za-z0-9._-]", "_", scenario.id)[:63]),
        }
        cell = CellManifests(scenario.id, namespace, "nats", tuple(objects), self.source, labels=labels)
        return cell, tls

    def _deploy(self, scenario: Scenario) -> Cell:
        cell, tls = self.manifests(scenario)
        started = time.monotonic()
        deployment = self.provider().deploy(cell, self.settings.timeout)
        return Cell(scenario, deployment, tls, time.monotonic() - started)

    def __post_init__(self) -> None:
        if self.prefetch_window <= 0:
            self.prefetch_window = self.settings.parallel

    def prefetch(self, scenarios: Sequence[Scenario]) -> None:
        """Starts deploying ``scenarios`` concurrently (up to --natsnet-parallel at once)."""
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self.settings.parallel, thread_name_prefix="natsnet-deploy"
                )
            for scenario in scenarios:
                if scenario.id not in self._futures:
                    self._futures[scenario.id] = self._pool.submit(self._deploy, scenario)

    def cell(self, scenario: Scenario) -> Cell:
        self.prefetch([scenario])
        future = self._futures[scenario.id]
        try:
            cell = future.result(timeout=self.settings.timeout + 60)
        except concurrent.futures.TimeoutError:
            raise NatsnetError(
                f"cell {scenario.id} was not deployed within {self.settings.timeout:g}s"
            ) from None
        self._cells[scenario.id] = cell
        return cell

    def evidence_dir(self, scenario: Scenario) -> Path:
        return self.settings.evidence_dir / self.run_id / scenario.id.replace("+", "_")

    def release(self, scenario: Scenario) -> Path | None:
        """Ends a cell after its last test: evidence when it failed (or keep=always), then teardown."""
        cell = self._cells.pop(scenario.id, None)
        future = self._futures.get(scenario.id)
        if cell is None and future is not None and future.done() and future.exception() is None:
            cell = future.result()
        if cell is None:
            return None
        failed = scenario.id in self.failed_cells
        evidence = None
        if failed or self.settings.keep == "always":
            evidence = self.evidence_dir(scenario)
            cell.deployment.collect(evidence)
            (evidence / "REPRODUCE.txt").write_text(
                f"{repro_command(self.settings, scenario, self.provider_name, self.source)}\n"
                f"values files: {', '.join(str(p) for p in scenario.values_files) or '(pre-rendered)'}\n"
                f"declared failures: {', '.join(sorted(scenario.expect)) or 'none (expected healthy)'}\n"
            )
        keep = self.settings.keep == "always" or (self.settings.keep == "on-failure" and failed)
        if not keep or self.provider_name == "sandbox":
            cell.deployment.teardown()
        return evidence

    def finish(self) -> None:
        """Last resort at session end: release every cell and the provider, whatever happened."""
        for scenario_id, future in list(self._futures.items()):
            if not future.done():
                future.cancel()
            try:
                cell = future.result(timeout=self.settings.timeout + 60)
            except BaseException:  # a failed deploy left its own state to the provider's stop()
                continue
            try:
                cell.deployment.teardown()  # idempotent
            except Exception as error:  # keep tearing the others down
                print(f"natsnet: teardown of {scenario_id} failed: {error}", file=sys.stderr)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._provider is not None:
            self._provider.stop(keep=self.settings.keep == "always")
