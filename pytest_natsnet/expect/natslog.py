"""nats-server's log as data: timestamped lines, and what a cluster's bootstrap leaves in it (when each server
listened for routes, the route errors before the mesh formed, when a JetStream meta leader was elected). Pure.

A line looks like ``[1] 2026/11/29 04:05:40.584717 [INF] JetStream cluster new metadata leader: nats-0/nats``
(the default ``logtime``; the server's clock, microseconds). Lines without a timestamp are kept with none.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

LINE = re.compile(r"^\[\d+\] (?P<ts>\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d+) \[(?P<level>[A-Z]+)\] (?P<text>.*)$")
STARTED = re.compile(r"Starting nats-server")
ROUTES_LISTENING = re.compile(r"Listening for route connections on ")
ROUTE_ERROR = re.compile(r"Error trying to connect to route \(attempt (?P<attempt>\d+)\): (?P<error>.*)")
META_LEADER = re.compile(r"JetStream cluster new metadata leader: (?P<leader>[^/\s]+)|"
                         r"JetStream cluster new remote metadata leader|"
                         r"Self is new JetStream cluster metadata leader")
"""Every line nats-server logs when it learns the meta leader (``processLeaderChange``: a follower that does not
know the leader's server name yet says "new remote metadata leader"). A follower that joins a group whose leader
is already elected may log none of them: ask ``/jsz`` to know."""
NO_META_LEADER = re.compile(r"JetStream has not established contact with a meta leader|"
                            r"JetStream is still recovering meta layer")
"""What a JetStream server without a meta leader says: the first text older releases (nats-io/k8s#441, #594),
the second 2.14's health check while the meta layer waits for routes."""
ROUTE_LOOKUP_FAILED = re.compile(r"Error trying to connect to route \(attempt \d+\): lookup for host "
                                 r"\"?(?P<host>[^\":\s]+)\"?.*no such host")
RESTORED = re.compile(r"Restored (?P<messages>[\d,]+) messages for stream '(?P<account>[^ ]+) > (?P<stream>[^']+)'")


@dataclass(frozen=True)
class LogLine:
    pod: str
    at: datetime.datetime | None
    level: str
    text: str

    def __str__(self) -> str:
        when = self.at.strftime("%H:%M:%S.%f") if self.at else "?"
        return f"{self.pod} {when} [{self.level}] {self.text}"


def parse(pod: str, text: str) -> list[LogLine]:
    """Every line of a server's log; ``at`` is None for a line without nats-server's timestamp."""
    lines = []
    for raw in text.splitlines():
        match = LINE.match(raw.strip())
        if match is None:
            lines.append(LogLine(pod, None, "", raw.strip()))
            continue
        at = datetime.datetime.strptime(match.group("ts"), "%Y/%m/%d %H:%M:%S.%f")
        lines.append(LogLine(pod, at, match.group("level"), match.group("text")))
    return lines


def first_start(lines: Sequence[LogLine]) -> list[LogLine]:
    """The lines of the server's first start only (a restarted container appends to the same log)."""
    starts = [i for i, line in enumerate(lines) if STARTED.search(line.text)]
    return list(lines[: starts[1]]) if len(starts) > 1 else list(lines)


def matching(lines: Iterable[LogLine], pattern: re.Pattern[str]) -> list[LogLine]:
    return [line for line in lines if pattern.search(line.text)]


def error_kind(error: str) -> str:
    """A route error's kind: ``refused`` (nobody listens yet), ``no such host`` (no DNS record yet), ``timeout``,
    ``tls`` or ``other``."""
    lowered = error.lower()
    if "connection refused" in lowered:
        return "refused"
    if "no such host" in lowered:
        return "no such host"
    if "timeout" in lowered:
        return "timeout"
    if "tls" in lowered or "x509" in lowered:
        return "tls"
    return "other"


@dataclass(frozen=True)
class Bootstrap:
    """What the servers' logs say about a cluster forming from nothing."""

    started: datetime.datetime | None
    """The first server's start."""
    listening: Mapping[str, datetime.datetime]
    """When each server listened for routes."""
    route_errors: tuple[LogLine, ...]
    """Every ``Error trying to connect to route`` line, in time order."""
    meta_leader: LogLine | None
    """The first line that names an elected JetStream meta leader (None: none was elected)."""

    @property
    def all_listening(self) -> datetime.datetime | None:
        return max(self.listening.values()) if self.listening else None

    def seconds_after_start(self, at: datetime.datetime | None) -> float | None:
        return None if at is None or self.started is None else (at - self.started).total_seconds()

    def errors_by_kind(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for line in self.route_errors:
            match = ROUTE_ERROR.search(line.text)
            kind = error_kind(match.group("error") if match else line.text)
            counts[kind] = counts.get(kind, 0) + 1
        return counts

    def late_errors(self, grace: Mapping[str, float]) -> list[LogLine]:
        """Route errors logged after every server listened, beyond the ``grace`` seconds their kind is allowed
        (a refused dial may be logged just after the listener opened; a lookup may be answered from a DNS cache
        for as long as the cluster's DNS keeps a negative answer)."""
        if self.all_listening is None:
            return list(self.route_errors)
        late = []
        for line in self.route_errors:
            if line.at is None:
                continue
            match = ROUTE_ERROR.search(line.text)
            allowed = grace.get(error_kind(match.group("error") if match else line.text), 0.0)
            if (line.at - self.all_listening).total_seconds() > allowed:
                late.append(line)
        return late


def bootstrap(logs: Mapping[str, str]) -> Bootstrap:
    """The bootstrap of the servers whose logs (pod name → log text) are given, from each one's first start."""
    lines = {pod: first_start(parse(pod, text)) for pod, text in logs.items()}
    starts = [line.at for pod_lines in lines.values() for line in matching(pod_lines, STARTED) if line.at]
    listening = {}
    for pod, pod_lines in lines.items():
        opened = [line.at for line in matching(pod_lines, ROUTES_LISTENING) if line.at]
        if opened:
            listening[pod] = opened[0]
    every = [line for pod_lines in lines.values() for line in pod_lines if line.at]
    errors = sorted(matching(every, ROUTE_ERROR), key=lambda line: line.at or datetime.datetime.min)
    leaders = sorted(matching(every, META_LEADER), key=lambda line: line.at or datetime.datetime.min)
    return Bootstrap(min(starts) if starts else None, listening, tuple(errors), leaders[0] if leaders else None)
