"""The sandbox garbage collector finds a crashed run's leftovers from disk: netns, processes, run directory.

The real test starts a sandbox in a subprocess, SIGKILLs it and collects. State files go to a tmp
``NATSNET_STATE_DIR``; sandbox ids are ``tg<pid>...``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_natsnet.sandbox import gc, netns

NATS_SERVER = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "nats-server"

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(c) for c in ("ip", "nft", "bwrap", "nsenter")),
    reason="needs root with ip, nft, bwrap and nsenter (network namespaces)",
)

CRASHING_RUN = r"""
import os, subprocess, sys, time
from pathlib import Path
from pytest_natsnet.sandbox.cluster import PROBE_IMAGE, SandboxCluster

cluster = SandboxCluster(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
cluster.start()
cluster.apply([{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "victim"},
                "spec": {"containers": [{"name": "main", "image": PROBE_IMAGE}]}}], "gc")
deadline = time.monotonic() + 20
while True:
    cluster.check()
    try:
        argv = cluster.exec_argv("gc", "victim", "main", ["sh", "-c", "sleep 300", sys.argv[2]])
        break
    except KeyError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.05)
# an exec'd process (like a probe program) does not die with the run: gc must kill it
exec_d = subprocess.Popen(argv, start_new_session=True)
# "up" only once nsenter is inside the pod's namespaces: killed before that, it would fail with the container
own_netns, deadline = os.readlink("/proc/self/ns/net"), time.monotonic() + 20
while os.readlink(f"/proc/{exec_d.pid}/ns/net") == own_netns:
    if exec_d.poll() is not None or time.monotonic() > deadline:
        raise SystemExit(f"the exec'd process did not enter the pod: {exec_d.returncode}")
    time.sleep(0.01)
