"""pytest-xdist scheduling by cell: every test of one matrix cell runs on the same worker.

Each worker's first cell is known before it starts (``first_cells``): the worker deploys it while it imports and
collects, instead of after every worker has collected (18 workers on 2 CPUs: ~8 s). The scheduler then gives each
worker that cell first, and never hands it to another worker; the cells after the first are handed out as
workers free up (LoadScope's usual balancing).

xdist's own ``xdist_group`` marker would do this job, but it does not take effect on pytest 9: pytest-xdist 3.8 tags
the group onto ``item._nodeid`` (``remote.py``), and pytest 9's ``Node.nodeid`` reads ``item._id`` instead, so the
scheduler never sees the ``@group`` suffix (checked: a parametrized ``xdist_group`` spreads over workers). So the
cell is read back from the test id, whose parameter part the plugin writes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


def first_cells(scenario_ids: Sequence[str], workers: int) -> dict[str, str]:
    """Worker id → the cell it deploys first, in matrix order (``gw0`` the first cell, ...); workers beyond the
    cells get none."""
    return {f"gw{index}": cell for index, cell in enumerate(scenario_ids[:workers])}


class CellScheduling(LoadScopeScheduling):  # type: ignore[misc]
    """LoadScope scheduling whose scope is the cell; each worker's first cell (``first``: worker id → cell) is
    reserved for it until it is sent there."""

    def __init__(self, config: Any, log: Any, scenario_ids: Sequence[str],
                 first: Mapping[str, str] | None = None) -> None:
        super().__init__(config, log)
        self._scenario_ids = list(scenario_ids)
        self._first = dict(first or {})

    def _split_scope(self, nodeid: str) -> str:
        return cell_of(nodeid, self._scenario_ids) or nodeid

    def _reserved(self) -> dict[str, str]:
        """Cell → the worker it is kept for: first cells not yet sent, of workers still running."""
        alive = {node.gateway.id for node in self.nodes if not node.shutting_down}
        return {cell: worker for worker, cell in self._first.items() if worker in alive}

    def _assign_work_unit(self, node: Any) -> None:
        """Sends ``node`` its reserved first cell, else the first unit no other worker has reserved."""
        reserved = self._reserved()
        mine = self._first.get(node.gateway.id)
        scope: str | None = mine
        if mine is None or mine not in self.workqueue:
            scope = next((s for s in self.workqueue if reserved.get(s, node.gateway.id) == node.gateway.id), None)
        self._first.pop(node.gateway.id, None)
        if scope is None:
            return
        self.workqueue.move_to_end(scope, last=False)
        super()._assign_work_unit(node)

    def _reschedule(self, node: Any) -> None:
        """As LoadScope's, but a worker is sent its next cell only when one test of its cell is left (the one an
        xdist worker holds until it knows what comes next), not two: LoadScope's two commit a cell behind a
        cell's last two tests, its longest (the disruptive ones), while other workers may stand idle at the end of
        the run. A worker with nothing left to do stops even while cells reserved for others wait."""
        if not node.shutting_down and self.workqueue and self._pending_of(self.assigned_work[node]) > 1:
            return
        if not node.shutting_down and self.workqueue and not self._pending_of(self.assigned_work[node]):
            reserved = self._reserved()
            if all(reserved.get(s, node.gateway.id) != node.gateway.id for s in self.workqueue):
                node.shutdown()
                return
        super()._reschedule(node)

    def schedule(self) -> None:
        """Before the first distribution, workers whose reserved cell has tests are moved to the front: LoadScope
        stops the surplus workers from the back when there are fewer units than workers."""
        if self.collection is None and self.collection_is_completed and self.registered_collections:
            collection = next(iter(self.registered_collections.values()))
            cells = {self._split_scope(nodeid) for nodeid in collection}
            keep = [n for n in self.assigned_work if self._first.get(n.gateway.id) in cells]
            for node in [n for n in self.assigned_work if n not in keep]:
                self.assigned_work[node] = self.assigned_work.pop(node)
        super().schedule()


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
