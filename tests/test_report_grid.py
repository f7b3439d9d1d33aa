"""The grid model: phases merge into test outcomes, outcomes into the cell × suite grid, failures and timings."""

from __future__ import annotations

import math

import pytest

from pytest_natsnet.report.grid import (
    Entry,
    Outcomes,
    Phase,
    TestOutcome,
    Timing,
    Verdict,
    build_grid,
    cell_timings,
    compact,
    failure_message,
    failures_of,
    is_not_applicable,
    key_timings,
    merge,
    name_of,
    not_applicable_reason,
    seconds_text,
    suite_of,
)

NODE = "suites/test_route_mesh.py::test_mesh[default]"


def phases(*steps: tuple[str, str, str]) -> TestOutcome | None:
    outcome = None
    for when, result, text in steps:
        outcome = merge(outcome, Phase(NODE, "default", when, result, text))
    return outcome


@pytest.mark.parametrize(
    ("steps", "verdict", "reason", "failures"),
    [
        ([("setup", "passed", ""), ("call", "passed", ""), ("teardown", "passed", "")], Verdict.PASSED, "", ()),
        ([("setup", "passed", ""), ("call", "failed", "mesh split")], Verdict.FAILED, "", ("mesh split",)),
        ([("setup", "failed", "cell default could not be deployed")], Verdict.FAILED, "",
         ("error in setup: cell default could not be deployed",)),
        ([("setup", "passed", ""), ("call", "passed", ""), ("teardown", "failed", "leak")], Verdict.FAILED, "",
         ("error in teardown: leak",)),
        ([("setup", "passed", ""), ("call", "failed", "a"), ("teardown", "failed", "b")], Verdict.FAILED, "",
         ("a", "error in teardown: b")),
        ([("setup", "skipped", "Skipped: not applicable: the cell does not enable TLS")], Verdict.NOT_APPLICABLE,
         "not applicable: the cell does not enable TLS", ()),
        ([("setup", "passed", ""), ("call", "skipped", "Skipped: provider cannot run an external client")],
         Verdict.SKIPPED, "provider cannot run an external client", ()),
        ([("setup", "passed", "")], None, "", ()),
    ],
    ids=["passed", "call-failed", "setup-error", "teardown-error", "call-and-teardown", "not-applicable",
         "skipped", "only-setup"],
)
def test_phases_merge_into_one_verdict(steps: list[tuple[str, str, str]], verdict: Verdict | None, reason: str,
                                       failures: tuple[str, ...]) -> None:
    outcome = phases(*steps)
    assert outcome is not None
    assert (outcome.verdict, outcome.reason, outcome.failures) == (verdict, reason, failures)


def test_later_phases_keep_properties_declared_failures_and_evidence() -> None:
    outcome = merge(None, Phase(NODE, "tls-bad-sans", "setup", "passed", declared=("mesh-split",),
                                deploy_seconds=12.5))
    outcome = merge(outcome, Phase(NODE, "tls-bad-sans", "call", "failed", "x", properties=(("a", 1),),
                                   evidence="/ev/tls-bad-sans"))
    outcome = merge(outcome, Phase(NODE, "tls-bad-sans", "teardown", "passed", properties=(("a", 1), ("b", 2))))
    assert outcome.verdict is Verdict.FAILED
    assert dict(outcome.properties) == {"a": 1, "b": 2}
    assert (outcome.declared, outcome.deploy_seconds, outcome.evidence) == (("mesh-split",), 12.5, "/ev/tls-bad-sans")


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("not applicable: the cell does not enable TLS", True),
        ("Skipped: not applicable: routes are not TLS in this cell", True),
        ("provider kind cannot run a client outside the cluster network", False),
        ("Not applicable: capitalised is not the prefix", False),
        ("this is not applicable: the prefix must lead", False),
        ("", False),
    ],
)
def test_not_applicable_is_the_reason_prefix(reason: str, expected: bool) -> None:
    assert is_not_applicable(reason) is expected


def test_not_applicable_reason_adds_the_prefix_once() -> None:
    assert not_applicable_reason("no TLS") == "not applicable: no TLS"
    assert not_applicable_reason("not applicable: no TLS") == "not applicable: no TLS"


@pytest.mark.parametrize(
    ("nodeid", "suite", "name"),
    [
        ("suites/test_dns_records.py::test_records[default-udp]", "dns_records", "test_records[default-udp]"),
        ("test_my_bug.py::test_fqdn_routes[fqdn-routes]", "my_bug", "test_fqdn_routes[fqdn-routes]"),
        ("pkg/checks/mesh_test.py::TestX::test_y[tls]", "mesh", "TestX::test_y[tls]"),
    ],
)
def test_suite_is_the_module_and_name_the_rest(nodeid: str, suite: str, name: str) -> None:
    assert (suite_of(nodeid), name_of(nodeid)) == (suite, name)


