"""Pure: test outcomes → the cell × suite grid, failed cells' tables and timings per cell.

**Skip versus not applicable.** A test that does not apply to a cell is skipped with a reason that starts with
``NOT_APPLICABLE_PREFIX`` ("not applicable: "): ``suitekit.not_applicable(reason)`` at run time, and every
``suitekit.applies`` predicate's reason at collection. The grid shows those as *n/a*. Any other skip (a provider
that cannot do something, a missing tool) is a real *skip*: the test should have run and did not.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

NOT_APPLICABLE_PREFIX = "not applicable: "
SKIPPED_PREFIX = "Skipped: "
MAX_FAILURE_LINES = 60


class Verdict(enum.Enum):
    """A test's outcome on the grid; the order is the precedence of an entry's verdict (worst first)."""

    FAILED = "failed"
    PASSED = "passed"
    SKIPPED = "skipped"
    NOT_APPLICABLE = "not applicable"


def is_not_applicable(reason: str) -> bool:
    """Whether a skip reason says the test does not apply to the cell (see the module docstring)."""
    return reason.removeprefix(SKIPPED_PREFIX).startswith(NOT_APPLICABLE_PREFIX)


def not_applicable_reason(reason: str) -> str:
    """``reason`` with the not-applicable prefix (once)."""
    return reason if reason.startswith(NOT_APPLICABLE_PREFIX) else NOT_APPLICABLE_PREFIX + reason


def suite_of(nodeid: str) -> str:
    """The suite is the test module: ``suites/test_dns_records.py::test_x[cell]`` → ``dns_records``."""
    module = nodeid.split("::", 1)[0].rsplit("/", 1)[-1].removesuffix(".py")
    return module.removeprefix("test_").removesuffix("_test") or module


def name_of(nodeid: str) -> str:
    """The test's name with its parameters, without the module: ``test_x[default-udp]``."""
    return nodeid.split("::", 1)[-1]


@dataclass(frozen=True)
class Phase:
    """One pytest report (setup, call or teardown of a test) reduced to what the report needs."""

    nodeid: str
    cell: str
    when: str
    outcome: str
    """``passed``, ``failed`` or ``skipped``."""
    text: str = ""
    """The skip reason, or the failure's message (see ``failure_message``)."""
    properties: tuple[tuple[str, object], ...] = ()
    declared: tuple[str, ...] = ()
    """The documented failures the cell declares (empty: expected healthy)."""
    deploy_seconds: float | None = None
    evidence: str | None = None
    """Where the cell's evidence goes (set on failed tests of deployed cells)."""


@dataclass(frozen=True)
class TestOutcome:
    """Every phase of one test merged: its verdict, skip reason or failure texts, recorded properties."""

    __test__ = False  # not a pytest test class

    nodeid: str
    cell: str
    verdict: Verdict | None = None
    """None while only the setup has passed (an interrupted run)."""
    reason: str = ""
    failures: tuple[str, ...] = ()
    properties: Mapping[str, object] = field(default_factory=dict)
    declared: tuple[str, ...] = ()
    deploy_seconds: float | None = None
    evidence: str | None = None

    @property
    def suite(self) -> str:
        return suite_of(self.nodeid)

    @property
    def name(self) -> str:
        return name_of(self.nodeid)


def merge(previous: TestOutcome | None, phase: Phase) -> TestOutcome:
    """The test's outcome after one more of its phases: a failure in any phase fails it; a skip in setup or
    call skips it (n/a when the reason says so); a passed call passes it."""
    outcome = previous or TestOutcome(phase.nodeid, phase.cell)
    properties = {**outcome.properties, **dict(phase.properties)}
    outcome = replace(
        outcome,
        properties=properties,
        declared=phase.declared or outcome.declared,
        deploy_seconds=phase.deploy_seconds if phase.deploy_seconds is not None else outcome.deploy_seconds,
        evidence=phase.evidence or outcome.evidence,
    )
    if phase.outcome == "failed":
        text = phase.text if phase.when == "call" else f"error in {phase.when}: {phase.text}"
        return replace(outcome, verdict=Verdict.FAILED, failures=(*outcome.failures, text))
    if outcome.verdict is Verdict.FAILED:
        return outcome
    if phase.outcome == "skipped":
        reason = phase.text.removeprefix(SKIPPED_PREFIX)
        verdict = Verdict.NOT_APPLICABLE if is_not_applicable(reason) else Verdict.SKIPPED
        return replace(outcome, verdict=verdict, reason=reason)
    if phase.when == "call":
        return replace(outcome, verdict=Verdict.PASSED)
    return outcome


