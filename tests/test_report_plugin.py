"""The report as a user meets it: the header's cells, the terminal summary's grid, failed cells' tables and
timings, the HTML page (--natsnet-report) and the evidence path (JUnit property), with and without xdist.

The fake suites use only ``natsnet_scenario`` (nothing deploys); one test deploys a real sandbox cell to see the
evidence path and the progress lines of a deploy.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from report_dom import chromium, read_page, rendered_dom

RUN = ("--natsnet", "--natsnet-provider=sandbox", "--natsnet-source=reference", "-p", "no:cacheprovider",
       "--natsnet-scenario=default", "--natsnet-scenario=pnra-false", "-o", "junit_family=xunit1")
XDIST = [pytest.param([], id="one-process"), pytest.param(["-n", "2", "--dist", "loadgroup"], id="xdist")]

ALPHA = """
from pytest_natsnet.suitekit import applies
from pytest_natsnet.table import Comparison


def test_passes(natsnet_scenario, record_property):
    record_property("time_to_mesh_seconds", 1.25 if natsnet_scenario.id == "default" else 2.5)


def test_mesh(natsnet_scenario):
    if natsnet_scenario.id == "pnra-false":
        Comparison.from_dicts({"a": 1, "b": 2, "c": 3}, {"a": 1, "b": 5, "c": 3}).assert_same("mesh of pnra-false")


@applies(lambda s: None if s.id == "default" else "the cell does not enable TLS")
def test_tls_only(natsnet_scenario):
    pass
"""

BETA = """
import pytest
from pytest_natsnet.suitekit import not_applicable


def test_runtime_not_applicable(natsnet_scenario):
    if natsnet_scenario.id == "pnra-false":
        not_applicable("routes are not TLS in this cell")


def test_real_skip(natsnet_scenario):
    pytest.skip("provider cannot run an external client")


def test_reconnect(natsnet_scenario, record_property):
    record_property("service_client_reconnect_seconds", 0.043)
