"""A probe session's output is filed as it is read: batch answers in order, watch events under their watch.

The stream stands in for the exec websocket (kubernetes' ``WSClient`` interface); the real one is exercised by
the reconnect suite and ``test_no_process_outlives_the_run``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from pytest_natsnet.deployment import ProbeSession
from pytest_natsnet.errors import NatsnetError


class ScriptedStream:
    """Hands out ``chunks`` of stdout one ``update`` at a time; records what is written to stdin."""

    def __init__(self, chunks: list[str], stderr: str = "", close_after: bool = False) -> None:
        self.chunks = list(chunks)
        self.stderr = stderr
        self.close_after = close_after
        self.written: list[dict[str, Any]] = []
        self._pending = ""
        self._open = True

    def is_open(self) -> bool:
        return self._open

    def write_stdin(self, data: str) -> None:
        self.written.append(json.loads(data))

    def update(self, timeout: float = 0) -> None:
        if self.chunks:
            self._pending += self.chunks.pop(0)
        elif self.close_after:
            self._open = False

    def read_stdout(self, timeout: float = 0) -> str:
        data, self._pending = self._pending, ""
        return data

    def read_stderr(self, timeout: float = 0) -> str:
        data, self.stderr = self.stderr, ""
        return data

    def close_channel(self, channel: int) -> None:
        self._open = False

    def close(self) -> None:
        self._open = False


def event(watch_id: str, name: str, **fields: Any) -> str:
    return json.dumps({"watch": watch_id, "event": name, "mono": 1.0, **fields}) + "\n"


def test_answers_and_watch_events_are_told_apart_across_chunk_boundaries() -> None:
    answer = json.dumps({"results": [{"key": "t", "outcome": "ok"}]}) + "\n"
    connected = event("w1", "connected", url="nats://a:4222")
    stream = ScriptedStream([connected[:9], connected[9:] + answer[:5], answer[5:] + event("w1", "message")])
    session = ProbeSession(stream)
    watch = session.watch({"servers": ["nats://a:4222"]})
    assert session.ask({"requests": []}, timeout=5) == answer.strip()
    assert stream.written == [{"watch": "w1", "request": {"servers": ["nats://a:4222"]}}, {"requests": []}]
    assert [e["event"] for e in watch.events()] == ["connected", "message"]
    assert "watch" not in watch.events()[0]


def test_stop_unwatches_and_waits_for_the_summary() -> None:
    stream = ScriptedStream([event("w1", "connected"), "", event("w1", "summary", reconnects=1)])
    session = ProbeSession(stream)
    watch = session.watch({"servers": ["nats://a:4222"]})
    events = watch.stop(timeout=5)
    assert stream.written[-1] == {"unwatch": "w1"}
    assert [e["event"] for e in events] == ["connected", "summary"]


def test_a_session_that_ends_says_why_to_its_batches_and_watches() -> None:
    stream = ScriptedStream([event("w1", "connected")], stderr="Traceback: boom", close_after=True)
    session = ProbeSession(stream)
    watch = session.watch({"servers": ["nats://a:4222"]})
    with pytest.raises(NatsnetError, match="the probe session ended: Traceback: boom"):
        session.ask({"requests": []}, timeout=5)
    events = watch.events()
    assert [e["event"] for e in events] == ["connected", "exited"]
    assert events[-1]["stderr"] == "Traceback: boom"
    assert watch.stop(timeout=1)[-1]["event"] == "exited"
