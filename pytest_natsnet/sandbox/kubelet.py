"""The sandbox kubelet: one pod's containers as real processes, its probes, restarts and graceful deletion.

Timings follow the pod spec (initialDelaySeconds, periodSeconds, timeoutSeconds, thresholds,
terminationGracePeriodSeconds) under the kubelet's own rules (:mod:`pytest_natsnet.sandbox.kubeletrules`: probes
on a ticker that starts when the pod is admitted, readiness alone while the pod terminates, CrashLoopBackOff from
the second restart, preStop before every kill); probes run from the node (the hub namespace), as the kubelet's
do. Nothing here waits for a grace period: every kill is a state advanced by :meth:`PodRuntime.tick`.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_natsnet.sandbox import netns
from pytest_natsnet.sandbox.gc import alive
from pytest_natsnet.sandbox.kubeletrules import (
    BACKOFF_INITIAL,
    BACKOFF_MAX,
    CrashLoopBackOff,
    kill_grace_seconds,
    next_tick,
    past_initial_delay,
    probes_while_terminating,
    sigkill_after,
)
from pytest_natsnet.sandbox.podenv import container_env, expand_args
from pytest_natsnet.sandbox.podfs import POD_PATH, Mount, bwrap_argv, container_mounts
from pytest_natsnet.sandbox.reaping import ProcessEntry, in_sessions, wait_reaped

RESTART_BACKOFF_START = BACKOFF_INITIAL
RESTART_BACKOFF_MAX = BACKOFF_MAX
PROBE_KINDS = ("startupProbe", "readinessProbe", "livenessProbe")
REAP_TIMEOUT = 10.0
"""Bound for a killed pod's processes to be reaped."""


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class Image:
    """How the sandbox runs an image: the command that stands in for its entrypoint.

    ``root`` (optional) lays out the image's own root filesystem in a fresh directory: the container then
    runs in that directory (writable, kept for the container's life) instead of the host's ``/usr``; ``env``
    and ``workdir`` are the image's ``ENV`` and ``WORKDIR``.
    """

    entrypoint: list[str]
    default_args: list[str]
    binaries: dict[str, Path]
    extra_mounts: list[Mount] = field(default_factory=list)
    note: str = ""
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    root: Callable[[Path], None] | None = None
    masked: list[str] = field(default_factory=list)
    """Paths covered by an empty tmpfs (what the image does not have, such as a host's site-packages)."""


@dataclass
class ProbeState:
    """One prober worker: its ticker runs from ``worker_start`` (the pod's admission), across restarts."""

    spec: Mapping[str, Any]
    worker_start: float
    due: float
    successes: int = 0
    failures: int = 0
    future: Future[tuple[bool, str]] | None = None
    last_message: str = ""
    triggered: bool = False
    """A manual run is pending (readiness, when the kubelet syncs a started, not-ready container)."""
    on_hold: bool = False
    """A liveness/startup failure killed the container: no probing until the next start."""
    stopped: bool = False
    """The pod terminates: liveness and startup workers are gone."""

    @property
    def period(self) -> float:
        return float(self.spec.get("periodSeconds", 10))

    def reset(self) -> None:
        """A new container: results start over, probing resumes (the ticker keeps its phase)."""
        if self.future is not None:
            self.future.cancel()
        self.future, self.successes, self.failures, self.on_hold = None, 0, 0, False


@dataclass
class Stopping:
    """A container being killed: preStop hook, then SIGTERM, then SIGKILL, advanced by the pod's ticks."""

    reason: str
    since: float
    grace: float
    hook: subprocess.Popen[bytes] | None
    deadline: float | None = None
    """SIGKILL at this time at the latest (pod deletion: the deletion's grace); None: after SIGTERM, the
    kubelet's ``killContainer`` window."""
    sigterm_at: float | None = None
    kill_at: float = float("inf")


