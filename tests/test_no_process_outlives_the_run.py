"""No process of a sandbox run is alive when pytest returns: after a passing run, a failing run, and Ctrl-C.

A real pytest run (a subprocess) deploys one sandbox cell through the plugin's fixtures and starts a watching
client; it runs inside a fresh cgroup, so its processes are known exactly (containers, the DNS server, probe
programs, zombies included) without looking at names: other engineers run nats-server on this machine too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from run_cgroup import RunCgroup, cgroup2_root

CELL_UP = "cell-up"
"""The file the inner test writes once its cell is deployed and its watcher connected."""

INNER_TEST = textwrap.dedent(
    """
    import os
    import pathlib
    import time

    from pytest_natsnet.probe.model import WatchRequest


    def test_a_cell_with_a_watching_client(natsnet_deployment, natsnet_probe):
        watch = natsnet_probe.watch(WatchRequest(("nats://nats:4222",), duration=300.0))
        deadline = time.monotonic() + 30
        while not any(e.get("event") == "connected" for e in watch.events()):
            assert time.monotonic() < deadline, f"the watcher never connected: {watch.events()}"
            time.sleep(0.1)
        pathlib.Path(os.environ["CELL_UP"]).write_text("up")
        outcome = os.environ["OUTCOME"]
        if outcome == "interrupted":
            time.sleep(300)  # the outer test sends SIGINT meanwhile
        assert outcome == "passes", "this run is meant to fail"
    """
)
DEPLOY_BOUND = 120.0
EXIT_BOUND = 120.0


@pytest.fixture
def run_cgroup() -> Iterator[RunCgroup]:
    from pytest_natsnet.providers.sandbox_provider import missing_requirements

    if missing_requirements():
        pytest.skip("; ".join(missing_requirements()))
    root = cgroup2_root()
    if root is None or not os.access(root, os.W_OK):
        pytest.skip("needs a writable cgroup v2 hierarchy to tell the run's processes from everyone else's")
    cgroup = RunCgroup.create(root)
    yield cgroup
    left = cgroup.members()
    for line in left:  # never leave our own leftovers to the next test
        os.kill(int(line.split()[0]), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while cgroup.members() and time.monotonic() < deadline:
        time.sleep(0.1)
    cgroup.remove()


def _pytest_argv(tmp_path: Path) -> list[str]:
    return [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--natsnet",
        "--natsnet-provider=sandbox", "--natsnet-source=reference", "--natsnet-scenario=default",
        f"--natsnet-evidence-dir={tmp_path / 'evidence'}", "test_inner.py",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("outcome", "exit_code"),
    [
        ("passes", pytest.ExitCode.OK),
        ("fails", pytest.ExitCode.TESTS_FAILED),
        ("interrupted", pytest.ExitCode.INTERRUPTED),
    ],
)
def test_no_process_of_the_run_is_alive_when_pytest_returns(
    outcome: str, exit_code: pytest.ExitCode, run_cgroup: RunCgroup, tmp_path: Path
) -> None:
    (tmp_path / "test_inner.py").write_text(INNER_TEST)
    cell_up = tmp_path / CELL_UP
    env = {**os.environ, "OUTCOME": outcome, "CELL_UP": str(cell_up)}
    output = tmp_path / "output.txt"
    with output.open("w") as out:
        process = subprocess.Popen(
            run_cgroup.argv(_pytest_argv(tmp_path)), cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            if outcome == "interrupted":
                deadline = time.monotonic() + DEPLOY_BOUND
                while not cell_up.exists() and process.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.1)
                assert cell_up.exists(), f"the cell never came up:\n{output.read_text()[-3000:]}"
                assert run_cgroup.members(), "the run has no process while its cell is up: the cgroup sees nothing"
                process.send_signal(signal.SIGINT)  # what Ctrl-C sends pytest
            returncode = process.wait(timeout=EXIT_BOUND)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    left = run_cgroup.members()  # the moment pytest returned

    text = output.read_text()
    assert cell_up.exists(), f"the inner test never had its cell up:\n{text[-3000:]}"
    assert returncode == exit_code, f"pytest exited {returncode}, expected {exit_code!r}:\n{text[-3000:]}"
    assert left == [], f"{len(left)} process(es) of the run alive after pytest returned: {left}\n{text[-2000:]}"
