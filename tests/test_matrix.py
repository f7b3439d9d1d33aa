"""Matrix loading, expansion (smoke / pairwise / full), ids, namespaces, values-dir cells, selection."""

from __future__ import annotations

import itertools
import re
import textwrap
from pathlib import Path

import pytest

from pytest_natsnet.errors import ConfigError
from pytest_natsnet.matrix import (
    Matrix,
    expand,
    load_matrix,
    namespace_for,
    scenario_by_id,
    scenarios_from_values_dir,
    select,
)


@pytest.fixture(scope="module")
def shipped() -> Matrix:
    return load_matrix()


def test_smoke_cells_ids_files_and_intent(shipped: Matrix) -> None:
    cells = {s.id: s for s in expand(shipped, "smoke")}
    assert list(cells) == [
        "default", "pnra-false", "advertise-pod-ip+tls", "advertise-dns+tls+routes-fqdn", "advertise-unreachable",
        "advertise-cluster-wrong+routes-seed", "tls-bad-sans", "netpol-egress-no-dns", "netpol-egress-dns",
        "jetstream", "pnra-false+jetstream",
    ]
    assert [f.name for f in cells["advertise-cluster-wrong+routes-seed"].values_files] == [
        "base.yaml", "readiness-gate.yaml", "advertise-pod-ip.yaml", "advertise-cluster-wrong.yaml",
        "routes-seed.yaml",
    ]
    assert cells["tls-bad-sans"].expect == {"route-tls-mismatch", "mesh-split"}
    assert cells["tls-bad-sans"].certs == "fqdn-only"
    assert cells["advertise-dns+tls+routes-fqdn"].certs == "good"
    assert cells["default"].expect == frozenset() and cells["default"].certs is None
    assert cells["pnra-false"].settings["pnra"].name == "false"
    assert cells["pnra-false"].settings["tls"].name == "off"
    assert cells["jetstream"].expect == frozenset()
    assert cells["pnra-false+jetstream"].expect == {"bootstrap-deadlock"}


