"""The whole matrix in minutes (issue #13): wall time, CPU and peak memory of plain ``pytest --natsnet`` runs.

Usage (root): ``.venv/bin/python benchmarks/scale.py [--matrix smoke] [--cells N] [-- extra pytest args]``

Runs ``pytest --natsnet`` over the shipped suites on the sandbox exactly as a user would (no ``-n``: the plugin
chooses the workers), optionally on the first ``--cells N`` cells of the matrix, while sampling every process of
the run (pytest, its xdist workers, ``natsnet sandbox up``, the pods' processes: the whole tree) once a second
(``--sample-every``: each sample reads every process's ``/proc`` entry, ~700 of them in a full run, and costs
the run CPU; at five a second the sampler itself took 12 % of a CPU). Prints the wall time, the run's CPU
seconds (user + system of every process seen, summed at its last
sample) and the peak resident memory of the tree, per run and per cell, where the CPU went by command, and how
many of the machine's cores were busy in each tenth of the run (the start and the tail show there).
Exits 0: it reports, it asserts nothing.
"""

from __future__ import annotations

import argparse
import collections
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLOCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Sample:
    ppid: int
    cpu: float
    rss: int
    command: str


def snapshot(commands: dict[tuple[int, int], str] | None = None) -> dict[tuple[int, int], Sample]:
    """Every process: (pid, start time) -> parent, CPU seconds, resident bytes, command. ``commands`` keeps the
    command lines already read of processes older than a second (a forked child shows its parent's command line
    until it executes its own program; after that it does not change)."""
    known = {} if commands is None else commands
    with open("/proc/uptime", "rb") as uptime:
        settled = (float(uptime.read().split()[0]) - 1.0) * CLOCK  # started before this tick: exec'd by now
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat_file:
                stat = stat_file.read().decode(errors="replace")
            fields = stat.rsplit(") ", 1)[1].split()
            key = (int(entry), int(fields[19]))
            command = known.get(key)
            if command is None:
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    command = cmdline.read().replace(b"\0", b" ").decode(errors="replace").strip()
                if key[1] < settled:
                    known[key] = command
        except (OSError, IndexError, ValueError):
            continue
        ppid, cpu = int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK
        found[key] = Sample(ppid, cpu, int(fields[21]) * PAGE, command)
    return found


def busy_seconds() -> float:
    """CPU seconds this machine has been busy since boot, all CPUs (``/proc/stat``: everything but idle and
    iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLOCK


def label(command: str) -> str:
    """A short name for where CPU went: the program, or for Python what it runs."""
    words = command.split()
    if not words:
        return "(exited)"
    program = words[0].rsplit("/", 1)[-1]
    if program.startswith("python") and "-c" in words[1:2] and any(w.endswith(".pyz") for w in words):
        return f"python {next(w for w in words if w.endswith('.pyz')).rsplit('/', 1)[-1]}"  # a probe session
    if program.startswith("python") and len(words) > 1:
        target = words[2] if words[1] == "-m" and len(words) > 2 else words[1]
        return f"python {target.rsplit('/', 1)[-1]} {' '.join(words[3:4]) if words[1] == '-m' else ''}".strip()
    return program


def _sample_tree(
    process: subprocess.Popen[str], every: float, busy: list[tuple[float, float]]
) -> tuple[dict[tuple[int, int], Sample], int]:
    """Samples ``process`` and its descendants until it exits: each one's last sample, and the peak RSS sum;
    appends (monotonic time, :func:`busy_seconds`) to ``busy`` at each sample."""
    root = next((key for key in snapshot() if key[0] == process.pid), (process.pid, 0))
    tree = {root}  # (pid, start time): a pid reused by someone else's process is not ours
    last: dict[tuple[int, int], Sample] = {}
    commands: dict[tuple[int, int], str] = {}
    peak = 0
    while process.poll() is None:
        busy.append((time.monotonic(), busy_seconds()))
        snap = snapshot(commands)
        children: dict[int, list[tuple[int, int]]] = collections.defaultdict(list)
        for key, sample in snap.items():
            children[sample.ppid].append(key)
        pending = [key for key in snap if key in tree]
        while pending:  # the tree's descendants, each process once (the sampler ran quadratic, ~0.2 of a CPU)
            parent = pending.pop()
            for key in children.get(parent[0], ()):
                if key not in tree and parent[1] <= key[1]:
                    tree.add(key)
                    pending.append(key)
        mine = {key: s for key, s in snap.items() if key in tree}
        last.update(mine)
        peak = max(peak, sum(s.rss for s in mine.values()))
        time.sleep(every)
    return last, peak


def busy_by_period(busy: list[tuple[float, float]], periods: int = 10) -> list[float]:
    """The machine's busy cores in each tenth (``periods``) of the run, from the samples of :func:`busy_seconds`."""
    if len(busy) < 2:
        return []
    start, end = busy[0][0], busy[-1][0]
    span = (end - start) / periods
    result = []
    for index in range(periods):
        inside = [(t, b) for t, b in busy if start + index * span <= t <= start + (index + 1) * span]
        if len(inside) >= 2:
            result.append((inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0]))
    return result


