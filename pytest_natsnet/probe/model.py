"""The probe's wire format: typed request builders, the outcome vocabulary and answer parsing.

The program (``probe/program.py``) is self-contained and speaks plain JSON; this module is the typed side of
that contract for the plugin and the suites.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from pytest_natsnet.errors import NatsnetError

RdType = Literal["A", "AAAA", "SRV", "PTR", "TXT"]
Transport = Literal["udp", "tcp"]


class Outcome(StrEnum):
    """The closed outcome vocabulary; DNS rcodes keep their RFC spelling."""

    ALLOWED = "allowed"
    OK = "ok"
    BLOCKED = "blocked"
    REFUSED = "refused"
    UNRESOLVED = "unresolved"
    TIMEOUT = "timeout"
    GAIERROR = "gaierror"
    FAILED = "failed"
    NOERROR = "NOERROR"
    NXDOMAIN = "NXDOMAIN"
    SERVFAIL = "SERVFAIL"
    DNS_REFUSED = "REFUSED"
    FORMERR = "FORMERR"
    NOTIMP = "NOTIMP"
    PROBE_ERROR = "probe-error"
    UNKNOWN = "unknown"

    @property
    def glyph(self) -> str:
        """One character for grids: ``.`` works, ``X`` blocked, ``R`` refused, ``N`` nxdomain, ``!`` error."""
        return _GLYPHS[self]

    @property
    def works(self) -> bool:
        return self in (Outcome.ALLOWED, Outcome.OK, Outcome.NOERROR)


_GLYPHS: dict[Outcome, str] = {
    Outcome.ALLOWED: ".",
    Outcome.OK: ".",
    Outcome.NOERROR: ".",
    Outcome.BLOCKED: "X",
    Outcome.REFUSED: "R",
    Outcome.NXDOMAIN: "N",
    Outcome.UNRESOLVED: "U",
    Outcome.TIMEOUT: "T",
    Outcome.GAIERROR: "G",
    Outcome.FAILED: "F",
    Outcome.SERVFAIL: "S",
    Outcome.DNS_REFUSED: "r",
    Outcome.FORMERR: "f",
    Outcome.NOTIMP: "n",
    Outcome.PROBE_ERROR: "!",
    Outcome.UNKNOWN: "?",
}

KINDS = ("dns", "getaddrinfo", "tcp", "http", "nats", "relay", "jetstream")


class ProbeAnswerError(NatsnetError):
    """The probe's answer does not fit its batch (wrong count, missing keys, a top-level error)."""


@dataclass(frozen=True)
class TlsOptions:
    """Client TLS: the CA to trust and an optional ``tls_hostname`` override."""

    ca_pem: str
    hostname: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"ca_pem": self.ca_pem, "hostname": self.hostname}


def _tls_json(tls: TlsOptions | None) -> dict[str, Any] | None:
    return None if tls is None else tls.to_json()


@dataclass(frozen=True)
class DnsRequest:
    key: str
    name: str
    rdtype: RdType = "A"
    transport: Transport = "udp"
    search: bool = False
    timeout: float = 3.0

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "kind": "dns", "name": self.name, "rdtype": self.rdtype,
                "transport": self.transport, "search": self.search, "timeout": self.timeout}


@dataclass(frozen=True)
class GetaddrinfoRequest:
    key: str
    name: str
    port: int = 4222
    timeout: float = 5.0

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "kind": "getaddrinfo", "name": self.name, "port": self.port,
                "timeout": self.timeout}


@dataclass(frozen=True)
class TcpRequest:
    key: str
    host: str
    port: int
    timeout: float = 2.0

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "kind": "tcp", "host": self.host, "port": self.port, "timeout": self.timeout}


@dataclass(frozen=True)
class HttpRequest:
    key: str
    url: str
    timeout: float = 3.0

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "kind": "http", "url": self.url, "timeout": self.timeout}


@dataclass(frozen=True)
class NatsRequest:
    key: str
    servers: tuple[str, ...]
    tls: TlsOptions | None = None
    dont_randomize: bool = True
    connect_timeout: float = 2.0
    roundtrip: bool = True
    wait_discovered: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "kind": "nats", "servers": list(self.servers), "tls": _tls_json(self.tls),
                "dont_randomize": self.dont_randomize, "connect_timeout": self.connect_timeout,
                "roundtrip": self.roundtrip, "wait_discovered": self.wait_discovered}