"""


@pytest.fixture
def sandbox_collectable() -> None:
    from pytest_natsnet.providers.sandbox_provider import missing_requirements

    problems = missing_requirements()
    if problems:
        pytest.skip(f"sandbox requirements missing: {'; '.join(problems)}")


@pytest.fixture
def fake_suites(pytester: pytest.Pytester, sandbox_collectable: None) -> pytest.Pytester:
    pytester.makepyfile(test_alpha=ALPHA, test_beta=BETA)
    return pytester


@pytest.mark.parametrize("xdist", XDIST)
def test_terminal_summary_shows_grid_failed_tables_and_timings(fake_suites: pytest.Pytester,
                                                              xdist: list[str]) -> None:
    result = fake_suites.runpytest(*RUN, *xdist, "-rs", "--junitxml=out/junit.xml", "test_alpha.py", "test_beta.py")
    result.assert_outcomes(passed=7, failed=1, skipped=4)
    result.stdout.fnmatch_lines([
        "natsnet: 2 cells will run (smoke): default, pnra-false",
        "*natsnet: 2 cells × 2 suites: 1 cell failed (1 failed, 7 passed, 2 skipped, 2 not applicable)*",
        "legend: ✓ N: N passed · *",
        "cell        alpha  beta",
        "default     ✓ 3    ✓ 2 s1",
        "pnra-false  ✗ 1/2  ✓ 1 s1",
        "*natsnet: failed cells: tables and evidence*",
        "pnra-false (expected healthy); no evidence (the cell was not deployed)",
        "  alpha::test_mesh[[]pnra-false[]]",
        "    mesh of pnra-false: 2/3 as expected, 1 differ from the expectation",
        "    key | expected | observed | reason |",
        "    b   | 2        | 5        |        | ✗",
        "    (2 rows as expected not shown)",
        "*natsnet: key timings per cell*",
        "cell          mesh  reconnect",
        "default     1.25 s    0.043 s",
        "pnra-false   2.5 s    0.043 s",
    ])
    result.stdout.fnmatch_lines(["SKIPPED * not applicable: the cell does not enable TLS",
                                 "SKIPPED * not applicable: routes are not TLS in this cell"], consecutive=False)
    junit = ET.parse(fake_suites.path / "out" / "junit.xml")
    assert not [p for p in junit.iter("property") if p.get("name") == "natsnet_evidence"], (
        "a cell that was never deployed has no evidence to point at"
    )


def test_no_failure_no_failure_section(fake_suites: pytest.Pytester) -> None:
    result = fake_suites.runpytest(*RUN, "-k", "not test_mesh", "test_alpha.py", "test_beta.py")
    result.assert_outcomes(passed=6, skipped=4)
    result.stdout.fnmatch_lines(["*natsnet: 2 cells × 2 suites: no cell failed*"])
    result.stdout.no_fnmatch_line("*failed cells*")


@pytest.mark.parametrize("xdist", XDIST)
def test_header_counts_the_cells_with_selected_tests(fake_suites: pytest.Pytester, xdist: list[str]) -> None:
    result = fake_suites.runpytest(*RUN, *xdist, "-k", "pnra", "test_alpha.py")
    result.stdout.fnmatch_lines(["natsnet: 1 cell will run (1 of the 2 smoke cells have selected tests): pnra-false"])
    result.stdout.no_fnmatch_line("natsnet: 2 cells*")


@pytest.mark.parametrize("xdist", XDIST)
def test_a_bug_report_test_runs_one_cell(pytester: pytest.Pytester, sandbox_collectable: None,
                                         xdist: list[str]) -> None:
    pytester.makefile(".yaml", my_values="config:\n  cluster:\n    replicas: 3\n")
    pytester.makepyfile(test_bug="""
        import pytest

        @pytest.mark.natsnet_values("my_values.yaml")
        def test_routes_break(natsnet_scenario):
            pass
    """)
    result = pytester.runpytest("--natsnet", "--natsnet-provider=sandbox", "--natsnet-source=reference",
                                "-p", "no:cacheprovider", *xdist, "test_bug.py")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "natsnet: 1 cell will run (1 cell of natsnet_values tests): routes-break",
        "*natsnet: 1 cell × 1 suite: no cell failed (1 passed)*",
        "routes-break  ✓ 1",
    ])


def test_html_report_holds_the_grid_as_chromium_renders_it(fake_suites: pytest.Pytester, tmp_path: Path) -> None:
    result = fake_suites.runpytest(*RUN, "-n", "2", "--dist", "loadgroup", "--natsnet-report=out/report.html",
                                   "test_alpha.py", "test_beta.py")
    report = fake_suites.path / "out" / "report.html"
    result.stdout.fnmatch_lines([f"natsnet: report written to {report}"])
    expected = {
        ("default", "alpha"): ("passed", "✓ 3"),
        ("default", "beta"): ("passed", "✓ 2 s1"),
        ("pnra-false", "alpha"): ("failed", "✗ 1/2"),
        ("pnra-false", "beta"): ("passed", "✓ 1 s1"),
    }
    written = read_page(report.read_text(encoding="utf-8"))
    assert written.entries == expected
    assert written.external == []
    assert any("mesh of pnra-false: 2/3 as expected" in pre for pre in written.pres)
    assert read_page(rendered_dom(chromium(), report, tmp_path)).entries == expected


def test_report_option_rejects_a_directory(pytester: pytest.Pytester) -> None:
    pytester.mkdir("reports")
    result = pytester.runpytest("--natsnet-report=reports", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--natsnet-report: 'reports' is a directory" in result.stderr.str()
    assert "Traceback" not in result.stderr.str()


def test_a_failed_deployed_cell_names_its_evidence_in_junit_and_summary(pytester: pytest.Pytester,
                                                                         sandbox_collectable: None) -> None:
    """A real sandbox cell: while it deploys, progress lines (-v); a failed test's JUnit XML names the evidence
    directory, which holds REPRODUCE.txt after the run, and so does the terminal summary."""
    pytester.makepyfile(test_cell="""
        from pytest_natsnet.suitekit import servers
        from pytest_natsnet.table import Comparison

        def test_counts_servers(natsnet_deployment):
            observed = len(servers(natsnet_deployment).names)
            Comparison.from_dicts({"servers": 4}, {"servers": observed}).assert_same("servers of the cell")
    """)
    result = pytester.runpytest("--natsnet", "--natsnet-provider=sandbox", "--natsnet-source=reference",
                                "-p", "no:cacheprovider", "--natsnet-scenario=default", "-v",
                                "-o", "junit_family=xunit1", "--junitxml=junit.xml", "test_cell.py")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["natsnet: deploying cell default … * s*"])
    properties = {p.get("name"): p.get("value") for p in ET.parse(pytester.path / "junit.xml").iter("property")}
    evidence = Path(str(properties.get("natsnet_evidence")))
    assert evidence.is_dir() and (evidence / "REPRODUCE.txt").is_file(), properties
    relative = evidence.relative_to(pytester.path)
    result.stdout.fnmatch_lines([
        f"default (expected healthy); evidence: {relative}",
        "  cell::test_counts_servers[[]default[]]",
        "    servers of the cell: 0/1 as expected, 1 differ from the expectation",
        "    servers | 4 * | 3 * | * | ✗",
        "*natsnet: key timings per cell*",
        "default  * s",
    ])


def test_a_cell_that_declares_failures_reports_across_xdist(fake_suites: pytest.Pytester) -> None:
    """Reports cross from workers to the controller as plain data: a declared failure is a string there."""
    result = fake_suites.runpytest(*RUN, "-n", "2", "--dist", "loadgroup", "--natsnet-scenario=tls-bad-sans",
                                   "test_beta.py")
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()[-2000:]
