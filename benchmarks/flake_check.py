"""Flake check: runs the conformance suites N times (the smoke matrix on the sandbox, like scripts/main) and prints,
per test id, how often it failed.

    sudo .venv/bin/python benchmarks/flake_check.py --runs 10 [--workers 11] [-- extra pytest args]

Extra pytest arguments go to every run (e.g. ``-- --natsnet-matrix=full`` or ``-- -k reconnect``). Each run writes
JUnit XML; a test counts as failed in a run when its call or its setup/teardown failed or errored. Exits 1 when
any test failed in any run (or a run produced no report), else 0.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class RunResult:
    index: int
    seconds: float
    returncode: int
    summary: str
    outcomes: dict[str, str] = field(default_factory=dict)
    """test id -> passed | failed | skipped (a failed setup or teardown makes the test failed)."""


def pytest_argv(junit: Path, workers: int, extra: list[str]) -> list[str]:
    return [
        sys.executable, "-m", "pytest", "--natsnet", "--natsnet-provider=sandbox", "--natsnet-source=reference",
        "-p", "no:cacheprovider", "-q", "-o", "testpaths=suites", "-o", "junit_family=xunit1", "-n", str(workers),
        "--dist", "loadgroup", f"--junitxml={junit}", str(ROOT / "suites"), *extra,
    ]  # fmt: skip


def outcomes_of(junit: Path) -> dict[str, str]:
    """test id (``suites/test_x.py::test_y[cell]``) -> passed, failed or skipped."""
    outcomes: dict[str, str] = {}
    for case in ET.parse(junit).iter("testcase"):
        module = case.get("classname", "").replace(".", "/")
        test_id = f"{module}.py::{case.get('name', '')}"
        if case.find("failure") is not None or case.find("error") is not None:
            outcomes[test_id] = "failed"
        elif case.find("skipped") is not None:
            outcomes.setdefault(test_id, "skipped")
        else:
            outcomes.setdefault(test_id, "passed")
    return outcomes


def run_once(index: int, workers: int, extra: list[str], keep: Path) -> RunResult:
    junit = keep / f"run-{index}.xml"
    started = time.monotonic()
    done = subprocess.run(pytest_argv(junit, workers, extra), cwd=ROOT, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    (keep / f"run-{index}.log").write_text(done.stdout + done.stderr)
    lines = done.stdout.strip().splitlines()
    summary = lines[-1] if lines else f"no output (exit status {done.returncode})"
    outcomes = outcomes_of(junit) if junit.exists() else {}
    return RunResult(index, seconds, done.returncode, summary, outcomes)


def report(results: list[RunResult]) -> tuple[str, bool]:
    """The per-test failure counts as text, and whether everything passed in every run."""
    failures: collections.Counter[str] = collections.Counter()
    ran: collections.Counter[str] = collections.Counter()
    for result in results:
        for test_id, outcome in result.outcomes.items():
            ran[test_id] += outcome != "skipped"
            failures[test_id] += outcome == "failed"
    lines = [f"{len(results)} runs, {len(ran)} test ids"]
    broken = [r for r in results if not r.outcomes]
    for result in broken:
        lines.append(f"run {result.index}: no JUnit report (exit status {result.returncode}): {result.summary}")
    flaky = {t: n for t, n in failures.items() if n}
    if flaky:
        lines.append(f"{'failed':>6} {'of':>3}  test id")
        for test_id, count in sorted(flaky.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"{count:>6} {ran[test_id]:>3}  {test_id}")
    else:
        lines.append("no test failed in any run")
    return "\n".join(lines), not flaky and not broken


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3, help="how many runs (default 3)")
    parser.add_argument("--workers", type=int, default=11, help="pytest-xdist workers, one per cell (default 11)")
    parser.add_argument("--keep", type=Path, help="where run logs and JUnit files go (default: a temp dir)")
    parser.add_argument("extra", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    keep = args.keep or Path(tempfile.mkdtemp(prefix="natsnet-flake-"))
    keep.mkdir(parents=True, exist_ok=True)
    results = []
    for index in range(1, args.runs + 1):
        result = run_once(index, args.workers, args.extra, keep)
        failed = sorted(t for t, o in result.outcomes.items() if o == "failed")
        print(f"run {index}: {result.seconds:.1f} s, {result.summary}" + (f"; failed: {', '.join(failed)}"
                                                                          if failed else ""), flush=True)
        results.append(result)
    text, clean = report(results)
    print(text)
    print(f"logs and JUnit reports: {keep}")
    return 0 if clean else 1


if __name__ == "__main__":
    raise SystemExit(main())
