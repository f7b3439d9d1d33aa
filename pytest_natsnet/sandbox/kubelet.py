"""The sandbox kubelet: one pod's containers as real processes, its probes, restarts and graceful deletion.

Timings follow the pod spec (initialDelaySeconds, periodSeconds, timeoutSeconds, thresholds,
terminationGracePeriodSeconds); probes run from the node (the hub namespace), as the kubelet's do.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_natsnet.sandbox.podenv import container_env, expand_args
from pytest_natsnet.sandbox.podfs import POD_PATH, Mount, bwrap_argv, container_mounts
from pytest_natsnet.sandbox.reaping import ProcessEntry, wait_reaped

RESTART_BACKOFF_START = 10.0
RESTART_BACKOFF_MAX = 300.0
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
    spec: Mapping[str, Any]
    due: float
    successes: int = 0
    failures: int = 0
    future: Future[tuple[bool, str]] | None = None
    last_message: str = ""


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
    terminated: dict[str, Any] | None = None
    """The final state of a container that is not restarted (restartPolicy Never, or OnFailure after 0)."""
    config_error: str | None = None
    """Why the container cannot be created (unsupported env source ...): it stays waiting, like the kubelet's
    CreateContainerConfigError, instead of taking the reconcile loop down."""
    probes: dict[str, ProbeState] = field(default_factory=dict)

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


def _wait_for_exec(pid: int, timeout: float) -> None:
    """Waits until bwrap's child has exec'd the container command: only then is its filesystem complete
    (an exec before that, through nsenter, would see a half-built mount namespace)."""
    bwrap = os.path.realpath(shutil.which("bwrap") or "bwrap")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.path.realpath(os.readlink(f"/proc/{pid}/exe")) != bwrap:
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
    ) -> None:
        self.pod = pod
        self.netns = netns
        self.pod_dir = pod_dir
        self.files = dict(files)
        self.volume_paths = dict(volume_paths)
        self.prober = prober
        self.record_event = record_event
        self.deleting_since: float | None = None
        self.grace_deadline = 0.0
        self.prestop: dict[str, subprocess.Popen[bytes]] = {}
        self.termed: set[str] = set()
        self.changed = True
        """Set whenever something the pod's status shows changed; the cluster takes it (take_changed)."""
        self.restart_policy = str(pod["spec"].get("restartPolicy") or "Always")
        (pod_dir / "logs").mkdir(parents=True, exist_ok=True)
        self.containers = [
            ContainerRuntime(
                spec=c, image=images(str(c.get("image", ""))), log_path=pod_dir / "logs" / f"{c['name']}.log"
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
        mounts = [*container_mounts(c.spec, self.volume_paths), *c.image.extra_mounts]
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
        with c.log_path.open("ab") as log:
            c.process = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, *bwrap],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(write_fd,),
                start_new_session=True,
            )
        os.close(write_fd)
        try:
            c.child_pid = _read_child_pid(read_fd, timeout=5.0)
        finally:
            os.close(read_fd)
        if c.child_pid is not None:
            _wait_for_exec(c.child_pid, timeout=5.0)
        c.started_at = now
        c.started_at_iso = now_iso()
        c.started = "startupProbe" not in c.spec
        c.ready = False
        self.changed = True
        c.probes = {
            kind: ProbeState(spec=c.spec[kind], due=now + float(c.spec[kind].get("initialDelaySeconds", 0)))
            for kind in ("startupProbe", "readinessProbe", "livenessProbe")
            if kind in c.spec
        }
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
        for hook in self.prestop.values():
            if hook.poll() is None:
                hook.kill()
        sessions = []
        for c in self.containers:
            if c.process is None or c.process.poll() is not None:
                continue
            sessions.append(c.process.pid)
            if c.child_pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(c.child_pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                c.process.wait(timeout=timeout)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(c.process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                c.process.wait(timeout=timeout)
        for hook in self.prestop.values():
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
        """Advances probes; returns a reason when the container must be restarted."""
        for kind, state in c.probes.items():
            if state.future is not None and state.future.done():
                ok, message = state.future.result()
                state.future = None
                state.last_message = message
                spec = state.spec
                if ok:
                    state.successes, state.failures = state.successes + 1, 0
                else:
                    state.successes, state.failures = 0, state.failures + 1
                    self.record_event(
                        "Unhealthy", f"{kind[:-5].capitalize()} probe failed: {message}", "Warning"
                    )
                was = (c.started, c.ready)
                if kind == "startupProbe":
                    if ok:
                        c.started = True
                        readiness = c.probes.get("readinessProbe")
                        if readiness is not None:
                            readiness.due = min(readiness.due, now)
                    elif state.failures >= int(spec.get("failureThreshold", 3)):
                        return "startup probe failed"
                elif kind == "readinessProbe":
                    if ok and state.successes >= int(spec.get("successThreshold", 1)):
                        c.ready = True
                    elif not ok and state.failures >= int(spec.get("failureThreshold", 3)):
                        c.ready = False
                elif not ok and state.failures >= int(spec.get("failureThreshold", 3)):
                    return "liveness probe failed"
                if (c.started, c.ready) != was:
                    self.changed = True
            if state.future is None and now >= state.due:
                if kind != "startupProbe" and not c.started:
                    state.due = now + float(state.spec.get("periodSeconds", 10))
                    continue
                state.due = now + float(state.spec.get("periodSeconds", 10))
                state.future = self.prober.submit(self._run_probe, state.spec, c)
        if "readinessProbe" not in c.probes and c.started and not c.ready:
            c.ready = True
            self.changed = True
        return None

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
        if self.deleting_since is not None:
            return
        spec_grace = float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))
        grace_seconds = spec_grace if grace is None else grace
        self.deleting_since = now
        self.changed = True
        self.grace_deadline = now + grace_seconds
        self.record_event("Killing", f"Stopping containers (grace period {grace_seconds:g}s)", "Normal")
        for c in self.containers:
            hook = ((c.spec.get("lifecycle") or {}).get("preStop") or {}).get("exec")
            if c.running and hook and grace_seconds > 0:
                self.prestop[c.name] = subprocess.Popen(
                    self.exec_argv(c, [str(a) for a in hook["command"]]),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )

    def tick(self, now: float) -> bool:
        """Advances the pod; returns True once a deleted pod has fully stopped."""
        if self.deleting_since is not None:
            return self._tick_deletion(now)
        for c in self.containers:
            if c.image is None or c.terminated is not None:
                continue
            if c.process is None:
                if now >= c.next_start and c.config_error is None:
                    self._start_or_report(c, now)
                continue
            code = c.process.poll()
            if code is not None:
                self._container_exited(c, code, now, "Error" if code else "Completed")
                continue
            restart_reason = self._tick_probes(c, now)
            if restart_reason:
                self.record_event(
                    "Killing", f"Container {c.name} failed {restart_reason}, will be restarted", "Normal"
                )
                self._signal(c, signal.SIGTERM)
                try:
                    c.process.wait(timeout=float(self.pod["spec"].get("terminationGracePeriodSeconds", 30)))
                except subprocess.TimeoutExpired:
                    self._signal(c, signal.SIGKILL)
                    c.process.wait()
                self._container_exited(c, c.process.returncode, now, restart_reason)
        return False

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
        self.changed = True
        for state in c.probes.values():
            if state.future is not None:
                state.future.cancel()
        c.probes = {}
        if self.restart_policy == "Never" or (self.restart_policy == "OnFailure" and code == 0):
            c.terminated = {
                "exitCode": code,
                "reason": "Completed" if code == 0 else "Error",
                "startedAt": c.started_at_iso,
                "finishedAt": now_iso(),
            }
            return
        backoff = min(RESTART_BACKOFF_START * (2**c.restart_count), RESTART_BACKOFF_MAX)
        c.restart_count += 1
        c.next_start = now + backoff
        self.record_event(
            "BackOff",
            f"Container {c.name} exited ({reason}, code {code}); restarting in {backoff:g}s",
            "Warning",
        )

    def _tick_deletion(self, now: float) -> bool:
        for c in self.containers:
            if not c.running or c.name in self.termed:
                continue
            hook = self.prestop.get(c.name)
            if hook is None or hook.poll() is not None or now >= self.grace_deadline:
                self._signal(c, signal.SIGTERM)
                self.termed.add(c.name)
        if now >= self.grace_deadline:
            for c in self.containers:
                if c.running:
                    self._signal(c, signal.SIGKILL)
        alive = [c for c in self.containers if c.running]
        if alive:
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
