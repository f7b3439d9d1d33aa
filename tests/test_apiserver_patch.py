"""Patches as the API server applies them: JSON patch, merge patch, strategic merge patch (merge keys and
directives), server-side apply (merge, removal of fields a manager stopped applying, managedFields)."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_natsnet.sandbox.apiserver.patch import (
    fields_v1,
    json_patch,
    list_merge_key,
    merge_patch,
    paths_of,
    server_side_apply,
    strategic_merge_patch,
)
from pytest_natsnet.sandbox.store import BadRequest, Invalid

POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "p", "labels": {"a": "1"}, "finalizers": ["x"]},
    "spec": {
        "containers": [
            {"name": "main", "image": "nats:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
             "ports": [{"containerPort": 4222, "name": "client"}], "args": ["-a"]},
            {"name": "side", "image": "busybox"},
        ],
        "volumes": [{"name": "v1", "emptyDir": {}}],
    },
    "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}]},
}


@pytest.mark.parametrize(
    ("kind", "path", "key"),
    [
        ("Pod", ("spec", "containers"), "name"),
        ("StatefulSet", ("spec", "template", "spec", "initContainers"), "name"),
        ("Pod", ("spec", "containers", "ports"), "containerPort"),
        ("Service", ("spec", "ports"), "port"),
        ("EndpointSlice", ("ports",), None),
        ("Pod", ("spec", "containers", "env"), "name"),
        ("Pod", ("spec", "containers", "volumeMounts"), "mountPath"),
        ("Pod", ("spec", "volumes"), "name"),
        ("Pod", ("spec", "imagePullSecrets"), "name"),
        ("Pod", ("status", "conditions"), "type"),
        ("Deployment", ("status", "conditions"), "type"),
        ("Pod", ("metadata", "ownerReferences"), "uid"),
        ("Pod", ("metadata", "finalizers"), ""),
        ("Node", ("status", "addresses"), "type"),
        ("ServiceAccount", ("secrets",), "name"),
        ("Pod", ("spec", "containers", "args"), None),
        ("Pod", ("spec", "tolerations"), None),
    ],
)
def test_merge_keys_of_the_built_in_kinds(kind: str, path: tuple[str, ...], key: str | None) -> None:
    assert list_merge_key(kind, path) == key


# -- JSON patch -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operations", "check"),
    [
        ([{"op": "add", "path": "/metadata/labels/b", "value": "2"}], lambda o: o["metadata"]["labels"]["b"] == "2"),
        ([{"op": "add", "path": "/status/conditions/-", "value": {"type": "G", "status": "True"}}],
         lambda o: o["status"]["conditions"][-1]["type"] == "G"),
        ([{"op": "add", "path": "/status/conditions/0", "value": {"type": "G"}}],
         lambda o: [c["type"] for c in o["status"]["conditions"]] == ["G", "Ready", "PodScheduled"]),
        ([{"op": "replace", "path": "/status/conditions/0/status", "value": "True"}],
         lambda o: o["status"]["conditions"][0]["status"] == "True"),
        ([{"op": "remove", "path": "/metadata/labels/a"}], lambda o: o["metadata"]["labels"] == {}),
        ([{"op": "move", "from": "/metadata/labels/a", "path": "/metadata/labels/z"}],
         lambda o: o["metadata"]["labels"] == {"z": "1"}),
        ([{"op": "copy", "from": "/metadata/labels", "path": "/metadata/annotations"}],
         lambda o: o["metadata"]["annotations"] == {"a": "1"}),
        ([{"op": "test", "path": "/metadata/name", "value": "p"}, {"op": "add", "path": "/x~1y", "value": 1}],
         lambda o: o["x/y"] == 1),
    ],
)
def test_json_patch(operations: list[dict[str, Any]], check: Any) -> None:
    patched = json_patch(POD, operations)
    assert check(patched)
    assert POD["metadata"]["labels"] == {"a": "1"}  # the input is not touched


@pytest.mark.parametrize(
    ("operations", "error", "match"),
    [
        ([{"op": "test", "path": "/metadata/name", "value": "q"}], Invalid, "test operation failed"),
        ([{"op": "replace", "path": "/metadata/nope", "value": 1}], Invalid, "missing key"),
        ([{"op": "remove", "path": "/spec/nope/x"}], Invalid, "missing path"),
        ([{"op": "add", "path": "/status/conditions/9", "value": {}}], Invalid, "out of range"),
        ([{"op": "frobnicate", "path": "/a"}], BadRequest, "unknown operation"),
        ({"op": "add"}, BadRequest, "list of operations"),
        ([{"op": "add", "path": "no-slash", "value": 1}], BadRequest, "does not start with /"),
    ],
)
def test_json_patch_errors(operations: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        json_patch(POD, operations)


# -- merge patch ------------------------------------------------------------------------------------------


def test_merge_patch_merges_maps_deletes_nulls_and_replaces_lists() -> None:
    patched = merge_patch(POD, {"metadata": {"labels": {"a": None, "b": "2"}},
                                "spec": {"volumes": [{"name": "only"}]}})
    assert patched["metadata"]["labels"] == {"b": "2"}
    assert patched["spec"]["volumes"] == [{"name": "only"}]
    assert patched["spec"]["containers"] == POD["spec"]["containers"]


# -- strategic merge patch --------------------------------------------------------------------------------


def _containers(obj: dict[str, Any]) -> dict[str, Any]:
    return {c["name"]: c for c in obj["spec"]["containers"]}


def test_smp_merges_containers_by_name_and_env_by_name() -> None:
    patched = strategic_merge_patch(POD, {"spec": {"containers": [
        {"name": "main", "image": "nats:2", "env": [{"name": "B", "value": "two"}, {"name": "C", "value": "3"}]},
        {"name": "new", "image": "x"},
    ]}})
    containers = _containers(patched)
    assert list(containers) == ["main", "side", "new"]
    assert containers["main"]["image"] == "nats:2" and containers["main"]["args"] == ["-a"]
    assert containers["main"]["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "two"},
                                         {"name": "C", "value": "3"}]
    assert containers["main"]["ports"] == [{"containerPort": 4222, "name": "client"}]


def test_smp_replaces_lists_without_a_merge_key_and_merges_primitive_sets() -> None:
    patched = strategic_merge_patch(POD, {"metadata": {"finalizers": ["y", "x"]},
                                          "spec": {"containers": [{"name": "main", "args": ["-b"]}]}})
    assert patched["metadata"]["finalizers"] == ["x", "y"]
    assert _containers(patched)["main"]["args"] == ["-b"]


def test_smp_conditions_by_type() -> None:
    patched = strategic_merge_patch(POD, {"status": {"conditions": [{"type": "Ready", "status": "True"},
                                                                    {"type": "natsnet.io/gate", "status": "True"}]}})
    assert [(c["type"], c["status"]) for c in patched["status"]["conditions"]] == [
        ("Ready", "True"), ("PodScheduled", "True"), ("natsnet.io/gate", "True")]


def test_smp_service_ports_merge_by_port() -> None:
    svc = {"kind": "Service", "spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]}}
    patched = strategic_merge_patch(svc, {"spec": {"ports": [{"port": 443, "targetPort": 8443}]}})
    assert patched["spec"]["ports"] == [{"port": 80, "name": "http"},
                                        {"port": 443, "name": "https", "targetPort": 8443}]


@pytest.mark.parametrize(
    ("patch", "check"),
    [
        pytest.param({"spec": {"containers": [{"name": "side", "$patch": "delete"}]}},
                     lambda o: list(_containers(o)) == ["main"], id="delete-item"),
        pytest.param({"spec": {"containers": [{"name": "only", "image": "i"}, {"$patch": "replace"}]}},
                     lambda o: o["spec"]["containers"] == [{"name": "only", "image": "i"}], id="replace-list"),
        pytest.param({"metadata": {"labels": {"$patch": "replace", "z": "9"}}},
                     lambda o: o["metadata"]["labels"] == {"z": "9"}, id="replace-map"),
        pytest.param({"metadata": {"labels": {"a": None}}}, lambda o: o["metadata"]["labels"] == {}, id="null"),
        pytest.param({"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}},
                     lambda o: o["metadata"]["finalizers"] == [], id="delete-primitive"),
        pytest.param({"spec": {"$setElementOrder/containers": [{"name": "side"}, {"name": "main"}],
                               "containers": [{"name": "main", "image": "nats:3"}]}},
                     lambda o: [c["name"] for c in o["spec"]["containers"]] == ["side", "main"]
                     and o["spec"]["containers"][1]["image"] == "nats:3", id="element-order"),
        pytest.param({"spec": {"volumes": [{"name": "v1", "$retainKeys": ["name", "configMap"],
                                            "configMap": {"name": "c"}}]}},
                     lambda o: o["spec"]["volumes"] == [{"name": "v1", "configMap": {"name": "c"}}],
                     id="retain-keys"),
    ],
)
def test_smp_directives(patch: dict[str, Any], check: Any) -> None:
    assert check(strategic_merge_patch(POD, patch))


def test_smp_refuses_a_non_object() -> None:
    with pytest.raises(BadRequest, match="must be an object"):
        strategic_merge_patch(POD, [1])


# -- server-side apply ------------------------------------------------------------------------------------

APPLIED: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "StatefulSet",
    "metadata": {"name": "nats", "labels": {"app": "nats", "tier": "x"}},
    "spec": {"replicas": 3, "template": {"spec": {"containers": [
        {"name": "nats", "image": "nats:2.14.2", "ports": [{"containerPort": 4222}]}]}}},
}


def test_apply_creates_what_was_applied_with_its_managed_fields() -> None:
    made = server_side_apply(None, APPLIED, "helm", "2026-01-01T00:00:00Z")
    assert made["spec"] == APPLIED["spec"] and made["metadata"]["labels"] == APPLIED["metadata"]["labels"]
    (entry,) = made["metadata"]["managedFields"]
    assert entry["manager"] == "helm" and entry["operation"] == "Apply" and entry["apiVersion"] == "apps/v1"
    fields = entry["fieldsV1"]
    assert fields["f:spec"]["f:replicas"] == {}
    containers = fields["f:spec"]["f:template"]["f:spec"]["f:containers"]
    assert containers['k:{"name":"nats"}']["."] == {} and "f:image" in containers['k:{"name":"nats"}']
    assert "f:name" not in fields["f:metadata"]


def test_apply_keeps_other_fields_and_removes_what_the_manager_stopped_applying() -> None:
    live = server_side_apply(None, APPLIED, "helm", "t")
    live["metadata"]["labels"]["someone-else"] = "keep"
    live["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "1"}}
    live["status"] = {"replicas": 3}
    second = {**APPLIED, "metadata": {"name": "nats", "labels": {"app": "nats"}},
              "spec": {"replicas": 5, "template": {"spec": {"containers": [{"name": "nats", "image": "nats:2.15"}]}}}}
    merged = server_side_apply(live, second, "helm", "t2")
    assert merged["metadata"]["labels"] == {"app": "nats", "someone-else": "keep"}
    container = merged["spec"]["template"]["spec"]["containers"][0]
    assert container == {"name": "nats", "image": "nats:2.15", "resources": {"limits": {"cpu": "1"}}}
    assert merged["spec"]["replicas"] == 5 and merged["status"] == {"replicas": 3}
    assert [e["time"] for e in merged["metadata"]["managedFields"]] == ["t2"]


def test_apply_by_two_managers_keeps_both_entries_and_nulls_mean_unset() -> None:
    live = server_side_apply(None, APPLIED, "helm", "t")
    other = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "nats", "annotations": {"a": "b"}},
             "spec": {"minReadySeconds": None}}
    merged = server_side_apply(live, other, "kubectl", "t")
    assert sorted(e["manager"] for e in merged["metadata"]["managedFields"]) == ["helm", "kubectl"]
    assert merged["metadata"]["annotations"] == {"a": "b"} and "minReadySeconds" not in merged["spec"]
    assert merged["spec"]["replicas"] == 3


def test_fields_v1_round_trip() -> None:
    paths = {("f:spec",), ("f:spec", "f:replicas"), ("f:spec", "f:ports"), ("f:spec", "f:ports", 'k:{"port":80}'),
             ("f:spec", "f:ports", 'k:{"port":80}', "f:name")}
    assert paths_of(fields_v1(paths)) == paths
