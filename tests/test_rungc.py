"""``natsnet gc`` on the kube path: a run records its cluster; after the run is killed, gc finds what it left from
the record and the run's labels. Unit cases decide from records alone (dead, live, kept, kind clusters); the real
cases kill a pytest run on the sandbox, once with the existing provider (its namespaces stay in a cluster that
lives on) and once with the sandbox provider killed together with its sandbox (network namespaces, processes and
directories stay on the machine), and check that gc leaves nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SandboxApi, needs_sandbox

from pytest_natsnet import kube, rungc, runrecord
from pytest_natsnet.kubeclient import KubeClient
from pytest_natsnet.providers.kubeapi import wait_until
from pytest_natsnet.sandbox import gc as sandbox_gc
from pytest_natsnet.sandbox import netns

HANGS = """
import pathlib, time

def test_hangs(natsnet_deployment):
    pathlib.Path("deployed").write_text(natsnet_deployment.namespace)
    time.sleep(600)
"""


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "state"
    monkeypatch.setenv("NATSNET_STATE_DIR", str(directory))
    monkeypatch.setattr(sandbox_gc, "STATE_DIR", directory)
    return directory


def _dead_pid() -> int:
    done = subprocess.Popen(["true"])
    done.wait()
    return done.pid


def _record(tmp_path: Path, run_id: str, **fields: object) -> runrecord.RunRecord:
    run_dir = tmp_path / f"run-{run_id}"
    run_dir.mkdir()
    record = runrecord.RunRecord(**{"run_id": run_id, "pid": _dead_pid(), "provider": "existing",
                                    "run_dir": str(run_dir), "cluster_ready": True, **fields})  # type: ignore[arg-type]
    runrecord.write(record)
    return record


def _gc(**kwargs: bool) -> list[str]:
    said: list[str] = []
    rungc.collect(say=said.append, **kwargs)
    return said


def test_a_live_run_and_a_kept_run_are_left_alone(state: Path, tmp_path: Path) -> None:
    live = runrecord.new_record("live01", "existing", tmp_path)
    runrecord.write(live)
    kept = _record(tmp_path, "kept01", kept=True)
    said = _gc()
    assert f"run live01: pid {os.getpid()} still runs, left alone" in said
    assert any(line.startswith("run kept01: kept on purpose") for line in said)
    assert {r.run_id for r in runrecord.load_all()[0]} == {"live01", "kept01"}
    assert Path(kept.run_dir).is_dir()


def test_a_dead_run_whose_cluster_is_gone_is_forgotten(state: Path, tmp_path: Path) -> None:
    dead = _record(tmp_path, "dead01", kubeconfig=str(tmp_path / "gone.kubeconfig"))
    dry = _gc(dry_run=True)
    assert f"would remove {dead.run_dir}" in dry and Path(dead.run_dir).is_dir()
    assert [r.run_id for r in runrecord.load_all()[0]] == ["dead01"]
    said = _gc()
    assert f"removed {dead.run_dir}" in said and "forgot run dead01" in said
    assert runrecord.load_all() == ([], []) and not Path(dead.run_dir).exists()


def test_a_reused_pid_is_not_the_owner(state: Path, tmp_path: Path) -> None:
    """Our own pid with another start time: the owner died and its pid was given to someone else."""
    record = runrecord.new_record("reuse1", "existing", tmp_path)
    record = runrecord.update(record, pid_start="1")
    assert not record.owner_alive()
    assert "forgot run reuse1" in _gc()


def test_include_kept_stops_a_kept_sandbox_and_forgets_the_run(state: Path, tmp_path: Path) -> None:
    sandbox = subprocess.Popen(["sleep", "60"])
    try:
        _record(tmp_path, "kept02", provider="sandbox", kept=True, sandbox_pid=sandbox.pid)
        assert any(line.startswith("run kept02: kept on purpose") for line in _gc()) and sandbox.poll() is None
        assert f"would stop kept sandbox of run kept02 (pid {sandbox.pid})" in _gc(dry_run=True, include_kept=True)
        said = _gc(include_kept=True)
        assert f"stopped the kept sandbox of run kept02 (pid {sandbox.pid})" in said and "forgot run kept02" in said
        assert sandbox.wait(timeout=5) == -15
    finally:
        if sandbox.poll() is None:
            sandbox.kill()
            sandbox.wait()


@pytest.fixture
def fake_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    calls = tmp_path / "kind-calls"
    kind = tmp_path / "kind"
    kind.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n")
    kind.chmod(0o755)
    monkeypatch.setenv("NATSNET_KIND", str(kind))
    return calls


def test_a_kind_cluster_is_deleted_only_when_the_dead_run_created_it_and_no_live_run_uses_it(
        state: Path, tmp_path: Path, fake_kind: Path) -> None:
    _record(tmp_path, "kind01", provider="kind", cluster_name="mine", created_cluster=True)
    _record(tmp_path, "kind02", provider="kind", cluster_name="found", created_cluster=False)
    _record(tmp_path, "kind03", provider="kind", cluster_name="shared", created_cluster=True)
    runrecord.write(runrecord.new_record("kind04", "kind", tmp_path, cluster_name="shared"))
    _record(tmp_path, "kind05", provider="kind", cluster_name="half", created_cluster=False, cluster_ready=False)
    dry = _gc(dry_run=True)
    assert "would delete kind cluster mine (created by run kind01)" in dry and not fake_kind.exists()
    said = _gc()
    assert fake_kind.read_text().splitlines() == ["delete cluster --name=mine"]
    assert "kind cluster shared: used by running run(s) kind04, left alone" in said
    assert any("died while starting kind cluster half" in line and "kind delete cluster --name half" in line
               for line in said)
    assert [r.run_id for r in runrecord.load_all()[0]] == ["kind04"]


# -- killed runs on the sandbox -------------------------------------------------------------------------------


def _start_run(workdir: Path, state_dir: Path, *args: str) -> subprocess.Popen[bytes]:
    (workdir / "test_hangs.py").write_text(HANGS)
    env = {**os.environ, "NATSNET_STATE_DIR": str(state_dir), "NATSNET_RUN_DIR": str(workdir / "runs")}
    return subprocess.Popen([sys.executable, "-m", "pytest", "--natsnet", "--natsnet-source=reference",
                             "--natsnet-scenario=default", "-p", "no:cacheprovider", "-q", *args, "test_hangs.py"],
                            cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def _wait_deployed(process: subprocess.Popen[bytes], workdir: Path) -> str:
    wait_until(lambda: ((workdir / "deployed").is_file() or process.poll() is not None, "not deployed yet"), 240,
               "the run's cell deployed", poll=0.5)
    assert process.poll() is None, "the run ended before its cell deployed"
    return (workdir / "deployed").read_text()


def _natsnet_gc(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_natsnet.cli", "gc", *args], capture_output=True, text=True,
                          timeout=180, check=False, env={**os.environ, "NATSNET_STATE_DIR": str(state_dir)})


@pytest.fixture
def killed(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:  # a failed test must not leave a hanging run behind
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@needs_sandbox
def test_gc_deletes_the_namespaces_of_a_killed_run_on_an_existing_cluster(
        sandbox_api: SandboxApi, tmp_path: Path, killed: list[subprocess.Popen[bytes]]) -> None:
    state_dir = tmp_path / "state"
    run = _start_run(tmp_path, state_dir, "--natsnet-provider=existing",
                     f"--natsnet-kubeconfig={sandbox_api.kubeconfig}", f"--natsnet-kubectl={sandbox_api.kubectl_bin}")
    killed.append(run)
    namespace = _wait_deployed(run, tmp_path)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait(timeout=10)
    (record,) = [json.loads(p.read_text()) for p in (state_dir / "runs").glob("*.json")]
    client = KubeClient(sandbox_api.kubeconfig)
    left = [kube.name(n) for n in client.list("Namespace", None, rungc.run_selector(record["run_id"]))]
    assert left == [namespace], "the killed run should have left its labelled namespace"

    dry = _natsnet_gc(state_dir, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would delete namespace {namespace} (run {record['run_id']}" in dry.stdout
    assert client.get("Namespace", namespace, None) is not None and list((state_dir / "runs").glob("*.json"))

    done = _natsnet_gc(state_dir)
    assert done.returncode == 0, done.stderr
    assert f"deleted namespace {namespace} (run {record['run_id']})" in done.stdout
    assert f"forgot run {record['run_id']}" in done.stdout
    wait_until(lambda: (client.get("Namespace", namespace, None) is None, "still there"), 60,
               f"namespace {namespace} gone", poll=0.5)
    assert not list((state_dir / "runs").glob("*.json")) and not Path(record["run_dir"]).exists()
    again = _natsnet_gc(state_dir)
    assert again.returncode == 0 and "namespace" not in again.stdout


@needs_sandbox
def test_gc_leaves_the_machine_clean_after_a_run_and_its_sandbox_are_killed(
        tmp_path: Path, killed: list[subprocess.Popen[bytes]]) -> None:
    state_dir = tmp_path / "state"
    run = _start_run(tmp_path, state_dir, "--natsnet-provider=sandbox", "--natsnet-sandbox-dns=fast")
    killed.append(run)
    _wait_deployed(run, tmp_path)
    (record,) = [json.loads(p.read_text()) for p in (state_dir / "runs").glob("*.json")]
    (sandbox,) = [json.loads(p.read_text()) | {"id": p.stem} for p in state_dir.glob("*.json")]
    assert record["sandbox_pid"] == sandbox["pid"]
    os.killpg(run.pid, signal.SIGKILL)
    os.kill(record["sandbox_pid"], signal.SIGKILL)  # the machine went down under both
    run.wait(timeout=10)
    # gone from /proc, not only dead: the sandbox's own gc counts an unreaped process as its owner still running
    wait_until(lambda: (not Path(f"/proc/{record['sandbox_pid']}").exists(), "sandbox up not reaped yet"), 30,
               "sandbox up gone", poll=0.1)
    prefix = f"natsnet-{sandbox['id']}-"
    assert [n for n in netns.list_netns() if n.startswith(prefix)], "the killed sandbox should have left netns"

    dry = _natsnet_gc(state_dir, "--dry-run")
    assert f"would remove sandbox {sandbox['id']}" in dry.stdout and "would forget run record" in dry.stdout
    assert [n for n in netns.list_netns() if n.startswith(prefix)]

    done = _natsnet_gc(state_dir)
    assert done.returncode == 0, done.stderr
    assert f"forgot run {record['run_id']}" in done.stdout and "deleted netns" in done.stdout
    assert not [n for n in netns.list_netns() if n.startswith(prefix)]
    assert not list(state_dir.rglob("*.json")), "records left"
    assert not Path(record["run_dir"]).exists() and not Path(sandbox["run_dir"]).exists()
    time.sleep(0.5)
    assert not _processes_in(Path(sandbox["run_dir"])), "processes of the killed sandbox still run"


def _processes_in(directory: Path) -> list[str]:
    """Processes whose command line names the sandbox's directory (its nats-servers, DNS server, probes)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(directory) in cmdline:
                found.append(f"{proc.name}: {cmdline[:120]}")
    return found
