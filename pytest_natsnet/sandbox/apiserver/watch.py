"""Watch streams: newline-delimited JSON events, as the API server writes them.

- plain watch from a resourceVersion (history, then live events; an ERROR event with a 410 Status when the
  version is older than the history); without one (or "0"), ADDED events for the current objects first;
- watch-list (``sendInitialEvents=true``): ADDED events for the current objects, then a BOOKMARK annotated
  ``k8s.io/initial-events-end``, then live events (``kubectl wait`` and helm's waits need it);
- ``allowWatchBookmarks``: a BOOKMARK every minute; ``timeoutSeconds``: the stream ends then;
- selectors are applied to old and new states, so an object leaving the selection is DELETED for the watcher
  and one entering it is ADDED.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from pytest_natsnet.kinds import Resource
from pytest_natsnet.sandbox.apiserver.responses import status
from pytest_natsnet.sandbox.apiserver.selectors import Matcher
from pytest_natsnet.sandbox.store import ADDED, DELETED, MODIFIED, Event, Gone, Store

INITIAL_EVENTS_END = "k8s.io/initial-events-end"
BOOKMARK_EVERY = 60.0
DEFAULT_TIMEOUT = 1800.0
IDLE_TICK = 1.0

Encode = Callable[[Mapping[str, Any]], bytes]


def event_line(event_type: str, obj: bytes) -> bytes:
    return b'{"type":"' + event_type.encode() + b'","object":' + obj + b"}\n"


def bookmark(resource: Resource, rv: int, initial_events_end: bool = False) -> bytes:
    meta: dict[str, Any] = {"resourceVersion": str(rv)}
    if initial_events_end:
        meta["annotations"] = {INITIAL_EVENTS_END: "true"}
    obj = {"kind": resource.kind, "apiVersion": resource.api_version, "metadata": meta}
    return event_line("BOOKMARK", json.dumps(obj, separators=(",", ":")).encode())


def seen_as(event: Event, matches: Matcher) -> str | None:
    """The event type a selector-filtered watcher sees (None: nothing)."""
    now = event.type != DELETED and matches(event.obj)
    before = event.old is not None and matches(event.old)
    if event.type == DELETED:
        return DELETED if before else None
    if now and before:
        return MODIFIED
    if now:
        return ADDED
    return DELETED if before else None


def watch_stream(
    store: Store,
    resource: Resource,
    namespace: str | None,
    matches: Matcher,
    query: Mapping[str, str],
    encode: Encode,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[bytes | None]:
    """The chunks of one watch response (``None``: nothing to send for a while)."""
    send_initial = query.get("sendInitialEvents", "").lower() == "true"
    bookmarks = query.get("allowWatchBookmarks", "").lower() == "true"
    since = query.get("resourceVersion", "")
    timeout = float(query.get("timeoutSeconds") or DEFAULT_TIMEOUT)
    if send_initial or since in ("", "0"):
        items, rv, watch = store.list_and_watch(resource.kind, namespace)
        initial = [item for item in items if matches(item)]
    else:
        try:
            rv = int(since)
        except ValueError:
            gone = status(400, "BadRequest", f"invalid resourceVersion {since!r}")
            yield event_line("ERROR", json.dumps(gone).encode())
            return
        try:
            watch = store.watch(resource.kind, namespace, rv)
        except Gone as error:
            expired = status(410, "Expired", str(error))
            yield event_line("ERROR", json.dumps(expired).encode())
            return
        initial = []
    try:
        for item in initial:
            yield event_line(ADDED, encode(item))
        if send_initial:
            yield bookmark(resource, rv, initial_events_end=True)
        deadline = clock() + timeout
        next_bookmark = clock() + BOOKMARK_EVERY
        while not watch.ended:
            left = deadline - clock()
            if left <= 0:
                return
            event = watch.get(timeout=min(IDLE_TICK, left))
            if event is None:
                if bookmarks and clock() >= next_bookmark:
                    next_bookmark = clock() + BOOKMARK_EVERY
                    yield bookmark(resource, rv)
                else:
                    yield None
                continue
            rv = event.rv
            seen = seen_as(event, matches)
            if seen is not None:
                yield event_line(seen, encode(event.obj))
    finally:
        watch.close()