@dataclass
class ContainerRuntime:
    spec: Mapping[str, Any]
    image: Image | None
    """None: the image is not emulated; the container is reported and never run."""
    log_path: Path
    root: Path | None = None
    """The container's own root directory (images with a root filesystem)."""
    env: dict[str, str] = field(default_factory=dict)
    """The environment the container's process got (exec'd commands get it too)."""
    process: subprocess.Popen[bytes] | None = None
    child_pid: int | None = None
    started_at: float = 0.0
    started_at_iso: str = ""
    started: bool = False
    ready: bool = False
    restart_count: int = 0
    next_start: float = 0.0
    last_exit: int | None = None
    exited_at: float | None = None
    backoff: CrashLoopBackOff = field(default_factory=CrashLoopBackOff)
    stopping: Stopping | None = None
    terminated: dict[str, Any] | None = None
    """The final state of a container that is not restarted (restartPolicy Never, or OnFailure after 0)."""
    config_error: str | None = None
    """Why the container cannot be created (unsupported env source ...): it stays waiting, like the kubelet's
    CreateContainerConfigError, instead of taking the reconcile loop down."""
    probes: dict[str, ProbeState] = field(default_factory=dict)
    exit_fd: int | None = None
    """A pidfd of the running process: readable once it exits (what the cluster polls between the pod's ticks)."""

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def log_starts_path(log_path: Path) -> Path:
    """One byte offset per line: where each start of the container begins in its log file."""
    return log_path.with_name(f"{log_path.name}.starts")


def log_segments(log_path: Path) -> list[tuple[int, int]]:
    """(start, end) byte ranges of the log, one per container start, oldest first."""
    if not log_path.exists():
        return []
    size = log_path.stat().st_size
    try:
        starts = [int(line) for line in log_starts_path(log_path).read_text().split()]
    except (OSError, ValueError):
        starts = [0]
    starts = starts or [0]
    return [(start, starts[i + 1] if i + 1 < len(starts) else size) for i, start in enumerate(starts)]


def _port_number(port: Any, container: Mapping[str, Any]) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for cport in container.get("ports") or []:
        if cport.get("name") == port:
            return int(cport["containerPort"])
    raise ValueError(f"probe port {port!r} names no container port")


@functools.cache
def _bwrap_binary() -> str:
    return os.path.realpath(shutil.which("bwrap") or "bwrap")


def _wait_for_exec(pid: int, timeout: float) -> None:
    """Waits until bwrap's child has exec'd the container command: only then is its filesystem complete
    (an exec before that, through nsenter, would see a half-built mount namespace)."""
    bwrap = _bwrap_binary()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.readlink(f"/proc/{pid}/exe") != bwrap:  # the kernel's link is already the resolved path
                return
        except OSError:
            return
        time.sleep(0.002)


def _read_child_pid(fd: int, timeout: float) -> int | None:
    """bwrap writes ``{"child-pid": N}`` on its info fd once the sandbox exists."""
    deadline = time.monotonic() + timeout
    buffer = b""
    os.set_blocking(fd, False)
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            time.sleep(0.005)
            continue
        if not chunk:
            break
        buffer += chunk
        try:
            return int(json.loads(buffer)["child-pid"])
        except (ValueError, KeyError):
            continue
    return None