def measure(argv: list[str], every: float = 1.0) -> tuple[float, float, int, dict[str, float], dict[str, int], int]:
    """Runs ``argv``; returns wall seconds, CPU seconds, peak RSS bytes, CPU by label, processes seen by label (a
    process that lived less than ``every`` may not be), pytest's exit status. The
    CPU seconds are the kernel's count for the whole tree (every descendant is waited for by its parent, orphans
    by the sandbox, their subreaper); the samples only say where it went, and miss what a process spent after
    its last sample."""
    # The output goes to a file, not a pipe read at the end: the full matrix's summary is larger than a pipe
    # holds, and pytest blocked writing it (a 242-cell run sat 3 minutes in its terminal summary).
    with tempfile.TemporaryFile(mode="w+") as log:
        started, before = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
        process = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True)
        busy: list[tuple[float, float]] = []
        last, peak = _sample_tree(process, every, busy)
        wall = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        log.seek(0)
        output = log.read()
    by_label: dict[str, float] = collections.defaultdict(float)
    seen: collections.Counter[str] = collections.Counter()
    for sample in last.values():
        name = label(sample.command)
        by_label[name] += sample.cpu
        seen[name] += 1
    summary = [line for line in output.splitlines() if " passed" in line or " failed" in line][-1:]
    print("  " + (summary[0].strip("= ") if summary else output[-500:]))
    for line in output.splitlines():  # which tests failed: the log itself is gone once this returns
        if line.startswith(("FAILED ", "ERROR ")):
            print("  " + line[:300])
    by_label["(not sampled)"] = max(0.0, cpu - sum(by_label.values()))
    print("  busy cores (the whole machine) in each tenth of the run: "
          + " ".join(f"{cores:.2f}" for cores in busy_by_period(busy)))
    return wall, cpu, peak, dict(by_label), dict(seen), process.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--matrix", default="smoke", choices=("smoke", "pairwise", "full"))
    parser.add_argument("--cells", type=int, help="only the first N cells of the matrix")
    parser.add_argument("--sample-every", type=float, default=1.0, help="seconds between samples of the processes")
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    argv = [sys.executable, "-m", "pytest", "--natsnet", "--natsnet-provider=sandbox", "--natsnet-source=reference",
            f"--natsnet-matrix={args.matrix}", "-p", "no:cacheprovider", "-o", "testpaths=suites", "-q", *extra]
    cells = None
    if args.cells:
        sys.path.insert(0, str(ROOT))
        from pytest_natsnet.matrix import expand, load_matrix

        chosen = expand(load_matrix(), args.matrix)[: args.cells]
        argv += [f"--natsnet-scenario={s.id}" for s in chosen]
        cells = len(chosen)
    if cells is None:
        sys.path.insert(0, str(ROOT))
        from pytest_natsnet.matrix import expand, load_matrix

        cells = len(expand(load_matrix(), args.matrix))
    print(f"{args.matrix}, {cells} cells: {' '.join(argv[3:])}")
    wall, cpu, peak, by_label, seen, status = measure(argv, args.sample_every)
    print(f"  wall {wall:.1f} s, CPU {cpu:.1f} s ({cpu / wall:.2f} cores busy), peak RSS {peak / 2**20:.0f} MiB; "
          f"per cell: CPU {cpu / cells:.2f} s, memory {peak / 2**20 / cells:.0f} MiB; pytest exit {status}; "
          f"load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print("  CPU by program (processes seen):")
    for name, seconds in sorted(by_label.items(), key=lambda kv: -kv[1])[:12]:
        print(f"    {seconds:8.1f} s  {name}" + (f" ({seen[name]})" if name in seen else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
