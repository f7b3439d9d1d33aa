"""What a run keeps and what it tears down (``--natsnet-keep``), and who owns the cluster under pytest-xdist.

The provider here records calls: this is the run's own orchestration logic, checked at the provider boundary.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from pytest_natsnet import session
from pytest_natsnet.matrix import expand, load_matrix
from pytest_natsnet.plan import RunPlan
from pytest_natsnet.providers.base import CellManifests, ClusterAccess, ProviderInfo
from pytest_natsnet.session import NatsnetRun
from pytest_natsnet.settings import NatsnetSettings

INFO = ProviderInfo("fake", True, True, False)


class FakeDeployment:
    def __init__(self, cell: CellManifests, log: list[str]) -> None:
        self.cell, self.log = cell, log

    def teardown(self) -> None:
        self.log.append(f"teardown {self.cell.scenario_id}")

    def collect(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)


class FakeProvider:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    @property
    def info(self) -> ProviderInfo:
        return INFO

    def start(self) -> ClusterAccess:
        self.log.append("start")
        return ClusterAccess("/kubeconfig", "ctx", created=True)

    def attach(self, access: ClusterAccess) -> None:
        self.log.append(f"attach {access.kubeconfig}")

    def deploy(self, cell: CellManifests, timeout: float) -> Any:
        return FakeDeployment(cell, self.log)

    def stop(self, keep: bool) -> None:
        self.log.append(f"stop keep={keep}")


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep: str, cluster: dict[str, str] | None = None
         ) -> tuple[NatsnetRun, list[str]]:
    log: list[str] = []
    monkeypatch.setenv("NATSNET_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("NATSNET_RUN_DIR", str(tmp_path / "runs"))
    monkeypatch.setattr(session, "make_provider", lambda *args: FakeProvider(log))
    settings = NatsnetSettings(enabled=True, keep=keep, evidence_dir=tmp_path / "evidence")
    plan = RunPlan("abc123", "fake", "test", "reference", "test", True, cluster or {})
    return NatsnetRun(settings, load_matrix(), plan), log


def _cells(run: NatsnetRun, failed: Sequence[str]) -> None:
    """Deploys the first two smoke cells, fails ``failed`` and releases both (as their last test ends)."""
    for scenario in expand(run.matrix, "smoke")[:2]:
        run.cell(scenario)
        run.failed_cells.update(s for s in failed if s == scenario.id)
        run.release(scenario)


@pytest.mark.parametrize(
    ("keep", "failed", "torn_down", "stop"),
    [
        ("never", ["default"], ["default", "pnra-false"], "stop keep=False"),
        ("on-failure", [], ["default", "pnra-false"], "stop keep=False"),
        ("on-failure", ["default"], ["pnra-false"], "stop keep=True"),
        ("always", [], [], "stop keep=True"),
    ],
)
def test_keep_keeps_cells_and_the_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep: str, failed: list[str], torn_down: list[str],
    stop: str,
) -> None:
    run, log = _run(tmp_path, monkeypatch, keep)
    _cells(run, failed)
    run.finish()
    assert log == ["start", *(f"teardown {c}" for c in torn_down), stop]
    assert sorted(p.name for p in (tmp_path / "evidence" / "abc123").glob("*")) == sorted(
        {"default"} & set(failed) | ({"default", "pnra-false"} if keep == "always" else set()))


def test_a_worker_attaches_to_the_controllers_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run, log = _run(tmp_path, monkeypatch, "never", ClusterAccess("/controller", "ctx", True).to_wire())
    _cells(run, [])
    run.finish()
    assert log[0] == "attach /controller" and "start" not in log


def test_the_controller_starts_the_cluster_and_hands_its_access_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, log = _run(tmp_path, monkeypatch, "never")
    access = run.start_cluster()
    assert ClusterAccess.from_wire(RunPlan.from_wire(run.plan.to_wire()).cluster) == access
    run.finish()
    assert log == ["start", "stop keep=False"]


@pytest.mark.parametrize(("keep", "failed", "kept"), [("never", [], None), ("on-failure", ["default"], True),
                                                      ("on-failure", [], None), ("always", [], True)])
def test_the_owner_records_the_run_until_it_ends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep: str,
                                                 failed: list[str], kept: bool | None) -> None:
    """The record names the cluster while the run lives (what natsnet gc needs after a crash); a run that ends
    removes it, or marks it kept when it keeps its cells."""
    from pytest_natsnet import runrecord

    run, _ = _run(tmp_path, monkeypatch, keep)
    run.start_cluster()
    (record,), _ = runrecord.load_all()
    assert (record.run_id, record.provider, record.kubeconfig, record.context) == ("abc123", "fake", "/kubeconfig",
                                                                                     "ctx")
    assert record.created_cluster and record.cluster_ready and record.owner_alive() and not record.kept
    _cells(run, failed)
    run.finish()
    records, _ = runrecord.load_all()
    assert [r.kept for r in records] == ([] if kept is None else [True])


def test_a_worker_records_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_natsnet import runrecord

    run, _ = _run(tmp_path, monkeypatch, "never", ClusterAccess("/controller", "ctx", True).to_wire())
    _cells(run, ["default"])
    assert runrecord.load_all() == ([], [])
    run.finish()


def test_a_failed_deploy_gets_its_evidence_then_its_teardown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The install error carries the deployment: the run writes the cell's evidence from it, once, and removes
    the cell (nothing else would: a failed deploy never becomes a cell)."""
    from pytest_natsnet.errors import NatsnetError

    run, log = _run(tmp_path, monkeypatch, "never")
    scenario = expand(run.matrix, "smoke")[0]

    def failing_deploy(cell: CellManifests, timeout: float) -> Any:
        error = NatsnetError("timed out waiting for StatefulSet ready")
        error.natsnet_deployment = FakeDeployment(cell, log)  # type: ignore[attr-defined]
        raise error

    monkeypatch.setattr(FakeProvider, "deploy", lambda self, cell, timeout: failing_deploy(cell, timeout))
    with pytest.raises(NatsnetError) as raised:
        run.cell(scenario)
    evidence = run.release_failed_deploy(scenario, raised.value)
    assert evidence == run.evidence_dir(scenario) and (evidence / "REPRODUCE.txt").is_file()
    assert run.release_failed_deploy(scenario, raised.value) == evidence, "written once"
    assert scenario.id in run.failed_cells and run.deploy_evidence == {scenario.id: evidence}
    assert run.failures[scenario.id] == [(f"deploy of cell {scenario.id}", "timed out waiting for StatefulSet ready")]
    run.finish()
    assert log.count(f"teardown {scenario.id}") == 1


