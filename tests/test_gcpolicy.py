"""``gcpolicy.settle``: what is alive when a run has set up is moved out of the cyclic collector's sight."""

from __future__ import annotations

import gc

from pytest_natsnet import gcpolicy


def test_settle_freezes_what_is_alive_and_the_collector_no_longer_walks_it() -> None:
    cycle: list[object] = []
    cycle.append(cycle)
    before = gc.get_freeze_count()
    try:
        gcpolicy.settle()
        assert gc.get_freeze_count() > before
        assert not any(o is cycle for o in gc.get_objects())  # in the permanent generation: never walked
        young: list[object] = []
        young.append(young)
        assert any(o is young for o in gc.get_objects(generation=0))
    finally:
        gc.unfreeze()
    assert any(o is cycle for o in gc.get_objects())
