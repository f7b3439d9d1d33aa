"""The declared-failure vocabulary: one enum, a bad name is one line naming where, the name and the valid ones."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pytest_natsnet.errors import ConfigError
from pytest_natsnet.failures import DeclaredFailure, parse_declared, valid_names
from pytest_natsnet.matrix import load_matrix, scenarios_from_values_dir
from pytest_natsnet.resources import charts_values_dir

VALID = ("dns-blocked, mesh-split, route-tls-mismatch, learned-urls-unreachable, bootstrap-deadlock, "
         "meta-quorum-unreachable")


def test_the_vocabulary_is_the_documented_failures() -> None:
    assert valid_names() == VALID
    documented = (charts_values_dir() / "matrix.yaml").read_text()
    assert all(f"#   {failure.value} " in documented for failure in DeclaredFailure)


def test_known_names_parse_to_members_that_compare_as_strings() -> None:
    declared = parse_declared(["mesh-split", "dns-blocked"], "here")
    assert declared == {DeclaredFailure.MESH_SPLIT, DeclaredFailure.DNS_BLOCKED} == {"mesh-split", "dns-blocked"}
    assert parse_declared([], "here") == frozenset()


@pytest.mark.parametrize("names", [["mesh-spilt"], ["mesh-split", "Mesh-Split"], [3]])
def test_an_unknown_name_is_one_line_with_where_the_name_and_the_valid_ones(names: list[object]) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_declared(names, "matrix.yaml key axes.tls.settings.x.expect")
    message = str(raised.value)
    bad = next(n for n in names if n not in ("mesh-split",))
    assert "\n" not in message
    assert message == (
        f"matrix.yaml key axes.tls.settings.x.expect: unknown declared failure {bad!r}; use one of {VALID}"
    )


def test_a_typo_in_matrix_yaml_is_found_when_it_is_loaded(tmp_path: Path) -> None:
    for name in ("base.yaml", "tls.yaml"):
        (tmp_path / name).write_text("{}\n")
    (tmp_path / "matrix.yaml").write_text(textwrap.dedent("""
        base: [base.yaml]
        axes:
          tls:
            default: "off"
            settings:
              "off": {}
              bad-sans: {id: tls-bad-sans, files: [tls.yaml], expect: [route-tls-mismatch, mesh-spilt]}
        matrices: {smoke: [{}]}
    """))
    with pytest.raises(ConfigError) as raised:
        load_matrix(tmp_path / "matrix.yaml")
    assert str(raised.value) == (
        f"{tmp_path / 'matrix.yaml'} key axes.tls.settings.bad-sans.expect: unknown declared failure "
        f"'mesh-spilt'; use one of {VALID}"
    )


def test_a_typo_in_a_values_file_header_is_found_when_the_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / "cell.yaml").write_text("# natsnet-expect: dns-blokced, mesh-split\n{}\n")
    with pytest.raises(ConfigError) as raised:
        scenarios_from_values_dir(tmp_path, ())
    assert str(raised.value) == (
        f"{tmp_path / 'cell.yaml'} header natsnet-expect: unknown declared failure 'dns-blokced'; use one of {VALID}"
    )


def test_a_never_ready_cell_keeps_off_every_test_that_does_not_cover_its_failure() -> None:
    from pytest_natsnet.failures import NEVER_READY, never_ready_reason
    from pytest_natsnet.suitekit import declared

    deadlock = parse_declared(["bootstrap-deadlock", "mesh-split"], "here")
    assert {DeclaredFailure.BOOTSTRAP_DEADLOCK, DeclaredFailure.META_QUORUM_UNREACHABLE} == NEVER_READY
    assert never_ready_reason(deadlock, ()) == (
        "the cell declares bootstrap-deadlock: its servers never become Ready, and only tests that cover that "
        "failure apply")
    assert never_ready_reason(deadlock, declared("bootstrap-deadlock").natsnet_covers) is None  # type: ignore[attr-defined]
    assert never_ready_reason(deadlock, declared("mesh-split").natsnet_covers) is not None  # type: ignore[attr-defined]
    assert never_ready_reason(parse_declared(["mesh-split"], "here"), ()) is None
