"""Leftovers: of crashed sandbox runs (every sandbox records itself on disk before it creates anything), and of
deleted pods (their root directories, removed in the background)."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pytest_natsnet.sandbox import netns

STATE_DIR = Path(os.environ.get("NATSNET_STATE_DIR", "/run/natsnet"))
SANDBOX_NETNS = re.compile(r"^natsnet-([0-9a-z]{8})-(hub|p\d+|x\d+)$")
"""A sandbox's network namespaces: ``natsnet-<sandbox id>-hub`` and one per pod."""
ORPHAN_AGE = 3600.0
"""A sandbox's namespaces with no state on disk are orphans only when this old and without processes: a sandbox
recorded under another state directory (``NATSNET_STATE_DIR``) is left alone while it may still run."""


def record(sandbox_id: str, data: dict[str, Any]) -> None:
    """Writes ``<state>/<id>.json`` (owner pid, run dir, netns prefix) before anything is created."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    path = STATE_DIR / f"{sandbox_id}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def forget(sandbox_id: str) -> None:
    (STATE_DIR / f"{sandbox_id}.json").unlink(missing_ok=True)


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_netns_processes(ns_name: str) -> int:
    """SIGKILLs every process in network namespace ``ns_name`` (never this one); returns how many."""
    killed = 0
    if not os.path.exists(netns.netns_path(ns_name)):
        return killed
    for pid in netns.pids(ns_name):
        if pid != os.getpid():
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
    return killed


def orphaned_netns(names: Iterable[str], known: set[str], busy: Callable[[str], bool],
                   age: Callable[[str], float], min_age: float = ORPHAN_AGE) -> dict[str, list[str]]:
    """Sandbox id -> its network namespaces, for sandboxes no state file knows (``known``) whose namespaces are all
    older than ``min_age`` seconds and none ``busy`` (has a process): what a sandbox killed before it could remove
    them, and whose state went with a temporary directory, left behind."""
    groups: dict[str, list[str]] = {}
    for name in names:
        match = SANDBOX_NETNS.match(name)
        if match and match.group(1) not in known:
            groups.setdefault(match.group(1), []).append(name)
    return {sandbox_id: sorted(group) for sandbox_id, group in sorted(groups.items())
            if all(age(n) >= min_age and not busy(n) for n in group)}


def netns_age(ns_name: str) -> float:
    """Seconds since the namespace was created (its bind mount's change time); 0 when it is gone."""
    try:
        return time.time() - os.stat(netns.netns_path(ns_name)).st_ctime
    except OSError:
        return 0.0


def netns_busy(ns_name: str) -> bool:
    return bool(netns.pids(ns_name))


def orphans(state_dir: Path | None = None) -> dict[str, list[str]]:
    """This machine's orphaned sandbox namespaces (:func:`orphaned_netns`) against the records in ``state_dir``."""
    state_dir = STATE_DIR if state_dir is None else state_dir
    known = {p.stem for p in state_dir.glob("*.json")} if state_dir.is_dir() else set()
    return orphaned_netns(netns.list_netns(), known, netns_busy, netns_age, ORPHAN_AGE)


def collect_garbage(force: bool = False) -> list[str]:
    """Removes what sandboxes whose owner process is gone left behind, and orphaned sandbox namespaces
    (:func:`orphans`); returns one line per action."""
    actions: list[str] = []
    for sandbox_id, group in orphans().items():
        for ns_name in group:
            netns.delete_netns(ns_name)
        actions.append(f"deleted {len(group)} orphaned netns of sandbox {sandbox_id} (no state, no process)")
    if not STATE_DIR.is_dir():
        return actions
    existing = netns.list_netns()
    for state_file in sorted(STATE_DIR.glob("*.json")):
        try:
            data = json.loads(state_file.read_text())
        except (OSError, ValueError):
            actions.append(f"skipped unreadable {state_file}")
            continue
        pid = int(data.get("pid", 0))
        if alive(pid) and not force:
            actions.append(f"sandbox {state_file.stem}: owner pid {pid} still runs, left alone")
            continue
        prefix = str(data.get("netns_prefix", f"natsnet-{state_file.stem}-"))
        for ns_name in [n for n in existing if n.startswith(prefix)]:
            killed = kill_netns_processes(ns_name)
            netns.delete_netns(ns_name)
            actions.append(f"deleted netns {ns_name} ({killed} processes killed)")
        run_dir = data.get("run_dir")
        if run_dir and Path(run_dir).is_dir() and data.get("remove_run_dir", True):
            shutil.rmtree(run_dir, ignore_errors=True)
            actions.append(f"removed {run_dir}")
        state_file.unlink(missing_ok=True)
    return actions


class DirectoryRemover:
    """Removes directories on a thread of its own: the loop that deletes a pod does not wait for its root (hundreds
    of entries) to leave the disk. ``close`` waits for what was queued, bounded."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Path | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, daemon=True, name="natsnet-directory-remover")
        self._thread.start()

    def remove(self, path: Path) -> None:
        self._queue.put(path)

    def _run(self) -> None:
        while (path := self._queue.get()) is not None:
            shutil.rmtree(path, ignore_errors=True)

    def close(self, timeout: float = 30.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)
