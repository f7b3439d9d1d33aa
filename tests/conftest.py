"""Shared test parametrization: ``golden_scenario`` runs a test once per official chart render (tests/golden/)."""

from __future__ import annotations

import pytest
from golden_data import scenario_ids


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "golden_scenario" in metafunc.fixturenames:
        metafunc.parametrize("golden_scenario", scenario_ids())
