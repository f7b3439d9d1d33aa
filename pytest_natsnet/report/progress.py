"""Progress of long steps (cluster creation, cell deploys): a step that has run for a while says so every few
seconds instead of a silent minute, e.g. ``natsnet: deploying cell tls … 12 s: nats-2 not Ready``.

The session marks steps (``with progress.step("deploying cell tls"):``, in whatever thread runs them) and the
waits of pytest's main thread on them (``with progress.waiting():``); code deep inside a step adds what it is
waiting for with the module function ``note("nats-2 not Ready")`` (a no-op outside a step). Lines are written
only while the main thread waits, from a ticker thread, so they never interleave with pytest's own output.
Without an ``emit`` function (the default) nothing is written and no thread starts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

INTERVAL = 5.0
"""Seconds between two lines about the same step, and before the first one."""

DETAIL_WIDTH = 100
"""A step's detail is cut to this many characters on its progress line."""

_local = threading.local()


@dataclass
class Step:
    label: str
    started: float
    detail: str = ""
    reported: float | None = None
    """When a line about this step was last written (None: never)."""
    ended: float | None = None


def _shorten(text: str, width: int = DETAIL_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def note(detail: str) -> None:
    """What the current thread's step is doing now (shown on its next progress line); no-op outside a step."""
    steps: list[Step] = getattr(_local, "steps", [])
    if steps:
        steps[-1].detail = detail


@dataclass
class Progress:
    emit: Callable[[str], None] | None = None
    """Writes one line; None: silent."""
    interval: float = INTERVAL
    clock: Callable[[], float] = time.monotonic
    prefix: str = "natsnet: "
    _steps: list[Step] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @contextmanager
    def step(self, label: str) -> Iterator[Step]:
        """A long step of the current thread (nested steps: ``note`` goes to the innermost)."""
        current = Step(label, self.clock())
        stack: list[Step] = getattr(_local, "steps", None) or []
        _local.steps = stack
        stack.append(current)
        with self._lock:
            self._steps.append(current)
        try:
            yield current
        finally:
            stack.remove(current)
            with self._lock:
                current.ended = self.clock()
                if current.reported is None:  # never shown: forget it silently
                    self._steps.remove(current)

    def due(self, running: bool = True) -> list[str]:
        """Lines for the steps due a report: steps that ended after having been shown (``…: done in 13 s``,
        once) and, with ``running``, steps running for ``interval`` since they started or were last shown."""
        now = self.clock()
        lines = []
        with self._lock:
            for current in list(self._steps):
                elapsed = (current.ended or now) - current.started
                if current.ended is not None:
                    lines.append(f"{self.prefix}{current.label}: done in {elapsed:.0f} s")
                    self._steps.remove(current)
                elif running and now - (current.reported or current.started) >= self.interval:
                    detail = f": {_shorten(current.detail)}" if current.detail else ""
                    lines.append(f"{self.prefix}{current.label} … {elapsed:.0f} s{detail}")
                    current.reported = now
        return lines

    def _write(self, lines: list[str]) -> None:
        if self.emit is not None:
            for line in lines:
                self.emit(line)

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """The main thread blocks on a step inside this block: a ticker thread writes due lines meanwhile."""
        if self.emit is None:
            yield
            return
        stop = threading.Event()
        tick = min(1.0, self.interval / 2)

        def ticker() -> None:
            while not stop.wait(tick):
                self._write(self.due())

        thread = threading.Thread(target=ticker, name="natsnet-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            self._write(self.due(running=False))
