"""Processes a sandbox started, found by session id (zombies included), and a bounded wait until none is left.

Every container runs in its own session (``start_new_session``): bubblewrap is the session leader and the
container's command its child. A process is reaped when it no longer has a ``/proc`` entry; a zombie still has
one, so "gone" here means killed *and* reaped by its parent.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
POLL_SECONDS = 0.02
RESCAN_SECONDS = 0.5
"""How often a wait scans every process for its sessions; in between it reads only the processes it saw."""


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
    base = os.fspath(proc)  # plain os calls, not pathlib's: a sandbox under load scans ~700 processes often
    return [entry for name in os.listdir(base) if name.isdigit() and (entry := _read(f"{base}/{name}")) is not None]


def _read(process: Path | str) -> ProcessEntry | None:
    """``/proc/<pid>``'s entry, None when the process is gone (reaped while we looked)."""
    try:
        with open(f"{os.fspath(process)}/stat", "rb") as stat:
            return parse_stat(stat.read().decode(errors="replace"))
    except (OSError, ValueError, IndexError):
        return None


def in_sessions(sessions: Collection[int], proc: Path = PROC) -> list[ProcessEntry]:
    """The processes (zombies included) whose session is one of ``sessions``."""
    wanted = set(sessions)
    return [p for p in processes(proc) if p.session in wanted] if wanted else []


def wait_reaped(sessions: Collection[int], timeout: float, proc: Path = PROC) -> list[ProcessEntry]:
    """Waits until no process of ``sessions`` exists, zombies included; returns what is left at ``timeout``.

    A zombie of those sessions that this process adopted as their subreaper (:func:`become_subreaper`: its
    parent died first, e.g. a shell killed while it waited for a ``sleep``) is reaped here, since nobody else
    will; the session leaders are left to the ``subprocess`` objects that started them."""
    deadline = time.monotonic() + timeout
    left = _reap_adopted(in_sessions(sessions, proc), sessions)
    scanned = time.monotonic()
    while left and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        if time.monotonic() - scanned < RESCAN_SECONDS:  # between scans of every process: only those seen
            left = _reap_adopted(_still_in_sessions(left, sessions, proc), sessions)
        if not left or time.monotonic() - scanned >= RESCAN_SECONDS:  # "none left" is always a full scan's word
            left = _reap_adopted(in_sessions(sessions, proc), sessions)
            scanned = time.monotonic()
    return left


def _still_in_sessions(entries: list[ProcessEntry], sessions: Collection[int], proc: Path) -> list[ProcessEntry]:
    """``entries`` read again: those still in ``sessions`` (a pid reused by another session's process is not)."""
    wanted = set(sessions)
    again = (_read(proc / str(entry.pid)) for entry in entries)
    return [entry for entry in again if entry is not None and entry.session in wanted]


def _reap_adopted(entries: list[ProcessEntry], leaders: Collection[int]) -> list[ProcessEntry]:
    """``entries`` without the zombies this process could reap (its adopted orphans, never a session leader)."""
    me, left = os.getpid(), []
    for entry in entries:
        if entry.state == "Z" and entry.ppid == me and entry.pid not in leaders:
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(entry.pid, os.WNOHANG)[0] == entry.pid:
                    continue
        left.append(entry)
    return left



PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Makes this process the reaper of its orphaned descendants (Linux ``PR_SET_CHILD_SUBREAPER``): a pod's
    process whose parent died (a shell's background job) is then re-parented here instead of to the machine's
    init, which may take seconds to reap it. Returns whether the kernel accepted."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def reap_children(timeout: float, proc: Path = PROC) -> list[ProcessEntry]:
    """At exit: SIGKILLs every child still running and reaps every child (orphans re-parented here included),
    bounded; returns what is left. Only for the end of a process's life: it takes exit statuses that
    ``subprocess`` objects would otherwise read."""
    me = os.getpid()
    deadline = time.monotonic() + timeout
    while True:
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            return []
        children = [p for p in processes(proc) if p.ppid == me]
        for child in children:
            if child.state != "Z":
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            return children
        time.sleep(POLL_SECONDS)