print("up", flush=True)
time.sleep(300)
"""


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "state"
    monkeypatch.setattr(gc, "STATE_DIR", directory)
    monkeypatch.setattr(gc, "ORPHAN_AGE", float("inf"))  # the machine's sandboxes are not this state dir's
    return directory


def ours(sandbox_id: str) -> list[str]:
    return [n for n in netns.list_netns() if n.startswith(f"natsnet-{sandbox_id}-")]


def pids_in(namespaces: list[str]) -> list[str]:
    return [str(p) for n in namespaces for p in netns.pids(n)]


def processes_mentioning(text: str) -> list[str]:
    found = subprocess.run(["pgrep", "-f", text], capture_output=True, text=True, check=False)
    return found.stdout.split()


# --- pure-ish: state files ---------------------------------------------------------------------------


def test_record_and_forget(state_dir: Path) -> None:
    gc.record("abc", {"pid": 1, "run_dir": "/nowhere", "netns_prefix": "natsnet-abc-"})
    assert json.loads((state_dir / "abc.json").read_text())["netns_prefix"] == "natsnet-abc-"
    assert not list(state_dir.glob("*.tmp"))
    gc.forget("abc")
    gc.forget("abc")
    assert list(state_dir.iterdir()) == []


def test_nothing_to_collect_without_a_state_dir(state_dir: Path) -> None:
    assert gc.collect_garbage() == []


def test_a_live_owner_is_left_alone_and_a_dead_one_is_collected(state_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    gc.record("live", {"pid": os.getpid(), "run_dir": str(run_dir), "netns_prefix": "natsnet-none-live-"})
    assert gc.collect_garbage() == [f"sandbox live: owner pid {os.getpid()} still runs, left alone"]
    assert run_dir.is_dir() and (state_dir / "live.json").exists()

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    gc.forget("live")
    gc.record("dead", {"pid": int(dead.stdout), "run_dir": str(run_dir),
                       "netns_prefix": "natsnet-nonexistent-dead-"})
    assert gc.collect_garbage() == [f"removed {run_dir}"]
    assert not run_dir.exists() and not (state_dir / "dead.json").exists()


def test_an_unreadable_state_file_is_reported_and_kept(state_dir: Path) -> None:
    state_dir.mkdir()
    (state_dir / "broken.json").write_text("{not json")
    assert gc.collect_garbage() == [f"skipped unreadable {state_dir / 'broken.json'}"]
    assert (state_dir / "broken.json").exists()


# --- real: a crashed run -----------------------------------------------------------------------------


@pytest.fixture
def crashed_run(state_dir: Path, tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[str]]]:
    sandbox_id = f"tg{os.getpid()}"
    run_dir = tmp_path / "run"
    env = {**os.environ, "NATSNET_STATE_DIR": str(state_dir)}
    process = subprocess.Popen(
        [sys.executable, "-c", CRASHING_RUN, sandbox_id, str(run_dir), str(NATS_SERVER)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        yield sandbox_id, run_dir, process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        # belt and braces: never leave anything of ours behind, even when the test failed
        for ns_name in ours(sandbox_id):
            for pid in pids_in([ns_name]):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            netns.delete_netns(ns_name)
        for pid in processes_mentioning(str(run_dir)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


@needs_root
def test_gc_removes_a_sigkilled_run(crashed_run: tuple[str, Path, subprocess.Popen[str]]) -> None:
    sandbox_id, run_dir, process = crashed_run
    assert process.stdout is not None
    line = process.stdout.readline()
    if line != "up\n":
        stderr = process.stderr.read() if process.stderr else ""
        pytest.fail(f"the sandbox subprocess did not come up: {line!r} {stderr}", pytrace=False)
    assert len(ours(sandbox_id)) >= 3  # hub, kube-dns, victim

    # while the owner runs, gc must not touch it
    assert gc.collect_garbage() == [f"sandbox {sandbox_id}: owner pid {process.pid} still runs, left alone"]
    assert len(ours(sandbox_id)) >= 3

    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    namespaces = ours(sandbox_id)
    assert pids_in(namespaces), "the exec'd process should outlive its run (otherwise this test proves nothing)"

    actions = gc.collect_garbage()
    assert sorted(a.split(" (")[0] for a in actions if a.startswith("deleted netns")) == sorted(
        f"deleted netns {n}" for n in namespaces
    )
    assert f"removed {run_dir}" in actions
    assert ours(sandbox_id) == []
    assert processes_mentioning(str(run_dir)) == []
    assert not run_dir.exists()
    assert gc.collect_garbage() == []


@needs_root
def test_natsnet_gc_cleans_after_a_killed_sandbox_up(state_dir: Path, tmp_path: Path) -> None:
    """``natsnet sandbox up`` registers itself first: SIGKILLed, its netns, processes and directory (keys and
    kubeconfig included) are what ``natsnet gc`` removes."""
    env = {**os.environ, "NATSNET_STATE_DIR": str(state_dir)}
    ready_file = tmp_path / "ready.json"
    argv = [sys.executable, "-m", "pytest_natsnet.cli", "sandbox", "up", "--dir", str(tmp_path / "up"),
            "--ready-file", str(ready_file), "--nats-server", str(NATS_SERVER)]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not ready_file.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready_file.exists(), f"sandbox up did not get ready: {process.stderr.read() if process.stderr else ''}"
        ready = json.loads(ready_file.read_text())
        sandbox_id, directory = str(ready["id"]), Path(str(ready["dir"]))
        assert ours(sandbox_id) and (directory / "kubeconfig").exists()
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        done = subprocess.run([sys.executable, "-m", "pytest_natsnet.cli", "gc"], capture_output=True, text=True,
                              env=env, timeout=60, check=True)
        assert f"removed {directory}" in done.stdout
        assert ours(sandbox_id) == [] and not directory.exists()
        assert processes_mentioning(str(directory)) == []
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def test_orphaned_namespaces_are_old_idle_and_unknown_to_any_state_file() -> None:
    """A sandbox killed before it removed its namespaces, whose state went with a temporary directory: its
    namespaces are orphans once old and idle; a known sandbox's, a busy one's or a young one's are not."""
    names = ["natsnet-aaaaaaaa-hub", "natsnet-aaaaaaaa-p0", "natsnet-aaaaaaaa-p1",  # orphan
             "natsnet-bbbbbbbb-hub", "natsnet-bbbbbbbb-p0",  # a state file knows it
             "natsnet-cccccccc-hub", "natsnet-cccccccc-p0",  # p0 still has a process
             "natsnet-dddddddd-hub",  # created a minute ago
             "natsnet-ts123-hub", "other-netns", "natsnet-aaaaaaaa-veth"]  # not a sandbox namespace name
    ages = {"natsnet-dddddddd-hub": 60.0}
    found = gc.orphaned_netns(names, {"bbbbbbbb"}, busy=lambda n: n == "natsnet-cccccccc-p0",
                              age=lambda n: ages.get(n, 7200.0))
    assert found == {"aaaaaaaa": ["natsnet-aaaaaaaa-hub", "natsnet-aaaaaaaa-p0", "natsnet-aaaaaaaa-p1"]}
    assert gc.orphaned_netns(names, set(), busy=lambda n: False, age=lambda n: 7200.0, min_age=10_000) == {}


@needs_root
def test_the_age_of_a_namespace_is_read_from_its_mount() -> None:
    name = f"natsnet-t{os.getpid() % 10_000_000:07d}-hub"
    netns.add_netns(name)
    try:
        assert 0 <= gc.netns_age(name) < 60
        assert gc.netns_busy(name) is False
    finally:
        netns.delete_netns(name)
    assert gc.netns_age(name) == 0.0


def test_the_directory_remover_has_removed_what_was_queued_when_it_closes(tmp_path: Path) -> None:
    from pytest_natsnet.sandbox.gc import DirectoryRemover

    roots = [tmp_path / f"pod-{n}" / "rootfs" for n in range(3)]
    for root in roots:
        (root / "bin").mkdir(parents=True)
        for applet in ("sh", "ls", "cat"):
            os.symlink("/bin/busybox", root / "bin" / applet)
    remover = DirectoryRemover()
    for root in roots:
        remover.remove(root)
    remover.close()
    assert [root.exists() for root in roots] == [False, False, False]
    assert [p.name for p in tmp_path.iterdir()] and all(p.is_dir() for p in tmp_path.iterdir())
