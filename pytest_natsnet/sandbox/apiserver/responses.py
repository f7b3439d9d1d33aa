"""What a request handler answers, independent of HTTP: a body, a stream of chunks, or a protocol upgrade;
and the Kubernetes ``Status`` error every failure is answered with."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

JSON_TYPE = "application/json"


@dataclass
class Request:
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    """Lower-case names."""
    body: bytes = b""
    multi: Mapping[str, list[str]] = field(default_factory=dict)
    """Every value of each query parameter (``command`` of exec repeats)."""

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)


@dataclass
class Response:
    code: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Stream:
    """A chunked response: each chunk is written as it comes; ``None`` is an idle tick (the server checks
    that the client is still there)."""

    code: int
    content_type: str
    chunks: Iterator[bytes | None]


@dataclass
class Upgrade:
    """A protocol switch (websocket): ``headers`` go out with the 101, then ``run(connection)`` owns it."""

    headers: list[tuple[str, str]]
    run: Callable[[socket.socket], None]


Answer = Response | Stream | Upgrade


def json_response(code: int, obj: Any, headers: Iterable[tuple[str, str]] = ()) -> Response:
    return Response(code, json.dumps(obj, separators=(",", ":")).encode(), JSON_TYPE, list(headers))


def status(code: int, reason: str, message: str, *, name: str = "", group: str = "", kind: str = "",
           causes: Iterable[Mapping[str, str]] = ()) -> dict[str, Any]:
    """A Kubernetes ``Status`` object (``details.kind`` is the resource, e.g. ``pods``)."""
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Success" if code < 400 else "Failure", "message": message,
                            "reason": reason, "code": code}
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    if kind:
        details["kind"] = kind
    listed = [dict(c) for c in causes]
    if listed:
        details["causes"] = listed
    if details:
        body["details"] = details
    if code < 400:
        body.pop("reason")
        body.pop("message")
    return body


def error(code: int, reason: str, message: str, **details: Any) -> Response:
    return json_response(code, status(code, reason, message, **details))
