"""pytest-xdist scheduling by cell: every test of one matrix cell runs on the same worker.

xdist's own ``xdist_group`` marker would do this job, but it does not take effect on pytest 9: pytest-xdist 3.8 tags
the group onto ``item._nodeid`` (``remote.py``), and pytest 9's ``Node.nodeid`` reads ``item._id`` instead, so the
scheduler never sees the ``@group`` suffix (checked: a parametrized ``xdist_group`` spreads over workers). So the
cell is read back from the test id, whose parameter part the plugin writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from xdist.scheduler import LoadScopeScheduling


def cell_of(nodeid: str, scenario_ids: Sequence[str]) -> str | None:
    """The scenario id a test id is parametrized with (``...::test[advertise-dns+tls-udp]`` → the cell)."""
    if not nodeid.endswith("]") or "[" not in nodeid:
        return None
    params = nodeid[nodeid.rindex("[") + 1 : -1]
    for scenario_id in sorted(scenario_ids, key=len, reverse=True):
        if (
            params == scenario_id
            or params.startswith(f"{scenario_id}-")
            or params.endswith(f"-{scenario_id}")
        ):
            return scenario_id
    return None


class CellScheduling(LoadScopeScheduling):  # type: ignore[misc]
    """LoadScope scheduling whose scope is the cell."""

    def __init__(self, config: Any, log: Any, scenario_ids: Sequence[str]) -> None:
        super().__init__(config, log)
        self._scenario_ids = list(scenario_ids)

    def _split_scope(self, nodeid: str) -> str:
        return cell_of(nodeid, self._scenario_ids) or nodeid


def cells_in(nodeids: Sequence[str], scenario_ids: Sequence[str]) -> list[str]:
    """The cells that the tests ``nodeids`` run on, in first-seen order: a known scenario id, or the cell of a
    ``natsnet_values`` test (its parameter is the id derived from its name)."""
    from pytest_natsnet.matrix import marker_scenario_id

    cells: dict[str, None] = {}
    for nodeid in nodeids:
        cell = cell_of(nodeid, scenario_ids)
        if cell is None and nodeid.endswith("]") and "[" in nodeid:
            function, params = nodeid.rsplit("::", 1)[-1][:-1].split("[", 1)
            cell = params if params == marker_scenario_id(function) else None
        if cell is not None:
            cells[cell] = None
    return list(cells)
