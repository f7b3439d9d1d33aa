"""The suites' shared helpers: bounded polling and applicability."""

from __future__ import annotations

import itertools

from pytest_natsnet.matrix import Scenario
from pytest_natsnet.suitekit import eventually, not_declared


def test_eventually_returns_as_soon_as_done() -> None:
    counter = itertools.count()
    done, value, seconds = eventually(lambda: ((n := next(counter)) >= 2, n), timeout=5.0, interval=0.01)
    assert (done, value) == (True, 2) and seconds < 5.0


def test_eventually_reports_the_last_observation_at_its_deadline() -> None:
    counter = itertools.count()
    done, value, seconds = eventually(lambda: (False, next(counter)), timeout=0.2, interval=0.05)
    assert done is False and value >= 2 and 0.2 <= seconds < 2.0


def test_not_declared_names_the_declared_failure() -> None:
    healthy = Scenario("default", {}, ())
    broken = Scenario("netpol-egress-no-dns", {}, (), expect=frozenset({"dns-blocked", "mesh-split"}))
    predicate = not_declared("dns-blocked")
    assert predicate(healthy) is None
    assert "dns-blocked" in str(predicate(broken))


def test_the_probes_that_wait_for_jetstream_are_the_charts_startup_and_readiness_probes() -> None:
    from pytest_natsnet.suitekit import probe_failures, probes_waiting_for_jetstream

    def probe(path: str) -> dict[str, object]:
        return {"httpGet": {"path": path, "port": "monitor"}, "periodSeconds": 10}

    pod = {"spec": {"containers": [{"name": "nats", "startupProbe": probe("/healthz"),
                                    "readinessProbe": probe("/healthz?js-server-only=true"),
                                    "livenessProbe": probe("/healthz?js-enabled-only=true")}]}}
    assert [kind for kind, _ in probes_waiting_for_jetstream(pod)] == ["startupProbe", "readinessProbe"]
    enabled_only = {"spec": {"containers": [{"name": "nats",
                                             "readinessProbe": probe("/healthz?js-enabled-only=true")}]}}
    assert probes_waiting_for_jetstream(enabled_only) == []
    events = [
        {"involvedObject": {"name": "nats-0"}, "reason": "Unhealthy", "count": 3,
         "message": "Startup probe failed: HTTP probe failed with statuscode: 503"},
        {"involvedObject": {"name": "nats-0"}, "reason": "Unhealthy", "message": "Readiness probe failed: x"},
        {"involvedObject": {"name": "nats-1"}, "reason": "Unhealthy", "message": "Startup probe failed: y"},
    ]
    assert probe_failures(events, "nats-0", "startupProbe") == 3  # a real cluster aggregates repeats in count
    assert probe_failures(events, "nats-0", "readinessProbe") == 1
    assert probe_failures(events, "nats-2", "startupProbe") == 0
