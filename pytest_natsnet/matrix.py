"""The values matrix (``charts-values/matrix.yaml``) expanded into scenario cells with stable ids."""

from __future__ import annotations

import fnmatch
import hashlib
import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from allpairspy import AllPairs

from pytest_natsnet.errors import ConfigError
from pytest_natsnet.failures import DeclaredFailure, parse_declared
from pytest_natsnet.resources import charts_values_dir

MATRIX_FILE = "matrix.yaml"
EXPECT_HEADER = "natsnet-expect:"
CERTS_HEADER = "natsnet-certs:"
CERTS_KINDS = ("good", "fqdn-only")
_TOKEN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SETTING_KEYS = {"id", "files", "expect", "certs"}


@dataclass(frozen=True)
class Setting:
    """One value of an axis: its id token, values files, declared failures and TLS material."""

    axis: str
    name: str
    id: str | None
    files: tuple[Path, ...] = ()
    expect: frozenset[DeclaredFailure] = frozenset()
    certs: str | None = None


@dataclass(frozen=True)
class Axis:
    name: str
    default: str
    settings: Mapping[str, Setting]


@dataclass(frozen=True)
class Combination:
    """Declared failures of the cells that have every setting of ``when`` (what no single setting causes)."""

    when: Mapping[str, str]
    expect: frozenset[DeclaredFailure]


@dataclass(frozen=True)
class Matrix:
    path: Path
    base: tuple[Path, ...]
    axes: tuple[Axis, ...]
    exclude: tuple[Mapping[str, str], ...]
    matrices: Mapping[str, tuple[Mapping[str, str], ...]]
    combinations: tuple[Combination, ...] = ()

    def axis(self, name: str) -> Axis:
        return next(a for a in self.axes if a.name == name)


