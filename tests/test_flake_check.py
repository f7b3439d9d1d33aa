"""benchmarks/flake_check.py: per test id, how often it failed over runs (JUnit in, counts out)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "flake_check.py"

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest">
<testcase classname="suites.test_reconnect" name="test_reconnect_after_the_servers_pod_is_deleted[default]"/>
<testcase classname="suites.test_reconnect" name="test_client_learns_the_advertised_urls[default]">
  <failure message="differs">...</failure></testcase>
<testcase classname="suites.test_dns_egress" name="test_udp_only_dns_rule_breaks_tcp_dns[default]">
  <skipped message="not applicable"/></testcase>
<testcase classname="suites.test_route_mesh" name="test_route_mesh_matches_the_expectation[pnra-false]"/>
<testcase classname="suites.test_route_mesh" name="test_route_mesh_matches_the_expectation[pnra-false]">
  <error message="teardown failed"/></testcase>
</testsuite></testsuites>
"""


def flake_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("flake_check", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_outcomes_per_test_id_count_an_error_in_teardown_as_a_failure(tmp_path: Path) -> None:
    junit = tmp_path / "run.xml"
    junit.write_text(JUNIT)
    assert flake_check().outcomes_of(junit) == {
        "suites/test_reconnect.py::test_reconnect_after_the_servers_pod_is_deleted[default]": "passed",
        "suites/test_reconnect.py::test_client_learns_the_advertised_urls[default]": "failed",
        "suites/test_dns_egress.py::test_udp_only_dns_rule_breaks_tcp_dns[default]": "skipped",
        "suites/test_route_mesh.py::test_route_mesh_matches_the_expectation[pnra-false]": "failed",
    }


def test_the_report_counts_failures_over_runs() -> None:
    module = flake_check()
    learn = "suites/test_reconnect.py::test_client_learns_the_advertised_urls[default]"
    runs = [
        module.RunResult(1, 90.0, 1, "1 failed", {learn: "failed", "t2": "passed"}),
        module.RunResult(2, 91.0, 0, "2 passed", {learn: "passed", "t2": "passed"}),
        module.RunResult(3, 92.0, 0, "2 passed", {learn: "passed", "t2": "passed"}),
    ]
    text, clean = module.report(runs)
    assert not clean
    assert text.splitlines() == ["3 runs, 2 test ids", "failed  of  test id", f"     1   3  {learn}"]
    text, clean = module.report(runs[1:])
    assert clean and text.endswith("no test failed in any run")
    text, clean = module.report([module.RunResult(4, 1.0, 4, "ERROR: bad option")])
    assert not clean and "run 4: no JUnit report (exit status 4): ERROR: bad option" in text
