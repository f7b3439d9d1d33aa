"""Cluster DNS query logs, summarised: per name and type, how often, which rcodes, first and last time.

Two line formats are read: the sandbox DNS server's JSON lines (``ts, client, qname, qtype, proto, rcode, ...``)
and CoreDNS's ``log`` plugin (``[INFO] 10.244.1.5:41055 - 8049 "A IN nats.ns.svc.cluster.local. udp 52 false
512" NOERROR qr,aa,rd 106 0.000149667s``), optionally after a ``kubectl logs --timestamps`` RFC 3339 prefix.
Anything else (CoreDNS errors, start-up lines) is kept as an unparsed line. Pure.
"""

from __future__ import annotations

import datetime
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

_COREDNS = re.compile(
    r'^\[(?P<level>[A-Z]+)\] (?P<client>\S+) - \d+ "(?P<qtype>\S+) IN (?P<qname>\S+) (?P<proto>\S+)[^"]*" '
    r"(?P<rcode>[A-Z]+)")
_TIMESTAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) (.*)$")


@dataclass(frozen=True)
class Query:
    qname: str
    qtype: str
    rcode: str
    client: str = ""
    proto: str = ""
    ts: float | None = None
    source: str = ""

    @property
    def client_ip(self) -> str:
        host = self.client
        if host.startswith("["):
            return host[1:].split("]", 1)[0]
        return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _epoch(text: str) -> float | None:
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def parse(line: str) -> Query | None:
    """One log line as a query (None: not a query line)."""
    line = line.strip()
    ts = None
    if stamped := _TIMESTAMP.match(line):
        ts, line = _epoch(stamped.group(1)), stamped.group(2)
    if line.startswith("{"):
        try:
            record = json.loads(line)
        except ValueError:
            return None
        if not isinstance(record, dict) or "qname" not in record:
            return None
        when = record.get("ts")
        return Query(str(record.get("qname", "")).lower(), str(record.get("qtype", "")), str(record.get("rcode", "")),
                     str(record.get("client", "")), str(record.get("proto", "")),
                     float(when) if isinstance(when, int | float) else ts, str(record.get("source") or ""))
    if matched := _COREDNS.match(line):
        return Query(matched["qname"].lower(), matched["qtype"], matched["rcode"], matched["client"],
                     matched["proto"], ts)
    return None


def relevant(query: Query, namespace: str, client_ips: Iterable[str]) -> bool:
    """A query from one of the namespace's pods, or for a name in the namespace."""
    return query.client_ip in set(client_ips) or f".{namespace}." in f".{query.qname}"


@dataclass
class NameSummary:
    qname: str
    qtype: str
    count: int = 0
    rcodes: Counter[str] = field(default_factory=Counter)
    first: float | None = None
    last: float | None = None

    def add(self, query: Query) -> None:
        self.count += 1
        self.rcodes[query.rcode] += 1
        if query.ts is not None:
            self.first = query.ts if self.first is None else min(self.first, query.ts)
            self.last = query.ts if self.last is None else max(self.last, query.ts)


def summarise(queries: Iterable[Query]) -> list[NameSummary]:
    """Per (name, type), most asked first."""
    rows: dict[tuple[str, str], NameSummary] = {}
    for query in queries:
        rows.setdefault((query.qname, query.qtype), NameSummary(query.qname, query.qtype)).add(query)
    return sorted(rows.values(), key=lambda r: (-r.count, r.qname, r.qtype))


def _time(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%H:%M:%S.%f")[:-3]


def render(rows: Sequence[NameSummary], limit: int | None = None) -> str:
    """A Markdown table (``limit``: the first rows only, the rest counted)."""
    shown = rows if limit is None else rows[:limit]
    lines = ["| name | type | count | rcodes | first (UTC) | last (UTC) |", "|---|---|---:|---|---|---|"]
    for row in shown:
        rcodes = ", ".join(f"{code} {n}" for code, n in row.rcodes.most_common())
        lines.append(f"| `{row.qname}` | {row.qtype} | {row.count} | {rcodes} | {_time(row.first)} | "
                     f"{_time(row.last)} |")
    if len(rows) > len(shown):
        lines.append(f"| ({len(rows) - len(shown)} more names) | | {sum(r.count for r in rows[len(shown):])} | | | |")
    return "\n".join(lines)


def base_name(qname: str, search: Sequence[str]) -> str:
    """The name a resolver was asked for, before it appended a search domain (longest suffix first)."""
    name = qname.rstrip(".").lower()
    for suffix in sorted((d.rstrip(".").lower() for d in search), key=len, reverse=True):
        if name.endswith("." + suffix):
            return name[: -len(suffix) - 1]
    return name


def failing(rows: Sequence[NameSummary], search: Sequence[str] = ()) -> list[tuple[str, Counter[str]]]:
    """The names that got no NOERROR in any search-list form, grouped by the name asked for, with their rcodes.
    The search list's own NXDOMAINs on the way to an answer (``nats.ns.svc.cluster.local.ns.svc.cluster.local``)
    are not failures."""
    suffixes = [d.rstrip(".").lower() for d in search]
    answered = {r.qname.rstrip(".") for r in rows if r.rcodes.get("NOERROR")}
    answered |= {base_name(name, search) for name in answered}
    codes: dict[str, Counter[str]] = {}
    for row in rows:
        if row.rcodes.get("NOERROR"):
            continue
        name = row.qname.rstrip(".").lower()
        forms = [name, *(name[: -len(s) - 1] for s in suffixes if name.endswith("." + s))]
        if any(form in answered for form in forms):
            continue
        codes.setdefault(base_name(name, search), Counter()).update(row.rcodes)
    return list(codes.items())


def headline(rows: Sequence[NameSummary], search: Sequence[str] = ()) -> str:
    """One sentence: queries, names, and the names that found no answer."""
    total = sum(r.count for r in rows)
    if not total:
        return "no query from the cell's pods or for its names is in the cluster DNS log"
    text = f"{total} queries for {len(rows)} names"
    bad = failing(rows, search)
    if bad:
        shown = [f"{base} ({', '.join(f'{code} ×{n}' for code, n in codes.most_common())})" for base, codes in bad[:5]]
        text += "; never answered: " + ", ".join(shown) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
    else:
        text += "; every name got an answer"
    return text
