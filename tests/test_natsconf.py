"""natsconf: parsing the chart's nats.conf (with and without env), errors with positions, the chart layout."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from golden_data import RENDERED, objects, scenario_ids

from pytest_natsnet.natsconf import NatsConfError, Size, VarRef, dumps, parse, raw_value


def golden_conf(scenario: str) -> str:
    """The ``nats.conf`` of a golden render's ``nats-config`` ConfigMap."""
    for doc in objects(scenario):
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "nats-config":
            return str(doc["data"]["nats.conf"])
    raise AssertionError(f"golden render {scenario} has no nats-config ConfigMap")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"port": 4222}', {"port": 4222}),
        ("port = 4222; server_name: a", {"port": 4222, "server_name": "a"}),
        ("port 4222\nhttp_port 8222", {"port": 4222, "http_port": 8222}),
        ('{"a": [1, 2,], "b": {"c": true,},}', {"a": [1, 2], "b": {"c": True}}),
        ('{"a": [\n  "x"\n  "y"\n]}', {"a": ["x", "y"]}),
        ('{"a": []\n "b": {}}', {"a": [], "b": {}}),
        ("# c\n{ // c2\n  'k': 'raw \\t' # c3\n}\n", {"k": "raw \\t"}),
        ('{"s": "q\\"\\\\\\t\\n\\x41"}', {"s": 'q"\\\t\nA'}),
        ('{"d": "30s", "f": 1.5, "n": -1, "k": 1K, "kb": 1KB, "g": 2GB}',
         {"d": "30s", "f": 1.5, "n": -1, "k": 1000, "kb": 1024, "g": 2 * 1024**3}),
        ("a: yes, b: off, c: TRUE, d: False", {"a": True, "b": False, "c": True, "d": False}),
        ("routes: [nats://a:6222, nats-route://b:6222]", {"routes": ["nats://a:6222", "nats-route://b:6222"]}),
        ("listen: 127.0.0.1:4222", {"listen": "127.0.0.1:4222"}),
        ('{"x": "<< $A >>"}', {"x": "<< $A >>"}),
        ("", {}),
    ],
)  # fmt: skip
def test_parse_values(text: str, expected: dict[str, Any]) -> None:
    assert parse(text) == expected


def test_sizes_are_bytes_and_are_written_back_as_read() -> None:
    text = '{\n  "jetstream": {\n    "max_file_store": 1Gi,\n    "max_memory_store": 256Mi\n  },\n  "n": 5\n}\n'
    conf = parse(text)
    assert conf["jetstream"] == {"max_file_store": 1024**3, "max_memory_store": 256 * 1024**2}
    assert isinstance(conf["jetstream"]["max_file_store"], Size) and not isinstance(conf["n"], Size)
    assert repr(conf["jetstream"]["max_file_store"]) == "Size(1073741824, '1Gi')"
    assert dumps(conf) == text
    assert dumps(copy.deepcopy(conf)) == text
    assert parse("a: $S", {"S": "64MB"}) == {"a": 64 * 1024**2} and dumps(parse("a: $S", {"S": "64MB"})) == (
        '{\n  "a": 64MB\n}\n'
    )


def test_references_stay_varrefs_without_env() -> None:
    conf = parse('{"server_name": $SERVER_NAME, "cluster": {"advertise": $CLUSTER_ADVERTISE,}}')
    assert conf == {
        "server_name": VarRef("SERVER_NAME"),
        "cluster": {"advertise": VarRef("CLUSTER_ADVERTISE")},
    }
    assert str(conf["server_name"]) == "$SERVER_NAME"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("nats-0", "nats-0"),
        ("nats-0.nats-headless.ns.svc.cluster.local:4222", "nats-0.nats-headless.ns.svc.cluster.local:4222"),
        ("4223", 4223),
        ("true", True),
        ('"4223"', "4223"),
        ("  padded  ", "padded"),
        ("", ""),
        ("$OTHER", "other-value"),
    ],
)
def test_env_values_parse_as_nats_server_does(value: str, expected: Any) -> None:
    conf = parse("{ x: $V }", {"V": value, "OTHER": "other-value"})
    assert conf == {"x": expected}


def test_variables_defined_in_the_document_win_over_env() -> None:
    text = "NAME: doc\nouter { inner { x: $NAME } }\ny: $PORT"
    assert parse(text, {"NAME": "env", "PORT": "1"}) == {
        "NAME": "doc",
        "outer": {"inner": {"x": "doc"}},
        "y": 1,
    }


@pytest.mark.parametrize(
    ("text", "env", "line", "column", "fragment"),
    [
        ('{\n  "a": "open\n}', None, 2, 8, "unterminated string"),
        ('{\n  "a": 1\n', None, 3, 1, "missing '}'"),
        ('{"a": [1, 2}', None, 1, 12, "after a array element"),
        ('{"a": [1,, 2]}', None, 1, 10, "expected a value"),
        ('{"a": 1 "b": 2}', None, 1, 9, "after a map entry"),
        ('{"a": }', None, 1, 7, "expected a value"),
        ('{"a": "\\u0041"}', None, 1, 9, "invalid escape"),
        ('{"a": 1}\n}', None, 2, 1, "after the end of the document"),
        ("{ a: $ }", None, 1, 6, "without a variable name"),
        ("{ a: $MISSING }", {}, 1, 6, "$MISSING is neither"),
        ("{\n a: $BAD }", {"BAD": "a b"}, 2, 5, "$BAD from the environment does not parse"),
        ("{ a: $LOOP }", {"LOOP": "$LOOP"}, 1, 6, "nest deeper"),
        ("]", None, 1, 1, "expected a key"),
    ],
)
def test_errors_name_line_and_column(
    text: str, env: dict[str, str] | None, line: int, column: int, fragment: str
) -> None:
    with pytest.raises(NatsConfError) as caught:
        parse(text, env)
    assert (caught.value.line, caught.value.column) == (line, column)
    assert fragment in str(caught.value)
    assert str(caught.value).startswith(f"nats.conf line {line}, column {column}: ")
    assert "\n" not in str(caught.value)


def test_dumps_uses_the_chart_layout() -> None:
    config = {"b": [1, "x"], "a": {"y": True, "x": "<< $VAR >>"}, "e": [], "m": {}, "v": VarRef("V")}
    assert dumps(config) == (
        "{\n"
        '  "a": {\n'
        '    "x": $VAR,\n'
        '    "y": true\n'
        "  },\n"
        '  "b": [\n'
        "    1,\n"
        '    "x"\n'
        "  ],\n"
        '  "e": [],\n'
        '  "m": {},\n'
        '  "v": $V\n'
        "}\n"
    )


@pytest.mark.parametrize(
    ("text", "expected"), [("<< $X >>", "$X"), ("<<64MB>>", "64MB"), ("< $X >", None), ("a << $X >>", None)]
)
def test_raw_value(text: str, expected: str | None) -> None:
    assert raw_value(text) == expected


def test_golden_confs_parse_and_round_trip(golden_scenario: str) -> None:
    text = golden_conf(golden_scenario)
    conf = parse(text)
    assert conf["server_name"] == VarRef("SERVER_NAME")
    assert conf["cluster"]["routes"] and conf["pid_file"] == "/var/run/nats/nats.pid"
    assert dumps(conf) == text


def test_every_golden_render_is_a_scenario() -> None:
    assert sorted(p.stem for p in RENDERED.glob("*.yaml")) == sorted(scenario_ids())
    assert len(scenario_ids()) >= 10
