"""The sandbox's object store: what the API server serves and every controller writes through.

One monotonically increasing resourceVersion for the whole store (as etcd's revision). Every change is an
event (ADDED, MODIFIED, DELETED) fanned out to the watches of its kind, and kept in a bounded history so that
a watch can start from an older resourceVersion; one older than the history answers 410 Gone.

Stored objects are never mutated after they are committed: writers hand in a new dict (``create``,
``update``, ``put``) or change a private copy (``mutate``). Readers may therefore share them without copying,
and their JSON encoding is cached per resourceVersion.
"""

from __future__ import annotations

import builtins
import collections
import copy
import json
import queue
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pytest_natsnet.kinds import BY_KIND, is_namespaced

Obj = dict[str, Any]
Key = tuple[str, str, str]
"""(kind, namespace, name); the namespace is "" for cluster-scoped kinds."""

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"
HISTORY = 8192
WATCH_QUEUE_LIMIT = 20000
GENERATION_KINDS = frozenset(
    {"Pod", "StatefulSet", "Deployment", "ReplicaSet", "PodDisruptionBudget", "NetworkPolicy"}
)
"""Kinds whose ``metadata.generation`` the API server maintains (bumped when ``spec`` changes)."""


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class StoreError(Exception):
    """An API-visible failure: ``code`` and ``reason`` as in a Kubernetes Status."""

    code = 500
    reason = "InternalError"

    def __init__(self, message: str, *, kind: str = "", name: str = "",
                 causes: Iterable[dict[str, str]] = ()) -> None:
        super().__init__(message)
        self.kind = kind
        self.name = name
        self.causes = list(causes)


class NotFound(StoreError):
    code, reason = 404, "NotFound"


class AlreadyExists(StoreError):
    code, reason = 409, "AlreadyExists"


class Conflict(StoreError):
    code, reason = 409, "Conflict"


class Gone(StoreError):
    code, reason = 410, "Expired"


class Invalid(StoreError):
    code, reason = 422, "Invalid"


class Forbidden(StoreError):
    code, reason = 403, "Forbidden"


class BadRequest(StoreError):
    code, reason = 400, "BadRequest"


def key_of(obj: Obj) -> Key:
    meta = obj.get("metadata") or {}
    kind = str(obj.get("kind", ""))
    namespace = str(meta.get("namespace") or "") if is_namespaced(kind) else ""
    return kind, namespace, str(meta.get("name") or "")


def resource_version(obj: Obj) -> int:
    return int((obj.get("metadata") or {}).get("resourceVersion") or 0)


def _without_rv(obj: Obj) -> Obj:
    meta = dict(obj.get("metadata") or {})
    meta.pop("resourceVersion", None)
    return {**obj, "metadata": meta}


@dataclass(frozen=True, eq=False)
class Event:
    """One change. ``obj`` is the object after it (for DELETED: the last state, with the deletion's RV)."""

    type: str
    rv: int
    key: Key
    obj: Obj
    old: Obj | None = None


class Watch:
    """A subscription to the events of one kind (optionally one namespace), in resourceVersion order."""

    def __init__(self, store: Store, kind: str, namespace: str | None) -> None:
        self.kind = kind
        self.namespace = namespace
        self._store = store
        self._queue: queue.SimpleQueue[Event | None] = queue.SimpleQueue()
        self.overflowed = False
        self.ended = False
        """The watch was closed (by its reader, the store stopping, or overflow): no more events come."""

    def matches(self, key: Key) -> bool:
        return key[0] == self.kind and (self.namespace is None or key[1] == self.namespace)

    def put(self, event: Event | None) -> None:
        if self._queue.qsize() > WATCH_QUEUE_LIMIT:
            self.overflowed = True  # a reader that stopped reading: end its watch, it will re-list
            self._queue.put(None)
            return
        self._queue.put(event)

    def get(self, timeout: float) -> Event | None:
        """The next event, or None after ``timeout`` seconds (or once the watch was ended: see ``ended``)."""
        if self.ended:
            return None
        try:
            event = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if event is None:
            self.ended = True
        return event

    def close(self) -> None:
        self._store._unsubscribe(self)


