"""nats-server's log as data: the lines real nats-server 2.14.2 wrote while a JetStream cluster bootstrapped on
the sandbox (publishNotReadyAddresses true: dials refused until every server listened) and while it deadlocked
(false: every route lookup NXDOMAIN)."""

from __future__ import annotations

import datetime

import pytest

from pytest_natsnet.expect.natslog import (
    NO_META_LEADER,
    RESTORED,
    ROUTE_LOOKUP_FAILED,
    bootstrap,
    error_kind,
    first_start,
    matching,
    parse,
)

NATS_0 = """\
[16919] 2026/11/29 04:05:39.950000 [INF] Starting nats-server
[16919] 2026/11/29 04:05:39.980000 [INF] Listening for route connections on 0.0.0.0:6222
[16919] 2026/11/29 04:05:39.981000 [ERR] Error trying to connect to route (attempt 1): dial tcp 198.18.0.12:6222: \
connect: connection refused
[16919] 2026/11/29 04:05:40.589942 [INF] Self is new JetStream cluster metadata leader
"""
NATS_1 = """\
[16924] 2026/11/29 04:05:39.960000 [INF] Starting nats-server
[16924] 2026/11/29 04:05:39.990000 [INF] Listening for route connections on 0.0.0.0:6222
[16924] 2026/11/29 04:05:39.996379 [ERR] Error trying to connect to route (attempt 1): dial tcp 198.18.0.12:6222: \
connect: connection refused
[16924] 2026/11/29 04:05:40.088529 [WRN] JetStream has not established contact with a meta leader
[16924] 2026/11/29 04:05:40.584717 [INF] JetStream cluster new metadata leader: nats-0/nats
"""
NATS_2 = """\
[16935] 2026/11/29 04:05:39.970000 [INF] Starting nats-server
[16935] 2026/11/29 04:05:40.010900 [INF] Listening for route connections on 0.0.0.0:6222
[16935] 2026/11/29 04:05:40.585054 [INF] JetStream cluster new metadata leader: nats-0/nats
"""
DEADLOCKED = """\
[14633] 2026/11/29 04:07:34.250000 [INF] Starting nats-server
[14633] 2026/11/29 04:07:34.367699 [ERR] Error trying to connect to route (attempt 1): lookup for host \
"nats-1.nats-headless": lookup nats-1.nats-headless on 198.18.128.10:53: no such host
[14633] 2026/11/29 04:07:36.000000 [WRN] Waiting for routing to be established...
[14633] 2026/11/29 04:07:44.256473 [WRN] Healthcheck failed: "JetStream is still recovering meta layer"
"""


def at(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, "%H:%M:%S.%f").replace(year=2026, month=11, day=29)


def test_lines_keep_the_servers_time_level_and_text() -> None:
    lines = parse("nats-1", NATS_1 + "a line without a timestamp\n")
    assert lines[3].at == at("04:05:40.088529") and lines[3].level == "WRN"
    assert lines[3].text == "JetStream has not established contact with a meta leader"
    assert lines[-1].at is None and lines[-1].text == "a line without a timestamp"
    assert str(lines[4]) == "nats-1 04:05:40.584717 [INF] JetStream cluster new metadata leader: nats-0/nats"


def test_the_bootstrap_of_three_servers_publishing_not_ready_addresses() -> None:
    seen = bootstrap({"nats-0": NATS_0, "nats-1": NATS_1, "nats-2": NATS_2})
    assert seen.started == at("04:05:39.950000")
    assert seen.all_listening == at("04:05:40.010900")
    assert [line.pod for line in seen.route_errors] == ["nats-0", "nats-1"]
    assert seen.errors_by_kind() == {"refused": 2}
    assert seen.meta_leader is not None and seen.meta_leader.pod == "nats-1"  # the first to log the election
    assert seen.seconds_after_start(seen.meta_leader.at) == 0.634717
    assert seen.late_errors({}) == []


def test_errors_after_every_server_listens_are_late_beyond_their_grace() -> None:
    late_refusal = NATS_2 + ("[16935] 2026/11/29 04:05:41.500000 [ERR] Error trying to connect to route (attempt 3): "
                             "dial tcp 198.18.0.10:6222: connect: connection refused\n")
    seen = bootstrap({"nats-0": NATS_0, "nats-1": NATS_1, "nats-2": late_refusal})
    assert [str(line.at.time()) for line in seen.late_errors({"refused": 1.0}) if line.at] == ["04:05:41.500000"]
    assert seen.late_errors({"refused": 2.0}) == []


def test_a_deadlocked_server_explains_itself() -> None:
    lines = parse("nats-0", DEADLOCKED)
    assert [m.group("host") for line in lines if (m := ROUTE_LOOKUP_FAILED.search(line.text))] == [
        "nats-1.nats-headless"]
    assert [line.level for line in matching(lines, NO_META_LEADER)] == ["WRN"]
    seen = bootstrap({"nats-0": DEADLOCKED})
    assert seen.meta_leader is None and seen.all_listening is None
    assert seen.errors_by_kind() == {"no such host": 1}


def test_only_the_first_start_counts() -> None:
    restarted = NATS_2 + ("[2] 2026/11/29 04:06:00.000000 [INF] Starting nats-server\n"
                          "[2] 2026/11/29 04:06:00.1 [ERR] x\n")
    assert len(first_start(parse("nats-2", restarted))) == 3


def test_error_kinds_and_restored_messages() -> None:
    assert [error_kind(e) for e in ("dial tcp 1.2.3.4:6222: connect: connection refused",
                                    'lookup for host "a": lookup a on 10.0.0.10:53: no such host',
                                    "dial tcp 1.2.3.4:6222: i/o timeout", "remote error: tls: bad certificate",
                                    "EOF")] == ["refused", "no such host", "timeout", "tls", "other"]
    match = RESTORED.search("Restored 1,000 messages for stream '$G > NATSNET_BOOTSTRAP' in 2ms")
    assert match is not None and (match.group("messages"), match.group("stream")) == ("1,000", "NATSNET_BOOTSTRAP")


@pytest.mark.parametrize("text", [
    "JetStream cluster new metadata leader: nats-0/nats",
    "JetStream cluster new metadata leader: nats-0",
    "JetStream cluster new remote metadata leader",  # the leader's server name not known yet (seen on 2.14.2)
    "Self is new JetStream cluster metadata leader",
])
def test_every_meta_leader_line_nats_server_logs_is_recognised(text: str) -> None:
    from pytest_natsnet.expect.natslog import META_LEADER

    assert META_LEADER.search(text)
    assert not META_LEADER.search("JetStream cluster no metadata leader")
