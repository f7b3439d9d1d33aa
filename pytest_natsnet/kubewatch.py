"""Waits woken by change: a watch per kind tells a wait that something changed, so it re-reads at once rather
than on its next poll (what ``kubectl wait`` and ``helm --wait`` do instead of polling lists)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from types import TracebackType

from pytest_natsnet.kubeclient import KubeClient, KubeError, WatchStream

WATCH_SECONDS = 60.0
RETRY_SECONDS = 1.0
SETTLE_SECONDS = 0.1
"""How long a woken pause waits on for the changes that come with the first: a pod's start is a burst of status
updates (and a readiness gate the wait opens is another), and each wake made the wait list its objects again."""
FORBIDDEN = 403


class Changes:
    """Sets a flag whenever an object of ``kinds`` in ``namespace`` changes, until closed.

    One thread per kind follows its watch and opens it again when the server ends it or the connection drops;
    a watch the cluster forbids is given up (the wait still polls). Waits re-read the objects themselves: a
    change only wakes them, so nothing here has to keep a consistent copy of the objects."""

    def __init__(self, client: KubeClient, namespace: str, kinds: Sequence[str]) -> None:
        self._client, self._namespace = client, namespace
        self._changed = threading.Event()
        self._closed = threading.Event()
        self._streams: dict[str, WatchStream] = {}
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._follow, args=(kind,), daemon=True,
                                          name=f"natsnet-watch-{namespace}-{kind}") for kind in kinds]
        for thread in self._threads:
            thread.start()

    def sleep(self, seconds: float) -> None:
        """Sleeps ``seconds`` or until something changed and ``SETTLE_SECONDS`` more (tenacity's ``sleep``)."""
        started = time.monotonic()
        if self._changed.wait(seconds):
            self._closed.wait(min(SETTLE_SECONDS, max(0.0, started + seconds - time.monotonic())))
        self._changed.clear()

    def _follow(self, kind: str) -> None:
        while not self._closed.is_set():
            opened = time.monotonic()
            try:
                stream = self._client.watch(kind, self._namespace, WATCH_SECONDS)
                with self._lock:
                    if self._closed.is_set():
                        stream.interrupt()
                    self._streams[kind] = stream
                for _ in stream:
                    self._changed.set()
            except KubeError as error:
                if error.status == FORBIDDEN:
                    return
            if time.monotonic() - opened < RETRY_SECONDS:  # ended at once: not again at once
                self._closed.wait(RETRY_SECONDS)

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            for stream in self._streams.values():
                stream.interrupt()
        for thread in self._threads:
            thread.join(timeout=5.0)

    def __enter__(self) -> Changes:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        with contextlib.suppress(Exception):
            self.close()
