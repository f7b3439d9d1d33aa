"""Pure pieces of the API server: resource URLs, discovery documents, OpenAPI v3, selectors, Tables, body
decoding and field validation."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_natsnet.kinds import BY_KIND, RESOURCES
from pytest_natsnet.sandbox.apiserver import bodies, discovery, tables
from pytest_natsnet.sandbox.apiserver.handlers import parse_resource_path
from pytest_natsnet.sandbox.apiserver.selectors import field_selector, label_selector
from pytest_natsnet.sandbox.store import BadRequest


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/v1/pods", ("pods", None, "", "")),
        ("/api/v1/namespaces/ns/pods", ("pods", "ns", "", "")),
        ("/api/v1/namespaces/ns/pods/p", ("pods", "ns", "p", "")),
        ("/api/v1/namespaces/ns/pods/p/log", ("pods", "ns", "p", "log")),
        ("/api/v1/namespaces/ns", ("namespaces", None, "ns", "")),
        ("/api/v1/namespaces/ns/status", ("namespaces", None, "ns", "status")),
        ("/api/v1/namespaces", ("namespaces", None, "", "")),
        ("/apis/apps/v1/namespaces/ns/statefulsets/s/status", ("statefulsets", "ns", "s", "status")),
        ("/apis/storage.k8s.io/v1/storageclasses/standard", ("storageclasses", None, "standard", "")),
        ("/apis/apps/v1/deployments", ("deployments", None, "", "")),
        ("/api/v1/frobs", None),
        ("/apis/apps/v2/deployments", None),
        ("/api/v1/namespaces/ns/pods/p/log/extra", None),
        ("/version", None),
    ],
)
def test_parse_resource_path(path: str, expected: tuple[str, str | None, str, str] | None) -> None:
    target = parse_resource_path(path)
    if expected is None:
        assert target is None
        return
    assert target is not None
    assert (target.resource.plural, target.namespace, target.name, target.subresource) == expected


def test_aggregated_discovery_lists_every_resource_once() -> None:
    core = discovery.aggregated(core=True)
    groups = discovery.aggregated(core=False)
    assert core["kind"] == "APIGroupDiscoveryList" and core["apiVersion"] == "apidiscovery.k8s.io/v2"
    assert [i["metadata"]["name"] for i in core["items"]] == [""]
    names = {i["metadata"]["name"] for i in groups["items"]}
    assert names == {"apps", "discovery.k8s.io", "policy", "networking.k8s.io", "storage.k8s.io",
                     "authorization.k8s.io"}
    listed = [r["resource"] for doc in (core, groups) for i in doc["items"] for v in i["versions"]
              for r in v["resources"]]
    assert sorted(listed) == sorted(r.plural for r in RESOURCES)
    pods = next(r for r in core["items"][0]["versions"][0]["resources"] if r["resource"] == "pods")
    assert pods["scope"] == "Namespaced" and pods["shortNames"] == ["po"] and pods["categories"] == ["all"]
    assert {s["subresource"]: s["verbs"] for s in pods["subresources"]} == {
        "status": ["get", "patch", "update"], "log": ["get"], "exec": ["create", "get"]}


def test_legacy_discovery() -> None:
    assert discovery.api_versions("127.0.0.1:6443")["versions"] == ["v1"]
    groups = {g["name"]: g["preferredVersion"]["groupVersion"] for g in discovery.api_group_list()["groups"]}
    assert groups["apps"] == "apps/v1" and "" not in groups
    resources = discovery.api_resource_list("", "v1")
    assert resources is not None
    by_name = {r["name"]: r for r in resources["resources"]}
    assert by_name["pods/exec"]["kind"] == "PodExecOptions" and by_name["namespaces"]["namespaced"] is False
    assert discovery.api_resource_list("apps", "v2") is None and discovery.api_group("nope") is None


def test_openapi_v3_root_and_documents_carry_the_field_validation_parameter() -> None:
    root = discovery.openapi_root()["paths"]
    assert set(root) == {"api/v1", "apis/apps/v1", "apis/discovery.k8s.io/v1", "apis/policy/v1",
                         "apis/networking.k8s.io/v1", "apis/storage.k8s.io/v1", "apis/authorization.k8s.io/v1"}
    assert root["api/v1"]["serverRelativeURL"].startswith("/openapi/v3/api/v1?hash=")
    document = discovery.openapi_lookup("apis/apps/v1")
    assert document is not None
    patch = document["paths"]["/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {"group": "apps", "version": "v1", "kind": "StatefulSet"}
    assert "fieldValidation" in {p["name"] for p in patch["parameters"]}
    assert "/api/v1/namespaces/{name}" in discovery.openapi_lookup("api/v1")["paths"]  # type: ignore[index]
    assert discovery.openapi_lookup("apis/apps") is None


LABELLED = {"metadata": {"name": "a", "namespace": "n", "labels": {"app": "nats", "tier": "x"}},
            "status": {"phase": "Running"}, "spec": {"nodeName": "sandbox-node"}}


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("", True), ("app=nats", True), ("app==nats", True), ("app!=nats", False), ("app=other", False),
        ("app in (nats, other)", True), ("app notin (nats)", False), ("tier", True), ("!tier", False),
        ("missing", False), ("!missing", True), ("app=nats,tier in (x,y)", True), ("app=nats,tier=y", False),
    ],
)
def test_label_selector(text: str, matches: bool) -> None:
    assert label_selector(text)(LABELLED) is matches


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("metadata.name=a", True), ("metadata.name!=a", False), ("metadata.namespace=n", True),
        ("status.phase=Running", True), ("status.phase!=Running", False), ("spec.nodeName=sandbox-node", True),
        ("metadata.name=a,status.phase=Pending", False),
    ],
)
def test_field_selector(text: str, matches: bool) -> None:
    assert field_selector(text)(LABELLED) is matches


@pytest.mark.parametrize(("text", "match"), [("foo.bar=x", "field label not supported: foo.bar"),
                                             ("metadata.name", "can't understand")])
def test_field_selector_refuses(text: str, match: str) -> None:
    with pytest.raises(BadRequest, match=match):
        field_selector(text)


def test_bad_label_selector() -> None:
    with pytest.raises(BadRequest, match="unable to parse requirement"):
        label_selector("a b c")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5, "5s"), (119, "119s"), (125, "2m5s"), (600, "10m"), (3 * 3600, "3h"), (50 * 3600, "2d2h"),
     (9 * 86400, "9d")],
)
def test_short_duration(seconds: float, text: str) -> None:
    assert tables.short_duration(seconds) == text


def test_pod_table_rows() -> None:
    pod = {"metadata": {"name": "nats-0", "namespace": "n", "creationTimestamp": "2026-01-01T00:00:00Z"},
           "spec": {"containers": [{"name": "nats"}, {"name": "reloader"}], "nodeName": "sandbox-node"},
           "status": {"phase": "Running", "podIP": "198.18.0.10", "containerStatuses": [
               {"name": "nats", "ready": True, "restartCount": 2, "state": {"running": {}}},
               {"name": "reloader", "ready": False, "restartCount": 0,
                "state": {"waiting": {"reason": "ImageNotEmulated"}}}]}}
    table = tables.table("Pod", [pod], "7", now=1767225600 + 65)
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Ready", "Status", "Restarts", "Age", "IP",
                                                               "Node"]
    assert table["rows"][0]["cells"] == ["nats-0", "1/2", "ImageNotEmulated", 2, "65s", "198.18.0.10",
                                         "sandbox-node"]
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    assert table["metadata"]["resourceVersion"] == "7"
    assert "object" not in tables.table("Pod", [pod], "7", include="None")["rows"][0]


def test_every_served_kind_has_table_columns() -> None:
    for kind in BY_KIND:
        assert tables.table(kind, [{"metadata": {"name": "x"}}], "1")["rows"][0]["cells"][0] is not None


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b'{"a": 1}', "application/json", {"a": 1}),
        (b"a: 1\n", "application/yaml", {"a": 1}),
        (b'{"a": 1}', "application/apply-patch+yaml", {"a": 1}),
        (b"[]", "application/json-patch+json; charset=utf-8", []),
    ],
)
def test_decode(body: bytes, content_type: str, expected: Any) -> None:
    assert bodies.decode(body, content_type) == expected


def test_decode_refuses_unknown_media_types_with_415() -> None:
    with pytest.raises(bodies.UnsupportedMediaType) as raised:
        bodies.decode(b"x", "application/xml")
    assert raised.value.code == 415


def test_decode_bad_json_is_400() -> None:
    with pytest.raises(BadRequest, match="unknown format"):
        bodies.decode(b"{", "application/json")


def test_check_type() -> None:
    pods = BY_KIND["Pod"]
    bodies.check_type({"apiVersion": "v1", "kind": "Pod"}, pods)
    bodies.check_type({}, pods)
    with pytest.raises(BadRequest, match=r"the API version in the data \(apps/v1\) does not match"):
        bodies.check_type({"apiVersion": "apps/v1", "kind": "Pod"}, pods)
    with pytest.raises(BadRequest, match=r"the kind in the data \(Service\) does not match"):
        bodies.check_type({"apiVersion": "v1", "kind": "Service"}, pods)


def test_field_validation_modes() -> None:
    def obj() -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "bogus": 1}, "data": {},
                "spec": {}}

    strict = r'strict decoding error: unknown field "metadata\.bogus", unknown field "spec"'
    with pytest.raises(BadRequest, match=strict):
        bodies.validate_fields(obj(), "ConfigMap", "Strict")
    warned = obj()
    assert bodies.validate_fields(warned, "ConfigMap", "Warn") == ['unknown field "metadata.bogus"',
                                                                    'unknown field "spec"']
    assert "spec" not in warned and "bogus" not in warned["metadata"]
    assert bodies.validate_fields(obj(), "ConfigMap", "Ignore") == []
    assert bodies.validate_fields({"kind": "Pod", "spec": {}, "status": {}}, "Pod", "Strict") == []


def test_drop_nulls() -> None:
    assert bodies.drop_nulls({"a": None, "b": {"c": None, "d": 1}, "e": [{"f": None}]}) == {"b": {"d": 1},
                                                                                            "e": [{}]}