@pytest.mark.parametrize(("keep", "failed", "left"), [("never", ["default"], False), ("on-failure", [], False),
                                                      ("on-failure", ["default"], True), ("always", [], True)])
def test_the_owner_removes_the_run_directory_unless_it_keeps_the_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep: str, failed: list[str], left: bool
) -> None:
    """The run directory holds the sandbox's state, logs, PKI and kubeconfig: it goes with the cluster (a kept
    cluster still needs it); evidence lives elsewhere."""
    run, _ = _run(tmp_path, monkeypatch, keep)
    run.start_cluster()
    (run.run_dir / "sandbox").mkdir(parents=True)
    _cells(run, failed)
    run.finish()
    assert run.run_dir.exists() is left


def test_a_worker_leaves_the_run_directory_to_the_owner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run, _ = _run(tmp_path, monkeypatch, "never", ClusterAccess("/controller", "ctx", True).to_wire())
    run.run_dir.mkdir(parents=True)
    _cells(run, [])
    run.finish()
    assert run.run_dir.exists()



def test_a_replacement_in_flight_is_observed_not_waited_for() -> None:
    """One deletion serves every test that observes a replacement: the test asking for it starts at once; any
    other test first waits for the cell to be whole, and then nothing is in flight any more."""
    from pytest_natsnet.matrix import Scenario
    from pytest_natsnet.session import Cell, Replacement

    cell = Cell(Scenario("default", {}, ()), object(), None, 0.0)  # type: ignore[arg-type]
    assert not cell.settle_first(observes_replacement=False) and not cell.settle_first(observes_replacement=True)
    cell.disturbed = True  # e.g. a Service patched: nothing to observe, everyone waits
    assert cell.settle_first(observes_replacement=True)
    cell.replacement = Replacement("nats-1", "uid-1", "198.18.0.11", {"nats-0": 3}, 0.0)
    assert not cell.settle_first(observes_replacement=True)
    assert cell.settle_first(observes_replacement=False)
    cell.settled()
    assert (cell.disturbed, cell.replacement) == (False, None)
    assert not cell.settle_first(observes_replacement=True)
