"""``pods/<name>/log``: one container start's output (the current or the ``previous`` one), ``tailLines``,
``limitBytes``, and ``follow`` until the container stops."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pytest_natsnet.sandbox.kubelet import log_segments
from pytest_natsnet.sandbox.store import BadRequest

FOLLOW_POLL = 0.1
IDLE_TICK = 1.0


def pick_container(pod: Mapping[str, Any], wanted: str) -> str:
    """The container the request names, or the only one; BadRequest like the API server's."""
    spec = pod.get("spec") or {}
    names = [str(c.get("name")) for c in (spec.get("containers") or []) if isinstance(c, Mapping)]
    pod_name = str((pod.get("metadata") or {}).get("name", ""))
    if not wanted:
        if len(names) == 1:
            return names[0]
        raise BadRequest(f"a container name must be specified for pod {pod_name}, choose one of: "
                         f"[{' '.join(names)}]")
    if wanted not in names:
        raise BadRequest(f"container {wanted} is not valid for pod {pod_name}")
    return wanted


def segment(log: Path, previous: bool, container: str, pod_name: str, running: bool = True) -> tuple[int, int]:
    """The byte range of the current (or previous) start; BadRequest when there is none.

    As the kubelet: while the container waits to restart, both the current and the previous logs are those of
    the run that just ended."""
    segments = log_segments(log)
    if previous:
        if len(segments) < (2 if running else 1):
            raise BadRequest(f'previous terminated container "{container}" in pod "{pod_name}" not found')
        return segments[-2] if running else segments[-1]
    if not segments:
        raise BadRequest(f'container "{container}" in pod "{pod_name}" is waiting to start: ContainerCreating')
    return segments[-1]


def tail(data: bytes, lines: int | None, limit: int | None) -> bytes:
    if lines is not None:
        parts = data.splitlines(keepends=True)
        data = b"".join(parts[-lines:]) if lines > 0 else b""
    if limit is not None:
        data = data[:limit]
    return data


def read(log: Path, start: int, end: int) -> bytes:
    with log.open("rb") as handle:
        handle.seek(start)
        return handle.read(max(end - start, 0))


def follow(log: Path, start: int, first: bytes, still_running: Callable[[], bool],
           clock: Callable[[], float] = time.monotonic) -> Iterator[bytes | None]:
    """``first``, then what the container appends, until it stops (and its output is drained)."""
    if first:
        yield first
    position = start
    last_yield = clock()
    while True:
        size = log.stat().st_size if log.exists() else position
        if size > position:
            yield read(log, position, size)
            position = size
            last_yield = clock()
            continue
        if not still_running():
            size = log.stat().st_size if log.exists() else position
            if size > position:
                yield read(log, position, size)
            return
        if clock() - last_yield >= IDLE_TICK:
            last_yield = clock()
            yield None
        time.sleep(FOLLOW_POLL)
