"""Scheduling by cell under pytest-xdist: the cell is read back from the test id."""

from __future__ import annotations

import pytest

from pytest_natsnet.xdist_cells import CellScheduling, cell_of, first_cells

IDS = ["default", "tls", "tls-bad-sans", "advertise-dns+tls+routes-fqdn", "pnra-false"]


@pytest.mark.parametrize(
    ("nodeid", "cell"),
    [
        ("suites/test_dns_records.py::test_resolv[default]", "default"),
        ("suites/test_dns_records.py::test_records[default-udp]", "default"),
        ("suites/test_dns_records.py::test_records[tls-bad-sans-tcp]", "tls-bad-sans"),
        ("suites/test_tls.py::test_x[tls]", "tls"),
        ("suites/test_x.py::test_y[advertise-dns+tls+routes-fqdn-udp]", "advertise-dns+tls+routes-fqdn"),
        ("suites/test_x.py::test_y[udp-pnra-false]", "pnra-false"),
        ("tests/test_plain.py::test_no_params", None),
        ("tests/test_plain.py::test_other[1-2]", None),
    ],
)
def test_cell_of_picks_the_longest_matching_scenario(nodeid: str, cell: str | None) -> None:
    assert cell_of(nodeid, IDS) == cell


def test_disruptive_tests_run_last_within_their_cell(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_order="""
        import pytest

        def test_a(natsnet_scenario): pass

        @pytest.mark.natsnet_disruptive
        def test_b_disrupts(natsnet_scenario): pass

        def test_c(natsnet_scenario): pass
    """)
    result = pytester.runpytest("--natsnet", "--natsnet-provider=sandbox", "--natsnet-scenario=default",
                                "--natsnet-scenario=pnra-false", "--collect-only", "-q", "-p", "no:cacheprovider",
                                "test_order.py")
    ids = [line for line in result.outlines if "::" in line]
    assert ids == [
        "test_order.py::test_a[default]", "test_order.py::test_c[default]", "test_order.py::test_b_disrupts[default]",
        "test_order.py::test_a[pnra-false]", "test_order.py::test_c[pnra-false]",
        "test_order.py::test_b_disrupts[pnra-false]",
    ], result.outlines


def test_late_tests_wait_while_the_others_run_and_replacement_watchers_come_last(pytester: pytest.Pytester) -> None:
    """Within a cell: plain tests, then natsnet_late ones (their wait overlaps nothing else of the cell if they come
    first), then disruptive ones, and a disruptive test that watches a replacement after those that make one."""
    pytester.makepyfile(test_a_first="""
        import pytest

        @pytest.mark.natsnet_disruptive
        def test_watches(natsnet_scenario, natsnet_replacement): pass

        @pytest.mark.natsnet_late
        def test_waits_for_a_resolver(natsnet_scenario): pass
    """, test_b_second="""
        import pytest

        @pytest.mark.natsnet_disruptive
        def test_deletes(natsnet_scenario): pass

        def test_plain(natsnet_scenario): pass
    """)
    result = pytester.runpytest("--natsnet", "--natsnet-provider=sandbox", "--natsnet-scenario=default",
                                "--collect-only", "-q", "-p", "no:cacheprovider", "test_a_first.py", "test_b_second.py")
    ids = [line for line in result.outlines if "::" in line]
    assert ids == ["test_b_second.py::test_plain[default]", "test_a_first.py::test_waits_for_a_resolver[default]",
                   "test_b_second.py::test_deletes[default]", "test_a_first.py::test_watches[default]"], result.outlines


@pytest.mark.parametrize("suffix", ["other", "canary", "canary-open", "udponly"])
@pytest.mark.parametrize("length", [20, 55, 62, 63])
def test_sibling_namespaces_are_valid_and_distinct(length: int, suffix: str) -> None:
    import re

    from pytest_natsnet.kube import sibling_namespace

    namespace = ("natsnet-57c220-pnra-false-advertise-cluster-wrong-tls-" + "x" * 63)[:length].rstrip("-")
    sibling = sibling_namespace(namespace, suffix)
    assert len(sibling) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", sibling), sibling
    assert sibling != namespace and sibling.endswith(suffix)
    others = {sibling_namespace(namespace, s) for s in ("other", "canary", "canary-open", "udponly")}
    assert len(others) == 4


class _Gateway:
    def __init__(self, worker: str) -> None:
        self.id = worker


class _Node:
    """What CellScheduling uses of an xdist WorkerController: its id, the tests sent to it, shutdown."""

    def __init__(self, worker: str) -> None:
        self.gateway = _Gateway(worker)
        self.shutting_down = False
        self.sent: list[int] = []

    def send_runtest_some(self, indexes: list[int]) -> None:
        self.sent += indexes

    def shutdown(self) -> None:
        self.shutting_down = True


