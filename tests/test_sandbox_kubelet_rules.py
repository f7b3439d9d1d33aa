"""The kubelet's timing rules the sandbox follows, pinned as data (``sandbox/kubeletrules.py``).

Each table is what the real component does, with the upstream file it comes from:

- kubernetes ``pkg/kubelet/prober/worker.go`` (``run``: a ticker of ``periodSeconds`` from the worker's start;
  ``doProbe``: ``int32(time.Since(StartedAt).Seconds()) < InitialDelaySeconds`` skips a tick; liveness and
  startup stop once the pod has a deletionTimestamp, readiness does not);
- kubernetes ``pkg/kubelet/kuberuntime/kuberuntime_manager.go`` ``doBackOff`` over client-go
  ``util/flowcontrol/backoff.go`` (10 s initial, 300 s max; the first restart is immediate, kubernetes issue
  #133472; an entry older than 2 x max is forgotten);
- kubernetes ``pkg/kubelet/kuberuntime/kuberuntime_container.go`` ``killContainer`` (preStop time is taken from
  the grace period, SIGTERM then gets at least ``minimumGracePeriodInSeconds`` = 2 s) and
  ``setTerminationGracePeriod`` (a probe's own ``terminationGracePeriodSeconds`` wins for its kill).
"""

from __future__ import annotations

import pytest

from pytest_natsnet.sandbox.kubeletrules import (
    CrashLoopBackOff,
    first_probe_time,
    kill_grace_seconds,
    next_tick,
    past_initial_delay,
    probes_while_terminating,
    sigkill_after,
)


@pytest.mark.parametrize(
    ("worker_start", "container_start", "delay", "period", "first"),
    [
        # The chart's startup/readiness probes (delay 10, period 10): the container starts a little after the
        # worker (pod sandbox, image, create): the tick at +10 is 9.x s after the start and skipped.
        (100.0, 100.4, 10, 10, 120.0),
        (100.0, 100.0, 10, 10, 110.0),  # started the very instant the worker did: int(10.0) >= 10
        (100.0, 100.4, 0, 10, 110.0),  # no delay: the worker's first doProbe ran before the container existed
        (100.0, 100.4, 10, 30, 130.0),  # the chart's liveness probe (period 30)
        (100.0, 125.0, 10, 10, 140.0),  # a restart at +25 keeps the worker's ticker: +35 is no tick, +40 is
        (100.0, 100.9, 5, 2, 106.0),  # int(5.1) = 5 >= 5
        (100.0, 100.9, 5, 1, 106.0),
    ],
)
def test_the_first_probe_comes_on_the_workers_ticker(
    worker_start: float, container_start: float, delay: float, period: float, first: float
) -> None:
    assert first_probe_time(worker_start, container_start, delay, period) == pytest.approx(first)


def test_the_initial_delay_truncates_seconds_like_the_kubelet() -> None:
    assert not past_initial_delay(0.0, 10, 9.999)
    assert past_initial_delay(0.0, 10, 10.0)
    assert not past_initial_delay(5.0, 0, 4.0), "a container that has not started is never probed"


def test_ticks_are_counted_from_the_worker_start() -> None:
    assert [next_tick(100.0, 10, t) for t in (90.0, 100.0, 105.0, 110.0, 119.99)] == [100.0, 110.0, 110.0, 120.0,
                                                                                       120.0]


@pytest.mark.parametrize(
    ("kind", "runs"), [("readinessProbe", True), ("livenessProbe", False), ("startupProbe", False)]
)
def test_only_readiness_runs_while_the_pod_terminates(kind: str, runs: bool) -> None:
    assert probes_while_terminating(kind) is runs


def _restarts(exits: list[float]) -> list[float]:
    """Each exit's wait before its restart, when the container restarts as soon as it may."""
    backoff = CrashLoopBackOff()
    waits = []
    for exited in exits:
        start = backoff.restart_at(exited)
        waits.append(start - exited)
        backoff.restarted(exited, start)
    return waits


def test_crash_loop_back_off_starts_after_the_first_restart_and_doubles_to_five_minutes() -> None:
    now, backoff, waits = 0.0, CrashLoopBackOff(), []
    for _ in range(9):  # a container that crashes 1 s after each start
        now += 1.0
        start = backoff.restart_at(now)
        waits.append(start - now)
        backoff.restarted(now, start)
        now = start
    assert waits == [0, 10, 20, 40, 80, 160, 300, 300, 300]


def test_a_back_off_not_renewed_for_ten_minutes_is_forgotten() -> None:
    assert _restarts([0.0, 1.0, 612.0]) == [0, 10, 0], "more than 2 x 300 s after the last restart: at once"
    assert _restarts([0.0, 1.0, 500.0]) == [0, 10, 20]


@pytest.mark.parametrize(
    ("pod_grace", "probe_grace", "reason", "expected"),
    [
        (60, None, "livenessProbe", 60.0),
        (60, 5, "livenessProbe", 5.0),  # the probe's own terminationGracePeriodSeconds
        (60, 5, "startupProbe", 5.0),
        (None, None, "livenessProbe", 30.0),  # the API default
    ],
)
def test_a_probe_kill_uses_the_probes_grace_period_when_it_has_one(
    pod_grace: int | None, probe_grace: int | None, reason: str, expected: float
) -> None:
    probe: dict[str, object] = {"httpGet": {"port": 8222}}
    if probe_grace is not None:
        probe["terminationGracePeriodSeconds"] = probe_grace
    pod_spec = {} if pod_grace is None else {"terminationGracePeriodSeconds": pod_grace}
    assert kill_grace_seconds(pod_spec, {"name": "c", reason: probe}, reason) == expected


@pytest.mark.parametrize(
    ("grace", "hook", "window"), [(60, 0.1, 59.9), (60, 59.5, 2.0), (60, 60, 2.0), (1, 0, 2.0), (0, 0, 2.0)]
)
def test_sigterm_gets_what_the_prestop_hook_left_but_at_least_two_seconds(
    grace: float, hook: float, window: float
) -> None:
    assert sigkill_after(grace, hook) == pytest.approx(window)
