"""Scheduling by cell under pytest-xdist: the cell is read back from the test id."""

from __future__ import annotations

import pytest

from pytest_natsnet.xdist_cells import cell_of

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
