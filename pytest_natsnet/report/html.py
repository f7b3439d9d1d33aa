"""Renders the report as one self-contained HTML page: inline CSS, no script, no external resource, so it
reads the same from a CI artifact opened offline. Pure: returns the page's text."""

from __future__ import annotations

import re
from collections.abc import Sequence
from html import escape
from pathlib import Path

from pytest_natsnet.report.grid import (
    LEGEND,
    Grid,
    TestOutcome,
    Timing,
    Verdict,
    cell_timings,
    failures_of,
)
from pytest_natsnet.report.terminal import evidence_text, title

CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1d1d1f; }
h1 { font-size: 1.3rem; } h2 { font-size: 1.1rem; margin-top: 2rem; } h3 { font-size: 1rem; }
table { border-collapse: collapse; margin: 0.5rem 0; }
th, td { border: 1px solid #c8c8cc; padding: 0.25rem 0.6rem; text-align: left; vertical-align: top; }
thead th { background: #f0f0f3; }
td.entry { text-align: center; font-family: ui-monospace, monospace; white-space: nowrap; }
.failed { background: #f8d0d0; color: #8a1010; font-weight: bold; }
.passed { background: #d5f0d5; color: #14531a; }
.skipped { background: #fbeec2; color: #6b4e00; }
.not-applicable { background: #ececef; color: #6e6e73; }
.none { background: #ffffff; }
td.number { text-align: right; font-family: ui-monospace, monospace; }
th[scope="row"] { white-space: nowrap; }
div.wide { overflow-x: auto; }
pre { background: #f6f6f8; border: 1px solid #dcdce0; padding: 0.6rem; overflow-x: auto; font-size: 0.85rem; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: 0.2rem 1rem; }
dl.meta dt { font-weight: bold; } dl.meta dd { margin: 0; font-family: ui-monospace, monospace; }
ul.legend { list-style: none; padding: 0; } ul.legend li { margin: 0.2rem 0; }
ul.legend span { display: inline-block; min-width: 4rem; text-align: center; margin-right: 0.5rem; }
""".strip()

LEGEND_CLASSES = ("passed", "failed", "skipped", "not-applicable", "none")


def css_class(verdict: Verdict | None) -> str:
    return "none" if verdict is None else verdict.value.replace(" ", "-")


def anchor(cell: str) -> str:
    return "cell-" + re.sub(r"[^A-Za-z0-9_-]", "_", cell)


def _tooltip(tests: Sequence[TestOutcome]) -> str:
    lines = []
    for test in tests:
        verdict = test.verdict.value if test.verdict else "not finished"
        lines.append(f"{test.name}: {verdict}{': ' + test.reason if test.reason else ''}")
    return "\n".join(lines)


def _grid_table(grid: Grid) -> list[str]:
    out = ['<table class="grid" id="grid">', "<thead><tr><th>cell</th>"
           + "".join(f"<th>{escape(s)}</th>" for s in grid.suites) + "</tr></thead>", "<tbody>"]
    for cell in grid.cells:
        name = escape(cell)
        head = (f'<a href="#{anchor(cell)}">{name}</a>' if cell in grid.failed_cells else name)
        row = [f'<tr data-cell="{name}"><th scope="row" class="{css_class(grid.cell_verdict(cell))}">{head}</th>']
        for suite in grid.suites:
            entry = grid.entry(cell, suite)
            row.append(
                f'<td class="entry {css_class(entry.verdict)}" data-cell="{name}" data-suite="{escape(suite)}" '
                f'data-verdict="{css_class(entry.verdict)}" title="{escape(_tooltip(entry.tests))}">'
                f"{escape(entry.text)}</td>"
            )
        out.append("".join(row) + "</tr>")
    out.append("</tbody></table>")
    return out


def _legend() -> list[str]:
    items = [f'<li><span class="{cls}">{escape(mark)}</span>{escape(meaning)}</li>'
             for (mark, meaning), cls in zip(LEGEND, LEGEND_CLASSES, strict=True)]
    return ['<ul class="legend">', *items, "</ul>"]


def _failed_cells(grid: Grid, cwd: Path | None) -> list[str]:
    out = ["<h2>Failed cells</h2>"]
    if not grid.failed_cells:
        return [*out, "<p>No cell failed.</p>"]
    for cell in grid.failed_cells:
        summary = grid.summaries[cell]
        declared = f"declares {', '.join(summary.declared)}" if summary.declared else "expected healthy"
        out += [f'<section class="failed-cell" id="{anchor(cell)}">', f"<h3>{escape(cell)}</h3>",
                f"<p>{escape(declared)}; {escape(evidence_text(summary.evidence, cwd))}</p>"]
        for group in failures_of(grid, cell, shorten=False):
            out += [f"<h4>{escape(test)}</h4>" for test in group.tests]
            out.append(f"<pre>{escape(group.text)}</pre>")
        out.append("</section>")
    return out


def _timing_cell(timing: Timing | None) -> str:
    if timing is None:
        return '<td class="number"></td>'
    if timing.failed:
        return (f'<td class="number failed" title="recorded by a test that failed (it may measure a timeout)">'
                f"{timing.value:g} ✗</td>")
    return f'<td class="number">{timing.value:g}</td>'


def _timings(grid: Grid) -> list[str]:
    timings = cell_timings(grid)
    out = ["<h2>Timings per cell</h2>"]
    if not timings:
        return [*out, "<p>No test recorded a timing.</p>"]
    names = list(dict.fromkeys(name for numbers in timings.values() for name in numbers))
    out += ['<div class="wide"><table class="timings">', "<thead><tr><th>cell</th>"
            + "".join(f"<th>{escape(n)}</th>" for n in names) + "</tr></thead>", "<tbody>"]
    for cell, numbers in timings.items():
        cells = "".join(_timing_cell(numbers.get(n)) for n in names)
        out.append(f'<tr><th scope="row">{escape(cell)}</th>{cells}</tr>')
    out.append("</tbody></table></div>")
    if any(t.failed for numbers in timings.values() for t in numbers.values()):
        out.append("<p>✗: recorded by a test that failed (it may measure a timeout rather than the event).</p>")
    return out


def _all_tests(grid: Grid) -> list[str]:
    out = ["<h2>Every test</h2>"]
    for cell in grid.cells:
        tests = [t for s in grid.suites for t in grid.entry(cell, s).tests]
        out += [f"<details><summary>{escape(cell)} ({len(tests)} tests)</summary>",
                "<table><thead><tr><th>test</th><th>outcome</th><th>reason</th></tr></thead><tbody>"]
        for test in tests:
            out.append(f'<tr><td>{escape(test.suite)}::{escape(test.name)}</td>'
                       f'<td class="{css_class(test.verdict)}">{escape(test.verdict.value if test.verdict else "")}'
                       f"</td><td>{escape(test.reason)}</td></tr>")
        out.append("</tbody></table></details>")
    return out


def render_html(grid: Grid, meta: Sequence[tuple[str, str]] = (), cwd: Path | None = None) -> str:
    """The page: title, run facts (``meta``: label, value), the grid with its legend, failed cells' tables
    (full text in ``<pre>``), every numeric property per cell, and every test's outcome."""
    heading = escape(title(grid))
    body = [f"<h1>{heading}</h1>"]
    if meta:
        body += ['<dl class="meta">', *(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in meta), "</dl>"]
    body += ["<h2>Cell × suite</h2>", *_grid_table(grid), *_legend(), *_failed_cells(grid, cwd),
             *_timings(grid), *_all_tests(grid)]
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        f'<head><meta charset="utf-8"><title>{heading}</title><style>\n{CSS}\n</style></head>',
        "<body>",
        *body,
        "</body>",
        "</html>",
        "",
    ])
