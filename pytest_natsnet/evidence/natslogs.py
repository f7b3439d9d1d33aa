"""nats-server log lines that explain routes: connects and disconnects, route errors, DNS lookups, TLS hostname
and authorization errors. Repeats (a route retried every second) are folded into one line with a count. Pure."""

from __future__ import annotations

import re
from collections.abc import Iterable

from pytest_natsnet.evidence.model import LogLine

_PREFIX = re.compile(r"^\[\d+\] (\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d+) ")
_RID = re.compile(r"\brid:\d+")
_EPHEMERAL = re.compile(r"(\d+\.\d+\.\d+\.\d+|\]):(\d{5}|[1-9]\d{3})\b(?=( -|->))")
_UDP_SOURCE = re.compile(r"(read|write) udp (\S+):\d+->")
_SHA = re.compile(r"SHA-256: [0-9a-f]+")

RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("fatal", re.compile(r"^nats-server: |\[FTL\]")),
    ("dns", re.compile(r"lookup .*(i/o timeout|no such host|server misbehaving|connection refused)")),
    ("tls", re.compile(r"TLS (route )?handshake error|x509:|tls: ")),
    ("auth", re.compile(r"[Aa]uthorization|[Aa]uthentication (error|violation)")),
    ("self", re.compile(r"Detected route to self")),
    ("duplicate", re.compile(r"duplicate (server )?name", re.I)),
    ("route-error", re.compile(r"Error trying to connect to route")),
    ("route-created", re.compile(r"Route connection created")),
    ("route-closed", re.compile(r"Route(r)? connection closed")),
    ("route-error", re.compile(r"route.*(refused|timeout|reset)", re.I)),
)
PROBLEMS = ("fatal", "dns", "tls", "auth", "duplicate", "route-error")


def category(line: str) -> str | None:
    for name, pattern in RULES:
        if pattern.search(line):
            return name
    return None


def normalised(message: str) -> str:
    """The message without what changes between repeats (connection ids, ephemeral ports, digests)."""
    message = _RID.sub("rid:N", message)
    message = _EPHEMERAL.sub(lambda m: f"{m.group(1)}:*", message)
    message = _UDP_SOURCE.sub(lambda m: f"{m.group(1)} udp {m.group(2)}:*->", message)
    return _SHA.sub("SHA-256: …", message)


def extract(pod: str, text: str) -> list[LogLine]:
    """The lines that matter, folded: one per distinct message, in order of first appearance."""
    folded: dict[tuple[str, str], LogLine] = {}
    for raw in text.splitlines():
        kind = category(raw)
        if kind is None:
            continue
        stamp = _PREFIX.match(raw)
        message = raw[stamp.end():] if stamp else raw
        key = (kind, normalised(message))
        when = stamp.group(1) if stamp else ""
        seen = folded.get(key)
        folded[key] = (LogLine(pod, raw.strip(), kind, 1, when) if seen is None else
                       LogLine(pod, seen.text, kind, seen.count + 1, when))
    return list(folded.values())


def problems(lines: Iterable[LogLine]) -> list[LogLine]:
    """The lines that report something wrong, most repeated first."""
    return sorted((line for line in lines if line.category in PROBLEMS), key=lambda line: -line.count)
