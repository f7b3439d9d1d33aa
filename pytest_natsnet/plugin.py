"""pytest-natsnet: NATS networking conformance suites on kind, an existing cluster, or the Docker-free sandbox.

Hooks are thin: options live in ``settings.py``, the run in ``session.py``, the cells in ``matrix.py``.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from pytest_natsnet import gcpolicy, parallel
from pytest_natsnet import plan as plan_module
from pytest_natsnet import settings as settings_module
from pytest_natsnet.errors import ConfigError, NatsnetError
from pytest_natsnet.failures import never_ready_reason, parse_declared
from pytest_natsnet.matrix import (
    Matrix,
    Scenario,
    expand,
    globs_select,
    load_matrix,
    marker_cell_ids,
    marker_scenario_id,
    scenario_by_id,
    scenarios_from_values_dir,
    select,
)
from pytest_natsnet.plan import RunPlan
from pytest_natsnet.prober import Prober
from pytest_natsnet.providers import header_lines, machine_problems
from pytest_natsnet.providers.base import Deployment
from pytest_natsnet.report.grid import failure_message, not_applicable_reason
from pytest_natsnet.report.progress import Progress
from pytest_natsnet.report.recorder import EVIDENCE_PROPERTY, ReportRecorder, progress_emitter
from pytest_natsnet.report.terminal import cells_line
from pytest_natsnet.session import Cell, NatsnetRun, Replacement
from pytest_natsnet.settings import NatsnetSettings
from pytest_natsnet.xdist_cells import cells_in

settings_key = pytest.StashKey[NatsnetSettings]()
run_key = pytest.StashKey[NatsnetRun]()
scenarios_key = pytest.StashKey[list[Scenario]]()
cell_order_key = pytest.StashKey[list[Scenario]]()
recorder_key = pytest.StashKey[ReportRecorder]()
marker_errors_key = pytest.StashKey[list[str]]()
first_cells_key = pytest.StashKey[dict[str, str]]()
FIRST_CELL_KEY = "natsnet_first_cell"

NATSNET_FIXTURES = {"natsnet_scenario", "natsnet_cell", "natsnet_deployment", "natsnet_probe"}
SETTLE_TIMEOUT = 180.0
LOAD_MODES = frozenset({"load", "loadscope", "loadfile", "loadgroup", "worksteal"})
"""pytest-xdist modes that hand each test to one worker: the plugin schedules them by cell."""
DISABLED_REASON = "natsnet suites are off: run pytest with --natsnet (or set natsnet = true in the ini file)"


def pytest_addoption(parser: pytest.Parser) -> None:
    settings_module.add_options(parser)


def _scenarios(settings: NatsnetSettings, matrix: Matrix, marker_cells: Sequence[str] = ()) -> list[Scenario]:
    """The chosen cells of the matrix and values directories (``--natsnet-scenario`` may also name ``marker_cells``,
    the cells of ``natsnet_values`` tests, which select themselves)."""
    if settings.manifests is not None:
        from pytest_natsnet.sources.manifests import scenario_ids

        cells = [scenario_by_id(matrix, scenario_id) for scenario_id in scenario_ids(settings.manifests)]
    else:
        cells = expand(matrix, settings.matrix)
    for directory in settings.values_dirs:
        cells += scenarios_from_values_dir(directory, matrix.base)
    return select(cells, settings.scenarios, marker_cells) if settings.scenarios else cells


def _marker_cells(config: pytest.Config) -> list[str]:
    """Cell ids of the ``natsnet_values`` tests in the shipped suites and in the test files the command line names
    (read from source, before collection; directories named on the command line are not searched)."""
    from pytest_natsnet.resources import suites_dir

    files = set(suites_dir().glob("test_*.py"))
    base = Path(config.invocation_params.dir)
    for arg in config.args:
        path = (base / arg.split("::")[0]).resolve()
        if path.is_file() and path.suffix == ".py":
            files.add(path)
    return marker_cell_ids(sorted(files))


def _plan(config: pytest.Config, settings: NatsnetSettings) -> RunPlan:
    """The run's plan: received from the controller on an xdist worker, undecided when nothing will run,
    else decided here (this process owns the run)."""
    worker = getattr(config, "workerinput", None)
    if worker is not None and plan_module.WORKERINPUT_KEY in worker:
        return RunPlan.from_wire(worker[plan_module.WORKERINPUT_KEY])
    run_id = plan_module.new_run_id()
    for flag, why in (("help", "--help"), ("collectonly", "--collect-only"), ("showfixtures", "--fixtures"),
                      ("markers", "--markers")):
        if getattr(config.option, flag, False):
            return plan_module.undecided(settings, run_id, why)
    plan = plan_module.decide(settings, run_id)
    problems = machine_problems(plan.provider)
    if problems:
        raise pytest.UsageError(f"--natsnet-provider={plan.provider} ({plan.provider_reason}): {'; '.join(problems)}")
    return plan


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> Generator[None, object, object]:
    """Before pytest-xdist reads ``-n``: a ``--natsnet`` run of the shipped suites that did not choose ``-n``
    runs its cells side by side (see ``parallel.py``). A run of named test files keeps to this process unless
    ``-n`` is given: how many cells they use is known only after collection (a bug-report test has one)."""
    try:
        settings = settings_module.NatsnetSettings.from_config(config)
        if settings.enabled and _runs_shipped_suites(config):
            from pytest_natsnet.resources import suites_dir

            marker_cells = marker_cell_ids(sorted(suites_dir().glob("test_*.py")))
            cells = len(_scenarios(settings, load_matrix(), marker_cells))
            cells += sum(globs_select(cell_id, settings.scenarios) for cell_id in marker_cells)
            parallel.distribute_cells(config, cells, settings.parallel)
    except NatsnetError as error:
        raise pytest.UsageError(str(error)) from None
    return (yield)


def _runs_shipped_suites(config: pytest.Config) -> bool:
    from pytest_natsnet.resources import suites_dir

    if config.args_source != pytest.Config.ArgsSource.ARGS:
        return True  # --natsnet adds the suites (see pytest_configure)
    suites = suites_dir().resolve()
    base = Path(config.invocation_params.dir)
    for arg in config.args:
        path = (base / arg.split("::")[0]).resolve()
        if path == suites or suites in path.parents:
            return True
    return False


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "natsnet: a NATS networking conformance test (needs --natsnet)")
    config.addinivalue_line(
        "markers",
        "natsnet_disruptive: the test deletes pods; it runs after the other tests of its cell, and the next test "
        "of the cell waits until the cell is whole again (a test asking for natsnet_replacement runs after the "
        "others and watches their last deletion instead)",
    )
    config.addinivalue_line(
        "markers",
        "natsnet_late: the test waits for something that comes a fixed time after the cell started (a resolver "
        "giving up); it runs after the cell's other non-disruptive tests, which run meanwhile",
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
    if getattr(config.option, "dist", "no") == "each":
        raise pytest.UsageError("--dist each runs every test on every worker, so every worker would deploy every "
                                "cell into the same namespaces: use -n N (cells side by side) or -n 0 (one at a time)")
    try:
        matrix = load_matrix()
        config.stash[scenarios_key] = _scenarios(settings, matrix, _marker_cells(config) if settings.scenarios else ())
        run = NatsnetRun(settings, matrix, _plan(config, settings))
    except NatsnetError as error:
        raise pytest.UsageError(str(error)) from None
    if getattr(config, "workerinput", None) is not None:  # pytest-xdist: each worker deploys the cells it runs
        run.prefetch_window = 1
    else:  # this process sees every report: it renders the report
        recorder = ReportRecorder([s.id for s in config.stash[scenarios_key]], settings.report, _report_meta(run))
        config.stash[recorder_key] = recorder
        config.pluginmanager.register(NatsnetReport(recorder, config), "natsnet-report")
    run.progress = Progress(progress_emitter(config))
    config.stash[run_key] = run
    config.pluginmanager.register(FailedCells(run), "natsnet-failed-cells")
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        from pytest_natsnet.resources import suites_dir

        config.args.append(str(suites_dir()))


def _report_meta(run: NatsnetRun) -> list[tuple[str, str]]:
    """The run's facts at the top of the HTML report."""
    import datetime

    return [
        ("run id", run.run_id),
        ("provider", f"{run.plan.provider} ({run.plan.provider_reason})"),
        ("source", f"{run.plan.source} ({run.plan.source_reason})"),
        ("matrix", run.settings.matrix),
        ("started", datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")),
    ]


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Provider and source; the cells follow collection (``pytest_report_collectionfinish``)."""
    run = config.stash.get(run_key, None)
    if run is None:
        return []
    lines = [
        f"natsnet: provider {run.plan.provider} ({run.plan.provider_reason}), run id {run.run_id}",
        f"natsnet: source {run.plan.source} ({run.plan.source_reason})",
    ]
    if run.plan.decided:
        lines += header_lines(run.plan.provider, run.settings)
    return lines


def _chosen_ids(config: pytest.Config) -> list[str]:
    return [s.id for s in config.stash.get(scenarios_key, [])]


def pytest_report_collectionfinish(config: pytest.Config, items: Sequence[pytest.Item]) -> list[str]:
    """The cells that will run: those with a selected test (after -k, -m, paths and natsnet_values)."""
    if run_key not in config.stash:
        return []
    selected = [scenario.id for item in items if isinstance(scenario := _scenario_of(item), Scenario)]
    return [cells_line(list(dict.fromkeys(selected)), config.stash[run_key].settings.matrix, _chosen_ids(config))]


def _values_marker_scenario(metafunc: pytest.Metafunc, matrix: Matrix) -> Scenario | None:
    marker = metafunc.definition.get_closest_marker("natsnet_values")
    if marker is None:
        return None
    base = Path(str(metafunc.definition.path)).parent
    files = tuple((base / str(f)).resolve() for f in marker.args)
    for path in files:
        if not path.is_file():
            raise ConfigError(f"natsnet_values on {metafunc.definition.nodeid}", f"{path} does not exist")
    scenario_id = marker_scenario_id(metafunc.definition.name)
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
        if hasattr(metafunc.config, "workerinput"):  # there it is the module's collection error, as plain text:
            raise pytest.Collector.CollectError(problem)  # the controller shows it once, not once per worker
        metafunc.config.stash.setdefault(marker_errors_key, []).append(problem)
        metafunc.parametrize("natsnet_scenario", [], indirect=True, scope="session")
        return
    scenarios = [own] if own is not None else metafunc.config.stash[scenarios_key]
    applies = getattr(metafunc.function, "natsnet_applies", None)
    covers: frozenset[str] = getattr(applies, "natsnet_covers", frozenset())
    params = []
    for scenario in scenarios:
        reason = never_ready_reason(scenario.expect, covers)
        if reason is None and applies is not None:
            reason = applies(scenario)
        marks = [pytest.mark.skip(reason=not_applicable_reason(reason))] if reason else []
        params.append(pytest.param(scenario, id=scenario.id, marks=marks))
    metafunc.parametrize("natsnet_scenario", params, indirect=True, scope="session")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    marker_errors = config.stash.get(marker_errors_key, [])
    if marker_errors:
        raise pytest.UsageError(*marker_errors)
    enabled = run_key in config.stash
    if enabled:
        _deselect_marker_cells_the_globs_leave_out(config, items)
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
    _order_within_cells(items)


def _deselect_marker_cells_the_globs_leave_out(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``--natsnet-scenario`` selects cells, those of ``natsnet_values`` tests too (by their id); a test left with no
    cell at all (its parameter set is empty) is deselected as well, not reported as skipped."""
    globs = config.stash[run_key].settings.scenarios
    if not globs:
        return

    def left_out(item: pytest.Item) -> bool:
        callspec = getattr(item, "callspec", None)
        if callspec is None or "natsnet_scenario" not in callspec.params:
            return False
        scenario = callspec.params["natsnet_scenario"]
        if not isinstance(scenario, Scenario):
            return True  # an empty parameter set: the globs chose no cell for it
        return scenario.origin == "marker" and not globs_select(scenario.id, globs)

    deselected = [item for item in items if left_out(item)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item not in deselected]


def cell_order(item: pytest.Item) -> int:
    """Where a test goes in its cell's run: plain tests first, then ``natsnet_late`` ones (their wait overlaps the
    others), then ``natsnet_disruptive`` ones, those that watch a replacement (``natsnet_replacement``) last, after
    the tests that make one."""
    if item.get_closest_marker("natsnet_disruptive") is None:
        return 1 if item.get_closest_marker("natsnet_late") is not None else 0
    return 3 if "natsnet_replacement" in getattr(item, "fixturenames", ()) else 2


def _order_within_cells(items: list[pytest.Item]) -> None:
    """Within each cell's run of tests, orders them by ``cell_order`` (stable)."""

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
            block.sort(key=cell_order)
            items[start:end] = block
        start = end


def pytest_collection_finish(session: pytest.Session) -> None:
    if run_key in session.config.stash:
        gcpolicy.settle()  # the modules and collected items live as long as the run


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, object, object]:
    """Tags each report with its cell, so that the process that owns the run (the xdist controller included)
    knows which cells failed."""
    report = yield
    scenario = _scenario_of(item)
    if isinstance(scenario, Scenario) and isinstance(report, pytest.TestReport):
        report.natsnet_cell = scenario.id  # type: ignore[attr-defined]
        report.natsnet_declared = sorted(str(f) for f in scenario.expect)  # type: ignore[attr-defined]
        cell = (getattr(item, "funcargs", None) or {}).get("natsnet_cell")
        run = item.config.stash.get(run_key, None)
        if isinstance(cell, Cell) and run is not None:
            report.natsnet_deploy_seconds = cell.deploy_seconds  # type: ignore[attr-defined]
            if report.failed:  # the cell's evidence is written when it is released
                _add_property(item, report, EVIDENCE_PROPERTY, str(run.evidence_dir(scenario)))
        elif run is not None and report.failed and scenario.id in run.deploy_evidence:
            _add_property(item, report, EVIDENCE_PROPERTY, str(run.deploy_evidence[scenario.id]))
    return report


