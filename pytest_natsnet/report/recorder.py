"""Where pytest meets the report: test reports → ``Phase``s, the terminal summary and the HTML file written
from the grid, and where progress lines go. The process that owns the run (the xdist controller included)
records every report it sees; the plugin's hooks call this module and nothing else."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from pytest_natsnet.report.grid import Grid, Outcomes, Phase, build_grid, failure_message
from pytest_natsnet.report.html import render_html
from pytest_natsnet.report.terminal import failure_lines, grid_lines, legend, timing_lines, title

EVIDENCE_PROPERTY = "natsnet_evidence"
"""The JUnit property (``record_property`` style) naming a failed test's evidence directory."""
PROGRESS_LOGGER = "pytest_natsnet.progress"


def phase_of(report: pytest.TestReport, cell: str) -> Phase:
    """One report as the grid needs it; reports from xdist workers carry the same attributes."""
    text = ""
    if report.failed:
        crash = getattr(report.longrepr, "reprcrash", None)
        text = failure_message(getattr(crash, "message", None), report.longreprtext)
    elif report.skipped:
        if hasattr(report, "wasxfail"):
            text = f"expected to fail: {report.wasxfail}"
        elif isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
            text = str(report.longrepr[2])
        else:
            text = report.longreprtext
    properties = tuple((str(name), value) for name, value in report.user_properties)
    evidence = dict(properties).get(EVIDENCE_PROPERTY)
    deploy = getattr(report, "natsnet_deploy_seconds", None)
    return Phase(
        nodeid=report.nodeid,
        cell=cell,
        when=report.when,
        outcome=report.outcome,
        text=text,
        properties=properties,
        declared=tuple(getattr(report, "natsnet_declared", ()) or ()),
        deploy_seconds=float(deploy) if isinstance(deploy, int | float) else None,
        evidence=str(evidence) if evidence is not None else None,
    )


class ReportRecorder:
    """Collects the natsnet tests' reports of one run; renders them at the end."""

    def __init__(self, cell_order: Sequence[str], html_path: Path | None, meta: Sequence[tuple[str, str]]) -> None:
        self.cell_order = list(cell_order)
        self.html_path = html_path
        self.meta = list(meta)
        self.outcomes = Outcomes()
        self.html_written: Path | None = None
        self.html_error: str | None = None

    def add(self, report: pytest.TestReport) -> None:
        cell = getattr(report, "natsnet_cell", None)
        if cell is not None:
            self.outcomes.add(phase_of(report, str(cell)))

    def grid(self) -> Grid:
        return build_grid(self.outcomes.tests, self.cell_order)

    def write_html(self, exit_status: int | str) -> None:
        """Writes the page to ``--natsnet-report`` (creating its directory); an error is told in the summary."""
        if self.html_path is None:
            return
        meta = [*self.meta, ("pytest exit status", str(exit_status))]
        try:
            self.html_path.parent.mkdir(parents=True, exist_ok=True)
            self.html_path.write_text(render_html(self.grid(), meta), encoding="utf-8")
            self.html_written = self.html_path
        except OSError as error:
            self.html_error = f"natsnet: could not write --natsnet-report {self.html_path}: {error}"

    def write_terminal(self, terminal: Any) -> None:
        """The grid, the failed cells' tables and the key timings, through pytest's terminal reporter."""
        grid = self.grid()
        if grid.cells:
            terminal.write_sep("=", title(grid))
            terminal.write_line(legend())
            for line in grid_lines(grid):
                for text, color in line:
                    terminal.write(text, **({color: True} if color else {}))
                terminal.line("")
            failures = failure_lines(grid, why=first_findings(grid))
            if failures:
                terminal.write_sep("-", "natsnet: failed cells: tables and evidence")
                for text in failures:
                    terminal.write_line(text)
            timings = timing_lines(grid)
            if timings:
                terminal.write_sep("-", "natsnet: key timings per cell")
                for text in timings:
                    terminal.write_line(text)
        if self.html_written is not None:
            terminal.write_line(f"natsnet: report written to {self.html_written}")
        if self.html_error is not None:
            terminal.write_line(self.html_error, red=True)


def first_findings(grid: Grid) -> dict[str, str]:
    """Failed cell -> ``[pattern] summary`` of the first finding in its evidence bundle (``findings.json``), for
    the cells whose bundle has one."""
    import json

    found = {}
    for cell in grid.failed_cells:
        evidence = grid.summaries[cell].evidence
        if evidence is None:
            continue
        try:
            findings = json.loads((Path(evidence) / "findings.json").read_text(encoding="utf-8"))
            found[cell] = f"[{findings[0]['pattern']}] {findings[0]['summary']}"
        except (OSError, ValueError, IndexError, KeyError, TypeError):
            continue
    return found


def progress_emitter(config: pytest.Config) -> Callable[[str], None] | None:
    """Where progress lines go: pytest's terminal when stdout is a terminal or with ``-v``; the log on an
    xdist worker (its output would mix with the controller's); nowhere otherwise."""
    if getattr(config, "workerinput", None) is not None:
        logger = logging.getLogger(PROGRESS_LOGGER)
        return logger.info
    if not (sys.stdout.isatty() or config.get_verbosity() > 0):
        return None

    def emit(line: str) -> None:
        terminal = config.pluginmanager.get_plugin("terminalreporter")
        capture = config.pluginmanager.get_plugin("capturemanager")
        if terminal is None:
            return
        # A step runs inside a fixture's setup, where pytest captures output: write around it, as live logging does.
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            terminal.write_line(line)

    return emit
