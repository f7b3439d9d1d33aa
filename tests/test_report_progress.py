"""Progress lines for long steps: when they are due, what they say, and that they are written only while the
main thread waits."""

from __future__ import annotations

import threading
import time

from pytest_natsnet.report.progress import Progress, note


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_step_is_reported_every_interval_with_its_latest_note() -> None:
    clock = Clock()
    progress = Progress(emit=None, interval=5.0, clock=clock)
    with progress.step("deploying cell tls"):
        clock.now += 4
        assert progress.due() == []
        note("StatefulSet nats ready 0/3")
        clock.now += 1
        assert progress.due() == ["natsnet: deploying cell tls … 5 s: StatefulSet nats ready 0/3"]
        clock.now += 3
        assert progress.due() == []
        note("nats-2 not Ready")
        clock.now += 2
        assert progress.due() == ["natsnet: deploying cell tls … 10 s: nats-2 not Ready"]
        clock.now += 2.5
    assert progress.due() == ["natsnet: deploying cell tls: done in 12 s"]
    assert progress.due() == []


def test_a_short_step_is_never_mentioned() -> None:
    clock = Clock()
    progress = Progress(interval=5.0, clock=clock)
    with progress.step("deploying cell default"):
        clock.now += 3
    clock.now += 10
    assert progress.due() == []


def test_note_outside_a_step_does_nothing_and_nested_steps_take_the_innermost() -> None:
    note("nobody listens")
    clock = Clock()
    progress = Progress(interval=5.0, clock=clock)
    with progress.step("outer"):
        with progress.step("inner"):
            note("waiting for pods")
        note("outer again")
        clock.now += 5
        assert progress.due() == ["natsnet: outer … 5 s: outer again"]


def test_notes_belong_to_the_thread_that_runs_the_step() -> None:
    clock = Clock()
    progress = Progress(interval=5.0, clock=clock)
    inside = threading.Event()
    release = threading.Event()

    def deploy() -> None:
        with progress.step("deploying cell b"):
            note("from b's thread")
            inside.set()
            release.wait(10)

    worker = threading.Thread(target=deploy)
    worker.start()
    assert inside.wait(10)
    with progress.step("deploying cell a"):
        clock.now += 5
        lines = sorted(progress.due())
    release.set()
    worker.join(10)
    assert lines == ["natsnet: deploying cell a … 5 s", "natsnet: deploying cell b … 5 s: from b's thread"]


def test_long_details_are_cut() -> None:
    clock = Clock()
    progress = Progress(interval=1.0, clock=clock)
    with progress.step("s"):
        note("x" * 500)
        clock.now += 1
        (line,) = progress.due()
    assert line.endswith("x…") and len(line) < 140


def test_waiting_writes_due_lines_from_a_ticker_and_the_done_line_at_the_end() -> None:
    lines: list[str] = []
    progress = Progress(emit=lines.append, interval=0.05)
    with progress.waiting(), progress.step("starting the kind cluster"):
        deadline = time.monotonic() + 10
        while not lines and time.monotonic() < deadline:
            time.sleep(0.01)
    assert lines[0].startswith("natsnet: starting the kind cluster … ")
    assert lines[-1].startswith("natsnet: starting the kind cluster: done in ")


def test_nothing_is_written_outside_waiting_or_without_emit() -> None:
    lines: list[str] = []
    progress = Progress(emit=lines.append, interval=0.01)
    with progress.step("deploying cell x"):
        time.sleep(0.1)
    assert lines == []
    silent = Progress(emit=None, interval=0.01)
    before = threading.active_count()
    with silent.waiting(), silent.step("deploying cell y"):
        assert threading.active_count() == before  # no ticker thread without somewhere to write