def _declared_by_bug_reports() -> set[str]:
    """What the ``natsnet_values`` markers of the suites and of ``behaviours/`` declare (``expect=[...]``), read
    from their source."""
    import ast

    from pytest_natsnet.resources import suites_dir

    behaviours = Path(__file__).resolve().parents[1] / "behaviours"
    found: set[str] = set()
    for path in [*suites_dir().glob("test_*.py"), *behaviours.glob("test_*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "natsnet_values":
                for keyword in node.keywords:
                    if keyword.arg == "expect":
                        found |= {str(v) for v in ast.literal_eval(keyword.value)}
    return found


def test_the_projects_runs_reproduce_every_documented_failure(shipped: Matrix) -> None:
    """The smoke matrix (the few cells that together reproduce the documented failures of the values axes) and the
    bug reports of ``behaviours/`` (a cell each; ``scripts/test`` runs both) declare every failure of the
    vocabulary."""
    from pytest_natsnet.failures import DeclaredFailure

    smoke = set().union(*(s.expect for s in expand(shipped, "smoke")))
    assert smoke | _declared_by_bug_reports() == set(DeclaredFailure)
    assert "bootstrap-deadlock" in smoke and "meta-quorum-unreachable" in _declared_by_bug_reports()


def _setting_names(shipped: Matrix, name: str) -> list[dict[str, str]]:
    return [{a: st.name for a, st in s.settings.items()} for s in expand(shipped, name)]


def _excluded(shipped: Matrix, cell: dict[str, str]) -> bool:
    return any(all(cell[a] == v for a, v in rule.items()) for rule in shipped.exclude)


def test_full_is_cross_product_minus_exclusions(shipped: Matrix) -> None:
    cells = _setting_names(shipped, "full")
    axes = [a.name for a in shipped.axes]
    every = [dict(zip(axes, p, strict=True)) for p in itertools.product(*(a.settings for a in shipped.axes))]
    assert cells == [c for c in every if not _excluded(shipped, c)]
    assert len(cells) < len(every)


def test_pairwise_covers_every_feasible_pair_and_no_excluded_cell(shipped: Matrix) -> None:
    cells = _setting_names(shipped, "pairwise")
    full = _setting_names(shipped, "full")
    axes = [a.name for a in shipped.axes]

    def pairs(c: dict[str, str]) -> set[tuple[str, str, str, str]]:
        return {(a, c[a], b, c[b]) for a, b in itertools.combinations(axes, 2)}

    assert not any(_excluded(shipped, c) for c in cells)
    assert set().union(*map(pairs, full)) == set().union(*map(pairs, cells))
    assert len(cells) < len(full) / 4


def test_jetstream_axis_pairs_only_with_cells_where_routes_form_or_the_deadlock_is_declared(
    shipped: Matrix,
) -> None:
    """JetStream is Ready only with a meta leader, which needs routes: cells that break routes are excluded, except
    pNRA false, where nothing ever becomes Ready and every such cell declares bootstrap-deadlock."""
    axis = shipped.axis("jetstream")
    assert (axis.default, list(axis.settings)) == ("off", ["off", "on"])
    assert [f.name for f in axis.settings["on"].files] == ["jetstream.yaml"]
    assert axis.settings["on"].expect == frozenset()
    route_breakers = {("netpol", "egress-no-dns"), ("tls", "bad-sans"), ("advertise", "cluster-wrong")}
    for name in ("smoke", "pairwise", "full"):
        cells = expand(shipped, name)
        on = [s for s in cells if s.settings["jetstream"].name == "on"]
        assert on and not any((a, st.name) in route_breakers for s in on for a, st in s.settings.items())
        for scenario in cells:
            deadlock = scenario.settings["jetstream"].name == "on" and scenario.settings["pnra"].name == "false"
            assert ("bootstrap-deadlock" in scenario.expect) == deadlock, scenario.id
    assert {s.id for s in expand(shipped, "full")} >= {"jetstream", "tls+jetstream", "routes-seed+jetstream",
                                                       "pnra-false+jetstream"}


def test_a_combination_declares_failures_only_where_all_its_settings_meet(tmp_path: Path) -> None:
    text = MINI.replace("exclude:\n  - {tls: \"on\", routes: fqdn}\n", "") + textwrap.dedent("""
        combinations:
          - when: {tls: "on", routes: fqdn}
            expect: [dns-blocked]
    """)
    matrix = load_matrix(_write_matrix(tmp_path, text))
    expect = {s.id: s.expect for s in expand(matrix, "full")}
    assert expect == {"default": frozenset(), "routes-fqdn": {"mesh-split"}, "tls": frozenset(),
                      "tls+routes-fqdn": {"mesh-split", "dns-blocked"}}
    assert scenario_by_id(matrix, "tls+routes-fqdn").expect == {"mesh-split", "dns-blocked"}


def test_expansion_is_deterministic_and_ids_unique(shipped: Matrix) -> None:
    for name in ("smoke", "pairwise", "full"):
        first = [s.id for s in expand(shipped, name)]
        assert first == [s.id for s in expand(load_matrix(), name)]
        assert len(first) == len(set(first))


def test_unknown_matrix_name(shipped: Matrix) -> None:
    with pytest.raises(ConfigError, match="no matrix named 'huge'"):
        expand(shipped, "huge")


@pytest.mark.parametrize("scenario_id", ["default", "tls-bad-sans", "advertise-dns+tls+routes-fqdn"])
def test_scenario_by_id_round_trips(shipped: Matrix, scenario_id: str) -> None:
    from_matrix = {s.id: s for s in expand(shipped, "full")}[scenario_id]
    parsed = scenario_by_id(shipped, scenario_id)
    assert parsed.origin == "manifests"
    assert (parsed.values_files, parsed.expect, parsed.certs) == (
        from_matrix.values_files, from_matrix.expect, from_matrix.certs)


@pytest.mark.parametrize("scenario_id", ["combined", "tls+tls-bad-sans", "tls+nope", ""])
def test_scenario_by_id_unknown_carries_no_intent(shipped: Matrix, scenario_id: str) -> None:
    parsed = scenario_by_id(shipped, scenario_id)
    assert (parsed.id, parsed.expect, parsed.settings, parsed.origin) == (
        scenario_id, frozenset(), {}, "manifests")


@pytest.mark.parametrize(("run_id", "scenario_id"), [
    ("r1", "default"),
    ("abc123", "advertise-dns+tls+routes-fqdn"),
    ("abc123", "pnra-false+advertise-cluster-wrong+tls-bad-sans+netpol-egress-dns+routes-seed"),
    ("RUN", "Weird_Name.x"),
])
def test_namespace_is_dns_label(run_id: str, scenario_id: str) -> None:
    ns = namespace_for(run_id, scenario_id)
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", ns)
    assert ns.startswith(f"natsnet-{run_id.lower()}-")
    assert ns == namespace_for(run_id, scenario_id)


def test_namespace_distinct_for_similar_ids() -> None:
    assert namespace_for("r", "default") == "natsnet-r-default"
    assert namespace_for("r", "a+b") != namespace_for("r", "a-b")
    long_a, long_b = "x" * 80 + "a", "x" * 80 + "b"
    assert namespace_for("r", long_a) != namespace_for("r", long_b)


MINI = """
base: [base.yaml]
axes:
  tls:
    default: "off"
    settings:
      "off": {}
      "on": {id: tls, files: [tls.yaml], certs: good}
  routes:
    default: short
    settings:
      short: {}
      fqdn: {id: routes-fqdn, files: [fqdn.yaml], expect: [mesh-split]}
exclude:
  - {tls: "on", routes: fqdn}
matrices:
  smoke:
    - {}
    - {tls: "on"}
"""


def _write_matrix(tmp_path: Path, text: str) -> Path:
    for name in ("base.yaml", "tls.yaml", "fqdn.yaml"):
        (tmp_path / name).write_text("{}\n")
    path = tmp_path / "matrix.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_small_matrix_loads(tmp_path: Path) -> None:
    matrix = load_matrix(_write_matrix(tmp_path, MINI))
    assert [s.id for s in expand(matrix, "full")] == ["default", "routes-fqdn", "tls"]
    assert sorted(s.id for s in expand(matrix, "pairwise")) == ["default", "routes-fqdn", "tls"]


@pytest.mark.parametrize(("old", "new", "message"), [
    ("- {tls: \"on\"}\n", "- {tls: \"maybe\"}\n", r"smoke\[1\]: unknown setting 'maybe' of axis 'tls'"),
    ("- {tls: \"on\"}\n", "- {colour: red}\n", r"matrices.smoke\[1\]: unknown axis 'colour'"),
    ("- {tls: \"on\", routes: fqdn}", "- {speed: fast}", r"exclude\[0\]: unknown axis 'speed'"),
    ("- {tls: \"on\"}\n", "- {tls: \"on\", routes: fqdn}\n", r"cell tls\+routes-fqdn is excluded"),
    ("files: [fqdn.yaml]", "files: [missing.yaml]", r"key axes.routes.settings.fqdn.files: values file"),
    ("default: short", "default: long", r"axes.routes.default: 'long' is not one of"),
    ("fqdn: {id: routes-fqdn,", "fqdn: {id: tls,", "setting id.s. used twice: tls"),
    ("certs: good", "certs: great", r"certs: 'great' is not one of good, fqdn-only"),
    ("{id: routes-fqdn,", "{colour: red, id: routes-fqdn,", "unknown field.s. colour"),
    ("- {tls: \"on\"}\n", "- {tls: on}\n", "quote it"),
    ("base: [base.yaml]", "base: [base.yaml", "invalid YAML"),
    ("matrices:", "combinations: [{when: {tls: \"on\"}, expect: [mesh-split]}]\nmatrices:",
     r"combinations\[0\].when: names fewer than two settings"),
    ("matrices:", "combinations: [{when: {tls: \"on\", routes: fqdn}, expect: [mesh-spilt]}]\nmatrices:",
     r"combinations\[0\].expect: unknown declared failure 'mesh-spilt'"),
    ("matrices:", "combinations: [{when: {tls: \"on\", routes: fqdn}}]\nmatrices:",
     r"combinations\[0\]: must be \{when"),
    ("matrices:", "combinations: [{when: {tls: \"on\", colour: red}, expect: [mesh-split]}]\nmatrices:",
     r"combinations\[0\].when: unknown axis 'colour'"),
])
def test_bad_matrix_is_one_line_naming_file_and_key(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in MINI
    path = _write_matrix(tmp_path, MINI.replace(old, new))
    with pytest.raises(ConfigError, match=message) as info:
        load_matrix(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_missing_matrix_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"matrix\.yaml: file does not exist"):
        load_matrix(tmp_path / "matrix.yaml")


def test_values_dir_scenarios(tmp_path: Path, shipped: Matrix) -> None:
    header = "# natsnet-expect: mesh-split, dns-blocked\n# natsnet-certs: good\n"
    (tmp_path / "b-tls-values.yaml").write_text(header + "config: {}\n")
    (tmp_path / "a_plain.yaml").write_text("config:\n  cluster: {enabled: true}\n")
    (tmp_path / "notes.txt").write_text("ignored")
    got = scenarios_from_values_dir(tmp_path, shipped.base)
    assert [s.id for s in got] == ["a-plain", "b-tls-values"]
    assert got[0].expect == frozenset() and got[0].certs is None
    assert got[1].expect == {"mesh-split", "dns-blocked"} and got[1].certs == "good"
    assert got[1].values_files == (*shipped.base, tmp_path / "b-tls-values.yaml")
    assert got[1].origin.startswith("values-dir")


@pytest.mark.parametrize(("content", "message"), [
    ("# natsnet-expect: Mesh Split\n{}\n", "header natsnet-expect"),
    ("# natsnet-certs: great\n{}\n", "'great' is not one of"),
    ("- a list\n", "top level must be a mapping"),
    ("a: [\n", "invalid YAML"),
])
def test_values_dir_bad_files(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "cell.yaml").write_text(content)
    with pytest.raises(ConfigError, match=message):
        scenarios_from_values_dir(tmp_path, ())


def test_values_dir_empty_or_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="holds no"):
        scenarios_from_values_dir(tmp_path, ())
    with pytest.raises(ConfigError, match="is not a directory"):
        scenarios_from_values_dir(tmp_path / "nope", ())


def test_select_by_globs(shipped: Matrix) -> None:
    smoke = expand(shipped, "smoke")
    assert select(smoke, []) == smoke
    assert [s.id for s in select(smoke, ["netpol-*", "default"])] == [
        "default", "netpol-egress-no-dns", "netpol-egress-dns"]
    with pytest.raises(ConfigError, match="--natsnet-scenario nothing-here: matches no cell"):
        select(smoke, ["default", "nothing-here"])


def test_marker_cells_are_read_from_source(tmp_path: Path) -> None:
    from pytest_natsnet.matrix import globs_select, marker_cell_ids

    (tmp_path / "test_bugs.py").write_text(textwrap.dedent("""
        import pytest

        @pytest.mark.natsnet_values("a.yaml")
        def test_routes_break(natsnet_cell): ...

        @pytest.mark.natsnet_disruptive
        def test_not_a_bug_report(natsnet_cell): ...
    """))
    (tmp_path / "test_broken.py").write_text("def (:\n")
    assert marker_cell_ids([tmp_path / "test_bugs.py", tmp_path / "test_broken.py"]) == ["routes-break"]
    assert globs_select("routes-break", []) and globs_select("routes-break", ["routes-*"])
    assert not globs_select("routes-break", ["default"])


def test_a_glob_naming_only_a_marker_cell_is_no_error(shipped: Matrix) -> None:
    smoke = expand(shipped, "smoke")
    assert select(smoke, ["gossip-rejoin-*"], ["gossip-rejoin-pnra-true"]) == []
    with pytest.raises(ConfigError, match=r"available: .*gossip-rejoin-pnra-true"):
        select(smoke, ["nothing-*"], ["gossip-rejoin-pnra-true"])
