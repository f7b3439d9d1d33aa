"""Shared test parametrization: ``golden_scenario`` runs a test once per official chart render (tests/golden/),
``jetstream_golden_scenario`` once per render whose values enable JetStream."""

from __future__ import annotations

import pytest
from golden_data import jetstream_scenario_ids, scenario_ids


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "golden_scenario" in metafunc.fixturenames:
        metafunc.parametrize("golden_scenario", scenario_ids())
    if "jetstream_golden_scenario" in metafunc.fixturenames:
        metafunc.parametrize("jetstream_golden_scenario", jetstream_scenario_ids())