class _Config:
    def __init__(self, workers: int) -> None:
        self.option = type("Option", (), {"loadscopereorder": True})()
        self._tx = [f"{workers}*popen"]

    def getvalue(self, name: str) -> list[str]:
        assert name == "tx"
        return self._tx


def _scheduling(cells: list[str], workers: int, tests: dict[str, int]
                ) -> tuple[CellScheduling, list[_Node], list[str]]:
    """A CellScheduling over ``workers`` fake workers that all collected ``tests`` (cell → how many tests)."""
    scheduler = CellScheduling(_Config(workers), None, cells, first_cells(cells, workers))
    nodes = [_Node(f"gw{i}") for i in range(workers)]
    collection = [f"suites/test_s.py::test_{n}[{cell}]" for cell, count in tests.items() for n in range(count)]
    for node in nodes:
        scheduler.add_node(node)
    for node in nodes:
        scheduler.add_node_collection(node, collection)
    scheduler.schedule()
    return scheduler, nodes, collection


def _cells_sent(node: _Node, collection: list[str], cells: list[str]) -> list[str]:
    return list(dict.fromkeys(cell_of(collection[i], cells) or "" for i in node.sent))


def test_first_cells_go_to_the_workers_in_matrix_order() -> None:
    assert first_cells(["a", "b", "c"], 2) == {"gw0": "a", "gw1": "b"}
    assert first_cells(["a"], 3) == {"gw0": "a"}


def test_each_worker_is_sent_the_cell_it_deploys_first_even_when_another_cell_has_more_tests() -> None:
    cells = ["small", "medium", "large"]
    _, nodes, collection = _scheduling(cells, 3, {"small": 3, "medium": 5, "large": 9})
    # without the reservation LoadScope would send the largest unit first: gw0 would get "large"
    assert [_cells_sent(n, collection, cells)[0] for n in nodes] == ["small", "medium", "large"]


def test_cells_after_the_first_go_to_whoever_frees_up_first() -> None:
    cells = ["a", "b", "c", "d"]
    scheduler, nodes, collection = _scheduling(cells, 2, {"a": 4, "b": 4, "c": 4, "d": 4})
    assert _cells_sent(nodes[0], collection, cells) == ["a"] and _cells_sent(nodes[1], collection, cells) == ["b"]
    for index in list(nodes[1].sent):  # gw1 finishes its cell first
        scheduler.mark_test_complete(nodes[1], index)
    assert _cells_sent(nodes[1], collection, cells)[1] in ("c", "d")
    assert _cells_sent(nodes[0], collection, cells) == ["a"]


def test_a_worker_is_sent_its_next_cell_when_one_test_of_its_cell_is_left() -> None:
    """Not with two left (LoadScope's threshold): the next cell would wait behind the cell's last two tests."""
    cells = ["a", "b", "c"]
    scheduler, nodes, collection = _scheduling(cells, 2, {"a": 4, "b": 4, "c": 4})
    first = list(nodes[0].sent)
    for index in first[:2]:
        scheduler.mark_test_complete(nodes[0], index)
    assert _cells_sent(nodes[0], collection, cells) == ["a"], "a cell sent with two tests of the first left"
    scheduler.mark_test_complete(nodes[0], first[2])
    assert _cells_sent(nodes[0], collection, cells) == ["a", "c"]
    for index in list(nodes[1].sent)[:3]:  # the queue is empty now: gw1, one test left, is told to stop after it
        scheduler.mark_test_complete(nodes[1], index)
    assert nodes[1].shutting_down and _cells_sent(nodes[1], collection, cells) == ["b"]


def test_a_worker_whose_first_cell_has_no_tests_takes_unreserved_work_and_no_reserved_cell_moves() -> None:
    cells = ["a", "b", "c"]
    _, nodes, collection = _scheduling(cells, 3, {"b": 2, "c": 2})  # "a" deselected (-k): gw0's cell has no tests
    sent = {n.gateway.id: _cells_sent(n, collection, cells) for n in nodes}
    assert sent["gw1"] == ["b"] and sent["gw2"] == ["c"]
    assert sent["gw0"] == [] and nodes[0].shutting_down


def test_surplus_workers_stopped_are_the_ones_without_a_cell_of_their_own() -> None:
    cells = ["a", "b", "c"]
    # two units (cells b and c), three workers: LoadScope stops one; it must be gw0, whose cell has no tests
    scheduler, nodes, collection = _scheduling(cells, 3, {"b": 1, "c": 1})
    assert nodes[0] not in scheduler.nodes
    assert [_cells_sent(n, collection, cells) for n in nodes[1:]] == [["b"], ["c"]]
