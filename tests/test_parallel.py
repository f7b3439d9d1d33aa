"""Cells side by side by default: how many workers, and when the plugin turns pytest-xdist on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_natsnet.parallel import WORKER_AND_CELL_MB, available_memory_mb, distribute_cells, workers_for

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("cells", "requested", "cpus", "memory_mb", "expected"),
    [
        (9, None, 2, 24_000, 9),  # the smoke matrix on this machine: one worker per cell
        (162, None, 2, 24_000, 24),  # the full matrix: 12 cells per CPU
        (162, None, 64, 24_000, 24_000 // 2 // WORKER_AND_CELL_MB),  # memory bound
        (9, 3, 2, 24_000, 3),  # --natsnet-parallel caps
        (2, 30, 2, 24_000, 2),  # never more workers than cells
        (9, None, 2, 100, 1),  # a tiny machine: one at a time
        (9, None, 2, None, 9),  # unknown memory: CPU bound only
    ],
)
def test_workers_for(cells: int, requested: int | None, cpus: int, memory_mb: int | None, expected: int) -> None:
    assert workers_for(cells, requested, cpus, memory_mb) == expected


def test_available_memory_reads_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  2048000 kB\nMemAvailable:    1024000 kB\n")
    assert available_memory_mb(meminfo) == 1000
    assert available_memory_mb(tmp_path / "missing") is None


def _config(**options: Any) -> Any:
    defaults = {"numprocesses": None, "dist": "no", "collectonly": False, "usepdb": False, "help": False}
    return SimpleNamespace(option=SimpleNamespace(**{**defaults, **options}),
                           pluginmanager=SimpleNamespace(has_plugin=lambda name: name == "xdist"))


def test_distribute_cells_turns_xdist_on_with_loadgroup() -> None:
    config = _config()
    assert distribute_cells(config, 9, 4) == 4
    assert (config.option.numprocesses, config.option.dist) == (4, "loadgroup")


@pytest.mark.parametrize("options", [{"numprocesses": 0}, {"numprocesses": 3}, {"dist": "load"},
                                     {"collectonly": True}, {"usepdb": True}])
def test_an_explicit_choice_wins(options: dict[str, Any]) -> None:
    config = _config(**options)
    assert distribute_cells(config, 9, None) == 0
    assert config.option.numprocesses == options.get("numprocesses")


def test_one_cell_stays_in_process() -> None:
    config = _config()
    assert distribute_cells(config, 1, None) == 0 and config.option.numprocesses is None


def _run(*args: str) -> str:
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--natsnet", "--natsnet-provider=sandbox",
            "--natsnet-source=reference", "-o", "testpaths=suites", "-k", "no_test_has_this_name", *args]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 5, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def test_plain_natsnet_runs_the_smoke_cells_side_by_side_and_n0_runs_serially() -> None:
    """The real plugin and pytest-xdist: every test deselected, so nothing deploys, but the workers start."""
    from pytest_natsnet.providers.sandbox_provider import missing_requirements

    if missing_requirements():
        pytest.skip(f"sandbox requirements missing: {'; '.join(missing_requirements())}")
    assert "created: 3/3 workers" in _run("--natsnet-parallel=3")
    assert "workers" not in _run("-n", "0")
