"""The pytest plugin as a user meets it: options, skip without --natsnet, markers, one-line errors, test ids.

Every run here is collection only (pytester, in process): nothing is deployed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pytest_natsnet.matrix import expand, load_matrix
from pytest_natsnet.plugin import DISABLED_REASON
from pytest_natsnet.settings import OPTIONS

USES_CELL = """
def test_uses_cell(natsnet_cell):
    pass
"""

USES_SCENARIO = """
def test_cells(natsnet_scenario):
    pass
"""

# Test files are always named: without a path argument --natsnet also collects (and runs) the shipped suites.
COLLECT_ON_SANDBOX = ("--collect-only", "-q", "--natsnet", "--natsnet-provider=sandbox",
                      "--natsnet-source=reference", "-p", "no:cacheprovider")
RUN_ON_SANDBOX = COLLECT_ON_SANDBOX[2:]
"""Runs tests that use only natsnet_scenario: nothing deploys either."""


@pytest.fixture
def sandbox_collectable() -> None:
    """Collection with --natsnet-provider=sandbox checks the machine first; skip where it cannot run."""
    from pytest_natsnet.providers.sandbox_provider import missing_requirements

    problems = missing_requirements()
    if problems:
        pytest.skip(f"sandbox requirements missing: {'; '.join(problems)}")


def error_lines(result: pytest.RunResult) -> list[str]:
    return [line for line in result.errlines + result.outlines if line.startswith("ERROR")]


def assert_one_clear_line(result: pytest.RunResult, *fragments: str) -> None:
    """A usage error: exit status 4, exactly one ERROR line holding every fragment, no traceback."""
    output = "\n".join(result.outlines + result.errlines)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output
    assert "Traceback" not in output, output
    lines = error_lines(result)
    assert len(lines) == 1, output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def collected_ids(result: pytest.RunResult) -> list[str]:
    return [match.group(1) for line in result.outlines if (match := re.search(r"::\w+\[(.+)\]$", line))]


# -------------------------------------------------------------------------------------------------- --help


def test_help_lists_every_natsnet_option(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    assert result.ret == 0
    help_text = result.stdout.str()
    listed = set(re.findall(r"(--natsnet(?:-[a-z]+)*)", help_text))
    assert listed == {"--natsnet", *(option.flag for option in OPTIONS)}
    for option in OPTIONS:
        assert f"{option.dest} (" in help_text, f"ini twin of {option.flag} missing from --help"


def test_fixtures_are_documented(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--fixtures")
    text = result.stdout.str()
    fixtures = ("natsnet_scenario", "natsnet_cell", "natsnet_deployment", "natsnet_probe", "natsnet_settings")
    for fixture in fixtures:
        match = re.search(rf"^{fixture}( \[.*\])? -- .*\n\s+\S", text, re.MULTILINE)
        assert match, f"{fixture} missing from --fixtures or has no docstring"


# ------------------------------------------------------------------------------------------ without --natsnet


def test_natsnet_tests_are_skipped_with_the_reason_when_off(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_mine=USES_CELL + "\n\ndef test_plain():\n    pass\n")
    result = pytester.runpytest("-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines([f"SKIPPED * {DISABLED_REASON}"])


def test_ini_natsnet_false_keeps_them_off(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nnatsnet = false\n")
    pytester.makepyfile(test_mine=USES_SCENARIO)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(skipped=1)


def test_markers_are_registered_for_strict_markers(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", my_values="config:\n  cluster:\n    enabled: true\n")
    pytester.makepyfile(test_marked="""
        import pytest

        @pytest.mark.natsnet
        @pytest.mark.natsnet_values("my_values.yaml", expect=["mesh-split"])
        def test_bug(natsnet_cell):
            pass
    """)
    result = pytester.runpytest("--strict-markers", "-p", "no:cacheprovider")
    result.assert_outcomes(skipped=1)
    markers = pytester.runpytest("--markers").stdout.str()
    assert "@pytest.mark.natsnet:" in markers
    assert "@pytest.mark.natsnet_values(" in markers


def test_strict_markers_still_rejects_unknown_markers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_marked="""
        import pytest

        @pytest.mark.natsnet_valuez("my_values.yaml")
        def test_bug():
            pass
    """)
    result = pytester.runpytest("--strict-markers", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*'natsnet_valuez' not found in `markers` configuration option*"])


# --------------------------------------------------------------------------------------------- bad input


BAD_OPTIONS = [
    (["--natsnet-parallel=0"], ["--natsnet-parallel", "at least 1"]),
    (["--natsnet-parallel=many"], ["--natsnet-parallel", "'many'", "whole number"]),
    (["--natsnet-timeout=-3"], ["--natsnet-timeout", "positive"]),
    (["--natsnet-values-dir=no-such-dir"], ["--natsnet-values-dir", "'no-such-dir'", "does not exist"]),
    (["--natsnet-manifests=no-such-dir"], ["--natsnet-manifests", "does not exist"]),
    (["--natsnet-kind-config=nope.yaml"], ["--natsnet-kind-config", "'nope.yaml'", "does not exist"]),
    (["--natsnet-cluster-name=Not_A_Label"], ["--natsnet-cluster-name", "DNS label"]),
    (["--natsnet-chart-version=latest"], ["--natsnet-chart-version", "'latest'"]),
    (["--natsnet-chart=./no-chart"], ["--natsnet-chart", "does not exist"]),
    (["--natsnet-source=manifests"], ["--natsnet-source=manifests", "--natsnet-manifests"]),
]


@pytest.mark.parametrize(("args", "fragments"), BAD_OPTIONS, ids=[args[0] for args, _ in BAD_OPTIONS])
def test_bad_option_values_give_one_clear_line(pytester: pytest.Pytester, args: list[str],
                                               fragments: list[str]) -> None:
    result = pytester.runpytest(*args, "-p", "no:cacheprovider")
    assert_one_clear_line(result, *fragments)


def test_bad_ini_value_names_the_option(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nnatsnet_parallel = 0\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert_one_clear_line(result, "--natsnet-parallel", "at least 1")


@pytest.mark.parametrize("option",
                         ["--natsnet-matrix=nope", "--natsnet-provider=docker", "--natsnet-keep=maybe"])
def test_unknown_choice_is_rejected_with_the_choices(pytester: pytest.Pytester, option: str) -> None:
    flag, value = option.split("=")
    result = pytester.runpytest(option, "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "Traceback" not in result.stderr.str()
    result.stderr.fnmatch_lines([f"*error: argument {flag}: invalid choice: '{value}' (choose from *"])


def test_values_dir_with_invalid_yaml_names_the_file(pytester: pytest.Pytester,
                                                     sandbox_collectable: None) -> None:
    values = pytester.mkdir("values")
    (values / "broken.yaml").write_text("config: [unclosed\n")
    pytester.makepyfile(test_mine=USES_SCENARIO)
    result = pytester.runpytest(*COLLECT_ON_SANDBOX, f"--natsnet-values-dir={values}", "test_mine.py")
    assert_one_clear_line(result, str(values / "broken.yaml"), "invalid YAML")


VALID_FAILURES = "use one of dns-blocked, mesh-split, route-tls-mismatch, learned-urls-unreachable"


def test_a_bad_declared_failure_in_matrix_yaml_is_one_line_at_startup(
    pytester: pytest.Pytester, sandbox_collectable: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_natsnet import matrix as matrix_module

    shipped = matrix_module.charts_values_dir()
    charts = pytester.mkdir("charts-values")
    for path in shipped.glob("*.yaml"):
        (charts / path.name).write_text(path.read_text())
    text = (charts / "matrix.yaml").read_text()
    (charts / "matrix.yaml").write_text(text.replace("expect: [learned-urls-unreachable]",
                                                     "expect: [learned-url-unreachable]"))
    monkeypatch.setattr(matrix_module, "charts_values_dir", lambda: charts)
    pytester.makepyfile(test_mine=USES_SCENARIO)
    result = pytester.runpytest(*COLLECT_ON_SANDBOX, "test_mine.py")
    assert_one_clear_line(result, f"{charts / 'matrix.yaml'} key axes.advertise.settings.unreachable.expect",
                          "unknown declared failure 'learned-url-unreachable'", VALID_FAILURES)


def test_a_bad_declared_failure_in_a_marker_is_one_line_at_startup(pytester: pytest.Pytester,
                                                                   sandbox_collectable: None) -> None:
    pytester.makefile(".yaml", my_values="config:\n  cluster:\n    replicas: 3\n")
    pytester.makepyfile(test_bug="""
        import pytest

        @pytest.mark.natsnet_values("my_values.yaml", expect=["mesh-spilt"])
        def test_routes_break(natsnet_cell):
            raise AssertionError("never runs")
    """)
    result = pytester.runpytest(*RUN_ON_SANDBOX, "test_bug.py")
    assert_one_clear_line(result, "natsnet_values on test_bug.py::test_routes_break expect",
                          "unknown declared failure 'mesh-spilt'", VALID_FAILURES)


@pytest.mark.parametrize(("marker", "fragment"), [
    ('"my_values.yaml", expect=["mesh-spilt"]', "unknown declared failure 'mesh-spilt'"),
    ('"missing-values.yaml"', "missing-values.yaml does not exist"),
], ids=["bad-declared-failure", "missing-values-file"])
def test_a_bad_marker_under_xdist_is_one_collection_error_not_one_per_worker(
    pytester: pytest.Pytester, sandbox_collectable: None, marker: str, fragment: str
) -> None:
    """An xdist worker cannot raise a usage error: the bad marker is the module's collection error, shown once
    (as plain text, which the controller recognises as the same error from each worker)."""
    pytester.makefile(".yaml", my_values="config:\n  cluster:\n    replicas: 3\n")
    pytester.makepyfile(test_bug=f"""
        import pytest

        @pytest.mark.natsnet_values({marker})
        def test_routes_break(natsnet_cell):
            raise AssertionError("never runs")
    """)
    result = pytester.runpytest(*RUN_ON_SANDBOX, "-n", "2", "test_bug.py")
    output = "\n".join(result.outlines + result.errlines)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, output  # a collection error, the run goes no further
    assert "Traceback" not in output, output
    assert len([line for line in result.outlines if line.startswith("natsnet_values on ")]) == 1, output
    assert fragment in output, output


def test_a_bad_declared_failure_in_a_values_file_header_is_one_line_at_startup(
    pytester: pytest.Pytester, sandbox_collectable: None
) -> None:
    values = pytester.mkdir("values")
    (values / "my-cell.yaml").write_text("# natsnet-expect: dns-blokced, mesh-split\nconfig: {}\n")
    pytester.makepyfile(test_mine=USES_SCENARIO)
    result = pytester.runpytest(*COLLECT_ON_SANDBOX, f"--natsnet-values-dir={values}", "test_mine.py")
    assert_one_clear_line(result, f"{values / 'my-cell.yaml'} header natsnet-expect",
                          "unknown declared failure 'dns-blokced'", VALID_FAILURES)


def test_unknown_scenario_glob_lists_the_cells(pytester: pytest.Pytester, sandbox_collectable: None) -> None:
    pytester.makepyfile(test_mine=USES_SCENARIO)
    result = pytester.runpytest(*COLLECT_ON_SANDBOX, "--natsnet-scenario=no-such-cell*", "test_mine.py")
    assert_one_clear_line(result, "--natsnet-scenario no-such-cell*", "matches no cell", "default")


def test_natsnet_values_with_a_missing_file_gives_one_line(pytester: pytest.Pytester,
                                                          sandbox_collectable: None) -> None:
    pytester.makepyfile(test_bug="""
        import pytest

        @pytest.mark.natsnet_values("missing-values.yaml")
        def test_my_bug(natsnet_cell):
            pass
    """)
    result = pytester.runpytest(*COLLECT_ON_SANDBOX, "test_bug.py")
    output = "\n".join(result.outlines + result.errlines)
    assert result.ret != pytest.ExitCode.OK
    assert "missing-values.yaml" in output
    assert "Traceback" not in output and "pluggy" not in output, output


# -------------------------------------------------------------------------------------------------- test ids


def test_test_ids_are_the_smoke_scenario_ids(pytester: pytest.Pytester, sandbox_collectable: None) -> None:
    pytester.makepyfile(test_mine=USES_SCENARIO)
    result = pytester.runpytest(*COLLECT_ON_SANDBOX, "test_mine.py")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    ids = collected_ids(result)
    assert "default" in ids and "pnra-false" in ids and "tls-bad-sans" in ids
    assert ids == [scenario.id for scenario in expand(load_matrix(), "smoke")]


def test_scenario_glob_selects_cells(pytester: pytest.Pytester, sandbox_collectable: None) -> None:
    pytester.makepyfile(test_mine=USES_SCENARIO)
    result = pytester.runpytest(*COLLECT_ON_SANDBOX, "--natsnet-scenario=pnra*", "--natsnet-scenario=default",
                                "test_mine.py")
    assert collected_ids(result) == ["default", "pnra-false", "pnra-false+jetstream"]


def test_pairwise_matrix_has_more_cells_than_smoke(pytester: pytest.Pytester,
                                                   sandbox_collectable: None) -> None:
    pytester.makepyfile(test_mine=USES_SCENARIO)
    result = pytester.runpytest(*COLLECT_ON_SANDBOX, "--natsnet-matrix=pairwise", "test_mine.py")
    ids = collected_ids(result)
    assert len(ids) == len(set(ids)) > len(expand(load_matrix(), "smoke"))
    assert ids == [scenario.id for scenario in expand(load_matrix(), "pairwise")]


def test_values_dir_adds_one_cell_per_file(pytester: pytest.Pytester, sandbox_collectable: None) -> None:
    values = pytester.mkdir("ci")
    (values / "my-tls-values.yaml").write_text("config:\n  cluster:\n    replicas: 3\n")
    pytester.makepyfile(test_mine=USES_SCENARIO)
    result = pytester.runpytest(*COLLECT_ON_SANDBOX, f"--natsnet-values-dir={values}",
                                "--natsnet-scenario=my-*", "test_mine.py")
    assert collected_ids(result) == ["my-tls-values"]


def test_natsnet_values_marker_gives_the_test_its_own_cell(pytester: pytest.Pytester,
                                                           sandbox_collectable: None) -> None:
    pytester.makefile(".yaml", my_values="config:\n  cluster:\n    replicas: 3\n")
    pytester.makepyfile(test_bug="""
        import pytest

        @pytest.mark.natsnet_values("my_values.yaml", expect=["mesh-split"])
        def test_routes_break(natsnet_scenario):
            assert natsnet_scenario.expect == {"mesh-split"}
            assert natsnet_scenario.values_files[-1].name == "my_values.yaml"
    """)
    result = pytester.runpytest(*RUN_ON_SANDBOX, "-v", "test_bug.py")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["test_bug.py::test_routes_break[[]routes-break[]] PASSED*"])


def test_natsnet_scenario_fixture_runs_without_deploying(pytester: pytest.Pytester,
                                                         sandbox_collectable: None) -> None:
    """natsnet_scenario alone deploys nothing: the test body sees the cell's declared failures."""
    pytester.makepyfile(test_mine="""
        def test_declares(natsnet_scenario):
            assert natsnet_scenario.id == "tls-bad-sans"
            assert "route-tls-mismatch" in natsnet_scenario.expect
    """)
    result = pytester.runpytest(*RUN_ON_SANDBOX, "--natsnet-scenario=tls-bad-sans", "test_mine.py")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "natsnet: provider sandbox (--natsnet-provider=sandbox), run id *",
        "natsnet: source reference (--natsnet-source=reference)",
        "natsnet: 1 cell will run (smoke): tls-bad-sans",
    ])


