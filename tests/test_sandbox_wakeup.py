"""The reconcile loop's sleep: a set() from another thread, a readable descriptor or the timeout ends it; a
descriptor that stays readable does not make it spin."""

from __future__ import annotations

import os
import threading
import time

from pytest_natsnet.sandbox.wakeup import Wakeup


def test_it_sleeps_until_the_timeout_when_nothing_happens() -> None:
    wakeup = Wakeup()
    started = time.monotonic()
    assert wakeup.wait(0.2) is False
    assert 0.15 <= time.monotonic() - started < 1.0
    wakeup.close()


def test_a_set_from_another_thread_ends_it_at_once_and_is_consumed() -> None:
    wakeup = Wakeup()
    threading.Timer(0.05, wakeup.set).start()
    started = time.monotonic()
    assert wakeup.wait(5.0) is True
    assert time.monotonic() - started < 1.0
    wakeup.set()  # set before the wait: not lost
    assert wakeup.wait(5.0) is True
    assert wakeup.wait(0.05) is False, "a set is consumed by the wait it ended"
    wakeup.close()
    wakeup.set()  # closed: the loop has ended, a late set is harmless


def test_a_readable_descriptor_ends_it_but_at_most_once_per_gap() -> None:
    wakeup = Wakeup(min_gap=0.2)
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b"x")  # stays readable: as a pidfd of an exited, unreaped process
        started = time.monotonic()
        assert wakeup.wait(5.0, [read_end]) is False
        first = time.monotonic() - started
        assert wakeup.wait(5.0, [read_end]) is False
        second = time.monotonic() - started - first
        assert first < 1.0 and 0.15 <= second < 1.0, (first, second)
    finally:
        os.close(read_end)
        os.close(write_end)
        wakeup.close()
