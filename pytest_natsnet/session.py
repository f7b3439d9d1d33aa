"""One natsnet run: the chosen provider and source, the cells, their concurrent deployment and evidence."""

from __future__ import annotations

import concurrent.futures
import os
import shlex
import shutil
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_natsnet import runrecord
from pytest_natsnet.assembly import assemble_cell
from pytest_natsnet.errors import NatsnetError
from pytest_natsnet.failures import DeclaredFailure
from pytest_natsnet.matrix import Matrix, Scenario
from pytest_natsnet.plan import RunPlan
from pytest_natsnet.providers import make_provider, recorded_cluster_name
from pytest_natsnet.providers.base import CellManifests, ClusterAccess, Deployment, Provider
from pytest_natsnet.report.progress import Progress
from pytest_natsnet.settings import NatsnetSettings
from pytest_natsnet.tlsgen import DEFAULT_DOMAIN, CertificateAuthority, TlsMaterial, new_ca


@dataclass(frozen=True)
class Replacement:
    """A server pod a test deleted, as it was: what a later test needs to watch the StatefulSet bring it back."""

    victim: str
    uid: str | None
    ip: str
    log_offsets: Mapping[str, int]
    """Lines in each other server's log when the pod was deleted: what they logged since is about its return."""
    deleted_at: float
    """``time.monotonic()`` of the deletion."""


