"""Renders the report as terminal text: the grid (coloured segments), failed cells' tables, key timings, and
the header line naming the cells that will run. Pure: the plugin writes the lines."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from pytest_natsnet.report.grid import (
    KEY_TIMINGS,
    LEGEND,
    Grid,
    Timing,
    Verdict,
    cell_timings,
    failures_of,
    key_timings,
    seconds_text,
)

Segment = tuple[str, str | None]
"""Text and its colour (a TerminalWriter markup name: ``green``, ``red``, ``yellow``) or None."""
Line = list[Segment]

COLORS: dict[Verdict | None, str | None] = {
    Verdict.PASSED: "green",
    Verdict.FAILED: "red",
    Verdict.SKIPPED: "yellow",
    Verdict.NOT_APPLICABLE: None,
    None: None,
}
INDENT = "    "
FAILED_TIMING = "✗"


def plain(line: Line) -> str:
    return "".join(text for text, _ in line).rstrip()


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def title(grid: Grid) -> str:
    """``natsnet: 9 cells × 6 suites: 2 cells failed (120 passed, 2 failed, 1 skipped, 56 not applicable)``."""
    counts = ", ".join(f"{grid.count(v)} {v.value}" for v in Verdict if grid.count(v))
    failed = grid.failed_cells
    verdict = f"{_plural(len(failed), 'cell')} failed" if failed else "no cell failed"
    return (f"natsnet: {_plural(len(grid.cells), 'cell')} × {_plural(len(grid.suites), 'suite')}: {verdict}"
            f" ({counts or 'no test ran'})")


def legend() -> str:
    return "legend: " + " · ".join(f"{mark}: {meaning}" for mark, meaning in LEGEND)


def grid_lines(grid: Grid) -> list[Line]:
    """Header row (``cell`` and the suites), then one row per cell, each entry coloured by its verdict."""
    first = max([len("cell"), *(len(c) for c in grid.cells)])
    widths = [max([len(s), *(len(grid.entry(c, s).text) for c in grid.cells)]) for s in grid.suites]
    lines: list[Line] = [_rstrip([("cell".ljust(first), None),
                                  *((f"  {s.ljust(w)}", None) for s, w in zip(grid.suites, widths, strict=True))])]
    for cell in grid.cells:
        line: Line = [(cell.ljust(first), COLORS[grid.cell_verdict(cell)] if cell in grid.failed_cells else None)]
        for suite, width in zip(grid.suites, widths, strict=True):
            entry = grid.entry(cell, suite)
            line += [("  ", None), (entry.text.ljust(width), COLORS[entry.verdict])]
        lines.append(_rstrip(line))
    return lines


def _rstrip(line: Line) -> Line:
    """No padding after the last column."""
    text, color = line[-1]
    return [*line[:-1], (text.rstrip(), color)]


def display_path(path: str, cwd: Path | None = None) -> str:
    """``path`` relative to ``cwd`` when it is inside it (shorter to read and to copy), else as given."""
    try:
        return os.path.relpath(path, cwd or Path.cwd()) if Path(path).is_relative_to(cwd or Path.cwd()) else path
    except ValueError:
        return path


def evidence_text(evidence: str | None, cwd: Path | None = None) -> str:
    if evidence is None:
        return "no evidence (the cell was not deployed)"
    where = display_path(evidence, cwd)
    return f"evidence: {where}" if Path(evidence).is_dir() else f"evidence: {where} (not written)"


def failure_lines(grid: Grid, cwd: Path | None = None, why: Mapping[str, str] | None = None) -> list[str]:
    """Per failed cell: its declared failures and evidence, the evidence's first finding (``why``), then each
    failed test and its tables (compact)."""
    lines: list[str] = []
    for cell in grid.failed_cells:
        summary = grid.summaries[cell]
        declared = f"declares {', '.join(summary.declared)}" if summary.declared else "expected healthy"
        lines.append(f"{cell} ({declared}); {evidence_text(summary.evidence, cwd)}")
        if why and why.get(cell):
            lines.append(f"  why: {why[cell]}")
        for group in failures_of(grid, cell):
            lines += [f"  {test}" for test in group.tests]
            lines += [f"{INDENT}{line}".rstrip() for line in group.text.splitlines()]
        lines.append("")
    return lines[:-1] if lines else []


def timing_lines(grid: Grid) -> list[str]:
    """Key timings (deploy, time to mesh, reconnect) per cell, in seconds; empty when none was recorded."""
    rows = key_timings(cell_timings(grid))
    if not rows:
        return []
    labels = [label for label, _ in KEY_TIMINGS if any(label in row for row in rows.values())]
    table = [["cell", *labels]]
    marked = {label for label in labels if any(row[label].failed for row in rows.values() if label in row)}
    table += [[cell, *(_timing_text(row.get(label), label in marked) for label in labels)]
              for cell, row in rows.items()]
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    lines = ["  ".join(text.ljust(w) if i == 0 else text.rjust(w) for i, (text, w) in
                       enumerate(zip(line, widths, strict=True))).rstrip() for line in table]
    if any(timing.failed for row in rows.values() for timing in row.values()):
        lines.append(f"{FAILED_TIMING}: recorded by a test that failed (it may measure a timeout)")
    return lines


def _timing_text(timing: Timing | None, column_marked: bool) -> str:
    """``12.4 s``, ``42.2 s ✗`` (recorded by a failed test), ``-``; padded where a column has marks."""
    if timing is None:
        return "-" + ("  " if column_marked else "")
    mark = f" {FAILED_TIMING}" if timing.failed else "  " if column_marked else ""
    return seconds_text(timing.value) + mark


def cells_line(selected: Sequence[str], matrix: str, chosen: Sequence[str]) -> str:
    """The header line naming the cells that will run: ``selected`` (cells with at least one selected test),
    of the ``chosen`` cells (the named matrix after ``--natsnet-scenario``, plus values directories)."""
    if not selected:
        return "natsnet: no cell will run (no selected test uses a natsnet cell)"
    own = [cell for cell in selected if cell not in chosen]
    selected = [cell for cell in chosen if cell in selected] + own
    from_matrix = len(selected) - len(own)
    if not own and from_matrix == len(chosen):
        why = matrix
    else:
        parts = [f"{from_matrix} of the {len(chosen)} {matrix} cells have selected tests"] if from_matrix else []
        if own:
            parts.append(f"{_plural(len(own), 'cell')} of natsnet_values tests")
        why = "; ".join(parts)
    return f"natsnet: {_plural(len(selected), 'cell')} will run ({why}): {', '.join(selected)}"