@dataclass(frozen=True)
class RelayRequest:
    """Subscribe through ``subscribe``, publish through ``publish``: does a message cross the routes?"""

    key: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    tls: TlsOptions | None = None
    connect_timeout: float = 2.0
    timeout: float = 5.0

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "kind": "relay", "publish": list(self.publish),
                "subscribe": list(self.subscribe), "tls": _tls_json(self.tls),
                "connect_timeout": self.connect_timeout, "timeout": self.timeout}


@dataclass(frozen=True)
class JetStreamRequest:
    """Through ``servers``: create ``stream`` when ``create`` (``subjects``, ``replicas``, file storage), publish
    ``publish`` acknowledged messages, then the stream's info (``state``, ``cluster`` leader and replicas)."""

    key: str
    servers: tuple[str, ...]
    stream: str
    subjects: tuple[str, ...] = ()
    replicas: int = 1
    create: bool = False
    publish: int = 0
    tls: TlsOptions | None = None
    connect_timeout: float = 2.0
    timeout: float = 5.0

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "kind": "jetstream", "servers": list(self.servers), "stream": self.stream,
                "subjects": list(self.subjects), "replicas": self.replicas, "create": self.create,
                "publish": self.publish, "tls": _tls_json(self.tls), "connect_timeout": self.connect_timeout,
                "timeout": self.timeout}


ProbeRequest = (DnsRequest | GetaddrinfoRequest | TcpRequest | HttpRequest | NatsRequest | RelayRequest
                | JetStreamRequest)


@dataclass(frozen=True)
class WatchRequest:
    """The long-running ``watch`` command (one per program run, JSON lines out)."""

    servers: tuple[str, ...]
    subject: str = "natsnet.watch"
    duration: float = 30.0
    publish_interval: float = 0.2
    tls: TlsOptions | None = None
    dont_randomize: bool = False
    reconnect_time_wait: float = 0.5

    def to_json(self) -> dict[str, Any]:
        return {"servers": list(self.servers), "tls": _tls_json(self.tls), "subject": self.subject,
                "duration": self.duration, "publish_interval": self.publish_interval,
                "dont_randomize": self.dont_randomize, "reconnect_time_wait": self.reconnect_time_wait}


@dataclass(frozen=True)
class ProbeBatch:
    requests: tuple[ProbeRequest, ...]
    concurrency: int = 8

    def __post_init__(self) -> None:
        keys = [r.key for r in self.requests]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise ValueError(f"probe batch has duplicate request keys: {', '.join(duplicates)}")

    def to_json(self) -> dict[str, Any]:
        return {"requests": [r.to_json() for r in self.requests], "concurrency": self.concurrency}


@dataclass(frozen=True)
class ProbeResult:
    key: str
    kind: str
    outcome: Outcome
    detail: Mapping[str, Any] = field(default_factory=dict)
    elapsed_ms: float = 0.0
    raw_outcome: str = ""
    """The outcome text as the program wrote it (differs from ``outcome`` only when that is ``unknown``)."""


def outcome_of(text: str) -> Outcome:
    """The vocabulary member for ``text``; anything outside it is :attr:`Outcome.UNKNOWN`."""
    try:
        return Outcome(text)
    except ValueError:
        return Outcome.UNKNOWN


def parse_answer(answer: Mapping[str, Any], batch: ProbeBatch | Mapping[str, Any]) -> list[ProbeResult]:
    """The answer's results in request order; :class:`ProbeAnswerError` when it does not fit the batch."""
    wire = batch.to_json() if isinstance(batch, ProbeBatch) else batch
    requests = list(wire.get("requests", []))
    if answer.get("error"):
        raise ProbeAnswerError(f"probe rejected the batch: {answer['error']}")
    results = answer.get("results")
    if not isinstance(results, list):
        raise ProbeAnswerError("probe answer has no 'results' list")
    if len(results) != len(requests):
        raise ProbeAnswerError(f"probe answered {len(results)} results for {len(requests)} requests")
    parsed: list[ProbeResult] = []
    for request, result in zip(requests, results, strict=True):
        if not isinstance(result, Mapping) or result.get("key") != request["key"]:
            got = result.get("key") if isinstance(result, Mapping) else result
            raise ProbeAnswerError(f"probe result {got!r} does not match request key {request['key']!r}")
        raw = str(result.get("outcome", ""))
        parsed.append(ProbeResult(
            key=str(result["key"]), kind=str(result.get("kind", request.get("kind", ""))),
            outcome=outcome_of(raw), detail=dict(result.get("detail") or {}),
            elapsed_ms=float(result.get("elapsed_ms", 0.0)), raw_outcome=raw,
        ))
    return parsed


def by_key(results: Sequence[ProbeResult]) -> dict[str, ProbeResult]:
    return {r.key: r for r in results}
