"""The run plan: decided once by the process that owns the run, handed to xdist workers, never probed for
``--collect-only`` or ``--help``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_natsnet.plan import RunPlan, choose_provider, decide, undecided
from pytest_natsnet.settings import NatsnetSettings


@pytest.mark.parametrize(
    ("requested", "docker", "expected"),
    [("auto", True, "kind"), ("auto", False, "sandbox"), ("existing", True, "existing"),
     ("sandbox", True, "sandbox"), ("kind", False, "kind")],
)
def test_choose_provider(requested: str, docker: bool, expected: str) -> None:
    provider, reason = choose_provider(requested, docker)
    assert provider == expected and reason


def test_decide_probes_docker_only_for_auto() -> None:
    calls: list[str] = []

    def docker() -> bool:
        calls.append("docker")
        return False

    def source(settings: NatsnetSettings) -> tuple[str, str]:
        calls.append("source")
        return "reference", "because"

    plan = decide(NatsnetSettings(enabled=True), "abc123", docker=docker, source=source)
    assert (plan.provider, plan.source, plan.decided, calls) == ("sandbox", "reference", True, ["docker", "source"])
    calls.clear()
    plan = decide(NatsnetSettings(enabled=True, provider="kind"), "abc123", docker=docker, source=source)
    assert (plan.provider, calls) == ("kind", ["source"])


def test_plan_crosses_the_wire_unchanged() -> None:
    plan = RunPlan("abc123", "kind", "why", "helm", "why not", True, {"kubeconfig": "/k", "context": "c"})
    assert RunPlan.from_wire(plan.to_wire()) == plan
    assert RunPlan.from_wire(undecided(NatsnetSettings(), "x", "--help").to_wire()).decided is False
    assert plan.with_cluster({"kubeconfig": "/other"}).cluster == {"kubeconfig": "/other"}


# ------------------------------------------------------------- what start-up runs: docker, helm, the network


@pytest.fixture
def recorded(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path, list[int]]]:
    """An environment whose ``docker`` and ``helm`` record every call, and whose HTTP(S) proxy records every
    connection: (env, call log, connections)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    for tool, output in (("docker", ""), ("helm", "v3.16.2+g13654a5")):
        script = bin_dir / tool
        status = 1 if tool == "docker" else 0
        script.write_text(f"#!/bin/sh\necho {tool} \"$@\" >> {log}\necho {output}\nexit {status}\n")
        script.chmod(0o755)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    connections: list[int] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            connections.append(1)
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    proxy = f"http://127.0.0.1:{listener.getsockname()[1]}"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "https_proxy": proxy, "HTTPS_PROXY": proxy,
           "http_proxy": proxy, "no_proxy": "", "NO_PROXY": "", "NATSNET_HELM": "", "NATSNET_KUBECTL": ""}
    env.pop("PYTEST_XDIST_WORKER", None)
    yield env, log, connections
    stop.set()
    thread.join(timeout=2)
    listener.close()


def _pytest(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_uses_cell.py").write_text("def test_uses_cell(natsnet_cell):\n    pass\n")
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--natsnet", "test_uses_cell.py", *args]
    return subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)


def _calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize("args", [("--collect-only", "-q"), ("--help",), ("--collect-only", "-q", "-n", "2")])
def test_collect_only_and_help_probe_nothing(
    recorded: tuple[dict[str, str], Path, list[int]], tmp_path: Path, args: tuple[str, ...]
) -> None:
    env, log, connections = recorded
    done = _pytest(tmp_path, env, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (_calls(log), len(connections)) == ([], 0)


def test_a_run_probes_once_on_the_controller_not_on_each_worker(
    recorded: tuple[dict[str, str], Path, list[int]], tmp_path: Path
) -> None:
    """The positive control of the test above: a real run asks docker and helm once and tries the chart
    repository once, with two xdist workers (which get the plan and probe nothing)."""
    env, log, connections = recorded
    done = _pytest(tmp_path, env, "-n", "2", "-k", "no_such_test", "--natsnet-provider=auto")
    assert done.returncode == 5, done.stdout + done.stderr
    calls = _calls(log)
    assert [c.split()[0] for c in calls].count("docker") == 1, calls
    assert any(c.startswith("helm") for c in calls), calls
    assert len(connections) == 1