BUG_AND_SCENARIO = """
import pytest


@pytest.mark.natsnet_values("my_values.yaml")
def test_my_bug(natsnet_scenario):
    pass


def test_cells(natsnet_scenario):
    pass
"""


def test_scenario_globs_select_the_cells_of_natsnet_values_tests_too(pytester: pytest.Pytester,
                                                                    sandbox_collectable: None) -> None:
    """--natsnet-scenario selects cells by id, a bug-report test's own cell included: left out when no glob names
    it, kept (and no "matches no cell" error) when one does."""
    pytester.makefile(".yaml", my_values="config:\n  cluster:\n    replicas: 3\n")
    pytester.makepyfile(test_bug=BUG_AND_SCENARIO)
    result = pytester.runpytest(*COLLECT_ON_SANDBOX, "--natsnet-scenario=default", "test_bug.py")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert collected_ids(result) == ["default"]
    result = pytester.runpytest(*COLLECT_ON_SANDBOX, "--natsnet-scenario=my-*", "test_bug.py")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert collected_ids(result) == ["my-bug"]


WHICH_WORKER = """
import os
from pathlib import Path

import pytest


@pytest.mark.parametrize("n", range(4))
def test_where(natsnet_scenario, n):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "-")
    (Path(os.environ["WHERE_DIR"]) / f"{natsnet_scenario.id}.{n}").write_text(worker)
"""


