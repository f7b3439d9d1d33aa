"""The terminal rendering: title, grid (text and colours), failed cells' tables, timings, the header's cells."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_natsnet.report.grid import TestOutcome, Verdict, build_grid
from pytest_natsnet.report.terminal import (
    cells_line,
    failure_lines,
    grid_lines,
    legend,
    plain,
    timing_lines,
    title,
)
from pytest_natsnet.xdist_cells import cells_in

P, F, S, NA = Verdict.PASSED, Verdict.FAILED, Verdict.SKIPPED, Verdict.NOT_APPLICABLE


def t(nodeid: str, cell: str, verdict: Verdict, **kwargs: object) -> TestOutcome:
    return TestOutcome(nodeid, cell, verdict, **kwargs)  # type: ignore[arg-type]


def run(evidence: str | None = None) -> list[TestOutcome]:
    return [
        t("suites/test_route_mesh.py::test_mesh[default]", "default", P, deploy_seconds=12.41,
          properties={"time_to_mesh_seconds": 12.5}),
        t("suites/test_route_mesh.py::test_replaced[default]", "default", P),
        t("suites/test_tls_names.py::test_names[default]", "default", NA, reason="not applicable: no TLS"),
        t("suites/test_route_mesh.py::test_mesh[tls-bad-sans]", "tls-bad-sans", F, declared=("mesh-split",),
          evidence=evidence, failures=("route mesh: 7/9 as expected\nkey | expected | observed | reason |\n"
                                       "a | 1 | 1 |  | ✓\nb | 1 | 2 |  | ✗",)),
        t("suites/test_tls_names.py::test_names[tls-bad-sans]", "tls-bad-sans", P),
        t("suites/test_tls_names.py::test_external[tls-bad-sans]", "tls-bad-sans", S, reason="kind cannot"),
        t("suites/test_route_mesh.py::test_reconnect[default]", "default", P,
          properties={"service_client_reconnect_seconds": 0.043}),
    ]


def test_title_counts_cells_suites_and_verdicts() -> None:
    assert title(build_grid(run())) == (
        "natsnet: 2 cells × 2 suites: 1 cell failed (1 failed, 4 passed, 1 skipped, 1 not applicable)"
    )
    assert title(build_grid(run()[:2])) == "natsnet: 1 cell × 1 suite: no cell failed (2 passed)"


def test_grid_text_is_aligned_and_every_entry_is_coloured_by_its_verdict() -> None:
    lines = grid_lines(build_grid(run(), ["default", "tls-bad-sans"]))
    assert [plain(line) for line in lines] == [
        "cell          route_mesh  tls_names",
        "default       ✓ 3         n/a",
        "tls-bad-sans  ✗ 1/1       ✓ 1 s1",
    ]
    colours = [[(text.strip(), colour) for text, colour in line if text.strip()] for line in lines[1:]]
    assert colours == [
        [("default", None), ("✓ 3", "green"), ("n/a", None)],
        [("tls-bad-sans", "red"), ("✗ 1/1", "red"), ("✓ 1 s1", "green")],
    ]


def test_legend_names_every_mark() -> None:
    text = legend()
    for mark in ("✓ N", "✗ F/N", "s N", "n/a", "blank"):
        assert mark in text


def test_failed_cells_show_declared_failures_evidence_and_the_differing_rows(tmp_path: Path) -> None:
    evidence = tmp_path / "natsnet-evidence" / "abc123" / "tls-bad-sans"
    evidence.mkdir(parents=True)
    lines = failure_lines(build_grid(run(str(evidence))), cwd=tmp_path)
    assert lines == [
        "tls-bad-sans (declares mesh-split); evidence: natsnet-evidence/abc123/tls-bad-sans",
        "  route_mesh::test_mesh[tls-bad-sans]",
        "    route mesh: 7/9 as expected",
        "    key | expected | observed | reason |",
        "    b | 1 | 2 |  | ✗",
        "    (1 row as expected not shown)",
    ]


def test_a_failed_cell_says_why_with_its_first_finding(tmp_path: Path) -> None:
    from pytest_natsnet.report.recorder import first_findings

    evidence = tmp_path / "natsnet-evidence" / "abc123" / "tls-bad-sans"
    evidence.mkdir(parents=True)
    grid = build_grid(run(str(evidence)))
    assert first_findings(grid) == {}
    (evidence / "findings.json").write_text('[{"pattern": "route-tls-mismatch", "summary": "routes cannot form"}, '
                                            '{"pattern": "mesh-incomplete", "summary": "..."}]')
    why = first_findings(grid)
    assert why == {"tls-bad-sans": "[route-tls-mismatch] routes cannot form"}
    assert failure_lines(grid, cwd=tmp_path, why=why)[:2] == [
        "tls-bad-sans (declares mesh-split); evidence: natsnet-evidence/abc123/tls-bad-sans",
        "  why: [route-tls-mismatch] routes cannot form"]


@pytest.mark.parametrize(
    ("evidence", "says"),
    [(None, "no evidence (the cell was not deployed)"),
     ("/nonexistent/ev/x", "evidence: /nonexistent/ev/x (not written)")],
)
def test_failed_cell_without_written_evidence_says_so(evidence: str | None, says: str) -> None:
    assert failure_lines(build_grid(run(evidence)))[0] == f"tls-bad-sans (declares mesh-split); {says}"


def test_no_failure_no_lines() -> None:
    assert failure_lines(build_grid(run()[:3])) == []


def test_key_timings_table() -> None:
    assert timing_lines(build_grid(run())) == [
        "cell     deploy    mesh  reconnect",
        "default  12.4 s  12.5 s    0.043 s",
    ]
    assert timing_lines(build_grid(run()[2:3])) == []


def test_a_timing_recorded_by_a_failed_test_is_marked() -> None:
    tests = [*run(), t("suites/test_route_mesh.py::test_x[tls-bad-sans]", "tls-bad-sans", F,
                       properties={"time_to_mesh_seconds": 42.2})]
    assert timing_lines(build_grid(tests)) == [
        "cell          deploy      mesh  reconnect",
        "default       12.4 s  12.5 s      0.043 s",
        "tls-bad-sans       -  42.2 s ✗          -",
        "✗: recorded by a test that failed (it may measure a timeout)",
    ]


CHOSEN = ["default", "pnra-false", "tls", "tls-bad-sans"]


@pytest.mark.parametrize(
    ("selected", "line"),
    [
        (CHOSEN, "natsnet: 4 cells will run (smoke): default, pnra-false, tls, tls-bad-sans"),
        (["tls", "default"], "natsnet: 2 cells will run (2 of the 4 smoke cells have selected tests): default, tls"),
        (["fqdn-routes"], "natsnet: 1 cell will run (1 cell of natsnet_values tests): fqdn-routes"),
        (["mine", "tls"], "natsnet: 2 cells will run (1 of the 4 smoke cells have selected tests; 1 cell of "
                          "natsnet_values tests): tls, mine"),
        ([], "natsnet: no cell will run (no selected test uses a natsnet cell)"),
    ],
    ids=["all", "subset", "bug-report", "mixed", "none"],
)
def test_cells_line_counts_the_cells_that_will_run(selected: list[str], line: str) -> None:
    assert cells_line(selected, "smoke", CHOSEN) == line


def test_cells_line_with_a_single_chosen_cell() -> None:
    assert cells_line(["tls"], "smoke", ["tls"]) == "natsnet: 1 cell will run (smoke): tls"


@pytest.mark.parametrize(
    ("nodeids", "cells"),
    [
        (["suites/test_a.py::t[tls]", "suites/test_a.py::t[default-udp]", "suites/test_b.py::u[tls]"],
         ["tls", "default"]),
        (["test_bug.py::test_fqdn_routes_break[fqdn-routes-break]"], ["fqdn-routes-break"]),
        (["tests/test_plain.py::test_x", "tests/test_plain.py::test_y[1-2]", "test_bug.py::test_a_b[other]"], []),
    ],
    ids=["matrix-cells", "natsnet-values-cell", "not-cells"],
)
def test_cells_in_test_ids(nodeids: list[str], cells: list[str]) -> None:
    assert cells_in(nodeids, CHOSEN) == cells