class Outcomes:
    """Tests in the order their first report arrived, merged phase by phase."""

    def __init__(self) -> None:
        self._tests: dict[str, TestOutcome] = {}

    def add(self, phase: Phase) -> None:
        self._tests[phase.nodeid] = merge(self._tests.get(phase.nodeid), phase)

    @property
    def tests(self) -> list[TestOutcome]:
        return list(self._tests.values())


# ------------------------------------------------------------------------------------------------- the grid


GLYPHS = {Verdict.PASSED: "✓", Verdict.FAILED: "✗", Verdict.SKIPPED: "s", Verdict.NOT_APPLICABLE: "n/a"}
LEGEND = (
    ("✓ N", "N passed"),
    ("✗ F/N", "F of the N that ran failed"),
    ("s N", "N skipped: they apply but could not run"),
    ("n/a", "does not apply to the cell"),
    ("blank", "not selected"),
)
"""The grid's marks and what they mean (terminal and HTML)."""


@dataclass(frozen=True)
class Entry:
    """The tests of one suite on one cell."""

    tests: tuple[TestOutcome, ...] = ()

    def count(self, verdict: Verdict) -> int:
        return sum(1 for t in self.tests if t.verdict is verdict)

    @property
    def verdict(self) -> Verdict | None:
        """The worst verdict among the tests (failed, passed, skipped, n/a); None when there are none."""
        present = {t.verdict for t in self.tests}
        return next((v for v in Verdict if v in present), None)

    @property
    def text(self) -> str:
        """``✓ 3``, ``✗ 1/3``, ``s 2``, ``n/a``, ``✓ 2 s1`` (skips beside passes or failures), or ``""``."""
        verdict = self.verdict
        failed, passed, skipped = self.count(Verdict.FAILED), self.count(Verdict.PASSED), self.count(Verdict.SKIPPED)
        extra = f" s{skipped}" if skipped else ""
        if verdict is Verdict.FAILED:
            return f"✗ {failed}/{failed + passed}{extra}"
        if verdict is Verdict.PASSED:
            return f"✓ {passed}{extra}"
        if verdict is Verdict.SKIPPED:
            return f"s {skipped}"
        if verdict is Verdict.NOT_APPLICABLE:
            return "n/a"
        return ""


@dataclass(frozen=True)
class CellSummary:
    """What the report says about a cell besides its entries."""

    id: str
    declared: tuple[str, ...] = ()
    evidence: str | None = None
    deploy_seconds: float | None = None


@dataclass(frozen=True)
class Grid:
    cells: tuple[str, ...]
    suites: tuple[str, ...]
    entries: Mapping[tuple[str, str], Entry]
    summaries: Mapping[str, CellSummary]

    def entry(self, cell: str, suite: str) -> Entry:
        return self.entries.get((cell, suite), Entry())

    def cell_verdict(self, cell: str) -> Verdict | None:
        return Entry(tuple(t for s in self.suites for t in self.entry(cell, s).tests)).verdict

    @property
    def failed_cells(self) -> list[str]:
        return [c for c in self.cells if self.cell_verdict(c) is Verdict.FAILED]

    def count(self, verdict: Verdict) -> int:
        return sum(entry.count(verdict) for entry in self.entries.values())


def _ordered(seen: Iterable[str], order: Sequence[str]) -> tuple[str, ...]:
    seen_set = dict.fromkeys(seen)
    return tuple([c for c in order if c in seen_set] + [c for c in seen_set if c not in order])


def build_grid(tests: Sequence[TestOutcome], cell_order: Sequence[str] = ()) -> Grid:
    """Rows are the cells (in ``cell_order``, then as first seen), columns the suites (alphabetical)."""
    cells = _ordered((t.cell for t in tests), cell_order)
    suites = tuple(sorted({t.suite for t in tests}))
    grouped: dict[tuple[str, str], list[TestOutcome]] = {}
    for test in tests:
        grouped.setdefault((test.cell, test.suite), []).append(test)
    summaries = {}
    for cell in cells:
        of_cell = [t for t in tests if t.cell == cell]
        summaries[cell] = CellSummary(
            cell,
            declared=next((t.declared for t in of_cell if t.declared), ()),
            evidence=next((t.evidence for t in of_cell if t.evidence), None),
            deploy_seconds=next((t.deploy_seconds for t in of_cell if t.deploy_seconds is not None), None),
        )
    return Grid(cells, suites, {key: Entry(tuple(group)) for key, group in grouped.items()}, summaries)


# -------------------------------------------------------------------------------------------- failed cells


@dataclass(frozen=True)
class FailureGroup:
    """Failed tests of one cell that share one message (a cell that could not deploy fails each test alike)."""

    tests: tuple[str, ...]
    text: str


