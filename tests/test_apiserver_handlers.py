"""The API server's request handling over an object store, without HTTP or network namespaces: verbs, status
subresource rules, server-side apply, Status errors (400/404/405/409/415/422), and watch streams (watch-list
bookmark, resourceVersion, 410, selector transitions, timeout)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from pytest_natsnet.kinds import BY_KIND
from pytest_natsnet.sandbox.admission import Admission
from pytest_natsnet.sandbox.apiserver.handlers import Api
from pytest_natsnet.sandbox.apiserver.responses import Request, Response, Stream
from pytest_natsnet.sandbox.apiserver.selectors import label_selector
from pytest_natsnet.sandbox.apiserver.watch import INITIAL_EVENTS_END, watch_stream
from pytest_natsnet.sandbox.controllers import refresh_pod_conditions
from pytest_natsnet.sandbox.store import Forbidden, NotFound, Store, now_iso


class StoreCluster:
    """The cluster side of the API with no kubelet: objects only (pods never run)."""

    def __init__(self, log_dir: Path) -> None:
        addresses = iter(range(11, 250))
        self.store = Store(admit=Admission(lambda: f"198.18.128.{next(addresses)}"))
        self.log_dir = log_dir
        for ns in ("default", "ns"):
            self.store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

    def namespace_accepts(self, namespace: str) -> None:
        ns = self.store.get(("Namespace", "", namespace))
        if ns is None:
            raise NotFound(f'namespaces "{namespace}" not found', kind="Namespace", name=namespace)
        if ns["metadata"].get("deletionTimestamp"):
            raise Forbidden(f"unable to create new content in namespace {namespace} because it is being terminated")

    def delete(self, wanted_kind: str, obj_name: str, namespace: str, grace: float | None = None,
               propagation: str = "Background") -> dict[str, Any]:
        self.deleted_with = (grace, propagation)
        key = (wanted_kind, "" if wanted_kind == "Namespace" else namespace, obj_name)
        return self.store.delete(key)

    def refresh_pod_conditions(self, namespace: str, pod_name: str) -> None:
        self.store.mutate(("Pod", namespace, pod_name), lambda pod: refresh_pod_conditions(pod, now_iso()))

    def log_path(self, namespace: str, pod_name: str, container: str) -> Path:
        return self.log_dir / f"{pod_name}-{container}.log"

    running = True

    def container_running(self, namespace: str, pod_name: str, container: str) -> bool:
        return self.running

    def exec_argv(self, namespace: str, pod_name: str, container: str, command: Sequence[str]) -> list[str]:
        raise KeyError("not running")


@pytest.fixture
def api(tmp_path: Path) -> Api:
    return Api(StoreCluster(tmp_path), "127.0.0.1:6443")


def call(api: Api, method: str, path: str, body: Any = None, content_type: str = "application/json",
         query: Mapping[str, str] | None = None, accept: str = "application/json") -> tuple[int, Any]:
    raw = body if isinstance(body, bytes) else (b"" if body is None else json.dumps(body).encode())
    answer = api.handle(Request(method, path, dict(query or {}), {"content-type": content_type, "accept": accept},
                                raw))
    assert isinstance(answer, Response), answer
    try:
        return answer.code, json.loads(answer.body)
    except ValueError:
        return answer.code, answer.body.decode()


POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"app": "x"}},
       "spec": {"containers": [{"name": "c", "image": "nats:2"}]}}
CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}}


def test_create_get_list(api: Api) -> None:
    code, made = call(api, "POST", "/api/v1/namespaces/ns/configmaps", CM)
    assert code == 201 and made["metadata"]["namespace"] == "ns" and made["metadata"]["resourceVersion"]
    assert call(api, "GET", "/api/v1/namespaces/ns/configmaps/c")[1]["data"] == {"a": "1"}
    code, listed = call(api, "GET", "/api/v1/configmaps")
    assert code == 200 and listed["kind"] == "ConfigMapList"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["c"]
    assert int(listed["metadata"]["resourceVersion"]) >= int(made["metadata"]["resourceVersion"])


def test_list_with_selectors_and_as_table(api: Api) -> None:
    call(api, "POST", "/api/v1/namespaces/ns/pods", POD)
    call(api, "POST", "/api/v1/namespaces/ns/pods", {**POD, "metadata": {"name": "q", "labels": {"app": "y"}}})
    _, listed = call(api, "GET", "/api/v1/namespaces/ns/pods", query={"labelSelector": "app=y"})
    assert [i["metadata"]["name"] for i in listed["items"]] == ["q"]
    _, listed = call(api, "GET", "/api/v1/pods", query={"fieldSelector": "metadata.name=p"})
    assert [i["metadata"]["name"] for i in listed["items"]] == ["p"]
    _, table = call(api, "GET", "/api/v1/pods", accept="application/json;as=Table;v=v1;g=meta.k8s.io")
    assert table["kind"] == "Table" and [r["cells"][0] for r in table["rows"]] == ["p", "q"]


def test_create_refuses_a_missing_or_terminating_namespace(api: Api) -> None:
    code, status = call(api, "POST", "/api/v1/namespaces/nope/configmaps", CM)
    assert (code, status["reason"], status["message"]) == (404, "NotFound", 'namespaces "nope" not found')
    api.store.mutate(("Namespace", "", "ns"), lambda o: o["metadata"].update(deletionTimestamp="x"))
    assert call(api, "POST", "/api/v1/namespaces/ns/configmaps", CM)[0] == 403


@pytest.mark.parametrize(
    ("method", "path", "body", "content_type", "code", "reason"),
    [
        ("GET", "/api/v1/namespaces/ns/pods/nope", None, "application/json", 404, "NotFound"),
        ("GET", "/api/v1/frobs", None, "application/json", 404, "NotFound"),
        ("GET", "/nothing/here", None, "application/json", 404, "NotFound"),
        ("POST", "/version", None, "application/json", 405, "MethodNotAllowed"),
        ("POST", "/api/v1/nodes", {"kind": "Node", "metadata": {"name": "n"}}, "application/json", 405,
         "MethodNotAllowed"),
        ("PUT", "/apis/apps/v1/namespaces/ns/replicasets/r", {}, "application/json", 405, "MethodNotAllowed"),
        ("POST", "/api/v1/namespaces/ns/configmaps", b"<xml/>", "application/xml", 415, "UnsupportedMediaType"),
        ("POST", "/api/v1/namespaces/ns/configmaps", {**CM, "kind": "Secret"}, "application/json", 400,
         "BadRequest"),
        ("POST", "/api/v1/namespaces/ns/configmaps", {**CM, "metadata": {"name": "Bad_Name"}}, "application/json",
         422, "Invalid"),
        ("POST", "/api/v1/namespaces/ns/configmaps", {**CM, "metadata": {"namespace": "other", "name": "c"}},
         "application/json", 400, "BadRequest"),
        ("PATCH", "/api/v1/namespaces/ns/configmaps/c", {"a": 1}, "application/xml", 415, "UnsupportedMediaType"),
        ("POST", "/api/v1/pods", POD, "application/json", 404, "NotFound"),
    ],
)
def test_errors_are_status_objects(api: Api, method: str, path: str, body: Any, content_type: str, code: int,
                                   reason: str) -> None:
    got, status = call(api, method, path, body, content_type)
    assert got == code
    assert status["kind"] == "Status" and status["status"] == "Failure" and status["code"] == code
    assert status["reason"] == reason and status["message"]


def test_invalid_names_are_422_with_details(api: Api) -> None:
    _, status = call(api, "POST", "/api/v1/namespaces/ns/configmaps", {**CM, "metadata": {"name": "UPPER"}})
    assert status["details"]["causes"][0]["field"] == "metadata.name"


def test_strict_field_validation_refuses_unknown_fields(api: Api) -> None:
    code, status = call(api, "POST", "/api/v1/namespaces/ns/configmaps", {**CM, "spec": {}},
                        query={"fieldValidation": "Strict"})
    assert (code, status["message"]) == (400, 'strict decoding error: unknown field "spec"')
    answer = api.handle(Request("POST", "/api/v1/namespaces/ns/configmaps", {"fieldValidation": "Warn"},
                                {"content-type": "application/json"}, json.dumps({**CM, "spec": {}}).encode()))
    assert isinstance(answer, Response) and answer.code == 201
    assert answer.headers == [("Warning", '299 - "unknown field \\"spec\\""')]
    assert "spec" not in json.loads(answer.body)


def test_update_with_a_stale_resource_version_conflicts(api: Api) -> None:
    _, made = call(api, "POST", "/api/v1/namespaces/ns/configmaps", CM)
    code, updated = call(api, "PUT", "/api/v1/namespaces/ns/configmaps/c", {**made, "data": {"a": "2"}})
    assert code == 200 and updated["data"] == {"a": "2"}
    code, status = call(api, "PUT", "/api/v1/namespaces/ns/configmaps/c", {**made, "data": {"a": "3"}})
    assert (code, status["reason"]) == (409, "Conflict")
    code, status = call(api, "PUT", "/api/v1/namespaces/ns/configmaps/other", {**CM, "data": {}})
    assert (code, status["reason"]) == (400, "BadRequest") and "does not match the name on the URL" in status["message"]


def test_status_subresource_and_main_resource_keep_to_their_part(api: Api) -> None:
    call(api, "POST", "/api/v1/namespaces/ns/pods", {**POD, "status": {"phase": "Running"}})
    _, pod = call(api, "GET", "/api/v1/namespaces/ns/pods/p")
    assert pod["status"]["phase"] == "Pending"  # status is not created with the object
    gate = [{"op": "add", "path": "/status/conditions/-", "value": {"type": "natsnet.io/gate", "status": "True"}}]
    code, patched = call(api, "PATCH", "/api/v1/namespaces/ns/pods/p/status", gate, "application/json-patch+json")
    assert code == 200 and {"type": "natsnet.io/gate", "status": "True"} in patched["status"]["conditions"]
    code, patched = call(api, "PATCH", "/api/v1/namespaces/ns/pods/p",
                         {"metadata": {"labels": {"b": "2"}}, "status": {"phase": "Failed"}},
                         "application/merge-patch+json")
    assert patched["metadata"]["labels"] == {"app": "x", "b": "2"} and patched["status"]["phase"] == "Pending"
    code, patched = call(api, "PATCH", "/api/v1/namespaces/ns/pods/p/status",
                         {"spec": {"nodeName": "elsewhere"}, "status": {"phase": "Running"}},
                         "application/strategic-merge-patch+json")
    assert patched["status"]["phase"] == "Running" and patched["spec"]["nodeName"] == "sandbox-node"


def test_server_side_apply_creates_then_updates_and_needs_a_field_manager(api: Api) -> None:
    applied = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "labels": {"x": "1"}},
               "data": {"k": "v"}}
    code, status = call(api, "PATCH", "/api/v1/namespaces/ns/configmaps/a", applied, "application/apply-patch+yaml")
    assert (code, status["reason"]) == (400, "BadRequest") and "fieldManager is required" in status["message"]
    query = {"fieldManager": "helm", "fieldValidation": "Strict", "force": "false"}
    code, made = call(api, "PATCH", "/api/v1/namespaces/ns/configmaps/a", applied, "application/apply-patch+yaml",
                      query)
    assert code == 201 and made["data"] == {"k": "v"} and made["metadata"]["managedFields"][0]["manager"] == "helm"
    second = {**applied, "metadata": {"name": "a"}, "data": {"k": "w", "n": None}}
    code, updated = call(api, "PATCH", "/api/v1/namespaces/ns/configmaps/a", second, "application/apply-patch+yaml",
                         query)
    assert code == 200 and updated["data"] == {"k": "w"} and "labels" not in updated["metadata"]


def test_apply_of_a_namespace_as_helm_sends_it(api: Api) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"labels": {"name": "new"}, "name": "new"},
            "spec": {}, "status": {}}
    code, made = call(api, "PATCH", "/api/v1/namespaces/new", body, "application/apply-patch+yaml",
                      {"fieldManager": "helm", "fieldValidation": "Strict"})
    assert code == 201 and made["metadata"]["labels"] == {"name": "new", "kubernetes.io/metadata.name": "new"}
    assert made["status"] == {"phase": "Active"}


def test_delete_answers_a_success_status_and_reads_options(api: Api) -> None:
    call(api, "POST", "/api/v1/namespaces/ns/configmaps", CM)
    code, status = call(api, "DELETE", "/api/v1/namespaces/ns/configmaps/c",
                        {"propagationPolicy": "Foreground", "gracePeriodSeconds": 0})
    assert code == 200 and status["status"] == "Success" and status["details"]["name"] == "c"
    assert api.cluster.deleted_with == (0.0, "Foreground")  # type: ignore[attr-defined]
    assert call(api, "GET", "/api/v1/namespaces/ns/configmaps/c")[0] == 404


def test_delete_preconditions(api: Api) -> None:
    call(api, "POST", "/api/v1/namespaces/ns/configmaps", CM)
    code, status = call(api, "DELETE", "/api/v1/namespaces/ns/configmaps/c", {"preconditions": {"uid": "other"}})
    assert (code, status["reason"]) == (409, "Conflict") and "Precondition failed: UID" in status["message"]


def test_delete_collection_by_label(api: Api) -> None:
    for name, tier in (("a", "x"), ("b", "y"), ("c", "x")):
        call(api, "POST", "/api/v1/namespaces/ns/configmaps", {**CM, "metadata": {"name": name,
                                                                                   "labels": {"tier": tier}}})
    code, deleted = call(api, "DELETE", "/api/v1/namespaces/ns/configmaps", query={"labelSelector": "tier=x"})
    assert code == 200 and sorted(i["metadata"]["name"] for i in deleted["items"]) == ["a", "c"]
    assert [i["metadata"]["name"] for i in call(api, "GET", "/api/v1/namespaces/ns/configmaps")[1]["items"]] == ["b"]


def test_self_subject_access_review_is_always_allowed(api: Api) -> None:
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
              "spec": {"resourceAttributes": {"verb": "create", "resource": "pods"}}}
    code, answered = call(api, "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review)
    assert code == 201 and answered["status"]["allowed"] is True


def test_discovery_and_version(api: Api) -> None:
    answer = api.handle(Request("GET", "/api", {}, {"accept": "application/json;g=apidiscovery.k8s.io;v=v2;"
                                                              "as=APIGroupDiscoveryList,application/json"}))
    assert isinstance(answer, Response)
    assert answer.content_type == "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    assert call(api, "GET", "/api")[1]["kind"] == "APIVersions"
    assert call(api, "GET", "/version")[1]["gitVersion"] == "v1.35.0"
    assert call(api, "GET", "/openapi/v2")[1]["swagger"] == "2.0"
    assert call(api, "GET", "/openapi/v3/apis/apps/v1")[0] == 200


def test_logs_of_a_container_that_never_started(api: Api) -> None:
    call(api, "POST", "/api/v1/namespaces/ns/pods", POD)
    code, status = call(api, "GET", "/api/v1/namespaces/ns/pods/p/log")
    assert (code, status["reason"]) == (400, "BadRequest") and "is waiting to start" in status["message"]
    code, status = call(api, "GET", "/api/v1/namespaces/ns/pods/p/log", query={"container": "nope"})
    assert code == 400 and "container nope is not valid for pod p" in status["message"]


def test_logs_previous_and_tail(api: Api, tmp_path: Path) -> None:
    call(api, "POST", "/api/v1/namespaces/ns/pods", POD)
    log = tmp_path / "p-c.log"
    log.write_bytes(b"first 1\nfirst 2\nsecond 1\nsecond 2\nsecond 3\n")
    (tmp_path / "p-c.log.starts").write_text("0\n16\n")
    assert call(api, "GET", "/api/v1/namespaces/ns/pods/p/log")[1] == "second 1\nsecond 2\nsecond 3\n"
    assert call(api, "GET", "/api/v1/namespaces/ns/pods/p/log", query={"previous": "true"})[1] == "first 1\nfirst 2\n"
    assert call(api, "GET", "/api/v1/namespaces/ns/pods/p/log", query={"tailLines": "1"})[1] == "second 3\n"
    api.cluster.running = False  # type: ignore[attr-defined]  # waiting to restart: both are the run that ended
    assert call(api, "GET", "/api/v1/namespaces/ns/pods/p/log", query={"previous": "true"})[1] == (
        "second 1\nsecond 2\nsecond 3\n")


# -- watch streams --------------------------------------------------------------------------------------


def lines(chunks: Iterator[bytes | None], count: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for chunk in chunks:
        if chunk is None:
            continue
        events += [json.loads(line) for line in chunk.decode().splitlines()]
        if len(events) >= count:
            break
    return events


def encode(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj).encode()


def cm(name: str, tier: str = "x") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns",
                                                                 "labels": {"tier": tier}}}


def test_watch_list_sends_initial_events_then_the_bookmark_then_changes() -> None:
    store = Store()
    store.create(cm("a"))
    stream = watch_stream(store, BY_KIND["ConfigMap"], "ns", label_selector(""),
                          {"sendInitialEvents": "true", "allowWatchBookmarks": "true",
                           "resourceVersionMatch": "NotOlderThan", "timeoutSeconds": "5"}, encode)
    first = lines(stream, 2)
    assert [e["type"] for e in first] == ["ADDED", "BOOKMARK"]
    assert first[1]["object"]["metadata"]["annotations"] == {INITIAL_EVENTS_END: "true"}
    assert first[1]["object"]["metadata"]["resourceVersion"] == "1"
    store.mutate(("ConfigMap", "ns", "a"), lambda o: o.update(data={"k": "v"}))
    assert [(e["type"], e["object"]["data"]) for e in lines(stream, 1)] == [("MODIFIED", {"k": "v"})]
    stream.close()


def test_watch_from_a_version_and_selector_transitions() -> None:
    store = Store()
    store.create(cm("a"))
    rv = store.resource_version
    store.create(cm("b", "y"))
    stream = watch_stream(store, BY_KIND["ConfigMap"], None, label_selector("tier=x"),
                          {"resourceVersion": str(rv), "timeoutSeconds": "5"}, encode)
    store.mutate(("ConfigMap", "ns", "b"), lambda o: o["metadata"]["labels"].update(tier="x"))
    store.mutate(("ConfigMap", "ns", "a"), lambda o: o["metadata"]["labels"].update(tier="y"))
    store.delete(("ConfigMap", "ns", "b"))
    events = lines(stream, 3)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "b"), ("DELETED", "a"), ("DELETED", "b")]
    stream.close()


def test_watch_from_a_version_older_than_the_history_is_an_error_event() -> None:
    store = Store(history=2)
    for name in "abcd":
        store.create(cm(name))
    events = list(c for c in watch_stream(store, BY_KIND["ConfigMap"], None, label_selector(""),
                                          {"resourceVersion": "1"}, encode) if c)
    error = json.loads(events[0])
    assert error["type"] == "ERROR" and error["object"]["code"] == 410 and error["object"]["reason"] == "Expired"


def test_watch_ends_at_its_timeout() -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 0.6
        return now[0]

    stream = watch_stream(Store(), BY_KIND["ConfigMap"], None, label_selector(""), {"timeoutSeconds": "2"},
                          encode, clock=clock)
    assert [c for c in stream if c] == []  # nothing happened, and the generator returned


def test_watch_over_http_answers_a_stream(api: Api) -> None:
    answer = api.handle(Request("GET", "/api/v1/namespaces/ns/pods", {"watch": "true", "timeoutSeconds": "1"}, {}))
    assert isinstance(answer, Stream) and answer.code == 200
    list(answer.chunks)
