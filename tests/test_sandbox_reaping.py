"""Finding a sandbox's processes by session (zombies included), waiting until they are reaped; a failed start."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from pytest_natsnet.providers.sandbox_provider import missing_requirements
from pytest_natsnet.sandbox import gc, kubelet, netns
from pytest_natsnet.sandbox.cluster import SandboxCluster
from pytest_natsnet.sandbox.reaping import in_sessions, parse_stat, wait_reaped


def test_parse_stat_keeps_a_command_with_spaces_and_parentheses() -> None:
    entry = parse_stat("4242 (my (odd) cmd) Z 1 4242 4240 0 -1 4194560 0 0")
    assert (entry.pid, entry.command, entry.state, entry.ppid, entry.session) == (4242, "my (odd) cmd", "Z", 1, 4240)
    assert entry.describe() == "4242 my (odd) cmd (state Z, parent 1)"


def test_a_zombie_counts_until_it_is_reaped() -> None:
    process = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        assert [p.command for p in in_sessions([process.pid])] == ["sleep"]
        os.kill(process.pid, signal.SIGKILL)
        left = wait_reaped([process.pid], timeout=0.3)  # killed, but its parent (this test) has not reaped it
        assert [(p.pid, p.state) for p in left] == [(process.pid, "Z")]
    finally:
        process.kill()
        process.wait()
    assert wait_reaped([process.pid], timeout=5.0) == []


def test_a_process_forked_after_the_first_look_is_still_found() -> None:
    """Between full scans the wait reads only the processes it saw; when those are gone it scans again, so a child
    forked later by a process that then exited is still in the session's answer."""
    leader = subprocess.Popen(["sh", "-c", "sleep 0.2; (exec sleep 30) & exit 0"], start_new_session=True)
    try:
        time.sleep(0.05)
        left = wait_reaped([leader.pid], timeout=1.5)
        assert "sleep" in [p.command for p in left if p.pid != leader.pid], left
    finally:
        for entry in in_sessions([leader.pid]):
            if entry.pid != leader.pid:
                os.kill(entry.pid, signal.SIGKILL)
        leader.wait()


ADOPTER = """
import subprocess, sys, time
from pytest_natsnet.sandbox.reaping import become_subreaper, in_sessions, wait_reaped
assert become_subreaper()
leader = subprocess.Popen(["sh", "-c", "sleep 0.3 & kill -9 $$"], start_new_session=True)
leader.wait()  # the shell is gone; its sleep is an orphan, adopted here, a zombie once it ends
time.sleep(0.6)
print(sorted(p.state for p in in_sessions([leader.pid])), wait_reaped([leader.pid], timeout=3.0))
"""


def test_a_zombie_adopted_as_subreaper_is_reaped_while_waiting() -> None:
    """``natsnet sandbox up`` adopts its pods' orphans: a killed shell's child must not hold up a teardown."""
    done = subprocess.run([sys.executable, "-c", ADOPTER], capture_output=True, text=True, timeout=30, check=True)
    assert done.stdout.strip() == "['Z'] []", done.stdout + done.stderr


KILL_ALL = """
import subprocess, time, types
from pytest_natsnet.sandbox.kubelet import PodRuntime
from pytest_natsnet.sandbox.reaping import become_subreaper, in_sessions
assert become_subreaper()
leader = subprocess.Popen(["sh", "-c", "sleep 60 & kill -9 $$"], start_new_session=True)
leader.wait()  # a container whose bubblewrap exited first: its command an orphan, adopted here, still running
time.sleep(0.3)
pod = types.SimpleNamespace(containers=[types.SimpleNamespace(process=leader, child_pid=None, stopping=None,
                                                             exit_fd=None)])
print(PodRuntime.kill_all(pod, timeout=3.0), in_sessions([leader.pid]))
"""


def test_a_stopped_pod_leaves_no_zombie_of_a_container_whose_bubblewrap_exited_first() -> None:
    """A deleted pod's containers stop on their own (SIGTERM): when bubblewrap ends before its command, the command
    is adopted by ``natsnet sandbox up`` and must be reaped with the pod (a full-matrix run had left one zombie
    ``sleep`` per cell, from the probe pods)."""
    done = subprocess.run([sys.executable, "-c", KILL_ALL], capture_output=True, text=True, timeout=30, check=True)
    assert done.stdout.strip() == "[] []", done.stdout + done.stderr


def test_a_pod_whose_containers_all_ended_is_done_without_a_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    """The usual end of a deleted pod: every container stopped on SIGTERM and bubblewrap was reaped; its process
    groups are empty, so no scan of every process (~700 of them in a full run, one per pod deletion) is needed.
    One member left in a group (an orphan adopted here) and one scan answers for all the pod's sessions."""
    ended = [subprocess.Popen(["true"], start_new_session=True) for _ in range(3)]
    for process in ended:
        process.wait()
    scans: list[list[int]] = []

    def counted(sessions: list[int]) -> list[object]:
        scans.append(sorted(sessions))
        return list(in_sessions(sessions))

    monkeypatch.setattr(kubelet, "in_sessions", counted)
    monkeypatch.setattr(kubelet, "wait_reaped", lambda *args: pytest.fail("waited after the check said none is left"))
    pod = types.SimpleNamespace(containers=[
        types.SimpleNamespace(process=p, child_pid=None, stopping=None, exit_fd=None) for p in ended])
    assert kubelet.PodRuntime.kill_all(pod, timeout=1.0) == []  # type: ignore[arg-type]
    assert scans == []
    leader = subprocess.Popen(["sh", "-c", "sleep 30 & exit 0"], start_new_session=True)
    leader.wait()  # its sleep lives on in the leader's group
    try:
        pod.containers.append(types.SimpleNamespace(process=leader, child_pid=None, stopping=None, exit_fd=None))
        monkeypatch.setattr(kubelet, "wait_reaped", lambda sessions, timeout: [])
        kubelet.PodRuntime.kill_all(pod, timeout=1.0)  # type: ignore[arg-type]
        assert scans == [sorted([*(p.pid for p in ended), leader.pid])]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(leader.pid, signal.SIGKILL)


def test_no_session_means_nothing_to_wait_for() -> None:
    assert in_sessions([]) == [] and wait_reaped([], timeout=0.0) == []


def test_a_sandbox_that_fails_to_start_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its cluster DNS never gets ready (as under a heavy load): the DNS server it started is reaped, its network
    namespaces and its record under the state directory are gone."""
    if missing_requirements():
        pytest.skip("; ".join(missing_requirements()))
    monkeypatch.setattr(gc, "STATE_DIR", tmp_path / "state")
    started: list[int] = []

    def never_ready(self: SandboxCluster, timeout: float) -> None:
        deadline = time.monotonic() + 10
        while not started and time.monotonic() < deadline:  # until the DNS server process runs
            started.extend(c.process.pid for r in self._runtimes.values() for c in r.containers if c.process)
            time.sleep(0.02)
        raise RuntimeError(f"sandbox {self.id}: cluster DNS was not ready within {timeout:g}s")

    monkeypatch.setattr(SandboxCluster, "_wait_for_dns", never_ready)
    cluster = SandboxCluster(f"tr{os.getpid()}", tmp_path / "run", Path("/nonexistent/nats-server"))
    with pytest.raises(RuntimeError, match="cluster DNS was not ready"):
        cluster.start()
    assert started, "the DNS server never started: the test proves nothing"
    assert in_sessions(started) == []
    assert [n for n in netns.list_netns() if n.startswith(f"natsnet-{cluster.id}-")] == []
    assert list((tmp_path / "state").glob("*.json")) == []
