"""The HTML report: one self-contained page with the grid, the failed cells' tables and the timings, read back
as written and as headless Chromium renders it."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_dom import chromium, read_page, rendered_dom, screenshot

from pytest_natsnet.report.grid import TestOutcome, Verdict, build_grid
from pytest_natsnet.report.html import render_html

P, F, S, NA = Verdict.PASSED, Verdict.FAILED, Verdict.SKIPPED, Verdict.NOT_APPLICABLE
MESH_TABLE = "route mesh of tls-bad-sans: 7/9 as expected\n\nexpected | nats-0 | nats-1\nnats-0   | .      | X"


def t(nodeid: str, cell: str, verdict: Verdict, **kwargs: object) -> TestOutcome:
    return TestOutcome(nodeid, cell, verdict, **kwargs)  # type: ignore[arg-type]


def sample() -> list[TestOutcome]:
    return [
        t("suites/test_route_mesh.py::test_mesh[default]", "default", P, deploy_seconds=12.4,
          properties={"time_to_mesh_seconds": 12.6}),
        t("suites/test_tls_names.py::test_names[default]", "default", NA, reason="not applicable: no TLS"),
        t("suites/test_route_mesh.py::test_mesh[tls-bad-sans]", "tls-bad-sans", F, failures=(MESH_TABLE,),
          declared=("mesh-split", "route-tls-mismatch")),
        t("suites/test_tls_names.py::test_names[tls-bad-sans]", "tls-bad-sans", P),
        t("suites/test_tls_names.py::test_ext[tls-bad-sans]", "tls-bad-sans", S, reason="kind cannot"),
        t("suites/test_advertise.py::test_x[advertise-dns+tls]", "advertise-dns+tls", S, reason="no client"),
        t("suites/test_tls_names.py::test_names[advertise-dns+tls]", "advertise-dns+tls", F,
          failures=("names: <nats-0.nats-headless> & 'x' differ\nkey | expected | observed | reason |\n"
                    "a | 1 | 1 |  | ✓",)),
    ]


EXPECTED_ENTRIES = {
    ("default", "route_mesh"): ("passed", "✓ 1"),
    ("default", "tls_names"): ("not-applicable", "n/a"),
    ("default", "advertise"): ("none", ""),
    ("tls-bad-sans", "route_mesh"): ("failed", "✗ 1/1"),
    ("tls-bad-sans", "tls_names"): ("passed", "✓ 1 s1"),
    ("tls-bad-sans", "advertise"): ("none", ""),
    ("advertise-dns+tls", "advertise"): ("skipped", "s 1"),
    ("advertise-dns+tls", "route_mesh"): ("none", ""),
    ("advertise-dns+tls", "tls_names"): ("failed", "✗ 1/1"),
}


@pytest.fixture
def page_file(tmp_path: Path) -> Path:
    page = tmp_path / "report.html"
    page.write_text(render_html(build_grid(sample()), [("run id", "abc123"), ("provider", "sandbox")]),
                    encoding="utf-8")
    return page


def test_page_holds_the_grid_entry_by_entry(page_file: Path) -> None:
    page = read_page(page_file.read_text(encoding="utf-8"))
    assert page.entries == EXPECTED_ENTRIES
    assert page.rows == ["default", "tls-bad-sans", "advertise-dns+tls"]


def test_page_is_self_contained(page_file: Path) -> None:
    text = page_file.read_text(encoding="utf-8")
    page = read_page(text)
    assert page.external == []
    assert "<style>" in text and '<meta charset="utf-8">' in text


def test_failed_cells_tables_are_preformatted_and_escaped(page_file: Path) -> None:
    text = page_file.read_text(encoding="utf-8")
    page = read_page(text)
    assert MESH_TABLE in page.pres
    assert any("<nats-0.nats-headless> & 'x'" in pre for pre in page.pres)
    assert "<nats-0.nats-headless>" not in text  # escaped in the source, whole in the parsed text
    assert "a | 1 | 1 |  | ✓" in "\n".join(page.pres)  # the page keeps the as-expected rows


def test_page_names_the_run_and_the_timings(page_file: Path) -> None:
    text = page_file.read_text(encoding="utf-8")
    assert "abc123" in text and "time_to_mesh_seconds" in text and "deploy_seconds" in text
    assert "declares mesh-split, route-tls-mismatch" in text


def test_an_empty_run_renders_a_page_saying_so(tmp_path: Path) -> None:
    text = render_html(build_grid([]))
    page = read_page(text)
    assert page.entries == {}
    assert "No cell failed." in text and "No test recorded a timing." in text


def test_chromium_renders_the_grid(page_file: Path, tmp_path: Path) -> None:
    """Headless Chromium loads the page from disk; the DOM it builds has every grid entry (text and verdict)."""
    browser = chromium()
    page = read_page(rendered_dom(browser, page_file, tmp_path))
    assert page.entries == EXPECTED_ENTRIES
    assert page.title.startswith("natsnet: 3 cells × 3 suites: 2 cells failed")
    shot = tmp_path / "report.png"
    screenshot(browser, page_file, shot, tmp_path)
    assert shot.stat().st_size > 10_000  # a rendered page, not an empty canvas
