"""pytest-natsnet: NATS networking conformance suites on kind, an existing cluster, or the Docker-free sandbox.

Hooks are thin: options live in ``settings.py``, the run in ``session.py``, the cells in ``matrix.py``.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from pytest_natsnet import settings as settings_module
from pytest_natsnet.errors import ConfigError, NatsnetError
from pytest_natsnet.failures import parse_declared
from pytest_natsnet.matrix import (
    Matrix,
    Scenario,
    expand,
    load_matrix,
    scenario_by_id,
    scenarios_from_values_dir,
    select,
)
from pytest_natsnet.prober import Prober
from pytest_natsnet.providers.base import Deployment
from pytest_natsnet.session import Cell, NatsnetRun, choose_provider, docker_answers
from pytest_natsnet.settings import NatsnetSettings

settings_key = pytest.StashKey[NatsnetSettings]()
run_key = pytest.StashKey[NatsnetRun]()
scenarios_key = pytest.StashKey[list[Scenario]]()
cell_order_key = pytest.StashKey[list[Scenario]]()
marker_errors_key = pytest.StashKey[list[str]]()

NATSNET_FIXTURES = {"natsnet_scenario", "natsnet_cell", "natsnet_deployment", "natsnet_probe"}
SETTLE_TIMEOUT = 180.0
DISABLED_REASON = "natsnet suites are off: run pytest with --natsnet (or set natsnet = true in the ini file)"


def pytest_addoption(parser: pytest.Parser) -> None:
    settings_module.add_options(parser)


def _scenarios(settings: NatsnetSettings, matrix: Matrix) -> list[Scenario]:
    if settings.manifests is not None:
        from pytest_natsnet.sources.manifests import scenario_ids

        cells = [scenario_by_id(matrix, scenario_id) for scenario_id in scenario_ids(settings.manifests)]
    else:
        cells = expand(matrix, settings.matrix)
    for directory in settings.values_dirs:
        cells += scenarios_from_values_dir(directory, matrix.base)
    return select(cells, settings.scenarios) if settings.scenarios else cells


def _start_run(config: pytest.Config, settings: NatsnetSettings) -> NatsnetRun:
    from pytest_natsnet.sources import resolve_source

    matrix = load_matrix()
    provider, provider_reason = choose_provider(
        settings.provider, docker_answers() if settings.provider == "auto" else False
    )
    source, source_reason = resolve_source(settings)
    if provider == "sandbox":
        from pytest_natsnet.providers.sandbox_provider import missing_requirements

        problems = missing_requirements()
        if problems:
            raise pytest.UsageError(f"--natsnet-provider=sandbox ({provider_reason}): {'; '.join(problems)}")
    run = NatsnetRun(settings, matrix, provider, provider_reason, source, source_reason)
    config.stash[scenarios_key] = _scenarios(settings, matrix)
    return run


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "natsnet: a NATS networking conformance test (needs --natsnet)")
    config.addinivalue_line(
        "markers",
        "natsnet_disruptive: the test deletes pods; it runs after the other tests of its cell, and the next test "
        "of the cell waits until the cell is whole again",
    )
    config.addinivalue_line(
        "markers",
        "natsnet_values(*files, expect=(), certs=None): the test runs on its own cell, the matrix base plus these "
        "values files (paths relative to the test file); expect names the documented failures it reproduces",
    )
    try:
        settings = settings_module.NatsnetSettings.from_config(config)
    except NatsnetError as error:
        raise pytest.UsageError(str(error)) from None
    config.stash[settings_key] = settings
    if not settings.enabled:
        return
    try:
        run = _start_run(config, settings)
    except NatsnetError as error:
        raise pytest.UsageError(str(error)) from None
    worker = getattr(config, "workerinput", None)
    if worker is not None:  # pytest-xdist: every worker deploys the cells it runs, under one run id
        run.run_id = str(worker.get("testrunuid", run.run_id))[:6]
        run.prefetch_window = 1
    config.stash[run_key] = run
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        from pytest_natsnet.resources import suites_dir

        config.args.append(str(suites_dir()))


def pytest_report_header(config: pytest.Config) -> list[str]:
    run = config.stash.get(run_key, None)
    if run is None:
        return []
    scenarios = config.stash.get(scenarios_key, [])
    lines = [
        f"natsnet: provider {run.provider_name} ({run.provider_reason}), run id {run.run_id}",
        f"natsnet: source {run.source} ({run.source_reason})",
        f"natsnet: {len(scenarios)} cells ({run.settings.matrix}): {', '.join(s.id for s in scenarios)}",
    ]
    if run.provider_name == "sandbox":
        from pytest_natsnet.sandbox.natsbin import find_nats_server

        binary = find_nats_server(f"nats:{run.settings.chart_version}-alpine")
        lines.append(
            "natsnet: sandbox runs " + (binary.describe() if binary else "no nats-server (not found)")
        )
    return lines


def _values_marker_scenario(metafunc: pytest.Metafunc, matrix: Matrix) -> Scenario | None:
    marker = metafunc.definition.get_closest_marker("natsnet_values")
    if marker is None:
        return None
    base = Path(str(metafunc.definition.path)).parent
    files = tuple((base / str(f)).resolve() for f in marker.args)
    for path in files:
        if not path.is_file():
            pytest.fail(f"natsnet_values on {metafunc.definition.nodeid}: {path} does not exist", pytrace=False)
    scenario_id = metafunc.definition.name.removeprefix("test_").replace("_", "-")
    expect = marker.kwargs.get("expect", ())
    return Scenario(
        id=scenario_id,
        settings={},
        values_files=(*matrix.base, *files),
        expect=parse_declared(
            [expect] if isinstance(expect, str) else expect, f"natsnet_values on {metafunc.definition.nodeid} expect"
        ),
        certs=marker.kwargs.get("certs"),
        origin="marker",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "natsnet_scenario" not in metafunc.fixturenames:
        return
    run = metafunc.config.stash.get(run_key, None)
    if run is None:
        return  # disabled: the item is skipped in collection_modifyitems
    try:
        own, problem = _values_marker_scenario(metafunc, run.matrix), None
    except ConfigError as error:
        own, problem = None, str(error)
    if problem is not None:  # one line: a usage error once collection ends; an xdist worker cannot raise one,
        if hasattr(metafunc.config, "workerinput"):  # there it is the module's collection error
            pytest.fail(problem, pytrace=False)
        metafunc.config.stash.setdefault(marker_errors_key, []).append(problem)
        metafunc.parametrize("natsnet_scenario", [], indirect=True, scope="session")
        return
    scenarios = [own] if own is not None else metafunc.config.stash[scenarios_key]
    applies = getattr(metafunc.function, "natsnet_applies", None)
    params = []
    for scenario in scenarios:
        reason = applies(scenario) if applies is not None else None
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        params.append(pytest.param(scenario, id=scenario.id, marks=marks))
    metafunc.parametrize("natsnet_scenario", params, indirect=True, scope="session")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    marker_errors = config.stash.get(marker_errors_key, [])
    if marker_errors:
        raise pytest.UsageError(*marker_errors)
    enabled = run_key in config.stash
    order: list[Scenario] = []
    for item in items:
        if not NATSNET_FIXTURES & set(getattr(item, "fixturenames", ())):
            continue
        item.add_marker(pytest.mark.natsnet)
        if not enabled:
            item.add_marker(pytest.mark.skip(reason=DISABLED_REASON))
            continue
        callspec = getattr(item, "callspec", None)
        scenario = callspec.params.get("natsnet_scenario") if callspec else None
        if isinstance(scenario, Scenario) and not item.get_closest_marker("skip") and scenario not in order:
            order.append(scenario)
    config.stash[cell_order_key] = order
    _disruptive_last(items)


def _disruptive_last(items: list[pytest.Item]) -> None:
    """Within each cell's run of tests, moves ``natsnet_disruptive`` tests to the end (stable)."""

    def cell(item: pytest.Item) -> object:
        callspec = getattr(item, "callspec", None)
        return callspec.params.get("natsnet_scenario") if callspec else None

    start = 0
    while start < len(items):
        end = start
        while end < len(items) and cell(items[end]) == cell(items[start]):
            end += 1
        block = items[start:end]
        if cell(items[start]) is not None:
            block.sort(key=lambda i: i.get_closest_marker("natsnet_disruptive") is not None)
            items[start:end] = block
        start = end


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, object, object]:
    report = yield
    run = item.config.stash.get(run_key, None)
    callspec = getattr(item, "callspec", None)
    if run is not None and callspec is not None and getattr(report, "failed", False):
        scenario = callspec.params.get("natsnet_scenario")
        if isinstance(scenario, Scenario):
            run.failed_cells.add(scenario.id)
    return report


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With pytest-xdist and ``--dist loadgroup``, a cell's tests go to one worker: each cell deploys once and
    cells run side by side (``-n N``)."""
    if run_key not in config.stash or config.getoption("dist") != "loadgroup":
        return None
    from pytest_natsnet.xdist_cells import CellScheduling

    return CellScheduling(config, log, [s.id for s in config.stash[scenarios_key]])


def pytest_unconfigure(config: pytest.Config) -> None:
    run = config.stash.get(run_key, None)
    if run is not None:
        run.finish()
        del config.stash[run_key]


# ------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def natsnet_settings(pytestconfig: pytest.Config) -> NatsnetSettings:
    """The resolved ``--natsnet-*`` options and ini values."""
    return pytestconfig.stash[settings_key]


@pytest.fixture(scope="session")
def natsnet_run(pytestconfig: pytest.Config) -> NatsnetRun:
    """The run: provider, source, cells and their deployments (skips when --natsnet is off)."""
    run = pytestconfig.stash.get(run_key, None)
    if run is None:
        pytest.skip(DISABLED_REASON)
    return run


@pytest.fixture(scope="session")
def natsnet_scenario(request: pytest.FixtureRequest) -> Scenario:
    """The matrix cell this test runs on: id, values files, declared failures (``expect``)."""
    scenario = getattr(request, "param", None)
    if not isinstance(scenario, Scenario):
        pytest.skip(DISABLED_REASON)
    return scenario


def _window(order: Sequence[Scenario], current: Scenario, size: int) -> list[Scenario]:
    if current not in order:
        return [current]
    start = order.index(current)
    return list(order[start : start + size])


@pytest.fixture(scope="session")
def natsnet_cell(
    natsnet_run: NatsnetRun, natsnet_scenario: Scenario, pytestconfig: pytest.Config
) -> Iterator[Cell]:
    """One installed cell (deployed once, shared by every test of the cell; the next cells deploy
    concurrently up to --natsnet-parallel). Torn down after its last test; evidence kept on failure."""
    order = pytestconfig.stash.get(cell_order_key, [])
    natsnet_run.prefetch(_window(order, natsnet_scenario, natsnet_run.prefetch_window))
    try:
        cell = natsnet_run.cell(natsnet_scenario)
    except NatsnetError as error:
        natsnet_run.failed_cells.add(natsnet_scenario.id)
        pytest.fail(f"cell {natsnet_scenario.id} could not be deployed: {error}", pytrace=False)
    yield cell
    evidence = natsnet_run.release(natsnet_scenario)
    if evidence is not None:
        print(f"\nnatsnet: evidence for {natsnet_scenario.id} in {evidence}")


@pytest.fixture(autouse=True)
def _natsnet_settled(request: pytest.FixtureRequest) -> None:
    """Before a test of a cell that a previous test disturbed: wait until every server is back and ready."""
    if "natsnet_cell" not in request.fixturenames:
        return
    cell: Cell = request.getfixturevalue("natsnet_cell")
    if cell.disturbed:
        cell.deployment.wait_ready(SETTLE_TIMEOUT)
        cell.disturbed = False


@pytest.fixture(scope="session")
def natsnet_deployment(natsnet_cell: Cell) -> Deployment:
    """The installed cell's provider handle: namespace, observed objects, probes, pod deletion, logs."""
    return natsnet_cell.deployment


@pytest.fixture
def natsnet_probe(natsnet_cell: Cell) -> Prober:
    """Runs batched probes (dns, getaddrinfo, tcp, http, nats, watch) from inside the cluster network."""
    ca_pem = natsnet_cell.tls.ca_pem if natsnet_cell.tls else None
    return Prober(natsnet_cell.deployment, ca_pem.decode() if isinstance(ca_pem, bytes) else ca_pem)
