"""The probe wire model: builders accepted by the program, outcome glyphs, answer parsing."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_natsnet.probe import program
from pytest_natsnet.probe.model import (
    DnsRequest,
    GetaddrinfoRequest,
    HttpRequest,
    NatsRequest,
    Outcome,
    ProbeAnswerError,
    ProbeBatch,
    TcpRequest,
    TlsOptions,
    WatchRequest,
    parse_answer,
)

BATCH = ProbeBatch((
    DnsRequest("d", "nats", rdtype="SRV", transport="tcp", search=True),
    GetaddrinfoRequest("g", "nats"),
    TcpRequest("t", "nats", 4222),
    HttpRequest("h", "http://nats-0.nats-headless:8222/routez"),
    NatsRequest("n", ("nats://nats:4222",), tls=TlsOptions("PEM", hostname="nats"), wait_discovered=2.0),
), concurrency=4)


def result(key: str, outcome: str, kind: str = "tcp") -> dict[str, Any]:
    return {"key": key, "kind": kind, "outcome": outcome, "detail": {}, "elapsed_ms": 1.5}


def test_builders_produce_batches_the_program_accepts() -> None:
    wire = BATCH.to_json()
    assert program.validate_batch(wire) is None
    assert [r["kind"] for r in wire["requests"]] == ["dns", "getaddrinfo", "tcp", "http", "nats"]
    assert wire["requests"][4]["tls"] == {"ca_pem": "PEM", "hostname": "nats"}
    assert wire["concurrency"] == 4


def test_watch_request_json() -> None:
    wire = WatchRequest(("nats://nats:4222",), duration=5).to_json()
    assert wire["servers"] == ["nats://nats:4222"] and wire["duration"] == 5 and wire["tls"] is None


def test_duplicate_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate request keys: a"):
        ProbeBatch((TcpRequest("a", "x", 1), TcpRequest("a", "y", 2)))


@pytest.mark.parametrize(("outcome", "glyph"), [
    (Outcome.ALLOWED, "."), (Outcome.OK, "."), (Outcome.NOERROR, "."), (Outcome.BLOCKED, "X"),
    (Outcome.REFUSED, "R"), (Outcome.NXDOMAIN, "N"), (Outcome.PROBE_ERROR, "!"), (Outcome.UNKNOWN, "?"),
])
def test_glyphs(outcome: Outcome, glyph: str) -> None:
    assert outcome.glyph == glyph


def test_every_outcome_has_a_glyph_and_probe_error_is_not_blocked() -> None:
    assert all(len(o.glyph) == 1 for o in Outcome)
    assert Outcome.PROBE_ERROR.glyph != Outcome.BLOCKED.glyph
    assert not Outcome.PROBE_ERROR.works and Outcome.ALLOWED.works


def test_parse_answer_in_request_order() -> None:
    batch = ProbeBatch((TcpRequest("a", "x", 1), DnsRequest("b", "nats")))
    answer = {"results": [result("a", "refused"), result("b", "NXDOMAIN", "dns")]}
    parsed = parse_answer(answer, batch)
    assert [(r.key, r.outcome) for r in parsed] == [("a", Outcome.REFUSED), ("b", Outcome.NXDOMAIN)]
    assert parsed[1].kind == "dns" and parsed[0].elapsed_ms == 1.5


def test_unrecognised_outcome_becomes_unknown_keeping_the_text() -> None:
    batch = ProbeBatch((DnsRequest("b", "nats"),))
    (parsed,) = parse_answer({"results": [result("b", "BADVERS", "dns")]}, batch)
    assert (parsed.outcome, parsed.raw_outcome) == (Outcome.UNKNOWN, "BADVERS")


@pytest.mark.parametrize(("answer", "message"), [
    ({"results": [result("a", "allowed")]}, "1 results for 2 requests"),
    ({"results": [result("a", "allowed"), result("c", "allowed")]}, "'c' does not match request key 'b'"),
    ({"error": "batch key 'requests' must be a list", "results": []}, "probe rejected the batch"),
    ({}, "no 'results' list"),
])
def test_parse_answer_rejects_answers_that_do_not_fit(answer: dict[str, Any], message: str) -> None:
    batch = ProbeBatch((TcpRequest("a", "x", 1), TcpRequest("b", "x", 2)))
    with pytest.raises(ProbeAnswerError, match=message):
        parse_answer(answer, batch)


def test_parse_answer_accepts_the_wire_dict_as_batch() -> None:
    wire = {"requests": [{"key": "a", "kind": "tcp", "host": "x", "port": 1}]}
    assert parse_answer({"results": [result("a", "blocked")]}, wire)[0].outcome is Outcome.BLOCKED