def _scenario_of(item: pytest.Item) -> object:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("natsnet_scenario") if callspec is not None else None


def _add_property(item: pytest.Item, report: pytest.TestReport, name: str, value: str) -> None:
    """A property of the test in the JUnit XML (taken from the teardown report) and of this report."""
    for properties in (item.user_properties, report.user_properties):
        if (name, value) not in properties:
            properties.append((name, value))


class FailedCells:
    """Registered per run: every process (the xdist controller too) sees each report and records the cells
    that failed, which decides evidence and ``--natsnet-keep=on-failure``."""

    def __init__(self, run: NatsnetRun) -> None:
        self.run = run

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        cell = getattr(report, "natsnet_cell", None)
        if cell is not None and report.failed:
            self.run.failed_cells.add(str(cell))
            name = report.nodeid if report.when == "call" else f"{report.nodeid} (error in {report.when})"
            crash = getattr(report.longrepr, "reprcrash", None)
            text = failure_message(getattr(crash, "message", None), report.longreprtext)
            self.run.failures.setdefault(str(cell), []).append((name, text))


class NatsnetReport:
    """Registered in the process that sees every report (the xdist controller, or the only process): the grid,
    failed cells' tables and timings in the terminal summary, and the HTML page (``--natsnet-report``)."""

    def __init__(self, recorder: ReportRecorder, config: pytest.Config) -> None:
        self.recorder = recorder
        self.config = config
        self.cells_line: str | None = None
        """pytest-xdist: the header's cells line, written before the first test (the controller collects
        nothing, so ``pytest_report_collectionfinish`` does not run there)."""

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: Sequence[str]) -> None:
        if self.cells_line is None:
            cells = cells_in(ids, _chosen_ids(self.config))
            self.cells_line = cells_line(cells, self.config.stash[run_key].settings.matrix, _chosen_ids(self.config))

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logstart(self) -> None:
        terminal = self.config.pluginmanager.get_plugin("terminalreporter")
        if self.cells_line and terminal is not None:
            terminal.write_line(self.cells_line)
            self.cells_line = ""

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.recorder.add(report)

    def pytest_sessionfinish(self, exitstatus: int) -> None:
        self.recorder.write_html(int(exitstatus))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        self.recorder.write_terminal(terminalreporter)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under pytest-xdist the controller owns the cluster: it starts it before the workers exist, and they
    attach to it (see ``pytest_configure_node``); only the controller deletes it. A worker starts deploying its
    first cell here, while it collects."""
    run = session.config.stash.get(run_key, None)
    if run is None or not run.plan.decided:
        return
    workerinput = getattr(session.config, "workerinput", None)
    if workerinput is not None:
        first = next((s for s in session.config.stash[scenarios_key] if s.id == workerinput.get(FIRST_CELL_KEY)),
                     None)
        if first is not None:
            run.prefetch([first])
        return
    if not session.config.pluginmanager.has_plugin("dsession"):
        return
    try:
        run.start_cluster()
    except NatsnetError as error:
        raise pytest.UsageError(f"natsnet: the {run.provider_name} cluster could not be started: {error}") from None


def _first_cells(config: pytest.Config) -> dict[str, str]:
    """On the xdist controller: worker id → the cell it deploys while it collects (``xdist_cells.first_cells``).
    Empty when the run may not collect every cell's tests (``-k``, ``-m``, test ids, ``--deselect``, ``--lf``):
    a worker would deploy a cell nobody runs."""
    if first_cells_key not in config.stash:
        from xdist.workermanage import parse_tx_spec_config

        from pytest_natsnet.xdist_cells import first_cells

        narrowed = (config.getoption("keyword", "") or config.getoption("markexpr", "")
                    or config.getoption("deselect", None) or config.getoption("lf", False)
                    or any("::" in arg for arg in config.args))
        scenarios = [s.id for s in config.stash.get(scenarios_key, [])]
        whole = run_key in config.stash and config.getoption("dist") in LOAD_MODES and not narrowed
        config.stash[first_cells_key] = first_cells(scenarios, len(parse_tx_spec_config(config))) if whole else {}
    return config.stash[first_cells_key]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With pytest-xdist, a cell's tests go to one worker whichever load mode was asked for (``-n N`` alone means
    ``--dist load``): each cell deploys once, in its one namespace, and cells run side by side. Two workers
    deploying the same cell would share its namespace, and the first to finish would tear it down."""
    if run_key not in config.stash or config.getoption("dist") not in LOAD_MODES:
        return None
    from pytest_natsnet.xdist_cells import CellScheduling

    return CellScheduling(config, log, [s.id for s in config.stash[scenarios_key]], _first_cells(config))


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist, on the controller: every worker gets the controller's plan (one run id, no probing) and the
    cell it deploys first."""
    run = node.config.stash.get(run_key, None)
    if run is not None:
        node.workerinput[plan_module.WORKERINPUT_KEY] = run.plan.to_wire()
        first = _first_cells(node.config).get(node.gateway.id)
        if first is not None:
            node.workerinput[FIRST_CELL_KEY] = first


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
    """One installed cell (deployed once, shared by every test of the cell). Torn down after its last test;
    evidence kept on failure."""
    order = pytestconfig.stash.get(cell_order_key, [])
    natsnet_run.prefetch(_window(order, natsnet_scenario, natsnet_run.prefetch_window))
    try:
        cell = natsnet_run.cell(natsnet_scenario)
    except NatsnetError as error:
        evidence = natsnet_run.release_failed_deploy(natsnet_scenario, error)
        where = f" (evidence: {evidence})" if evidence else ""
        natsnet_run.undeployed[natsnet_scenario.id] = (
            f"cell {natsnet_scenario.id} could not be deployed{where}: {' '.join(str(error).split())}")
    if natsnet_scenario.id in natsnet_run.undeployed:  # outside the except: one message, no chained traceback
        pytest.fail(natsnet_run.undeployed[natsnet_scenario.id], pytrace=False)
    yield cell
    evidence = natsnet_run.release(natsnet_scenario)
    if evidence is not None:
        print(f"\nnatsnet: evidence for {natsnet_scenario.id} in {evidence}")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A cell whose deploy failed errors once, on the test that asked for it; its other tests are skipped as
    not deployed instead of repeating that error."""
    run = item.config.stash.get(run_key, None)
    scenario = _scenario_of(item)
    if run is None or not isinstance(scenario, Scenario) or scenario.id not in run.undeployed:
        return
    if "natsnet_cell" in getattr(item, "fixturenames", ()):
        pytest.skip(f"cell {scenario.id} not deployed (the cell's first test has the error)")