@pytest.mark.parametrize("dist", [[], ["--dist", "load"], ["--dist", "worksteal"], ["--dist", "loadgroup"]],
                         ids=["n-alone", "load", "worksteal", "loadgroup"])
def test_every_test_of_a_cell_runs_on_one_worker_whichever_load_mode(
    pytester: pytest.Pytester, sandbox_collectable: None, dist: list[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers running tests of one cell would each deploy it into its one namespace, and the first to finish
    would tear it down under the other: ``-n 2`` alone (xdist's ``load``) must schedule by cell too."""
    where = tmp_path / "where"
    where.mkdir()
    monkeypatch.setenv("WHERE_DIR", str(where))
    pytester.makepyfile(test_where=WHICH_WORKER)
    result = pytester.runpytest(*RUN_ON_SANDBOX, "-n", "2", *dist, "--natsnet-scenario=default",
                                "--natsnet-scenario=pnra-false", "test_where.py")
    result.assert_outcomes(passed=8)
    found: dict[str, set[str]] = {}
    for path in where.iterdir():
        found.setdefault(path.name.split(".")[0], set()).add(path.read_text())
    assert sorted(found) == ["default", "pnra-false"]
    assert all(len(workers) == 1 for workers in found.values()), found


def test_dist_each_is_one_clear_line(pytester: pytest.Pytester, sandbox_collectable: None) -> None:
    pytester.makepyfile(test_where=WHICH_WORKER)
    result = pytester.runpytest(*RUN_ON_SANDBOX, "-n", "2", "--dist", "each", "test_where.py")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --dist each runs every test on every worker*"])
