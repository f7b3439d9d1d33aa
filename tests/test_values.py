"""Values loading, Helm-style composition, list conflicts, extraResources and chart-key checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pytest_natsnet.errors import ConfigError
from pytest_natsnet.matrix import expand, load_matrix
from pytest_natsnet.values import EXTRA_RESOURCES_FILE, check_keys, compose, load_values, write_layers


def _files(tmp_path: Path, **contents: str) -> list[Path]:
    paths = []
    for name, text in contents.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        paths.append(path)
    return paths


@pytest.mark.parametrize(("text", "message"), [
    ("- a\n", "top level must be a mapping of values, found list"),
    ("a: [1\n", "invalid YAML"),
    ("just a string\n", "found str"),
])
def test_load_values_rejects(tmp_path: Path, text: str, message: str) -> None:
    (path,) = _files(tmp_path, bad=text)
    with pytest.raises(ConfigError, match=message) as info:
        load_values(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_load_values_missing_and_empty(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="values file does not exist"):
        load_values(tmp_path / "nope.yaml")
    (empty,) = _files(tmp_path, empty="# only a comment\n")
    assert load_values(empty) == {}


def test_compose_merges_maps_later_wins(tmp_path: Path) -> None:
    files = _files(
        tmp_path,
        a="config:\n  cluster: {enabled: true, replicas: 3}\n  jetstream: {enabled: true}\nkeep: 1\n",
        b="config:\n  cluster: {replicas: 5}\n  jetstream: null\nnew: {x: 1}\n",
    )
    got = compose(files)
    assert got.values == {"config": {"cluster": {"enabled": True, "replicas": 5}}, "keep": 1, "new": {"x": 1}}
    assert got.files == tuple(files) and got.extra_resources == []


def test_compose_does_not_mutate_between_calls(tmp_path: Path) -> None:
    files = _files(tmp_path, a="m: {l: [1]}\n")
    first = compose(files)
    first.values["m"]["l"].append(2)
    assert compose(files).values == {"m": {"l": [1]}}


def test_two_files_fighting_over_a_list_name_both(tmp_path: Path) -> None:
    a, b = _files(tmp_path, a="config:\n  cluster:\n    merge:\n      routes: [x]\n",
                  b="config:\n  cluster:\n    merge:\n      routes: [y]\n")
    with pytest.raises(ConfigError) as info:
        compose([a, b])
    message = str(info.value)
    assert str(a) in message and str(b) in message and "config.cluster.merge.routes" in message
    assert "\n" not in message


def test_identical_lists_or_a_list_over_a_scalar_are_fine(tmp_path: Path) -> None:
    files = _files(tmp_path, a="l: [1, 2]\ns: 1\n", b="l: [1, 2]\ns: [3]\n")
    assert compose(files).values == {"l": [1, 2], "s": [3]}


def test_extra_resources_concatenate_in_file_order(tmp_path: Path) -> None:
    files = _files(tmp_path, a="extraResources:\n- {kind: A}\n", b="x: 1\n",
                   c="extraResources:\n- {kind: C1}\n- {kind: C2}\n")
    got = compose(files)
    assert got.extra_resources == [{"kind": "A"}, {"kind": "C1"}, {"kind": "C2"}]
    assert "extraResources" not in got.values


def test_extra_resources_must_be_a_list(tmp_path: Path) -> None:
    (f,) = _files(tmp_path, a="extraResources: {kind: A}\n")
    with pytest.raises(ConfigError, match="extraResources: must be a list"):
        compose([f])


def test_write_layers_adds_the_combined_extra_resources_last(tmp_path: Path) -> None:
    files = _files(tmp_path, a="extraResources:\n- {kind: A}\n", b="extraResources:\n- {kind: B}\n")
    out = tmp_path / "out"
    layers = write_layers(compose(files), out)
    assert layers == [*files, out / EXTRA_RESOURCES_FILE]
    assert yaml.safe_load(layers[-1].read_text()) == {"extraResources": [{"kind": "A"}, {"kind": "B"}]}


def test_write_layers_without_extra_resources_writes_nothing(tmp_path: Path) -> None:
    files = _files(tmp_path, a="x: 1\n")
    assert write_layers(compose(files), tmp_path / "out") == files
    assert not (tmp_path / "out").exists()


def test_every_shipped_cell_composes_and_netpol_cells_keep_all_policies() -> None:
    matrix = load_matrix()
    for scenario in expand(matrix, "full"):
        compose(scenario.values_files)
    cell = {s.id: s for s in expand(matrix, "smoke")}["netpol-egress-dns"]
    names = [r["metadata"]["name"] for r in compose(cell.values_files).extra_resources]
    assert names == ["natsnet-default-deny-egress", "natsnet-allow-nats-ports", "natsnet-allow-dns"]


ALLOWED = {"config.cluster.enabled", "config.cluster.replicas", "config.merge", "container.env.*.value",
           "podTemplate"}


@pytest.mark.parametrize(("values", "unknown"), [
    ({"config": {"cluster": {"enabled": True, "replicas": 3}}}, []),
    ({"config": {"merge": {"anything": {"deep": 1}}}}, []),
    ({"podTemplate": {"merge": {"spec": {}}}}, []),
    ({"container": {"env": {"A": {"value": "x"}}}}, []),
    ({"config": {"cluster": {"replica": 3}}}, ["config.cluster.replica"]),
    ({"conifg": {"x": 1}, "config": {"cluster": {"enabled": True}}}, ["conifg"]),
    ({"container": {"env": {"A": {"valueFrom": {}}}}}, ["container.env.A.valueFrom"]),
    ({"config": 3}, ["config"]),
])
def test_check_keys(values: dict[str, object], unknown: list[str]) -> None:
    assert check_keys(values, ALLOWED) == unknown
