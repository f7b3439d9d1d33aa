"""The watching client's event logic: what counts as a reconnect, a delivery after it, a client out of URLs."""

from __future__ import annotations

from typing import Any

from pytest_natsnet.watching import ended, failed_on_every_url, first, message_published_after, story


def ev(name: str, mono: float, **fields: Any) -> dict[str, Any]:
    return {"event": name, "mono": mono, "ts": 0.0, **fields}


RECONNECT = [
    ev("connected", 1.0, server_name="nats-0"),
    ev("message", 1.1, seq=0),
    ev("disconnected", 2.0),
    ev("reconnected", 2.5, server_name="nats-1", next_seq=6),
    ev("message", 2.51, seq=5),  # published before the reconnect, delivered after: proves nothing
    ev("message", 2.7, seq=6),
]


def test_only_a_message_published_after_the_reconnect_counts() -> None:
    back = first(RECONNECT, "reconnected")
    assert back is not None
    assert message_published_after(RECONNECT, back) == RECONNECT[-1]
    assert message_published_after(RECONNECT[:-1], back) is None  # the flake this replaces judged seq 5 too


def test_first_after_a_time() -> None:
    assert first(RECONNECT, "message") == RECONNECT[1]
    assert first(RECONNECT, "message", after=2.5) == RECONNECT[4]
    assert first(RECONNECT, "closed") is None


def test_a_client_fails_everywhere_once_every_url_of_its_pool_failed() -> None:
    seed = {"url": "nats://198.18.0.10:4222", "discovered": False}
    learned = {"url": "nats://nats.external.invalid:4222", "discovered": True}
    events = [
        ev("connected", 1.0),
        ev("error", 1.5, pool=[{**seed, "failed_attempts": 1}, {**learned, "failed_attempts": 0}]),  # before
        ev("disconnected", 2.0),
        ev("error", 2.2, pool=[{**seed, "failed_attempts": 1}, {**learned, "failed_attempts": 0}]),
        ev("error", 2.9, pool=[{**seed, "failed_attempts": 1}, {**learned, "failed_attempts": 1}]),
    ]
    assert failed_on_every_url(events, since=2.0) == events[-1]
    assert failed_on_every_url(events[:-1], since=2.0) is None
    assert failed_on_every_url(events, since=3.0) is None
    assert failed_on_every_url([ev("error", 2.5, text="no pool")], since=2.0) is None


def test_the_watcher_ends_with_its_summary_or_its_exit() -> None:
    assert ended(RECONNECT) is None
    assert ended([*RECONNECT, ev("summary", 9.0)]) == ev("summary", 9.0)
    assert ended([ev("exited", 0.0, returncode=1)]) == ev("exited", 0.0, returncode=1)


def test_the_story_leaves_messages_out() -> None:
    text = story(RECONNECT)
    assert "message" not in text and "reconnected: {'server_name': 'nats-1', 'next_seq': 6}" in text
    assert story([]) == "  (no event)"