def outcome(nodeid: str, cell: str, verdict: Verdict | None, **kwargs: object) -> TestOutcome:
    return TestOutcome(nodeid, cell, verdict, **kwargs)  # type: ignore[arg-type]


def entry(*verdicts: Verdict | None) -> Entry:
    return Entry(tuple(outcome(f"suites/test_s.py::t{i}[c]", "c", v) for i, v in enumerate(verdicts)))


P, F, S, NA = Verdict.PASSED, Verdict.FAILED, Verdict.SKIPPED, Verdict.NOT_APPLICABLE


@pytest.mark.parametrize(
    ("verdicts", "verdict", "text"),
    [
        ((P, P, P), P, "✓ 3"),
        ((P, F, P), F, "✗ 1/3"),
        ((F,), F, "✗ 1/1"),
        ((P, S, NA), P, "✓ 1 s1"),
        ((F, S, S, P), F, "✗ 1/2 s2"),
        ((S, NA), S, "s 1"),
        ((NA, NA), NA, "n/a"),
        ((None,), None, ""),
        ((), None, ""),
    ],
)
def test_entry_verdict_is_the_worst_and_text_counts(verdicts: tuple[Verdict | None, ...], verdict: Verdict | None,
                                                    text: str) -> None:
    got = entry(*verdicts)
    assert (got.verdict, got.text) == (verdict, text)


def sample_tests() -> list[TestOutcome]:
    return [
        outcome("suites/test_route_mesh.py::test_a[pnra-false]", "pnra-false", P, deploy_seconds=13.0),
        outcome("suites/test_dns_records.py::test_b[pnra-false]", "pnra-false", F, failures=("dns differs",),
                evidence="/ev/pnra-false"),
        outcome("suites/test_route_mesh.py::test_a[default]", "default", P),
        outcome("suites/test_advertise.py::test_c[default]", "default", NA, reason="not applicable: x"),
        outcome("test_bug.py::test_mine[mine]", "mine", F, failures=("boom",), declared=("mesh-split",)),
    ]


def test_grid_rows_follow_the_cell_order_then_first_seen_and_suites_are_sorted() -> None:
    grid = build_grid(sample_tests(), cell_order=["default", "pnra-false", "tls"])
    assert grid.cells == ("default", "pnra-false", "mine")
    assert grid.suites == ("advertise", "bug", "dns_records", "route_mesh")
    assert grid.entry("default", "route_mesh").text == "✓ 1"
    assert grid.entry("default", "dns_records").text == ""
    assert grid.entry("pnra-false", "dns_records").verdict is F
    assert grid.failed_cells == ["pnra-false", "mine"]
    assert grid.cell_verdict("default") is P
    assert (grid.count(P), grid.count(F), grid.count(NA), grid.count(S)) == (2, 2, 1, 0)


def test_cell_summaries_carry_declared_failures_evidence_and_deploy_time() -> None:
    grid = build_grid(sample_tests())
    assert grid.summaries["pnra-false"].evidence == "/ev/pnra-false"
    assert grid.summaries["pnra-false"].deploy_seconds == 13.0
    assert grid.summaries["mine"].declared == ("mesh-split",)
    assert grid.summaries["default"].evidence is None


def test_an_empty_run_has_an_empty_grid() -> None:
    grid = build_grid([])
    assert (grid.cells, grid.suites, grid.failed_cells) == ((), (), [])


def test_outcomes_keep_first_seen_order_across_phases() -> None:
    outcomes = Outcomes()
    for nodeid in ("a.py::t[x]", "b.py::t[x]", "a.py::t[x]"):
        outcomes.add(Phase(nodeid, "x", "call", "passed"))
    assert [t.nodeid for t in outcomes.tests] == ["a.py::t[x]", "b.py::t[x]"]


@pytest.mark.parametrize(
    ("crash", "longrepr", "expected"),
    [
        ("Failed: route mesh of x: 6/9 as expected\nrow | . | X", "ignored",
         "route mesh of x: 6/9 as expected\nrow | . | X"),
        ("AssertionError: reconnect failed\n  key | expected\n  x | 1\nassert 1 == 2", "ignored",
         "reconnect failed\nkey | expected\nx | 1\nassert 1 == 2"),
        ("ValueError: boom", "ignored", "ValueError: boom"),
        (None, "[gw0] worker crashed\n", "[gw0] worker crashed"),
    ],
    ids=["pytest-fail", "assertion", "other-exception", "no-crash-message"],
)
def test_failure_message_drops_pytest_decorations(crash: str | None, longrepr: str, expected: str) -> None:
    assert failure_message(crash, longrepr) == expected


ROWS_TABLE = """client TLS names: 2/4 as expected, 2 differ from the expectation
key | expected | observed | reason |
nats | ok | ok |  | ✓
nats.ns | ok | x509 | SAN missing | ✗
nats-0.nats-headless | ok | ok |  | ✓
1.2.3.4 | fails | ok | no IP SAN | ✗"""

