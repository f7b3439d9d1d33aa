"""Processes a sandbox started, found by session id (zombies included), and a bounded wait until none is left.

Every container runs in its own session (``start_new_session``): bubblewrap is the session leader and the
container's command its child. A process is reaped when it no longer has a ``/proc`` entry; a zombie still has
one, so "gone" here means killed *and* reaped by its parent.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
POLL_SECONDS = 0.02


@dataclass(frozen=True)
class ProcessEntry:
    pid: int
    command: str
    state: str
    """``R``, ``S``, ``D``, ``Z`` (zombie: exited, not yet reaped) ..."""
    ppid: int
    session: int

    def describe(self) -> str:
        return f"{self.pid} {self.command} (state {self.state}, parent {self.ppid})"


def parse_stat(text: str) -> ProcessEntry:
    """One ``/proc/<pid>/stat`` line (the command may hold spaces and parentheses)."""
    pid, _, rest = text.partition(" (")
    command, _, fields_text = rest.rpartition(") ")
    fields = fields_text.split()
    return ProcessEntry(int(pid), command, fields[0], int(fields[1]), int(fields[3]))


def processes(proc: Path = PROC) -> list[ProcessEntry]:
    """Every process of this machine's PID namespace, zombies included."""
    entries = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            entries.append(parse_stat((entry / "stat").read_text()))
        except (OSError, ValueError, IndexError):  # gone while we looked
            continue
    return entries


def in_sessions(sessions: Collection[int], proc: Path = PROC) -> list[ProcessEntry]:
    """The processes (zombies included) whose session is one of ``sessions``."""
    wanted = set(sessions)
    return [p for p in processes(proc) if p.session in wanted] if wanted else []


def wait_reaped(sessions: Collection[int], timeout: float, proc: Path = PROC) -> list[ProcessEntry]:
    """Waits until no process of ``sessions`` exists, zombies included; returns what is left at ``timeout``."""
    deadline = time.monotonic() + timeout
    left = in_sessions(sessions, proc)
    while left and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        left = in_sessions(sessions, proc)
    return left