class Store:
    """Objects by (kind, namespace, name), a resourceVersion, watches and an event history. Thread-safe.

    ``admit(obj, old)`` runs on create and update (defaulting, validation: raise :class:`Invalid`);
    ``on_change(event)`` runs after each commit, under the store's lock (keep it short).
    """

    def __init__(
        self,
        admit: Callable[[Obj, Obj | None], None] | None = None,
        on_change: Callable[[Event], None] | None = None,
        history: int = HISTORY,
    ) -> None:
        self._mu = threading.RLock()
        self._admit = admit or (lambda obj, old: None)
        self._on_change = on_change or (lambda event: None)
        self._by_kind: dict[str, dict[Key, Obj]] = collections.defaultdict(dict)
        self._rv = 0
        self._history: collections.deque[Event] = collections.deque(maxlen=history)
        self._floor = 0
        """Every event with rv > floor is in the history."""
        self._watchers: builtins.list[Watch] = []
        self._encoded: dict[Key, tuple[int, bytes]] = {}
        self._kind_rv: dict[str, int] = {}

    # -- reads -------------------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        with self._mu:
            return self._rv

    def get(self, key: Key) -> Obj | None:
        """The stored object (shared: never mutate it), or None."""
        with self._mu:
            return self._by_kind.get(key[0], {}).get(key)

    def list(self, kind: str, namespace: str | None = None) -> builtins.list[Obj]:
        """Objects of ``kind`` (in ``namespace``, or all), sorted by namespace and name; shared, read-only."""
        return self.list_at(kind, namespace)[0]

    def list_at(self, kind: str, namespace: str | None = None) -> tuple[builtins.list[Obj], int]:
        """Like :meth:`list`, with the store's resourceVersion at that moment."""
        with self._mu:
            items = self._by_kind.get(kind, {})
            keys = sorted(k for k in items if namespace is None or k[1] == namespace)
            return [items[k] for k in keys], self._rv

    def kind_version(self, kind: str) -> int:
        """The resourceVersion of the last change (create, update, delete) to an object of ``kind``; 0 if none:
        equal while no object of the kind changed, without looking at each one."""
        with self._mu:
            return self._kind_rv.get(kind, 0)

    def kinds(self) -> builtins.list[str]:
        with self._mu:
            return sorted(k for k, v in self._by_kind.items() if v)

    def encoded(self, obj: Obj) -> bytes:
        """The compact JSON of a stored object, computed once per resourceVersion."""
        key, rv = key_of(obj), resource_version(obj)
        cached = self._encoded.get(key)
        if cached is not None and cached[0] == rv:
            return cached[1]
        data = json.dumps(obj, separators=(",", ":")).encode()
        self._encoded[key] = (rv, data)
        return data

    # -- writes ------------------------------------------------------------------------------------

    def create(self, obj: Obj) -> Obj:
        """Stores a new object (uid, creationTimestamp, generation 1, resourceVersion); AlreadyExists."""
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{secrets.token_hex(3)[:5]}"
        key = key_of(obj)
        if not key[2]:
            raise Invalid(f"{key[0]}: metadata.name: Required value: name or generateName is required",
                          kind=key[0])
        if is_namespaced(key[0]):
            meta["namespace"] = key[1] or "default"
            key = key_of(obj)
        with self._mu:
            if self.get(key) is not None:
                raise AlreadyExists(f'{key[0].lower()}s "{key[2]}" already exists', kind=key[0], name=key[2])
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_iso()
            for field in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
                meta.pop(field, None)
            if self._has_generation(obj):
                meta["generation"] = 1
            else:
                meta.pop("generation", None)
            self._admit(obj, None)
            return self._commit(ADDED, key, obj, None)

    def update(self, obj: Obj, expected_rv: str | None = None) -> Obj:
        """Replaces an object; NotFound, or Conflict when ``expected_rv`` is not the current one.

        uid, creationTimestamp and the deletion fields stay the old object's; generation is bumped when the
        spec changed. An update that changes nothing commits nothing (no new resourceVersion, no event).
        """
        obj = copy.deepcopy(obj)
        key = key_of(obj)
        with self._mu:
            old = self.get(key)
            if old is None:
                raise NotFound(f'{key[0].lower()}s "{key[2]}" not found', kind=key[0], name=key[2])
            if expected_rv and expected_rv != old["metadata"].get("resourceVersion"):
                raise Conflict(
                    f'Operation cannot be fulfilled on {key[0].lower()}s "{key[2]}": the object has been '
                    "modified; please apply your changes to the latest version and try again",
                    kind=key[0], name=key[2])
            self._keep_system_fields(obj, old)
            self._admit(obj, old)
            return self._commit_if_changed(key, obj, old)

    def put(self, obj: Obj) -> Obj:
        """Create or update (the in-process ``apply``)."""
        with self._mu:
            if self.get(key_of(obj)) is None:
                return self.create(obj)
            return self.update(obj)

    def mutate(self, key: Key, change: Callable[[Obj], None]) -> Obj | None:
        """Applies ``change`` to a copy of the stored object and commits it when it differs; None if absent.

        For controllers and the kubelet: no admission, the same system-field rules as :meth:`update`.
        """
        with self._mu:
            old = self.get(key)
            if old is None:
                return None
            obj = copy.deepcopy(old)
            change(obj)
            self._keep_system_fields(obj, old, keep_deletion=False)
            return self._commit_if_changed(key, obj, old)

    def delete(self, key: Key) -> Obj:
        """Removes an object now; NotFound. Returns its last state (with the deletion's resourceVersion)."""
        with self._mu:
            old = self.get(key)
            if old is None:
                raise NotFound(f'{key[0].lower()}s "{key[2]}" not found', kind=key[0], name=key[2])
            last = {**old, "metadata": dict(old["metadata"])}
            return self._commit(DELETED, key, last, old)

    # -- watches -----------------------------------------------------------------------------------

    def watch(self, kind: str, namespace: str | None, since: int) -> Watch:
        """Events after resourceVersion ``since`` (from the history, then live); Gone when too old."""
        with self._mu:
            if since < self._floor:
                raise Gone(f"too old resource version: {since} ({self._floor + 1})")
            watch = Watch(self, kind, namespace)
            for event in self._history:
                if event.rv > since and watch.matches(event.key):
                    watch.put(event)
            self._watchers.append(watch)
            return watch

    def list_and_watch(self, kind: str, namespace: str | None) -> tuple[builtins.list[Obj], int, Watch]:
        """The current objects, the resourceVersion they are at, and a watch of everything after it."""
        with self._mu:
            items, rv = self.list_at(kind, namespace)
            return items, rv, self.watch(kind, namespace, rv)

    def _unsubscribe(self, watch: Watch) -> None:
        with self._mu:
            if watch in self._watchers:
                self._watchers.remove(watch)
        watch._queue.put(None)

    def close_watches(self) -> None:
        """Ends every watch (the server is stopping)."""
        with self._mu:
            watchers, self._watchers = self._watchers, []
        for watch in watchers:
            watch._queue.put(None)

    # -- internals ---------------------------------------------------------------------------------

    @staticmethod
    def _has_generation(obj: Obj) -> bool:
        kind = str(obj.get("kind", ""))
        return kind in GENERATION_KINDS or (kind not in BY_KIND and "spec" in obj)

    def _keep_system_fields(self, obj: Obj, old: Obj, keep_deletion: bool = True) -> None:
        meta = obj.setdefault("metadata", {})
        old_meta = old["metadata"]
        for field in ("uid", "creationTimestamp", "namespace", "name"):
            if field in old_meta:
                meta[field] = old_meta[field]
        if keep_deletion:
            for field in ("deletionTimestamp", "deletionGracePeriodSeconds"):
                if field in old_meta:
                    meta[field] = old_meta[field]
                else:
                    meta.pop(field, None)
        if "generation" in old_meta:
            changed = obj.get("spec") != old.get("spec")
            meta["generation"] = int(old_meta["generation"]) + (1 if changed else 0)
        meta["resourceVersion"] = old_meta.get("resourceVersion")

    def _commit_if_changed(self, key: Key, obj: Obj, old: Obj) -> Obj:
        if _without_rv(obj) == _without_rv(old):
            return old
        return self._commit(MODIFIED, key, obj, old)

    def _commit(self, event_type: str, key: Key, obj: Obj, old: Obj | None) -> Obj:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        self._kind_rv[key[0]] = self._rv
        bucket = self._by_kind[key[0]]
        if event_type == DELETED:
            bucket.pop(key, None)
            self._encoded.pop(key, None)
        else:
            bucket[key] = obj
        event = Event(event_type, self._rv, key, obj, old)
        if len(self._history) == self._history.maxlen:
            self._floor = self._history[0].rv
        self._history.append(event)
        for watch in self._watchers:
            if watch.matches(key):
                watch.put(event)
        self._on_change(event)
        return obj