@dataclass(frozen=True)
class Scenario:
    """One cell: a setting per axis (empty for values-dir cells), its values files and intent."""

    id: str
    settings: Mapping[str, Setting]
    values_files: tuple[Path, ...]
    expect: frozenset[DeclaredFailure] = frozenset()
    certs: str | None = None
    origin: str = "matrix"
    extra: Mapping[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ loading


def _yaml_key(value: Any) -> str:
    """YAML 1.1 turns unquoted true/false into bools; the matrix names settings as strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), "file does not exist", "check the path") from None
    except OSError as exc:
        raise ConfigError(str(path), f"cannot be read ({exc.strerror})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(where, f"invalid YAML ({problem})", "fix the syntax") from None


def _mapping(value: Any, path: Path, key: str) -> Mapping[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path} key {key}", f"must be a mapping, found {type(value).__name__}")
    return value


def _string_list(value: Any, path: Path, key: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{path} key {key}", "must be a list of strings")
    return list(value)


def _files(names: Iterable[str], path: Path, key: str) -> tuple[Path, ...]:
    files = []
    for file_name in names:
        file_path = path.parent / file_name
        if not file_path.is_file():
            raise ConfigError(f"{path} key {key}", f"values file {file_name!r} does not exist next to it")
        files.append(file_path)
    return tuple(files)


def _load_setting(path: Path, axis: str, name: str, raw: Any, is_default: bool) -> Setting:
    key = f"axes.{axis}.settings.{name}"
    body = _mapping(raw, path, key)
    unknown = set(map(str, body)) - _SETTING_KEYS
    if unknown:
        raise ConfigError(f"{path} key {key}", f"unknown field(s) {', '.join(sorted(unknown))}",
                          f"use only {', '.join(sorted(_SETTING_KEYS))}")
    setting_id = body.get("id")
    if is_default and setting_id is not None:
        raise ConfigError(f"{path} key {key}.id", "the default setting of an axis must have no id")
    if not is_default and (not isinstance(setting_id, str) or not _TOKEN.match(setting_id)):
        raise ConfigError(f"{path} key {key}.id", "needs an id of lowercase letters, digits and '-'")
    certs = body.get("certs")
    if certs is not None and certs not in CERTS_KINDS:
        raise ConfigError(f"{path} key {key}.certs", f"{certs!r} is not one of {', '.join(CERTS_KINDS)}")
    return Setting(
        axis=axis,
        name=name,
        id=setting_id,
        files=_files(_string_list(body.get("files"), path, f"{key}.files"), path, f"{key}.files"),
        expect=parse_declared(_string_list(body.get("expect"), path, f"{key}.expect"), f"{path} key {key}.expect"),
        certs=certs,
    )


def _load_axis(path: Path, name: str, raw: Any) -> Axis:
    body = _mapping(raw, path, f"axes.{name}")
    if "default" not in body:
        raise ConfigError(f"{path} key axes.{name}", "has no default setting", "add `default: <setting>`")
    default = _yaml_key(body["default"])
    raw_settings = _mapping(body.get("settings"), path, f"axes.{name}.settings")
    names = [_yaml_key(k) for k in raw_settings]
    if default not in names:
        raise ConfigError(f"{path} key axes.{name}.default", f"{default!r} is not one of its settings")
    settings = {
        _yaml_key(k): _load_setting(path, name, _yaml_key(k), v, _yaml_key(k) == default)
        for k, v in raw_settings.items()
    }
    return Axis(name=name, default=default, settings=settings)


def _load_cell(path: Path, key: str, raw: Any, axes: Sequence[Axis]) -> dict[str, str]:
    body = _mapping(raw, path, key)
    by_name = {a.name: a for a in axes}
    cell = {}
    for axis_raw, setting_raw in body.items():
        axis_name, setting = _yaml_key(axis_raw), _yaml_key(setting_raw)
        if axis_name not in by_name:
            raise ConfigError(f"{path} key {key}", f"unknown axis {axis_name!r}",
                              f"use one of {', '.join(by_name)}")
        if setting not in by_name[axis_name].settings:
            hint = " (quote it)" if isinstance(setting_raw, bool) else ""
            raise ConfigError(f"{path} key {key}", f"unknown setting {setting!r}{hint} of axis {axis_name!r}",
                              f"use one of {', '.join(by_name[axis_name].settings)}")
        cell[axis_name] = setting
    return cell


def _load_combination(path: Path, key: str, raw: Any, axes: Sequence[Axis]) -> Combination:
    body = _mapping(raw, path, key)
    unknown = set(map(str, body)) - {"when", "expect"}
    if unknown or "when" not in body or not body.get("expect"):
        raise ConfigError(f"{path} key {key}", "must be {when: {axis: setting, ...}, expect: [failure, ...]}")
    when = _load_cell(path, f"{key}.when", body["when"], axes)
    if len(when) < 2:
        raise ConfigError(f"{path} key {key}.when", "names fewer than two settings",
                          "declare a single setting's failures under axes.<axis>.settings.<setting>.expect")
    expect = parse_declared(_string_list(body.get("expect"), path, f"{key}.expect"), f"{path} key {key}.expect")
    return Combination(when=when, expect=expect)


def load_matrix(path: Path | None = None) -> Matrix:
    """Loads and validates a matrix file (default: the shipped ``charts-values/matrix.yaml``)."""
    path = path or charts_values_dir() / MATRIX_FILE
    raw = _read_yaml(path)
    if not isinstance(raw, Mapping):
        raise ConfigError(str(path), "top level must be a mapping with base, axes, exclude, matrices")
    unknown = set(map(str, raw)) - {"base", "axes", "exclude", "combinations", "matrices"}
    if unknown:
        raise ConfigError(str(path), f"unknown top-level key(s) {', '.join(sorted(unknown))}")
    base = _files(_string_list(raw.get("base"), path, "base"), path, "base")
    axes = tuple(_load_axis(path, str(k), v) for k, v in _mapping(raw.get("axes"), path, "axes").items())
    if not axes:
        raise ConfigError(f"{path} key axes", "declares no axis")
    ids = [s.id for a in axes for s in a.settings.values() if s.id]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ConfigError(f"{path} key axes", f"setting id(s) used twice: {', '.join(duplicates)}")
    raw_exclude = raw.get("exclude") or []
    if not isinstance(raw_exclude, list):
        raise ConfigError(f"{path} key exclude", "must be a list of {axis: setting} mappings")
    exclude = tuple(_load_cell(path, f"exclude[{i}]", e, axes) for i, e in enumerate(raw_exclude))
    raw_combinations = raw.get("combinations") or []
    if not isinstance(raw_combinations, list):
        raise ConfigError(f"{path} key combinations", "must be a list of {when: ..., expect: [...]} mappings")
    combinations = tuple(
        _load_combination(path, f"combinations[{i}]", c, axes) for i, c in enumerate(raw_combinations)
    )
    matrices: dict[str, tuple[Mapping[str, str], ...]] = {}
    for matrix_name, cells in _mapping(raw.get("matrices"), path, "matrices").items():
        if not isinstance(cells, list):
            raise ConfigError(f"{path} key matrices.{matrix_name}", "must be a list of cells")
        matrices[str(matrix_name)] = tuple(
            _load_cell(path, f"matrices.{matrix_name}[{i}]", c, axes) for i, c in enumerate(cells)
        )
    matrix = Matrix(path=path, base=base, axes=axes, exclude=exclude, matrices=matrices,
                    combinations=combinations)
    for matrix_name, cells in matrices.items():
        for i, cell in enumerate(cells):
            full = _fill(matrix, cell)
            rule = _excluded_by(matrix, full)
            if rule is not None:
                raise ConfigError(f"{path} key matrices.{matrix_name}[{i}]",
                                  f"cell {_cell_id(matrix, full)} is excluded by {dict(rule)}")
    return matrix


# ---------------------------------------------------------------------------------------------- expansion


def _fill(matrix: Matrix, cell: Mapping[str, str]) -> dict[str, str]:
    return {a.name: cell.get(a.name, a.default) for a in matrix.axes}


def _excluded_by(matrix: Matrix, cell: Mapping[str, str]) -> Mapping[str, str] | None:
    for rule in matrix.exclude:
        if all(cell.get(axis) == setting for axis, setting in rule.items()):
            return rule
    return None


def _cell_id(matrix: Matrix, cell: Mapping[str, str]) -> str:
    tokens = [a.settings[cell[a.name]].id for a in matrix.axes if cell[a.name] != a.default]
    return "+".join(t for t in tokens if t) or "default"


def scenario_for(matrix: Matrix, cell: Mapping[str, str], origin: str = "matrix") -> Scenario:
    """The scenario of a cell given as ``{axis: setting}`` (missing axes at their default)."""
    full = _fill(matrix, cell)
    chosen = {a.name: a.settings[full[a.name]] for a in matrix.axes}
    files: list[Path] = list(matrix.base)
    for setting in chosen.values():
        files.extend(setting.files)
    combined = [c.expect for c in matrix.combinations if all(full.get(a) == v for a, v in c.when.items())]
    return Scenario(
        id=_cell_id(matrix, full),
        settings=chosen,
        values_files=tuple(files),
        expect=frozenset().union(*(s.expect for s in chosen.values()), *combined),
        certs=next((s.certs for s in chosen.values() if s.certs), None),
        origin=origin,
    )


def _pairwise_cells(matrix: Matrix) -> list[dict[str, str]]:
    names = [a.name for a in matrix.axes]
    values = [list(a.settings) for a in matrix.axes]
    if len(values) < 2:
        return [{names[0]: v} for v in values[0]]

    def allowed(row: Sequence[str]) -> bool:
        return _partial_allowed(matrix, dict(zip(names, row, strict=False)))

    cells = [dict(zip(names, row, strict=True)) for row in AllPairs(values, filter_func=allowed)]
    return _cover_remaining_pairs(matrix, cells)


def _pairs(cell: Mapping[str, str], names: Sequence[str]) -> set[tuple[str, str, str, str]]:
    return {(a, cell[a], b, cell[b]) for a, b in itertools.combinations(names, 2)}


def _cover_remaining_pairs(matrix: Matrix, cells: list[dict[str, str]]) -> list[dict[str, str]]:
    """allpairspy can stop early when a filter rejects its next row: add cells (greedy, deterministic)
    until every pair of settings that some allowed cell contains is covered."""
    names = [a.name for a in matrix.axes]
    products = itertools.product(*(list(a.settings) for a in matrix.axes))
    every = (dict(zip(names, p, strict=True)) for p in products)
    allowed = [c for c in every if _excluded_by(matrix, c) is None]
    feasible = set().union(*(_pairs(c, names) for c in allowed)) if allowed else set()
    covered = set().union(*(_pairs(c, names) for c in cells if _excluded_by(matrix, c) is None))
    missing = feasible - covered
    while missing:
        first = min(missing)
        candidates = [c for c in allowed if first in _pairs(c, names)]
        best = max(candidates, key=lambda c: len(_pairs(c, names) & missing))
        cells.append(best)
        missing -= _pairs(best, names)
    return cells


def _partial_allowed(matrix: Matrix, partial: Mapping[str, str]) -> bool:
    """A partial row is allowed unless an exclusion whose axes are all decided matches it."""
    for rule in matrix.exclude:
        if all(axis in partial for axis in rule) and all(partial[a] == s for a, s in rule.items()):
            return False
    return True


def expand(matrix: Matrix, name: str) -> list[Scenario]:
    """The cells of ``smoke`` (or any listed matrix), ``pairwise`` or ``full``, in a deterministic order."""
    if name == "full":
        products = itertools.product(*(list(a.settings) for a in matrix.axes))
        cells = [dict(zip((a.name for a in matrix.axes), row, strict=True)) for row in products]
    elif name == "pairwise":
        cells = _pairwise_cells(matrix)
    elif name in matrix.matrices:
        cells = [dict(c) for c in matrix.matrices[name]]
    else:
        known = ", ".join(sorted({"full", "pairwise", *matrix.matrices}))
        raise ConfigError(f"{matrix.path} key matrices", f"no matrix named {name!r}", f"use one of {known}")
    scenarios: dict[str, Scenario] = {}
    for cell in cells:
        if _excluded_by(matrix, _fill(matrix, cell)) is not None:
            continue
        scenario = scenario_for(matrix, cell)
        scenarios.setdefault(scenario.id, scenario)
    return list(scenarios.values())


def scenario_by_id(matrix: Matrix, scenario_id: str) -> Scenario:
    """Parses an id back into its cell (for manifests named ``<id>.yaml``); unknown ids carry no intent."""
    by_token = {s.id: s for a in matrix.axes for s in a.settings.values() if s.id}
    cell: dict[str, str] = {}
    tokens = [] if scenario_id == "default" else scenario_id.split("+")
    for token in tokens:
        setting = by_token.get(token)
        if setting is None or setting.axis in cell:
            return Scenario(id=scenario_id, settings={}, values_files=(), origin="manifests")
        cell[setting.axis] = setting.name
    scenario = scenario_for(matrix, cell, origin="manifests")
    if scenario.id != scenario_id:  # tokens out of axis order: still the same cell, keep the caller's name
        scenario = Scenario(scenario_id, scenario.settings, scenario.values_files, scenario.expect,
                            scenario.certs, "manifests")
    return scenario


# ------------------------------------------------------------------------------------- selection and names


def marker_scenario_id(test_name: str) -> str:
    """The cell id of a ``natsnet_values`` test: its name without ``test_``, ``_`` as ``-``."""
    return test_name.removeprefix("test_").replace("_", "-")


def marker_cell_ids(paths: Iterable[Path]) -> list[str]:
    """The cell ids of the ``natsnet_values`` tests in the test files ``paths`` (read from their source, without
    importing them): one cell per such test, named after it."""
    import ast

    ids = []
    for path in paths:
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_") and any(
                isinstance(d, ast.Call) and getattr(d.func, "attr", None) == "natsnet_values"
                for d in node.decorator_list
            ):
                ids.append(marker_scenario_id(node.name))
    return ids


def globs_select(scenario_id: str, globs: Sequence[str]) -> bool:
    """Whether ``--natsnet-scenario`` globs (none: every cell) select the cell ``scenario_id``."""
    return not globs or any(fnmatch.fnmatchcase(scenario_id, g) for g in globs)


def namespace_for(run_id: str, scenario_id: str) -> str:
    """A DNS-1123 label (≤ 63 chars) for a cell's namespace: readable prefix, short hash when too long."""
    wanted = f"natsnet-{run_id}-{scenario_id}".lower()
    label = re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", wanted)).strip("-")
    if len(label) <= 63 and label == wanted:
        return label
    digest = hashlib.sha256(wanted.encode()).hexdigest()[:8]
    return f"{label[: 63 - 9].rstrip('-')}-{digest}"


def _header_field(text: str, prefix: str, path: Path) -> list[str] | None:
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("#"):
            return None
        body = stripped.lstrip("#").strip()
        if body.startswith(prefix):
            tokens = [t.strip() for t in body[len(prefix):].split(",") if t.strip()]
            bad = [t for t in tokens if not _TOKEN.match(t)]
            if bad or not tokens:
                raise ConfigError(f"{path} header {prefix}", f"bad token(s) {bad or '(none)'}",
                                  "write e.g. `# natsnet-expect: mesh-split, dns-blocked`")
            return tokens
    return None


def scenarios_from_values_dir(directory: Path, base: Sequence[Path]) -> list[Scenario]:
    """One cell per ``*.yaml`` in ``directory`` (id = file stem) layered on ``base``."""
    from pytest_natsnet.values import load_values

    if not directory.is_dir():
        raise ConfigError(f"--natsnet-values-dir {directory}", "is not a directory")
    scenarios = []
    for path in sorted(directory.glob("*.yaml")):
        load_values(path)
        text = path.read_text(encoding="utf-8")
        expect = parse_declared(_header_field(text, EXPECT_HEADER, path) or [], f"{path} header {EXPECT_HEADER[:-1]}")
        certs_field = _header_field(text, CERTS_HEADER, path)
        certs = certs_field[0] if certs_field else None
        if certs is not None and certs not in CERTS_KINDS:
            raise ConfigError(f"{path} header {CERTS_HEADER}",
                              f"{certs!r} is not one of {', '.join(CERTS_KINDS)}")
        stem = re.sub(r"[^a-z0-9-]+", "-", path.stem.lower()).strip("-")
        scenarios.append(Scenario(
            id=stem,
            settings={},
            values_files=(*base, path),
            expect=expect,
            certs=certs,
            origin=f"values-dir {directory}",
        ))
    if not scenarios:
        raise ConfigError(f"--natsnet-values-dir {directory}", "holds no *.yaml values file")
    return scenarios


def select(scenarios: Sequence[Scenario], globs: Sequence[str], marker_cells: Sequence[str] = ()) -> list[Scenario]:
    """The scenarios matching any glob (all when none given); a glob matching nothing, neither a scenario nor one
    of the ``marker_cells`` (cell ids of ``natsnet_values`` tests), is an error."""
    if not globs:
        return list(scenarios)
    for glob in globs:
        if not any(fnmatch.fnmatchcase(i, glob) for i in [*(s.id for s in scenarios), *marker_cells]):
            available = ", ".join([*(s.id for s in scenarios), *marker_cells])
            raise ConfigError(f"--natsnet-scenario {glob}", "matches no cell", f"available: {available}")
    return [s for s in scenarios if any(fnmatch.fnmatchcase(s.id, g) for g in globs)]
