"""A watching client: a NATS client inside the cluster network that publishes a sequence number on its own subject
and subscribes to it, reporting every connection event (the probe's ``watch`` command) while a test disturbs the
cell. Every wait here is bounded and ends on the event it waits for.

The event logic is pure (functions of the event list) so that it can be unit-tested; :class:`WatchingClient`
polls the running probe with it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pytest_natsnet.probe.model import TlsOptions, WatchRequest
from pytest_natsnet.prober import Prober
from pytest_natsnet.providers.base import WatchHandle

Event = dict[str, Any]
POLL_SECONDS = 0.05
CONNECT_BOUND = 20.0
"""A fresh client connects within this (connect timeout 2 s, a few attempts)."""
WATCH_SECONDS = 120.0
"""How long the probe keeps watching at most; the test stops it earlier, when it has what it waited for."""


# ------------------------------------------------------------------------------------------- events (pure)


def first(events: Sequence[Event], name: str, after: float = float("-inf")) -> Event | None:
    """The first ``name`` event later than monotonic time ``after``."""
    return next((e for e in events if e.get("event") == name and float(e.get("mono", 0.0)) > after), None)


def ended(events: Sequence[Event]) -> Event | None:
    """The watcher's own end: its summary, or the exit the handle reports."""
    return first(events, "summary") or first(events, "exited")


def message_published_after(events: Sequence[Event], reconnected: Event) -> Event | None:
    """The first message received whose sequence number was published after ``reconnected``: proof that the
    subscription was replayed on the new server (a message from before could have been in flight)."""
    next_seq = int(reconnected.get("next_seq", 0))
    return next((e for e in events if e.get("event") == "message" and int(e.get("seq", -1)) >= next_seq), None)


def failed_on_every_url(events: Sequence[Event], since: float) -> Event | None:
    """The first error after ``since`` at which every URL of the client's pool (seed and learned) had failed
    at least once since it last worked: the client tried all it knows and none answered."""
    for event in events:
        if event.get("event") != "error" or float(event.get("mono", 0.0)) <= since:
            continue
        pool = event.get("pool") or []
        if pool and all(int(entry.get("failed_attempts", 0)) >= 1 for entry in pool):
            return event
    return None


def story(events: Sequence[Event], last: int = 25) -> str:
    """The connection events (messages left out) as lines, for a failure message."""
    lines = []
    for event in events:
        if event.get("event") == "message":
            continue
        fields = {k: v for k, v in event.items() if k not in ("event", "mono", "ts")}
        lines.append(f"  {float(event.get('mono', 0.0)):.2f} {event.get('event')}: {fields}")
    return "\n".join(lines[-last:]) or "  (no event)"


# ------------------------------------------------------------------------------------------- the client


@dataclass
class WatchingClient:
    """One running watcher; ``who`` names it in failure messages (e.g. "Service-seeded")."""

    who: str
    seed: str
    handle: WatchHandle

    def events(self) -> list[Event]:
        return self.handle.events()

    def wait_for(self, found: Callable[[list[Event]], Event | None], bound: float) -> Event | None:
        """Polls until ``found(events)`` returns an event, the watcher ends, or ``bound`` seconds pass."""
        deadline = time.monotonic() + bound
        while True:
            events = self.events()
            event = found(events)
            if event is not None or ended(events) is not None or time.monotonic() >= deadline:
                return event
            time.sleep(POLL_SECONDS)

    def connected(self, bound: float = CONNECT_BOUND) -> Event:
        """The ``connected`` event; fails the test, with the client's story, when it never connects."""
        event = self.wait_for(lambda events: first(events, "connected"), bound)
        if event is None:
            raise AssertionError(f"the {self.who} client never connected to {self.seed}:\n{self.story()}")
        return event

    def reconnected(self, bound: float) -> Event | None:
        """The first ``reconnected`` event, waiting up to ``bound``."""
        return self.wait_for(lambda events: first(events, "reconnected"), bound)

    def receives_after(self, reconnected: Event, bound: float) -> Event | None:
        """The first message published after ``reconnected`` that came back, waiting up to ``bound``."""
        return self.wait_for(lambda events: message_published_after(events, reconnected), bound)

    def reconnects_or_fails_everywhere(self, bound: float) -> tuple[Event | None, Event | None]:
        """After the client lost its server: (``reconnected``, None), or (None, the error at which every URL it
        knows had failed), or (None, None) when neither happened within ``bound``."""

        def outcome(events: list[Event]) -> Event | None:
            lost = first(events, "disconnected")
            if lost is None:
                return None
            return first(events, "reconnected") or failed_on_every_url(events, float(lost["mono"]))

        event = self.wait_for(outcome, bound)
        if event is None or event.get("event") == "reconnected":
            return event, None
        return None, event

    def story(self) -> str:
        return story(self.events())


@contextmanager
def watching(
    probe: Prober, seed: str, name: str, who: str, tls: TlsOptions | None = None
) -> Iterator[WatchingClient]:
    """Starts a watcher seeded with ``seed`` only (publishing on ``natsnet.watch.<name>``) and stops it on exit."""
    request = WatchRequest((seed,), subject=f"natsnet.watch.{name}", duration=WATCH_SECONDS, tls=tls)
    handle = probe.watch(request)
    try:
        yield WatchingClient(who, seed, handle)
    finally:
        handle.stop()
