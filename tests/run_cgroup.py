"""A fresh cgroup (v2) for one command: the processes of a run, found robustly.

Every process the command starts, and every process those start, stays in the cgroup whatever happens to it:
reparented to init, in another network namespace, renamed, or a zombie waiting to be reaped (``/proc/<pid>/cgroup``
still names the cgroup). Other people's processes on this machine (their own ``nats-server`` runs) never are.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

MOUNTS = Path("/proc/self/mounts")
PROC = Path("/proc")


def cgroup2_root(mounts: Path = MOUNTS) -> Path | None:
    """Where the cgroup v2 hierarchy is mounted (``/sys/fs/cgroup`` or, on hybrid hosts, ``.../unified``)."""
    for line in mounts.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == "cgroup2":
            return Path(fields[1])
    return None


@dataclass
class RunCgroup:
    """A leaf cgroup created for one run; ``argv`` wraps a command so that it starts inside it."""

    root: Path
    name: str

    @classmethod
    def create(cls, root: Path, prefix: str = "natsnet-test") -> RunCgroup:
        cgroup = cls(root, f"{prefix}-{uuid.uuid4().hex[:8]}")
        cgroup.path.mkdir()
        return cgroup

    @property
    def path(self) -> Path:
        return self.root / self.name

    def argv(self, command: list[str]) -> list[str]:
        """``command``, moved into this cgroup before it executes (the shell execs it: same pid)."""
        procs = self.path / "cgroup.procs"
        return ["sh", "-c", f'echo $$ > {procs} && exec "$@"', "sh", *command]

    def members(self) -> list[str]:
        """Every process in the cgroup, zombies included, as ``pid command state``."""
        wanted = f"0::/{self.name}"
        found = []
        for entry in PROC.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                lines = (entry / "cgroup").read_text().splitlines()
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if any(line == wanted or line.startswith(f"{wanted}/") for line in lines):
                command = stat[stat.index("(") + 1 : stat.rindex(")")]
                state = stat[stat.rindex(")") + 2 :].split()[0]
                found.append(f"{entry.name} {command} {state}")
        return found

    def remove(self) -> None:
        self.path.rmdir()
