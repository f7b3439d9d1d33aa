"""Truth tables and expected-vs-observed comparisons as data, plus their text rendering (cyclonus style)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, NoReturn, TypeVar

T = TypeVar("T")
GridKey = tuple[str, str]

SAME_MARK = "✓"
DIFFERENT_MARK = "✗"


class TruthTable(Generic[T]):
    """Ordered rows × columns of values; ``get``/``set`` of an unknown key is a programming error."""

    def __init__(self, rows: Iterable[str], cols: Iterable[str], default: T) -> None:
        self.rows: tuple[str, ...] = tuple(rows)
        self.cols: tuple[str, ...] = tuple(cols)
        for axis, names in (("row", self.rows), ("column", self.cols)):
            if len(set(names)) != len(names):
                raise ValueError(f"truth table has a duplicate {axis} name in {list(names)}")
        self._values: dict[GridKey, T] = {(r, c): default for r in self.rows for c in self.cols}

    def _check(self, row: str, col: str) -> GridKey:
        if (row, col) not in self._values:
            raise KeyError(
                f"({row!r}, {col!r}) is not in the table (rows {list(self.rows)}, cols {list(self.cols)})"
            )
        return (row, col)

    def get(self, row: str, col: str) -> T:
        return self._values[self._check(row, col)]

    def set(self, row: str, col: str, value: T) -> None:
        self._values[self._check(row, col)] = value

    def grid_keys(self) -> list[GridKey]:
        return [(r, c) for r in self.rows for c in self.cols]

    def as_dict(self) -> dict[GridKey, T]:
        return {k: self._values[k] for k in self.grid_keys()}


@dataclass(frozen=True)
class Cell(Generic[T]):
    expected: T
    observed: T
    same: bool
    reason: str = ""


def _equal(expected: object, observed: object) -> bool:
    return expected == observed


class Comparison(Generic[T]):
    """Per-key (expected, observed, same) with counts; built only from axes that agree."""

    def __init__(
        self, cells: Mapping[Hashable, Cell[T]], grid: tuple[tuple[str, ...], tuple[str, ...]] | None = None
    ) -> None:
        self.cells: dict[Hashable, Cell[T]] = dict(cells)
        self.grid = grid
        """``(rows, cols)`` when built from truth tables (so it can render as a grid)."""

    @classmethod
    def from_dicts(
        cls,
        expected: Mapping[Hashable, T],
        observed: Mapping[Hashable, T],
        reasons: Mapping[Hashable, str] | None = None,
        same: Callable[[T, T], bool] = _equal,
    ) -> Comparison[T]:
        if set(expected) != set(observed):
            missing = [k for k in expected if k not in observed]
            extra = [k for k in observed if k not in expected]
            raise ValueError(f"cannot compare: keys differ (not observed: {missing}; not expected: {extra})")
        reasons = reasons or {}
        cells = {k: Cell(expected[k], observed[k], same(expected[k], observed[k]), reasons.get(k, ""))
                 for k in expected}
        return cls(cells, None)

    @classmethod
    def from_tables(
        cls,
        expected: TruthTable[T],
        observed: TruthTable[T],
        reasons: Mapping[GridKey, str] | None = None,
        same: Callable[[T, T], bool] = _equal,
    ) -> Comparison[T]:
        if (expected.rows, expected.cols) != (observed.rows, observed.cols):
            raise ValueError(
                f"cannot compare tables with different axes: expected rows {list(expected.rows)} cols "
                f"{list(expected.cols)}, observed rows {list(observed.rows)} cols {list(observed.cols)}"
            )
        reasons = reasons or {}
        cells: dict[Hashable, Cell[T]] = {}
        for key in expected.grid_keys():
            want, got = expected.get(*key), observed.get(*key)
            cells[key] = Cell(want, got, same(want, got), reasons.get(key, ""))
        return cls(cells, (expected.rows, expected.cols))

    @property
    def counts(self) -> tuple[int, int]:
        """``(same, different)``."""
        same = sum(1 for c in self.cells.values() if c.same)
        return same, len(self.cells) - same

    @property
    def is_same(self) -> bool:
        return self.counts[1] == 0

    def different(self) -> list[Hashable]:
        return [k for k, c in self.cells.items() if not c.same]

    def summary(self, title: str) -> str:
        same, different = self.counts
        verdict = "all as expected" if different == 0 else f"{different} differ from the expectation"
        return f"{title}: {same}/{len(self.cells)} as expected, {verdict}"

    def render_rows(self, title: str, fmt: Callable[[T], str] = str) -> str:
        """Summary line, then one row per key: key | expected | observed | reason | ✓/✗."""
        header = ("key", "expected", "observed", "reason", "")
        body = [
            (_key_text(k), fmt(c.expected), fmt(c.observed), c.reason, _mark(c.same))
            for k, c in self.cells.items()
        ]
        return "\n".join([self.summary(title), *_columns([header, *body])])

    def render_grid(self, title: str, glyph: Callable[[T], str] = str) -> str:
        """Summary line, then expected, observed and difference grids (rows → columns)."""
        if self.grid is None:
            raise ValueError("render_grid needs a comparison built from truth tables")
        rows, cols = self.grid
        parts = [self.summary(title)]
        views: list[tuple[str, Callable[[Cell[T]], str]]] = [
            ("expected", lambda cell: glyph(cell.expected)),
            ("observed", lambda cell: glyph(cell.observed)),
            ("difference", lambda cell: "." if cell.same else "X"),
        ]
        for name, pick in views:
            lines = [(name, *cols)]
            lines += [(r, *(pick(self.cells[(r, c)]) for c in cols)) for r in rows]
            parts += ["", *_columns(lines)]
        return "\n".join(parts)

    def render(self, title: str, fmt: Callable[[T], str] = str) -> str:
        """The grid (when there is one) followed by the rows of the cells that differ or carry a reason."""
        text = self.render_rows(title, fmt)
        if self.grid is not None:
            text = self.render_grid(title, fmt) + "\n\n" + "\n".join(text.splitlines()[1:])
        return text

    def assert_same(self, title: str, fmt: Callable[[T], str] = str) -> None:
        """Fails the current test with both tables (no Python traceback) when anything differs."""
        __tracebackhide__ = True
        if not self.is_same:
            _fail(self.render(title, fmt))


def _fail(text: str) -> NoReturn:
    import pytest

    pytest.fail(text, pytrace=False)


def _key_text(key: Hashable) -> str:
    if isinstance(key, tuple):
        return " → ".join(str(part) for part in key)
    return str(key)


def _columns(lines: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return [" | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines]


def _mark(same: bool) -> str:
    return SAME_MARK if same else DIFFERENT_MARK
