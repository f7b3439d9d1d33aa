"""Leftovers of crashed sandbox runs: every sandbox records itself on disk before it creates anything."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any

from pytest_natsnet.sandbox import netns

STATE_DIR = Path(os.environ.get("NATSNET_STATE_DIR", "/run/natsnet"))


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
    for pid in netns.run(["ip", "netns", "pids", ns_name], check=False).split():
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                os.kill(int(pid), signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
    return killed


def collect_garbage(force: bool = False) -> list[str]:
    """Removes what sandboxes whose owner process is gone left behind; returns one line per action."""
    actions: list[str] = []
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
