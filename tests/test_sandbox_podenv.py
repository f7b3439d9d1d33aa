"""Pure tests of container environments: ``$(VAR)`` expansion, the downward API, unsupported sources."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_natsnet.kube import Obj
from pytest_natsnet.sandbox.podenv import (
    UnsupportedEnvSource,
    container_env,
    expand,
    expand_args,
    field_value,
)

POD: Obj = {
    "metadata": {
        "name": "nats-1",
        "namespace": "natsnet",
        "uid": "u-1",
        "labels": {"app": "nats"},
        "annotations": {"note": "hi"},
    },
    "spec": {"nodeName": "sandbox-node"},
    "status": {"podIP": "198.18.0.11", "hostIP": "198.18.0.1"},
}


@pytest.mark.parametrize(
    ("value", "defined", "expanded"),
    [
        ("$(A)", {"A": "1"}, "1"),
        ("x-$(A)-$(B)", {"A": "1", "B": "2"}, "x-1-2"),
        ("$(MISSING)", {"A": "1"}, "$(MISSING)"),
        ("$$(A)", {"A": "1"}, "$(A)"),
        ("$$", {}, "$"),
        ("$$$(A)", {"A": "1"}, "$1"),
        ("a$b", {"b": "2"}, "a$b"),
        ("$(A", {"A": "1"}, "$(A"),
        ("${A}", {"A": "1"}, "${A}"),
        ("$(A)$(A)", {"A": "$(B)"}, "$(B)$(B)"),
        ("", {}, ""),
    ],
)
def test_expand(value: str, defined: dict[str, str], expanded: str) -> None:
    assert expand(value, defined) == expanded


def test_only_earlier_variables_expand_in_declaration_order() -> None:
    container: dict[str, list[dict[str, Any]]] = {
        "env": [
            {"name": "LATER_REF", "value": "$(SECOND)"},
            {"name": "FIRST", "value": "one"},
            {"name": "SECOND", "value": "$(FIRST)-two"},
            {"name": "SELF", "value": "$(SELF)"},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "SERVER_NAME", "value": "$(POD_NAME)"},
            {"name": "EMPTY"},
        ]
    }
    env = container_env(container, POD)
    assert env == {
        "LATER_REF": "$(SECOND)",
        "FIRST": "one",
        "SECOND": "one-two",
        "SELF": "$(SELF)",
        "POD_NAME": "nats-1",
        "SERVER_NAME": "nats-1",
        "EMPTY": "",
    }
    assert list(env) == [e["name"] for e in container["env"]]


def test_a_redefined_variable_keeps_its_first_position_and_takes_the_last_value() -> None:
    env = container_env({"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "$(A)"},
                                 {"name": "A", "value": "2"}]}, POD)
    assert env == {"A": "2", "B": "1"}


def test_a_container_without_env() -> None:
    assert container_env({}, POD) == {}
    assert container_env({"env": None}, POD) == {}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("metadata.name", "nats-1"),
        ("metadata.namespace", "natsnet"),
        ("metadata.uid", "u-1"),
        ("status.podIP", "198.18.0.11"),
        ("status.hostIP", "198.18.0.1"),
        ("spec.nodeName", "sandbox-node"),
        ("spec.serviceAccountName", "default"),
        ("metadata.labels['app']", "nats"),
        ("metadata.annotations['note']", "hi"),
        ("metadata.labels['absent']", ""),
    ],
)
def test_downward_api(path: str, value: str) -> None:
    assert field_value(path, POD) == value


def test_downward_api_before_the_pod_has_an_ip() -> None:
    assert field_value("status.podIP", {"metadata": {"name": "p"}, "status": {}}) == ""


@pytest.mark.parametrize(
    ("entry", "named"),
    [
        ({"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels"}}}, "metadata.labels"),
        ({"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "status.podIPs"}}}, "status.podIPs"),
        ({"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}, "secretKeyRef"),
        ({"name": "X", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}, "configMapKeyRef"),
        ({"name": "X", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}, "resourceFieldRef"),
    ],
)
def test_unsupported_sources_raise_naming_them(entry: dict[str, Any], named: str) -> None:
    with pytest.raises(UnsupportedEnvSource, match=named):
        container_env({"env": [entry]}, POD)


def test_env_from_is_refused_not_ignored() -> None:
    container = {"envFrom": [{"configMapRef": {"name": "settings"}}], "env": [{"name": "A", "value": "1"}]}
    with pytest.raises(UnsupportedEnvSource, match="envFrom"):
        container_env(container, POD)


@pytest.mark.parametrize(
    ("args", "expanded"),
    [
        (["--name", "$(SERVER_NAME)"], ["--name", "nats-1"]),
        (["$(UNKNOWN)", "$$(SERVER_NAME)"], ["$(UNKNOWN)", "$(SERVER_NAME)"]),
        ([], []),
    ],
)
def test_expand_args(args: list[str], expanded: list[str]) -> None:
    assert expand_args(args, {"SERVER_NAME": "nats-1"}) == expanded