def failure_message(crash_message: str | None, longrepr_text: str) -> str:
    """The message a failure carries (with the tables the suites render), without pytest's decorations:
    ``Failed: `` of ``pytest.fail``, ``AssertionError: `` and the two-space indent of its later lines."""
    if not crash_message:
        return longrepr_text.strip()
    if crash_message.startswith("Failed: "):
        return crash_message.removeprefix("Failed: ").strip()
    if crash_message.startswith("AssertionError: "):
        first, *rest = crash_message.removeprefix("AssertionError: ").split("\n")
        return "\n".join([first, *(line.removeprefix("  ") for line in rest)]).strip()
    return crash_message.strip()


_ROWS_HEADER = re.compile(r"^key\s*\| expected\s*\| observed\s*\| reason\s*\|$")
"""The header of ``table.Comparison.render_rows``: its rows end with ``| ✓`` (as expected) or ``| ✗``."""
_AS_EXPECTED_ROW = re.compile(r" \| ✓$")


def _not_shown(count: int) -> str:
    return f"({count} {'row' if count == 1 else 'rows'} as expected not shown)"


def compact(text: str, max_lines: int = MAX_FAILURE_LINES) -> str:
    """A failure's text for the summary: the rows of expected-vs-observed tables (``Comparison.render_rows``)
    that are as expected are dropped (a note under the table counts them), grids stay whole, and at most
    ``max_lines`` lines are kept."""
    kept: list[str] = []
    dropped = 0
    in_rows = False
    for line in [*text.splitlines(), None]:
        ends_rows = line is None or _ROWS_HEADER.match(line) or " | " not in line
        if in_rows and ends_rows and dropped:
            kept.append(_not_shown(dropped))
            dropped = 0
        if line is None:
            break
        if _ROWS_HEADER.match(line):
            in_rows = True
        elif " | " not in line:
            in_rows = False
        elif in_rows and _AS_EXPECTED_ROW.search(line):
            dropped += 1
            continue
        kept.append(line)
    if len(kept) > max_lines:
        more = len(kept) - max_lines + 1
        kept = [*kept[: max_lines - 1], f"… {more} more lines (the full text is in the failures above)"]
    return "\n".join(kept)


def failures_of(grid: Grid, cell: str, shorten: bool = True) -> list[FailureGroup]:
    """The failed tests of ``cell`` (suite order), grouped by identical text."""
    groups: dict[str, list[str]] = {}
    for suite in grid.suites:
        for test in grid.entry(cell, suite).tests:
            if test.verdict is Verdict.FAILED:
                text = "\n".join(test.failures)
                groups.setdefault(compact(text) if shorten else text, []).append(f"{suite}::{test.name}")
    return [FailureGroup(tuple(tests), text) for text, tests in groups.items()]


# ------------------------------------------------------------------------------------------------- timings


DEPLOY = "deploy_seconds"
KEY_TIMINGS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("deploy", (DEPLOY, "time_to_ready_seconds")),
    ("mesh", ("time_to_mesh_seconds",)),
    ("reconnect", ("service_client_reconnect_seconds",)),
)
"""The terminal's timing columns: label and the properties that give it (first present wins)."""


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


@dataclass(frozen=True)
class Timing:
    value: float
    failed: bool = False
    """Recorded by a test that failed: the number may measure a timeout rather than the event."""


def cell_timings(grid: Grid) -> dict[str, dict[str, Timing]]:
    """Per cell, every numeric property its tests recorded (the last one wins when several did), and the
    plugin's deploy time as ``deploy_seconds``; cells without any are left out."""
    timings: dict[str, dict[str, Timing]] = {}
    for cell in grid.cells:
        numbers: dict[str, Timing] = {}
        deploy = grid.summaries[cell].deploy_seconds
        if deploy is not None:
            numbers[DEPLOY] = Timing(round(deploy, 2))
        for suite in grid.suites:
            for test in grid.entry(cell, suite).tests:
                for name, value in test.properties.items():
                    number = _number(value)
                    if number is not None:
                        numbers[name] = Timing(number, test.verdict is Verdict.FAILED)
        if numbers:
            timings[cell] = numbers
    return timings


def key_timings(timings: Mapping[str, Mapping[str, Timing]]) -> dict[str, dict[str, Timing]]:
    """The ``KEY_TIMINGS`` columns of each cell that has any of them."""
    rows: dict[str, dict[str, Timing]] = {}
    for cell, numbers in timings.items():
        row = {}
        for label, names in KEY_TIMINGS:
            value = next((numbers[n] for n in names if n in numbers), None)
            if value is not None:
                row[label] = value
        if row:
            rows[cell] = row
    return rows


def seconds_text(value: float) -> str:
    """``12.4 s``, ``0.043 s``: three significant digits below ten seconds, one decimal above."""
    return f"{value:.1f} s" if abs(value) >= 10 else f"{value:.3g} s"
