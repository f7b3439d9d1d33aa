"""Run records: the process that owns a run writes where its cluster is before it creates anything, and removes
the record when it ends (or marks it kept). A record whose process is gone is what ``natsnet gc`` cleans up.

A record is one JSON file ``<state dir>/runs/<run id>.json``: the owner's pid and its start time (a reused pid is
not mistaken for the owner), the provider, the run directory, and once the cluster is up its kubeconfig, context,
kind cluster name and whether this run created it. The state dir is ``$NATSNET_STATE_DIR``, else ``/run/natsnet``
as root (where the sandbox records itself too), else ``~/.cache/pytest-natsnet/state``.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

STATE_ENV = "NATSNET_STATE_DIR"


def state_dir() -> Path:
    explicit = os.environ.get(STATE_ENV)
    if explicit:
        return Path(explicit)
    if os.geteuid() == 0:
        return Path("/run/natsnet")
    return Path.home() / ".cache" / "pytest-natsnet" / "state"


def records_dir() -> Path:
    return state_dir() / "runs"


def process_start(pid: int) -> str:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22); empty when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields_after_name = stat.rsplit(")", 1)[-1].split()
    return fields_after_name[19] if len(fields_after_name) > 19 else ""


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def alive(pid: int, started: str = "") -> bool:
    """Whether ``pid`` runs (an exited process its parent has not reaped does not) and, when ``started`` is known,
    is the same process that started then."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if _zombie(pid):
        return False
    return not started or not process_start(pid) or process_start(pid) == started


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    pid: int
    provider: str
    run_dir: str
    pid_start: str = ""
    started: float = 0.0
    kubeconfig: str = ""
    context: str = ""
    cluster_name: str = ""
    created_cluster: bool = False
    """True once this run's own ``kind create cluster`` made the cluster: only then may gc delete it."""
    cluster_ready: bool = False
    """False while the provider starts: a run that died then may have left a half-made cluster."""
    kept: bool = False
    """The run ended keeping its cluster/namespaces on purpose (``--natsnet-keep``)."""
    sandbox_pid: int = 0

    @property
    def path(self) -> Path:
        return records_dir() / f"{self.run_id}.json"

    def owner_alive(self) -> bool:
        return alive(self.pid, self.pid_start)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def new_record(run_id: str, provider: str, run_dir: Path, cluster_name: str = "") -> RunRecord:
    pid = os.getpid()
    return RunRecord(run_id, pid, provider, str(run_dir), process_start(pid), time.time(), cluster_name=cluster_name)


def write(record: RunRecord) -> None:
    """Writes (atomically) the record, in a directory only its owner can read (it names a kubeconfig)."""
    directory = records_dir()
    directory.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        directory.chmod(0o700)
    tmp = directory / f".{record.run_id}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(asdict(record), indent=2) + "\n")
    os.replace(tmp, record.path)


def update(record: RunRecord, **changes: Any) -> RunRecord:
    changed = replace(record, **changes)
    write(changed)
    return changed


def remove(record: RunRecord) -> None:
    record.path.unlink(missing_ok=True)


def load_all() -> tuple[list[RunRecord], list[str]]:
    """Every record, and one line per file that could not be read."""
    records, problems = [], []
    directory = records_dir()
    if not directory.is_dir():
        return [], []
    for path in sorted(directory.glob("*.json")):
        try:
            records.append(RunRecord.from_json(json.loads(path.read_text())))
        except (OSError, ValueError, TypeError) as error:
            problems.append(f"unreadable run record {path}: {error}")
    return records, problems
