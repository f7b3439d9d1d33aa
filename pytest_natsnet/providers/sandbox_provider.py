"""The sandbox provider: one Docker-free sandbox cluster per run, served as a Kubernetes API.

``start`` runs ``natsnet sandbox up`` in a process of its own (its reconcile loop, DNS and API server then do not
share pytest's interpreter) and hands over its kubeconfig; every cell is a namespace of that one cluster, deployed
through the same kube path as on kind. The sandbox process watches the run's process and tears itself down if
the run dies; ``stop(keep=True)`` detaches it instead, so kept cells stay reachable with ``KUBECONFIG``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from pytest_natsnet.deployment import ClusterTools, KubeDeployment, install_cell, own_kubeconfig
from pytest_natsnet.dnsprofile import dns_profile
from pytest_natsnet.errors import NatsnetError
from pytest_natsnet.kubeclient import KubeClient
from pytest_natsnet.preflight import ClusterFacts, discover_facts
from pytest_natsnet.providers.base import CellManifests, ClusterAccess, ProviderInfo
from pytest_natsnet.sandbox.model import EXTERNAL_ANNOTATION
from pytest_natsnet.settings import NatsnetSettings
from pytest_natsnet.tools import Tool, resolve_tool

START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


class SandboxUnavailable(NatsnetError):
    """The machine cannot run the sandbox; the message says what is missing and how to get it."""


REQUIRED_COMMANDS = {
    "ip": "iproute2",
    "nft": "nftables",
    "bwrap": "bubblewrap",
    "nsenter": "util-linux",
    "busybox": "busybox-static",
}


def missing_requirements() -> list[str]:
    """What this machine lacks for the sandbox, one line each (empty: it can run)."""
    problems = []
    if os.geteuid() != 0:
        problems.append(
            "the sandbox needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN): run as root, or use "
            "--natsnet-provider=kind"
        )
    missing = sorted({pkg for cmd, pkg in REQUIRED_COMMANDS.items() if shutil.which(cmd) is None})
    if missing:
        problems.append(f"missing Debian packages for the sandbox: apt-get install -y {' '.join(missing)}")
    if importlib.util.find_spec("pyroute2") is None:
        problems.append("missing the Python package pyroute2 for the sandbox (its network namespaces' links): "
                        "pip install 'pytest-natsnet[sandbox]'")
    return problems


def up_argv(directory: Path, ready_file: Path, owner_pid: int, dns_profile: str | None = None,
            policy_delay: float = 0.0) -> list[str]:
    argv = [sys.executable, "-m", "pytest_natsnet.cli", "sandbox", "up", "--dir", str(directory),
            "--ready-file", str(ready_file), "--owner-pid", str(owner_pid)]
    if dns_profile:
        argv += ["--dns-profile", dns_profile]
    if policy_delay:
        argv += ["--policy-delay", f"{policy_delay:g}"]
    return argv


class SandboxProvider:
    """Starts (or attaches to) the run's sandbox cluster and deploys cells into it through the kube path."""

    def __init__(self, settings: NatsnetSettings, run_dir: Path, *, tools: dict[str, Tool] | None = None) -> None:
        self._settings = settings
        self._run_dir = run_dir
        self._tools = dict(tools or {})
        self._process: subprocess.Popen[bytes] | None = None
        self._access: ClusterAccess | None = None
        self._client: KubeClient | None = None
        self._facts = ClusterFacts()
        self._ready: dict[str, object] = {}
        self._dns = dns_profile(settings.sandbox_dns)
        self.directory = run_dir / "sandbox"

    def _tool(self, name: str) -> Tool:
        if name not in self._tools:
            explicit = {"helm": self._settings.helm, "kubectl": self._settings.kubectl}[name]
            self._tools[name] = resolve_tool(name, explicit)
        return self._tools[name]

    @property
    def info(self) -> ProviderInfo:
        return ProviderInfo(
            name="sandbox",
            enforces_network_policy=True,
            supports_readiness_gates=True,
            supports_external_client=True,
            details=(
                "sandbox: real nats-server, kernel network namespaces, nftables, Kubernetes DNS spec server, "
                "served as a Kubernetes API; emulated: kubelet, controllers, kube-proxy, NetworkPolicy, CoreDNS",
                f"sandbox DNS profile {self._dns.name}: {self._dns.description}",
                f"sandbox NetworkPolicy holds for a new pod {self._settings.sandbox_policy_delay:g}s after it starts"
                + (" (from its first packet)" if not self._settings.sandbox_policy_delay else
                   " (as while kind's kube-network-policies has not learned it)"),
                f"sandbox kubeconfig {self._access.kubeconfig if self._access else '(not started)'}",
                *self._facts.notes,
            ),
            probe_annotations={"external": {EXTERNAL_ANNOTATION: "external"}},
            cluster_domain=self._facts.domain,
            dns_profile=self._dns,
        )

    def start(self) -> ClusterAccess:
        if self._access is not None:
            return self._access
        problems = missing_requirements()
        if problems:
            raise SandboxUnavailable("; ".join(problems))
        self._run_dir.mkdir(parents=True, exist_ok=True)
        ready_file = self._run_dir / "sandbox-ready.json"
        log_path = self._run_dir / "sandbox.log"
        argv = up_argv(self.directory, ready_file, os.getpid(), self._dns.name, self._settings.sandbox_policy_delay)
        with log_path.open("wb") as log:
            # Its own session: a Ctrl-C reaches pytest, which stops the sandbox in order (bounded).
            self._process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while not ready_file.is_file():
            if self._process.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
                self._terminate()
                raise SandboxUnavailable(f"natsnet sandbox up did not become ready within {START_TIMEOUT:g}s: "
                                         f"{' / '.join(tail) or 'no output'} (log: {log_path})")
            time.sleep(0.05)
        self._ready = json.loads(ready_file.read_text())
        self._access = ClusterAccess(str(self._ready["kubeconfig"]), None, created=True)
        self._client = KubeClient(self._access.kubeconfig)
        self._facts = discover_facts(self._client)
        return self._access

    def attach(self, access: ClusterAccess) -> None:
        """A worker: its own copy of the controller's kubeconfig."""
        if self._access is not None:
            return
        own = own_kubeconfig(access.kubeconfig, self._run_dir / f"kubeconfig-{os.getpid()}")
        self._access = ClusterAccess(str(own), access.context, created=False)
        self._client = KubeClient(own)
        self._facts = discover_facts(self._client)

    def deploy(self, cell: CellManifests, timeout: float) -> KubeDeployment:
        if self._access is None:
            self.start()
        assert self._access is not None and self._client is not None
        helm = self._tool("helm").path if cell.chart else None
        tools = ClusterTools(self._tool("kubectl").path, helm, Path(self._access.kubeconfig), None)
        return install_cell(cell, self.info, self._client, tools, timeout)

    @property
    def process_id(self) -> int:
        """The pid of the ``natsnet sandbox up`` this run started (0 when attached or stopped)."""
        return self._process.pid if self._process is not None else 0

    def dns_query_log(self) -> Path:
        """The sandbox DNS server's query log (one JSON line per query), for evidence: its pods log no queries."""
        return self.directory / "dns" / "queries.jsonl"

    def stop(self, keep: bool) -> None:
        if self._process is None:
            self._access = None
            return
        if keep and self._process.poll() is None:
            self._process.send_signal(signal.SIGUSR1)  # detach: outlive this run
            print(f"natsnet: kept the sandbox cluster: export KUBECONFIG={self._ready.get('kubeconfig')}; "
                  f"stop it with: kill {self._process.pid}")
        else:
            self._terminate()
        self._process = None
        self._access = None

    def _terminate(self) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
            from pytest_natsnet.sandbox import gc

            gc.collect_garbage()