def _pidfd(pid: int) -> int | None:
    """A pidfd of ``pid`` (readable once it exits); None where the kernel has none (the pod is then ticked every
    time)."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _close_exit_fd(c: ContainerRuntime) -> None:
    if c.exit_fd is not None:
        with contextlib.suppress(OSError):
            os.close(c.exit_fd)
        c.exit_fd = None


def exit_fds(runtimes: Iterable[PodRuntime]) -> list[int]:
    """The ``exit_fd`` of every running container of these pods."""
    return [c.exit_fd for runtime in runtimes for c in runtime.containers if c.exit_fd is not None]


def exited_fds(runtimes: Iterable[PodRuntime]) -> set[int]:
    """The ``exit_fd`` of every container whose process exited and is not reaped yet: one poll for all pods."""
    poller = select.poll()
    watched = exit_fds(runtimes)
    for fd in watched:
        poller.register(fd, select.POLLIN)
    return {fd for fd, _ in poller.poll(0)} if watched else set()


class PodRuntime:
    """Runs one pod's containers inside its network namespace."""

    def __init__(
        self,
        pod: dict[str, Any],
        netns: str,
        pod_dir: Path,
        files: Mapping[str, Path],
        volume_paths: Mapping[str, Path],
        images: Callable[[str], Image | None],
        prober: ThreadPoolExecutor,
        record_event: Callable[[str, str, str], None],
        admitted_at: float | None = None,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self.pod = pod
        self._wake = wake
        """Called when a probe answered (from the prober's thread): the reconcile loop ticks the pod then."""
        self.netns = netns
        self.pod_dir = pod_dir
        self.files = dict(files)
        self.volume_paths = dict(volume_paths)
        self.prober = prober
        self.record_event = record_event
        self.deleting_since: float | None = None
        self.changed = True
        """Set whenever something the pod's status shows changed; the cluster takes it (take_changed)."""
        self.due = 0.0
        """When the pod next has something to do without an event (a probe's period, a restart's back-off): before
        it, a tick is needed only when a container exited or a probe answered (:meth:`needs_tick`)."""
        self.restart_policy = str(pod["spec"].get("restartPolicy") or "Always")
        (pod_dir / "logs").mkdir(parents=True, exist_ok=True)
        admitted = time.monotonic() if admitted_at is None else admitted_at
        self.containers = [
            ContainerRuntime(
                spec=c,
                image=images(str(c.get("image", ""))),
                log_path=pod_dir / "logs" / f"{c['name']}.log",
                backoff=CrashLoopBackOff(RESTART_BACKOFF_START, RESTART_BACKOFF_MAX),
                probes={  # the prober workers start when the pod is admitted, before its containers
                    kind: ProbeState(spec=c[kind], worker_start=admitted, due=admitted)
                    for kind in PROBE_KINDS
                    if kind in c
                },
            )
            for c in pod["spec"].get("containers") or []
        ]

    def take_changed(self) -> bool:
        """Whether the pod's status may have changed since the last call."""
        changed, self.changed = self.changed, False
        return changed

    # -- containers ------------------------------------------------------------------------------------

    def _start(self, c: ContainerRuntime, now: float) -> None:
        assert c.image is not None
        env = {"PATH": POD_PATH, **c.image.env, **container_env(c.spec, self.pod)}
        env.setdefault("HOSTNAME", str(self.pod["spec"].get("hostname") or self.pod["metadata"]["name"]))
        env.setdefault("HOME", "/root")
        command = list(c.spec.get("command") or c.image.entrypoint)
        args = list(c.spec.get("args") or ([] if c.spec.get("command") else c.image.default_args))
        argv = expand_args([*command, *args], env)
        mounts = [*c.image.extra_mounts, *container_mounts(c.spec, self.volume_paths)]  # volumes over the image
        if c.image.root is not None and c.root is None:
            c.root = self.pod_dir / "rootfs" / c.name
            c.root.mkdir(parents=True, exist_ok=True)
            c.image.root(c.root)
        read_fd, write_fd = os.pipe()
        try:
            bwrap = bwrap_argv(
                hostname=str(self.pod["spec"].get("hostname") or self.pod["metadata"]["name"]),
                files=self.files,
                mounts=mounts,
                binaries=c.image.binaries,
                env=env,
                command=argv,
                info_fd=write_fd,
                root=c.root,
                masked=c.image.masked,
                workdir=str(c.spec.get("workingDir") or c.image.workdir),
            )
        except ValueError:
            os.close(read_fd)
            os.close(write_fd)
            raise
        c.env = env
        starts = log_starts_path(c.log_path)
        offset = c.log_path.stat().st_size if c.log_path.exists() else 0
        with starts.open("a") as starts_file:
            starts_file.write(f"{offset}\n")
        with c.log_path.open("ab") as log, netns.inside(self.netns):  # forked inside the pod's network
            c.process = subprocess.Popen(
                bwrap,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(write_fd,),
                start_new_session=True,
            )
        os.close(write_fd)
        c.exit_fd = _pidfd(c.process.pid)
        try:
            c.child_pid = _read_child_pid(read_fd, timeout=5.0)
        finally:
            os.close(read_fd)
        if c.child_pid is not None:
            _wait_for_exec(c.child_pid, timeout=5.0)
        c.started_at = time.monotonic()  # when it runs, not when the tick began (bubblewrap takes its time)
        c.started_at_iso = now_iso()
        c.started = "startupProbe" not in c.spec
        c.ready = False
        self.changed = True
        for state in c.probes.values():
            state.reset()
        self.record_event("Started", f"Started container {c.name}", "Normal")

    def _signal(self, c: ContainerRuntime, sig: signal.Signals) -> None:
        pid = c.child_pid or (c.process.pid if c.process else None)
        if pid is None or not c.running:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)

    def kill_all(self, timeout: float = REAP_TIMEOUT) -> list[ProcessEntry]:
        """SIGKILLs every process of the pod and waits, bounded, until each is reaped; returns what is left.

        The order matters: the container's command first, so that bubblewrap (its parent) reaps it and exits;
        killing the whole group at once would orphan the command, and an orphan stays a zombie until this
        machine's init gets round to it. Then whatever is left of each container's session, and preStop hooks.
        """
        for c in self.containers:  # the pod is leaving the node: its exits are not watched any more
            _close_exit_fd(c)
        hooks = [c.stopping.hook for c in self.containers if c.stopping is not None and c.stopping.hook is not None]
        for hook in hooks:
            if hook.poll() is None:
                hook.kill()
        started = [c for c in self.containers if c.process is not None]
        sessions = [c.process.pid for c in started if c.process is not None]  # also those whose bubblewrap exited
        exited = {c.process.pid for c in started if c.process is not None and c.process.poll() is not None}

        def no_process_left() -> list[ProcessEntry]:
            for hook in hooks:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    hook.wait(timeout=timeout)
            return []

        if len(exited) == len(sessions) and not any(alive(-session) for session in exited):  # -pgid: the group
            # the usual end: every container stopped and nothing is left in its process group (a process that left
            # its group for another of the session is killed with the pod's network namespace, at its removal)
            return no_process_left()
        left = in_sessions(exited)  # one scan of every process for all of them, not one per container
        for session in exited:
            # bubblewrap is gone, its command may live on as an orphan (adopted here): kill what is left of the
            # session, unless its id now names a new process (then the old session is empty)
            members = [m for m in left if m.session == session]
            if members and all(m.pid != session for m in members):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(session, signal.SIGKILL)
        if len(exited) == len(sessions) and not left:  # every session was already empty: that scan's word
            return no_process_left()
        for c in started:
            if c.process is None or c.process.pid in exited:
                continue
            if c.child_pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(c.child_pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                c.process.wait(timeout=timeout)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(c.process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                c.process.wait(timeout=timeout)
        for hook in hooks:
            with contextlib.suppress(subprocess.TimeoutExpired):
                hook.wait(timeout=timeout)
        return wait_reaped(sessions, timeout)

    # -- probes ----------------------------------------------------------------------------------------

    def _run_probe(self, spec: Mapping[str, Any], c: ContainerRuntime) -> tuple[bool, str]:
        timeout = float(spec.get("timeoutSeconds", 1))
        ip = str(self.pod["status"].get("podIP", ""))
        try:
            if "httpGet" in spec:
                get = spec["httpGet"]
                port = _port_number(get["port"], c.spec)
                conn = http.client.HTTPConnection(ip, port, timeout=timeout)
                try:
                    conn.request("GET", str(get.get("path", "/")), headers={"User-Agent": "kube-probe/1.31"})
                    status = conn.getresponse().status
                finally:
                    conn.close()
                return 200 <= status < 400, f"HTTP probe failed with statuscode: {status}"
            if "tcpSocket" in spec:
                port = _port_number(spec["tcpSocket"]["port"], c.spec)
                with socket.create_connection((ip, port), timeout=timeout):
                    return True, ""
            if "exec" in spec:
                done = self.exec(c, [str(a) for a in spec["exec"]["command"]], timeout=timeout)
                return done.returncode == 0, done.stdout.decode(errors="replace")[-500:]
        except (OSError, http.client.HTTPException, ValueError) as error:
            return False, f"{type(error).__name__}: {error}"
        return False, "probe has no handler"

    def _tick_probes(self, c: ContainerRuntime, now: float) -> str | None:
        """Advances the container's prober workers; returns a reason when the container must be killed
        (a liveness or startup failure at its threshold)."""
        for kind, state in c.probes.items():
            if state.stopped:
                continue
            reason = self._take_result(c, kind, state, now)
            if reason is not None:
                return reason
            if state.future is not None or not (state.triggered or now >= state.due):
                continue
            if now >= state.due:
                state.due = next_tick(state.worker_start, state.period, now)
            state.triggered = False
            if state.on_hold or not c.running or c.stopping is not None:
                continue
            if not past_initial_delay(c.started_at, float(state.spec.get("initialDelaySeconds", 0)), now):
                continue
            if (kind == "startupProbe") == c.started:  # startup until started; the others after
                continue
            state.future = self.prober.submit(self._run_probe, state.spec, c)
            if self._wake is not None:  # a success that changes nothing is taken at the loop's next wake
                settled = kind != "startupProbe" and state.failures == 0 and (kind != "readinessProbe" or c.ready)
                state.future.add_done_callback(functools.partial(self._answered, settled))
        if "readinessProbe" not in c.probes and c.started and not c.ready and c.running:
            c.ready = True
            self.changed = True
        return None

    def _answered(self, settled: bool, future: Future[tuple[bool, str]]) -> None:
        """A probe answered (prober thread): the loop is woken unless it was a success of a settled probe (ready,
        or live, with no failure counted), which only counts one more success."""
        if self._wake is not None and not (settled and not future.cancelled() and future.result()[0]):
            self._wake()

    def _take_result(self, c: ContainerRuntime, kind: str, state: ProbeState, now: float) -> str | None:
        """Counts a finished probe against its thresholds (``worker.go`` ``doProbe``)."""
        if state.future is None or not state.future.done():
            return None
        future, state.future = state.future, None
        if future.cancelled():
            return None
        ok, message = future.result()
        state.last_message = message
        spec = state.spec
        if ok:
            state.successes, state.failures = state.successes + 1, 0
        else:
            state.successes, state.failures = 0, state.failures + 1
            self.record_event("Unhealthy", f"{kind[:-5].capitalize()} probe failed: {message}", "Warning")
        was = (c.started, c.ready)
        reason = None
        if kind == "startupProbe":
            if ok:
                c.started = True
            elif state.failures >= int(spec.get("failureThreshold", 3)):
                reason = "startup probe failed"
        elif kind == "readinessProbe":
            if ok and state.successes >= int(spec.get("successThreshold", 1)):
                c.ready = True
            elif not ok and state.failures >= int(spec.get("failureThreshold", 3)):
                c.ready = False
        elif not ok and state.failures >= int(spec.get("failureThreshold", 3)):
            reason = "liveness probe failed"
        if reason is not None:
            state.on_hold, state.successes, state.failures = True, 0, 0
        if (c.started, c.ready) != was:
            self.changed = True
        return reason

    def _trigger_readiness(self) -> None:
        """The kubelet syncs the pod whenever its status changes; ``UpdatePodStatus`` then runs the readiness
        probe of every started, not-ready container at once (its ``manualTriggerCh``)."""
        for c in self.containers:
            readiness = c.probes.get("readinessProbe")
            if readiness is not None and c.started and not c.ready and c.running:
                readiness.triggered = True

    # -- exec ------------------------------------------------------------------------------------------

    def exec(
        self, c: ContainerRuntime, command: Sequence[str], timeout: float
    ) -> subprocess.CompletedProcess[bytes]:
        """Runs ``command`` inside the container's namespaces (mount, UTS, network), like ``kubectl exec``."""
        if c.child_pid is None:
            raise OSError(f"container {c.name} is not running")
        return subprocess.run(
            self.exec_argv(c, command),
            capture_output=False,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )

    def exec_argv(self, c: ContainerRuntime, command: Sequence[str]) -> list[str]:
        """nsenter into the container's mount, UTS and network namespaces, with the container's environment."""
        env = c.env or {"PATH": POD_PATH}
        return [
            "nsenter",
            "-t",
            str(c.child_pid),
            "-m",
            "-u",
            "-n",
            "-w",
            "--",
            "/usr/bin/env",
            "-i",
            *(f"{k}={v}" for k, v in env.items()),
            *command,
        ]

    # -- lifecycle -------------------------------------------------------------------------------------

    def begin_deletion(self, now: float, grace: float | None) -> None:
        """The pod got a deletionTimestamp: liveness and startup stop (a container not yet started counts as
        started, their last result being success), readiness goes on; every running container is killed
        (preStop, SIGTERM, SIGKILL at the deletion's grace period)."""
        if self.deleting_since is not None:
            return
        spec_grace = float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))
        grace_seconds = spec_grace if grace is None else grace
        self.deleting_since = now
        self.changed = True
        self.record_event("Killing", f"Stopping containers (grace period {grace_seconds:g}s)", "Normal")
        for c in self.containers:
            for kind, state in c.probes.items():
                if not probes_while_terminating(kind):
                    state.stopped = True
                    if state.future is not None:
                        state.future.cancel()
                    if kind == "startupProbe" and c.running:
                        c.started = True
            if c.running and c.stopping is None:
                c.stopping = self._stopping(c, "deletion", now, grace_seconds, deadline=now + grace_seconds)
            elif c.stopping is not None:
                c.stopping.deadline = min(c.stopping.deadline or float("inf"), now + grace_seconds)
        self._trigger_readiness()

    def _stopping(self, c: ContainerRuntime, reason: str, now: float, grace: float,
                  deadline: float | None = None) -> Stopping:
        """Starts killing ``c``: its preStop hook first, when it has one and the grace period is not zero."""
        hook_spec = ((c.spec.get("lifecycle") or {}).get("preStop") or {}).get("exec")
        hook = None
        if hook_spec and grace > 0 and c.child_pid is not None:
            hook = subprocess.Popen(
                self.exec_argv(c, [str(a) for a in hook_spec["command"]]),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        return Stopping(reason, now, grace, hook, deadline)

    def _advance_stop(self, c: ContainerRuntime, now: float) -> None:
        """SIGTERM once the preStop hook is done (or the grace period is over), SIGKILL when the window ends:
        a deletion's deadline, or after a liveness kill's SIGTERM what is left of the grace period (>= 2 s)."""
        stop = c.stopping
        if stop is None or not c.running:
            return
        hook_done = stop.hook is None or stop.hook.poll() is not None
        out_of_time = now >= stop.since + stop.grace or (stop.deadline is not None and now >= stop.deadline)
        if stop.sigterm_at is None and (hook_done or out_of_time):
            self._signal(c, signal.SIGTERM)
            stop.sigterm_at = now
            stop.kill_at = now + sigkill_after(stop.grace, now - stop.since)
        kill_at = stop.kill_at if stop.deadline is None else min(stop.kill_at, stop.deadline)
        if now >= kill_at:
            self._signal(c, signal.SIGKILL)

    def tick(self, now: float) -> bool:
        """Advances the pod; returns True once a deleted pod has fully stopped. Never blocks on a container."""
        if self.deleting_since is not None:
            return self._tick_deletion(now)
        for c in self.containers:
            if c.image is None or c.terminated is not None:
                continue
            if c.process is None:
                if now >= c.next_start and c.config_error is None:
                    if c.exited_at is not None:
                        c.backoff.restarted(c.exited_at, now)
                        c.restart_count += 1
                    self._start_or_report(c, now)
                    if c.process is not None and c.started:
                        self._trigger_readiness()
                continue
            code = c.process.poll()
            if code is not None:
                stop, c.stopping = c.stopping, None
                self._container_exited(c, code, now, stop.reason if stop else ("Error" if code else "Completed"))
                continue
            kill_reason = self._tick_probes(c, now)
            if kill_reason and c.stopping is None:
                self.record_event(
                    "Killing", f"Container {c.name} failed {kill_reason}, will be restarted", "Normal"
                )
                probe = "startupProbe" if kill_reason.startswith("startup") else "livenessProbe"
                c.stopping = self._stopping(c, kill_reason, now, kill_grace_seconds(self.pod["spec"], c.spec, probe))
            self._advance_stop(c, now)
        if self.changed:
            self._trigger_readiness()
        self.due = self._next_due(now)
        return False

    def needs_tick(self, now: float, exited: set[int]) -> bool:
        """Whether :meth:`tick` has anything to do now: the pod is being deleted, its ``due`` time came, one of its
        containers exited (its ``exit_fd`` in ``exited``), or a probe answered."""
        if self.deleting_since is not None or now >= self.due:
            return True
        for c in self.containers:
            if c.process is not None and (c.exit_fd is None or c.exit_fd in exited):
                return True
            if any(state.future is not None and state.future.done() for state in c.probes.values()):
                return True
        return False

    def _next_due(self, now: float) -> float:
        """The earliest time a tick has work without an event: a container's (re)start, a probe's next period (now
        when one was triggered), every tick while a container is being stopped (its hook may end any moment), now
        when a started container without readiness probe is to become ready."""
        due = float("inf")
        for c in self.containers:
            if c.image is None or c.terminated is not None:
                continue
            if c.process is None:
                if c.config_error is None:
                    due = min(due, c.next_start)
                continue
            if c.stopping is not None or ("readinessProbe" not in c.probes and c.started and not c.ready):
                return now  # a stop's next step, or a container without readiness probe that became started
            for state in c.probes.values():
                if not state.stopped and state.future is None:
                    due = min(due, now if state.triggered else state.due)
        return due

    def _start_or_report(self, c: ContainerRuntime, now: float) -> None:
        try:
            self._start(c, now)
        except ValueError as error:  # UnsupportedEnvSource, a refused bind: a config error, not a crash
            c.config_error = str(error)
            self.changed = True
            self.record_event("Failed", f"Error: {error}", "Warning")

    def _container_exited(self, c: ContainerRuntime, code: int, now: float, reason: str) -> None:
        c.last_exit = code
        c.process, c.child_pid, c.started, c.ready = None, None, False, False
        _close_exit_fd(c)
        c.exited_at = now
        self.changed = True
        for state in c.probes.values():
            if state.future is not None:
                state.future.cancel()
                state.future = None
        if self.restart_policy == "Never" or (self.restart_policy == "OnFailure" and code == 0):
            c.terminated = {
                "exitCode": code,
                "reason": "Completed" if code == 0 else "Error",
                "startedAt": c.started_at_iso,
                "finishedAt": now_iso(),
            }
            return
        c.next_start = c.backoff.restart_at(now)
        if c.next_start > now:
            self.record_event(
                "BackOff",
                f"Back-off restarting failed container {c.name} (exited with code {code}: {reason}); "
                f"restarting in {c.next_start - now:g}s",
                "Warning",
            )

    def _tick_deletion(self, now: float) -> bool:
        for c in self.containers:
            if c.process is not None and c.process.poll() is not None:
                if c.ready or c.started:
                    c.started, c.ready = False, False
                    self.changed = True
                continue
            if not c.running:
                continue
            self._tick_probes(c, now)  # readiness only: liveness and startup stopped
            if c.stopping is None:
                c.stopping = self._stopping(c, "deletion", now, 0.0, deadline=now)
            self._advance_stop(c, now)
        if self.changed:
            self._trigger_readiness()
        if any(c.running for c in self.containers):
            return False
        self.kill_all()
        return True

    # -- status ----------------------------------------------------------------------------------------

    def container_statuses(self) -> list[dict[str, Any]]:
        statuses = []
        for c in self.containers:
            status: dict[str, Any] = {
                "name": c.name,
                "image": c.spec.get("image"),
                "imageID": f"natsnet-sandbox://{c.spec.get('image')}",
                "restartCount": c.restart_count,
                "ready": c.ready,
                "started": c.started,
            }
            if c.image is None:
                status["state"] = {
                    "waiting": {
                        "reason": "ImageNotEmulated",
                        "message": f"the sandbox does not run image {c.spec.get('image')}",
                    }
                }
            elif c.config_error is not None:
                status["state"] = {
                    "waiting": {"reason": "CreateContainerConfigError", "message": c.config_error}
                }
            elif c.terminated is not None:
                status["state"] = {"terminated": dict(c.terminated)}
            elif c.running:
                status["state"] = {"running": {"startedAt": c.started_at_iso}}
                status["containerID"] = f"bwrap://{c.child_pid}"
            else:
                status["state"] = {
                    "waiting": {"reason": "CrashLoopBackOff" if c.restart_count else "ContainerCreating"}
                }
            if c.last_exit is not None and c.terminated is None:
                status["lastState"] = {"terminated": {"exitCode": c.last_exit}}
            statuses.append(status)
        return statuses

    def containers_ready(self, not_emulated_is_ready: Callable[[Mapping[str, Any]], bool]) -> bool:
        return all(c.ready if c.image is not None else not_emulated_is_ready(c.spec) for c in self.containers)

    def has_running(self) -> bool:
        return any(c.running for c in self.containers)

    def finished_phase(self) -> str | None:
        """Succeeded or Failed once every container has terminated for good; else None."""
        if not self.containers or any(c.terminated is None for c in self.containers):
            return None
        return "Succeeded" if all(c.terminated and c.terminated["exitCode"] == 0 for c in self.containers) else "Failed"

    def find(self, container: str) -> ContainerRuntime:
        for c in self.containers:
            if c.name == container:
                return c
        raise KeyError(f"pod {self.pod['metadata']['name']} has no container {container!r}")
