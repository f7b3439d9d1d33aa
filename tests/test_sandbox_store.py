"""The sandbox object store: resourceVersion, uid/creationTimestamp/generation rules, watch fan-out, history
and 410 Gone, no-op updates, admission."""

from __future__ import annotations

import threading

import pytest

from pytest_natsnet.sandbox.store import (
    ADDED,
    DELETED,
    MODIFIED,
    AlreadyExists,
    Conflict,
    Gone,
    Invalid,
    NotFound,
    Obj,
    Store,
    key_of,
)


def cm(name: str, namespace: str = "ns", **data: str) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
            "data": dict(data)}


def sts(name: str, replicas: int = 1, namespace: str = "ns") -> Obj:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas}}


def test_create_sets_uid_timestamp_and_a_growing_resource_version() -> None:
    store = Store()
    first = store.create(cm("a"))
    second = store.create(cm("b"))
    assert int(second["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    assert store.resource_version == int(second["metadata"]["resourceVersion"])
    assert len(first["metadata"]["uid"]) == 36 and first["metadata"]["creationTimestamp"].endswith("Z")
    assert "generation" not in first["metadata"]  # ConfigMaps have none


def test_create_ignores_client_system_fields_and_refuses_duplicates() -> None:
    store = Store()
    obj = cm("a")
    obj["metadata"].update({"uid": "mine", "resourceVersion": "99", "deletionTimestamp": "x"})
    made = store.create(obj)
    assert made["metadata"]["uid"] != "mine" and "deletionTimestamp" not in made["metadata"]
    assert made["metadata"]["resourceVersion"] == "1"
    with pytest.raises(AlreadyExists, match='configmaps "a" already exists'):
        store.create(cm("a"))


def test_generate_name_and_missing_name() -> None:
    store = Store()
    made = store.create({"kind": "ConfigMap", "metadata": {"generateName": "x-", "namespace": "n"}})
    assert made["metadata"]["name"].startswith("x-") and len(made["metadata"]["name"]) == 7
    with pytest.raises(Invalid, match="name or generateName is required"):
        store.create({"kind": "ConfigMap", "metadata": {"namespace": "n"}})


def test_namespaced_objects_default_to_default_and_cluster_objects_have_no_namespace() -> None:
    store = Store()
    assert key_of(store.create({"kind": "ConfigMap", "metadata": {"name": "a"}})) == ("ConfigMap", "default", "a")
    ns = store.create({"kind": "Namespace", "metadata": {"name": "n", "namespace": "ignored"}})
    assert key_of(ns) == ("Namespace", "", "n")


@pytest.mark.parametrize(
    ("change", "generation"),
    [
        pytest.param(lambda o: o["spec"].update(replicas=3), 2, id="spec-bumps"),
        pytest.param(lambda o: o["metadata"].setdefault("labels", {}).update(a="b"), 1, id="labels-do-not"),
        pytest.param(lambda o: o.update(status={"replicas": 1}), 1, id="status-does-not"),
    ],
)
def test_generation_bumps_only_when_spec_changes(change: object, generation: int) -> None:
    store = Store()
    made = store.create(sts("s"))
    assert made["metadata"]["generation"] == 1
    updated = dict(made, metadata=dict(made["metadata"]), spec=dict(made["spec"]))
    change(updated)  # type: ignore[operator]
    assert store.update(updated)["metadata"]["generation"] == generation


def test_update_keeps_identity_and_checks_the_resource_version() -> None:
    store = Store()
    made = store.create(cm("a", x="1"))
    stale = dict(made, data={"x": "2"})
    stale["metadata"] = dict(made["metadata"], uid="other", creationTimestamp="1970-01-01T00:00:00Z")
    updated = store.update(stale, expected_rv=made["metadata"]["resourceVersion"])
    assert updated["metadata"]["uid"] == made["metadata"]["uid"]
    assert updated["metadata"]["creationTimestamp"] == made["metadata"]["creationTimestamp"]
    with pytest.raises(Conflict, match="the object has been modified"):
        store.update(dict(updated, data={"x": "3"}), expected_rv=made["metadata"]["resourceVersion"])
    with pytest.raises(NotFound, match='configmaps "zzz" not found'):
        store.update(cm("zzz"))


def test_a_no_op_update_commits_nothing() -> None:
    store = Store()
    made = store.create(cm("a", x="1"))
    watch = store.watch("ConfigMap", None, store.resource_version)
    assert store.update(cm("a", x="1")) is made
    assert store.mutate(key_of(made), lambda o: None) is made
    assert store.resource_version == 1
    assert watch.get(timeout=0.05) is None


def test_stored_objects_are_not_shared_with_the_writer() -> None:
    store = Store()
    mine = cm("a", x="1")
    store.create(mine)
    mine["data"]["x"] = "changed"
    assert store.get(("ConfigMap", "ns", "a"))["data"] == {"x": "1"}  # type: ignore[index]
    before = store.get(("ConfigMap", "ns", "a"))
    store.mutate(("ConfigMap", "ns", "a"), lambda o: o["data"].update(x="2"))
    assert before["data"] == {"x": "1"}  # type: ignore[index]  # the old version was not mutated


def test_watch_sees_added_modified_deleted_in_order_with_their_versions() -> None:
    store = Store()
    watch = store.watch("ConfigMap", "ns", store.resource_version)
    store.create(cm("a"))
    store.create(cm("other", namespace="elsewhere"))
    store.mutate(("ConfigMap", "ns", "a"), lambda o: o["data"].update(x="1"))
    last = store.delete(("ConfigMap", "ns", "a"))
    events = [watch.get(timeout=1) for _ in range(3)]
    assert [(e.type, e.key[2]) for e in events if e] == [(ADDED, "a"), (MODIFIED, "a"), (DELETED, "a")]
    assert [e.rv for e in events if e] == [1, 3, 4]
    assert last["metadata"]["resourceVersion"] == "4" and last["data"] == {"x": "1"}
    assert watch.get(timeout=0.05) is None
    with pytest.raises(NotFound):
        store.delete(("ConfigMap", "ns", "a"))


def test_watch_from_an_older_version_replays_the_history_then_goes_live() -> None:
    store = Store()
    store.create(cm("a"))
    store.create(cm("b"))
    watch = store.watch("ConfigMap", None, 1)
    store.create(cm("c"))
    names = [e.key[2] for e in (watch.get(timeout=1), watch.get(timeout=1)) if e]
    assert names == ["b", "c"]


def test_watch_older_than_the_history_is_gone() -> None:
    store = Store(history=3)
    for i in range(6):
        store.create(cm(f"o{i}"))
    with pytest.raises(Gone, match="too old resource version: 1"):
        store.watch("ConfigMap", None, 1)
    watch = store.watch("ConfigMap", None, 3)
    assert [e.key[2] for e in (watch.get(timeout=1), watch.get(timeout=1), watch.get(timeout=1)) if e] == [
        "o3", "o4", "o5"]


def test_list_and_watch_is_atomic() -> None:
    store = Store()
    store.create(cm("a"))
    items, rv, watch = store.list_and_watch("ConfigMap", "ns")
    store.create(cm("b"))
    assert [i["metadata"]["name"] for i in items] == ["a"] and rv == 1
    event = watch.get(timeout=1)
    assert event is not None and event.key[2] == "b" and event.rv == 2


def test_closing_a_watch_wakes_its_reader() -> None:
    store = Store()
    watch = store.watch("Pod", None, 0)
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.append(watch.get(timeout=5)))
    reader.start()
    watch.close()
    reader.join(timeout=2)
    assert got == [None] and not reader.is_alive()


def test_admission_runs_on_create_and_update_and_can_refuse() -> None:
    seen: list[tuple[str, bool]] = []

    def admit(obj: Obj, old: Obj | None) -> None:
        seen.append((obj["metadata"]["name"], old is None))
        if obj["metadata"]["name"] == "bad":
            raise Invalid("bad name")
        obj.setdefault("data", {})["defaulted"] = "yes"

    store = Store(admit=admit)
    assert store.create(cm("a"))["data"]["defaulted"] == "yes"
    store.update(cm("a", x="1"))
    with pytest.raises(Invalid):
        store.create(cm("bad"))
    assert seen == [("a", True), ("a", False), ("bad", True)]
    assert store.get(("ConfigMap", "ns", "bad")) is None and store.resource_version == 2


def test_encoded_json_is_cached_per_version() -> None:
    store = Store()
    made = store.create(cm("a", x="1"))
    first = store.encoded(made)
    assert first == store.encoded(made) and b'"x":"1"' in first
    changed = store.mutate(key_of(made), lambda o: o["data"].update(x="2"))
    assert changed is not None and b'"x":"2"' in store.encoded(changed)


def test_on_change_sees_every_commit() -> None:
    events: list[str] = []
    store = Store(on_change=lambda e: events.append(e.type))
    store.create(cm("a"))
    store.update(cm("a", y="1"))
    store.delete(("ConfigMap", "ns", "a"))
    assert events == [ADDED, MODIFIED, DELETED]


def test_rules_are_compiled_once_per_choice_of_objects() -> None:
    from pytest_natsnet.sandbox.cluster import _once_per_choice

    calls: list[list[str]] = []

    def compile_rules(chosen: list[dict[str, object]]) -> str:
        calls.append([o["metadata"]["name"] for o in chosen])  # type: ignore[index]
        return ",".join(calls[-1])

    a = {"kind": "Service", "metadata": {"name": "a", "namespace": "x"}}
    b = {"kind": "Service", "metadata": {"name": "b", "namespace": "x"}}
    compiled = _once_per_choice(compile_rules)
    assert [compiled([a, b]), compiled([a]), compiled([a, b]), compiled([dict(a)])] == ["a,b", "a", "a,b", "a"]
    assert calls == [["a", "b"], ["a"]]


def test_kind_version_moves_with_every_change_to_an_object_of_that_kind_only() -> None:
    store = Store()
    assert store.kind_version("StatefulSet") == 0
    created = store.create(sts("a"))
    first = store.kind_version("StatefulSet")
    assert first == int(created["metadata"]["resourceVersion"])
    store.create(cm("other"))
    assert store.kind_version("StatefulSet") == first, "another kind's change leaves it"
    store.put(sts("a"))
    assert store.kind_version("StatefulSet") == first, "an update that changes nothing leaves it"
    store.put(sts("a", replicas=3))
    changed = store.kind_version("StatefulSet")
    assert changed > first
    store.delete(key_of(created))
    assert store.kind_version("StatefulSet") > changed