@pytest.fixture(autouse=True)
def _natsnet_settled(request: pytest.FixtureRequest) -> None:
    """Before a test of a cell that a previous test disturbed: wait until every server is back and ready (a test
    that asks for ``natsnet_replacement`` watches the replacement in flight instead)."""
    if "natsnet_cell" not in request.fixturenames:
        return
    cell: Cell = request.getfixturevalue("natsnet_cell")
    if cell.settle_first("natsnet_replacement" in request.fixturenames):
        cell.deployment.wait_ready(SETTLE_TIMEOUT)
        cell.settled()


@pytest.fixture
def natsnet_replacement(natsnet_cell: Cell) -> Replacement | None:
    """The server pod an earlier test of this cell deleted, not yet waited for (None when the cell is whole): one
    deletion serves every test that observes a replacement, instead of one deletion and one wait each."""
    return natsnet_cell.replacement


@pytest.fixture(scope="session")
def natsnet_deployment(natsnet_cell: Cell) -> Deployment:
    """The installed cell's provider handle: namespace, observed objects, probes, pod deletion, logs."""
    return natsnet_cell.deployment


@pytest.fixture
def natsnet_probe(natsnet_cell: Cell) -> Prober:
    """Runs batched probes (dns, getaddrinfo, tcp, http, nats, watch) from inside the cluster network."""
    ca_pem = natsnet_cell.tls.ca_pem if natsnet_cell.tls else None
    return Prober(natsnet_cell.deployment, ca_pem.decode() if isinstance(ca_pem, bytes) else ca_pem)
