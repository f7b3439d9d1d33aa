"""Finding a sandbox's processes by session (zombies included) and waiting until they are reaped."""

from __future__ import annotations

import os
import signal
import subprocess

from pytest_natsnet.sandbox.reaping import in_sessions, parse_stat, wait_reaped


def test_parse_stat_keeps_a_command_with_spaces_and_parentheses() -> None:
    entry = parse_stat("4242 (my (odd) cmd) Z 1 4242 4240 0 -1 4194560 0 0")
    assert (entry.pid, entry.command, entry.state, entry.ppid, entry.session) == (4242, "my (odd) cmd", "Z", 1, 4240)
    assert entry.describe() == "4242 my (odd) cmd (state Z, parent 1)"


def test_a_zombie_counts_until_it_is_reaped() -> None:
    process = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        assert [p.command for p in in_sessions([process.pid])] == ["sleep"]
        os.kill(process.pid, signal.SIGKILL)
        left = wait_reaped([process.pid], timeout=0.3)  # killed, but its parent (this test) has not reaped it
        assert [(p.pid, p.state) for p in left] == [(process.pid, "Z")]
    finally:
        process.kill()
        process.wait()
    assert wait_reaped([process.pid], timeout=5.0) == []


def test_no_session_means_nothing_to_wait_for() -> None:
    assert in_sessions([]) == [] and wait_reaped([], timeout=0.0) == []
