"""Cells side by side by default: a plain ``pytest --natsnet`` distributes cells over pytest-xdist workers.

Almost all of a cell's time is waiting (the chart's readiness delay, lame-duck grace, resolver timeouts the
suites wait for on purpose), so cells overlap well; the number of workers is bounded by the cells selected, by
``--natsnet-parallel`` and by what the machine can hold (memory per cell, CPU). ``-n N`` (``-n 0``: strictly
serial) always wins.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

WORKER_AND_CELL_MB = 350
"""Resident memory of one pytest-xdist worker with one sandbox cell (3 nats-server, probe sessions, its share of
the sandbox): ``benchmarks/scale.py`` measured 346 MiB per cell for the pairwise matrix, 18 cells at once."""
CELLS_PER_CPU = 12
"""Cells that overlap well per CPU: a cell is mostly waiting, ~8 s of CPU over its ~100 s (``benchmarks/scale.py``,
pairwise on 2 CPUs: 18 cells at once 142 s wall at 1.0 cores busy, 16 at once 178 s; see ``benchmarks/README.md``)."""


def available_memory_mb(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """``MemAvailable`` in MiB (None where /proc/meminfo does not say)."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def workers_for(cells: int, requested: int | None, cpus: int, memory_mb: int | None) -> int:
    """How many cells run at once: the cells, capped by ``--natsnet-parallel`` when given, else by the machine
    (half its available memory, ``CELLS_PER_CPU`` per CPU). At least 1."""
    if requested is not None:
        return max(1, min(cells, requested))
    limits = [cells, max(1, cpus) * CELLS_PER_CPU]
    if memory_mb is not None:
        limits.append(memory_mb // 2 // WORKER_AND_CELL_MB)
    return max(1, min(limits))


def distribute_cells(config: pytest.Config, cells: int, requested: int | None) -> int:
    """Turns on pytest-xdist for a ``--natsnet`` run that did not choose ``-n`` itself; returns the workers
    (0: the run stays in this process)."""
    if not config.pluginmanager.has_plugin("xdist") or hasattr(config, "workerinput"):
        return 0
    option = config.option
    chosen_elsewhere = (
        getattr(option, "numprocesses", None) is not None
        or getattr(option, "dist", "no") != "no"
        or getattr(option, "collectonly", False)
        or getattr(option, "usepdb", False)
        or getattr(option, "help", False)
    )
    if chosen_elsewhere:
        return 0
    workers = workers_for(cells, requested, os.cpu_count() or 1, available_memory_mb())
    if workers < 2:
        return 0
    option.numprocesses = workers
    option.dist = "loadgroup"
    return workers
