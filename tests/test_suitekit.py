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