MESH_GRID = """route mesh of x: 7/9 as expected, 2 differ from the expectation

expected | nats-0 | nats-1
nats-0   | .      | ✓
nats-1   | ✓      | .

key | expected | observed | reason |
a → b | ✓ | ✓ |  | ✓"""


@pytest.mark.parametrize(
    ("text", "max_lines", "expected"),
    [
        (ROWS_TABLE, 60, "client TLS names: 2/4 as expected, 2 differ from the expectation\n"
         "key | expected | observed | reason |\nnats.ns | ok | x509 | SAN missing | ✗\n"
         "1.2.3.4 | fails | ok | no IP SAN | ✗\n(2 rows as expected not shown)"),
        (MESH_GRID, 60, MESH_GRID.replace("a → b | ✓ | ✓ |  | ✓", "(1 row as expected not shown)")),
        ("\n".join(f"line {i}" for i in range(10)), 4,
         "line 0\nline 1\nline 2\n… 7 more lines (the full text is in the failures above)"),
        ("one line", 60, "one line"),
        (ROWS_TABLE + "\nserver log lines about routes:\nnats-0: [ERR] x", 60,
         "client TLS names: 2/4 as expected, 2 differ from the expectation\n"
         "key | expected | observed | reason |\nnats.ns | ok | x509 | SAN missing | ✗\n"
         "1.2.3.4 | fails | ok | no IP SAN | ✗\n(2 rows as expected not shown)\n"
         "server log lines about routes:\nnats-0: [ERR] x"),
        ("a: 1/1 as expected\nkey | expected | observed | reason |\nk | 1 | 1 |  | ✓\n"
         "b: 1/2 as expected\nkey | expected | observed | reason |\nk | 1 | 1 |  | ✓\nj | 1 | 2 |  | ✗", 60,
         "a: 1/1 as expected\nkey | expected | observed | reason |\n(1 row as expected not shown)\n"
         "b: 1/2 as expected\nkey | expected | observed | reason |\nj | 1 | 2 |  | ✗\n"
         "(1 row as expected not shown)"),
    ],
    ids=["rows-table", "grid-stays-whole", "capped", "short", "note-under-its-table", "two-tables"],
)
def test_compact_drops_as_expected_rows_and_caps(text: str, max_lines: int, expected: str) -> None:
    assert compact(text, max_lines) == expected


def test_failures_of_a_cell_are_grouped_by_identical_text() -> None:
    deploy_error = ("error in setup: cell x could not be deployed: timeout",)
    tests = [
        outcome("suites/test_a.py::t1[x]", "x", F, failures=deploy_error),
        outcome("suites/test_b.py::t2[x]", "x", F, failures=deploy_error),
        outcome("suites/test_b.py::t3[x]", "x", F, failures=("other",)),
        outcome("suites/test_b.py::t4[x]", "x", P),
    ]
    groups = failures_of(build_grid(tests), "x")
    assert [(g.tests, g.text) for g in groups] == [
        (("a::t1[x]", "b::t2[x]"), deploy_error[0]),
        (("b::t3[x]",), "other"),
    ]


def test_timings_are_the_numeric_properties_per_cell() -> None:
    tests = [
        outcome("suites/test_m.py::t[a]", "a", P, deploy_seconds=12.4,
                properties={"time_to_mesh_seconds": 12.6, "explained_by_x": "a log line", "flag": True}),
        outcome("suites/test_r.py::t[a]", "a", P,
                properties={"service_client_reconnect_seconds": 0.043, "nothing": None, "bad": math.nan}),
        outcome("suites/test_m.py::t[b]", "b", F, properties={"time_to_mesh_seconds": 42.2}),
        outcome("suites/test_m.py::t[c]", "c", P, properties={"learned_url_errors": "none"}),
    ]
    timings = cell_timings(build_grid(tests))
    assert timings == {
        "a": {"deploy_seconds": Timing(12.4), "time_to_mesh_seconds": Timing(12.6),
              "service_client_reconnect_seconds": Timing(0.043)},
        "b": {"time_to_mesh_seconds": Timing(42.2, failed=True)},
    }
    assert key_timings(timings) == {
        "a": {"deploy": Timing(12.4), "mesh": Timing(12.6), "reconnect": Timing(0.043)},
        "b": {"mesh": Timing(42.2, failed=True)},
    }


def test_deploy_falls_back_to_the_recorded_time_to_ready() -> None:
    assert key_timings({"a": {"time_to_ready_seconds": Timing(13.1)}}) == {"a": {"deploy": Timing(13.1)}}
    assert key_timings({"a": {"deploy_seconds": Timing(12.0), "time_to_ready_seconds": Timing(13.1)}}) == {
        "a": {"deploy": Timing(12.0)}
    }


@pytest.mark.parametrize(("value", "text"), [(12.44, "12.4 s"), (0.0431, "0.0431 s"), (1.25, "1.25 s"),
                                             (89.96, "90.0 s"), (0.0, "0 s")])
def test_seconds_text(value: float, text: str) -> None:
    assert seconds_text(value) == text
