"""TruthTable and Comparison: data first, then rendering and the pytest failure text."""

from __future__ import annotations

import textwrap

import pytest

from pytest_natsnet.table import Cell, Comparison, TruthTable

SERVERS = ("nats-0", "nats-1", "nats-2")


def mesh(edges: set[tuple[str, str]]) -> TruthTable[bool]:
    table = TruthTable(SERVERS, SERVERS, False)
    for a, b in edges:
        table.set(a, b, True)
    return table


FULL = {(a, b) for a in SERVERS for b in SERVERS if a != b}


def test_truth_table_keeps_order_and_values() -> None:
    table = mesh({("nats-0", "nats-1")})
    assert table.grid_keys()[:3] == [("nats-0", "nats-0"), ("nats-0", "nats-1"), ("nats-0", "nats-2")]
    assert table.get("nats-0", "nats-1") is True
    assert table.get("nats-1", "nats-0") is False


@pytest.mark.parametrize(("row", "col"), [("nats-9", "nats-0"), ("nats-0", "nats-9")])
def test_truth_table_unknown_keys_raise(row: str, col: str) -> None:
    table = mesh(set())
    with pytest.raises(KeyError, match="nats-9"):
        table.get(row, col)
    with pytest.raises(KeyError, match="nats-9"):
        table.set(row, col, True)


def test_truth_table_refuses_duplicate_axis_names() -> None:
    with pytest.raises(ValueError, match="duplicate row"):
        TruthTable(["a", "a"], ["b"], 0)


def test_comparison_counts_same_and_different() -> None:
    comparison = Comparison.from_tables(mesh(FULL), mesh(FULL - {("nats-1", "nats-2")}))
    assert comparison.counts == (8, 1)
    assert not comparison.is_same
    assert comparison.different() == [("nats-1", "nats-2")]
    assert comparison.cells[("nats-1", "nats-2")] == Cell(True, False, False, "")


def test_comparison_of_equal_tables_is_same() -> None:
    comparison = Comparison.from_tables(mesh(FULL), mesh(FULL))
    assert comparison.is_same and comparison.counts == (9, 0)
    comparison.assert_same("route mesh")  # does not fail


def test_comparison_refuses_mismatched_axes() -> None:
    other = TruthTable(("nats-0", "nats-1"), SERVERS, False)
    with pytest.raises(ValueError, match="different axes"):
        Comparison.from_tables(mesh(FULL), other)
    with pytest.raises(ValueError, match=r"keys differ \(not observed: \['b'\]; not expected: \['c'\]\)"):
        Comparison.from_dicts({"a": 1, "b": 2}, {"a": 1, "c": 2})


def test_comparison_with_custom_predicate_and_reasons() -> None:
    contains = Comparison.from_dicts(
        {"ptr": frozenset({"x."})}, {"ptr": frozenset({"x.", "y."})}, reasons={"ptr": "PTR: contains"},
        same=lambda want, got: want <= got,
    )
    assert contains.is_same
    assert contains.cells["ptr"].reason == "PTR: contains"


def test_render_rows_summary_first_with_marks() -> None:
    comparison = Comparison.from_dicts({"a": "ok", "b": "ok"}, {"a": "ok", "b": "failed"},
                                       reasons={"b": "healthy cell"})
    text = comparison.render_rows("connect")
    assert text.splitlines() == [
        "connect: 1/2 as expected, 1 differ from the expectation",
        "key | expected | observed | reason       |",
        "a   | ok       | ok       |              | ✓",
        "b   | ok       | failed   | healthy cell | ✗",
    ]


def test_render_grid_shows_expected_observed_and_difference() -> None:
    comparison = Comparison.from_tables(mesh(FULL), mesh(FULL - {("nats-1", "nats-2")}))
    text = comparison.render_grid("route mesh", glyph=lambda routed: "." if routed else "X")
    assert text == textwrap.dedent("""\
        route mesh: 8/9 as expected, 1 differ from the expectation

        expected | nats-0 | nats-1 | nats-2
        nats-0   | X      | .      | .
        nats-1   | .      | X      | .
        nats-2   | .      | .      | X

        observed | nats-0 | nats-1 | nats-2
        nats-0   | X      | .      | .
        nats-1   | .      | X      | X
        nats-2   | .      | .      | X

        difference | nats-0 | nats-1 | nats-2
        nats-0     | .      | .      | .
        nats-1     | .      | .      | X
        nats-2     | .      | .      | .""")


def test_render_grid_needs_tables() -> None:
    with pytest.raises(ValueError, match="truth tables"):
        Comparison.from_dicts({"a": 1}, {"a": 1}).render_grid("x")


def test_assert_same_fails_with_both_tables_and_no_traceback(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        from pytest_natsnet.table import Comparison

        def test_mesh():
            Comparison.from_dicts({"nats-0 → nats-1": "route"}, {"nats-0 → nats-1": "none"},
                                  reasons={"nats-0 → nats-1": "explicit route"}).assert_same("route mesh")
    """)
    result = pytester.runpytest("-p", "no:natsnet")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*route mesh: 0/1 as expected, 1 differ from the expectation",
        "*nats-0 → nats-1 | route    | none     | explicit route | ✗",
    ])
    assert "def test_mesh" not in result.stdout.str()