@dataclass
class Cell:
    """One deployed cell, as the suites see it."""

    scenario: Scenario
    deployment: Deployment
    tls: TlsMaterial | None
    deploy_seconds: float
    disturbed: bool = False
    """A test deleted a pod: the next test first waits for the cell to be whole again (see the plugin)."""
    replacement: Replacement | None = None
    """The server pod a test deleted since the cell was last whole: a test that observes a replacement
    (``natsnet_replacement``) watches this one come back instead of waiting for the cell and deleting another."""
    prepared: dict[str, Any] = field(default_factory=dict)
    """What a test made for later tests of the cell, by name (e.g. a stream written before a replacement)."""

    @property
    def expect(self) -> frozenset[DeclaredFailure]:
        """The documented failures this cell declares (empty: expected healthy)."""
        return self.scenario.expect

    def settle_first(self, observes_replacement: bool) -> bool:
        """Whether a test must wait for the cell to be whole before it starts: after a disturbance, unless the test
        observes the replacement still in flight."""
        return self.disturbed and not (observes_replacement and self.replacement is not None)

    def settled(self) -> None:
        """The cell is whole again: nothing disturbed, no replacement in flight."""
        self.disturbed, self.replacement = False, None


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
    plan: RunPlan
    prefetch_window: int = 0
    """How many cells (this one included) deploy ahead; 0 means --natsnet-parallel."""
    failed_cells: set[str] = field(default_factory=set)
    failures: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    """Cell -> its failed tests (node id, failure text) as this process saw them: the evidence README's input."""
    deploy_evidence: dict[str, Path] = field(default_factory=dict)
    """Cells whose deploy failed -> their evidence directory (written when the deploy failed)."""
    undeployed: dict[str, str] = field(default_factory=dict)
    """Cells whose deploy failed -> the one failure message (the error and where its evidence is); the cell's other
    tests are skipped as not deployed."""
    progress: Progress = field(default_factory=Progress)
    """Says what a long step (cluster start, a cell's deploy) is doing while the main thread waits on it."""
    _provider: Provider | None = None
    _access: ClusterAccess | None = None
    _record: runrecord.RunRecord | None = None
    _released: set[str] = field(default_factory=set)
    _ca: CertificateAuthority | None = None
    _futures: dict[str, concurrent.futures.Future[Cell]] = field(default_factory=dict)
    _pool: concurrent.futures.ThreadPoolExecutor | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _cells: dict[str, Cell] = field(default_factory=dict)
    _started: float = field(default_factory=time.monotonic)

    @property
    def run_id(self) -> str:
        return self.plan.run_id

    @property
    def provider_name(self) -> str:
        return self.plan.provider

    @property
    def source(self) -> str:
        return self.plan.source

    @property
    def run_dir(self) -> Path:
        return Path(os.environ.get("NATSNET_RUN_DIR", "/tmp")) / f"natsnet-run-{self.run_id}"

    def provider(self) -> Provider:
        """The provider, started on first use: attached to the controller's cluster on an xdist worker (the plan
        carries its access), else started here, which makes this process the cluster's owner."""
        with self._lock:
            if self._provider is None:
                provider = make_provider(self.provider_name, self.settings, self.run_id, self.run_dir)
                if self.plan.cluster:
                    provider.attach(ClusterAccess.from_wire(self.plan.cluster))
                else:
                    record = self._record_run()
                    try:
                        with self.progress.step(f"starting the {self.provider_name} cluster"):
                            self._access = provider.start()
                    except BaseException:
                        if record is not None:
                            runrecord.remove(record)
                        raise
                    if record is not None:
                        self._record = runrecord.update(
                            record, kubeconfig=self._access.kubeconfig, context=self._access.context or "",
                            created_cluster=self._access.created, cluster_ready=True,
                            sandbox_pid=int(getattr(provider, "process_id", 0) or 0))
                self._provider = provider
            return self._provider

    def _record_run(self) -> runrecord.RunRecord | None:
        """The run's record (``natsnet gc`` cleans up after a run that dies); None when it cannot be written."""
        cluster = recorded_cluster_name(self.provider_name, self.settings)
        record = runrecord.new_record(self.run_id, self.provider_name, self.run_dir, cluster)
        try:
            runrecord.write(record)
        except OSError as error:
            print(f"natsnet: cannot record the run in {runrecord.records_dir()} ({error}): natsnet gc will not "
                  "find what a crash of this run leaves", file=sys.stderr)
            return None
        return record

    def start_cluster(self) -> ClusterAccess:
        """The owner (the xdist controller) starts the cluster before the workers exist; the plan then carries
        its access to them."""
        with self.progress.waiting():
            self.provider()
        assert self._access is not None, "start_cluster runs on the process that owns the run"
        self.plan = self.plan.with_cluster(self._access.to_wire())
        return self._access

    def kept(self, scenario_id: str) -> bool:
        """Whether a cell stays after its tests: ``--natsnet-keep=always``, or ``on-failure`` and it failed."""
        keep = self.settings.keep
        return keep == "always" or (keep == "on-failure" and scenario_id in self.failed_cells)

    def _certificate_authority(self) -> CertificateAuthority:
        with self._lock:
            if self._ca is None:
                self._ca = new_ca(f"pytest-natsnet run {self.run_id}")
            return self._ca

    def manifests(self, scenario: Scenario, cluster_domain: str = DEFAULT_DOMAIN
                  ) -> tuple[CellManifests, TlsMaterial | None]:
        """The cell as it is deployed (see ``assembly.assemble_cell``)."""
        return assemble_cell(self.settings, scenario, self.run_id, self.source, self._certificate_authority,
                             workdir=self.run_dir / "cells" / scenario.id, cluster_domain=cluster_domain)

    def _deploy(self, scenario: Scenario) -> Cell:
        provider = self.provider()
        cell, tls = self.manifests(scenario, provider.info.cluster_domain)
        started = time.monotonic()
        with self.progress.step(f"deploying cell {scenario.id}"):
            deployment = provider.deploy(cell, self.settings.timeout)
        return Cell(scenario, deployment, tls, time.monotonic() - started)

    def __post_init__(self) -> None:
        if self.prefetch_window <= 0:
            self.prefetch_window = self.settings.parallel or 1

    def prefetch(self, scenarios: Sequence[Scenario]) -> None:
        """Starts deploying ``scenarios`` concurrently (up to --natsnet-parallel at once)."""
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self.prefetch_window, thread_name_prefix="natsnet-deploy"
                )
            for scenario in scenarios:
                if scenario.id not in self._futures:
                    self._futures[scenario.id] = self._pool.submit(self._deploy, scenario)

    def cell(self, scenario: Scenario) -> Cell:
        self.prefetch([scenario])
        future = self._futures[scenario.id]
        try:
            with self.progress.waiting():
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
        self._released.add(scenario.id)
        cell = self._cells.pop(scenario.id, None)
        future = self._futures.get(scenario.id)
        if cell is None and future is not None and future.done() and future.exception() is None:
            cell = future.result()
        if cell is None:
            return None
        failed = scenario.id in self.failed_cells
        evidence = None
        if failed or self.settings.keep == "always":
            evidence = self._write_evidence(scenario, cell.deployment, failed)
        if not self.kept(scenario.id):
            cell.deployment.teardown()
        return evidence

    def release_failed_deploy(self, scenario: Scenario, error: BaseException) -> Path | None:
        """A cell whose deploy failed: its evidence, when the deployment got as far as existing (a cell whose pods
        never became Ready is where evidence matters most), then its teardown unless kept."""
        self.failed_cells.add(scenario.id)
        deployment = getattr(error, "natsnet_deployment", None)
        if deployment is None or scenario.id in self._released:
            return self.deploy_evidence.get(scenario.id)
        self._released.add(scenario.id)
        self.failures.setdefault(scenario.id, []).append((f"deploy of cell {scenario.id}", str(error)))
        evidence = self.deploy_evidence[scenario.id] = self._write_evidence(scenario, deployment, True)
        if not self.kept(scenario.id):
            deployment.teardown()
        return evidence

    def _write_evidence(self, scenario: Scenario, deployment: Deployment, failed: bool) -> Path:
        """The cell's evidence bundle (``evidence/cell.py``), written while the cell still exists."""
        from pytest_natsnet.evidence.cell import capture

        evidence = self.evidence_dir(scenario)
        with self.progress.step(f"writing the evidence of cell {scenario.id}"):
            capture(evidence, scenario, deployment, failed=failed,
                    kept=self.kept(scenario.id),
                    failures=self.failures.get(scenario.id, []),
                    reproduce=repro_command(self.settings, scenario, self.provider_name, self.source),
                    provider=self._provider)
        return evidence

    def finish(self) -> None:
        """Last resort at session end: every cell not kept is torn down, then the provider stops, keeping the
        cluster when any cell was kept (``--natsnet-keep``)."""
        for scenario_id, future in list(self._futures.items()):
            if not future.done():
                future.cancel()
            try:
                cell = future.result(timeout=self.settings.timeout + 60)
            except BaseException:  # a failed deploy left its own state to the provider's stop()
                continue
            if scenario_id in self._released or self.kept(scenario_id):
                continue
            try:
                cell.deployment.teardown()  # idempotent
            except Exception as error:  # keep tearing the others down
                print(f"natsnet: teardown of {scenario_id} failed: {error}", file=sys.stderr)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._provider is not None:
            keep = self.settings.keep == "always" or (self.settings.keep == "on-failure" and bool(self.failed_cells))
            self._provider.stop(keep=keep)
            if self._record is not None:
                if keep:
                    runrecord.update(self._record, kept=True)
                else:
                    runrecord.remove(self._record)
                self._record = None
            if self._access is not None and not keep:  # the owner, after every worker: the sandbox's state and
                shutil.rmtree(self.run_dir, ignore_errors=True)  # logs, its PKI and kubeconfig, cells' renders
