"""The reconcile loop's sleep: until its next due time, a ``set()`` from any thread (a store change, a probe's
answer) or a container's exit (its pidfd readable), whichever comes first.

On this kind of machine a wakeup is not free (a thread woken from sleep pays ~1-2 ms of CPU before its first
useful line: caches and the scheduler), so the loop sleeps as long as nothing is due instead of every 50 ms.
"""

from __future__ import annotations

import contextlib
import os
import select
import time
from collections.abc import Iterable


class Wakeup:
    """An eventfd to ``set()`` from any thread, waited for together with file descriptors (pidfds)."""

    def __init__(self, min_gap: float = 0.0) -> None:
        self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._min_gap = min_gap
        """The least time between two returns of :meth:`wait` when only a descriptor woke it (a readable pidfd
        that a failed pod's tick does not reap must not spin the loop)."""
        self._last = float("-inf")

    def set(self) -> None:
        if self._fd >= 0:  # closed: the loop has ended, nothing to wake
            os.eventfd_write(self._fd, 1)

    def wait(self, timeout: float, fds: Iterable[int] = ()) -> bool:
        """Sleeps until ``timeout`` seconds passed, ``set()`` was called (since the last return) or one of
        ``fds`` is readable; True when it was ``set()``. The set is consumed."""
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        for fd in fds:
            poller.register(fd, select.POLLIN)
        ready = {fd for fd, _ in poller.poll(max(0, round(timeout * 1000)))}
        woken = self._fd in ready
        if not woken and ready:  # a descriptor only: at most one return per min_gap
            gap = self._last + self._min_gap - time.monotonic()
            if gap > 0:
                woken = bool(select.select([self._fd], [], [], gap)[0])
        if woken:
            with contextlib.suppress(BlockingIOError):
                os.eventfd_read(self._fd)
        self._last = time.monotonic()
        return woken

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
