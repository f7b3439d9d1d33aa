"""``natsnet gc``: removes what dead runs left, from their records.

Two kinds of records: every sandbox records itself (``sandbox/gc.py``: network namespaces, processes, its
directory), and every run records its cluster (``runrecord.py``). For a run whose process is gone, gc deletes
the namespaces labelled with its run id (``app.kubernetes.io/managed-by=pytest-natsnet``,
``natsnet.io/run-id=<id>``) in the cluster its record names, the kind cluster when the run created it (and no
live run uses it), and its run directory; then the record. A run that ended keeping its cells on purpose
(``--natsnet-keep``) is left alone unless ``--include-kept``. ``--dry-run`` lists and removes nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from pytest_natsnet import kube, runrecord
from pytest_natsnet.errors import NatsnetError
from pytest_natsnet.kube import MANAGED_BY_LABEL, MANAGED_BY_VALUE, RUN_ID_LABEL
from pytest_natsnet.runrecord import RunRecord

KIND_TIMEOUT = 300.0
SANDBOX_STOP_TIMEOUT = 30.0
Say = Callable[[str], None]


def run_selector(run_id: str) -> str:
    return f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{RUN_ID_LABEL}={run_id}"


def _dead_sandboxes(state: Path) -> list[str]:
    """Sandboxes whose owner is gone (what ``sandbox/gc.collect_garbage`` would remove), read-only."""
    found = []
    for path in sorted(state.glob("*.json")) if state.is_dir() else []:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not runrecord.alive(int(data.get("pid", 0))):
            found.append(f"would remove sandbox {path.stem}: network namespaces {data.get('netns_prefix', '?')}*, "
                         f"their processes, {data.get('run_dir') or 'its directory'}")
    from pytest_natsnet.sandbox import gc as sandbox_gc

    for sandbox_id, group in sandbox_gc.orphans(state).items():
        found.append(f"would remove {len(group)} orphaned netns of sandbox {sandbox_id} (no state, no process): "
                     f"{', '.join(group)}")
    return found


def _namespaces(record: RunRecord, dry_run: bool, say: Say) -> bool:
    """Deletes (or lists) the run's namespaces; False when the cluster could not be asked (keep the record)."""
    from pytest_natsnet.kubeclient import KubeClient

    if not record.kubeconfig or not Path(record.kubeconfig).is_file():
        say(f"run {record.run_id}: its kubeconfig {record.kubeconfig or '(none recorded)'} is gone: "
            f"{'the sandbox went with it' if record.provider == 'sandbox' else 'no cluster to clean'}")
        return True
    try:
        client = KubeClient(record.kubeconfig, record.context or None)
        found = client.list("Namespace", None, run_selector(record.run_id))
    except Exception as error:  # KubeError, and the kubernetes client's own config and connection errors
        say(f"run {record.run_id}: cluster {record.context or record.kubeconfig} does not answer ({error}); "
            "record kept, run gc again when it does")
        return False
    for namespace in found:
        name = kube.name(namespace)
        if dry_run:
            say(f"would delete namespace {name} (run {record.run_id}, context {record.context or '-'})")
            continue
        try:
            client.delete("Namespace", name, None)
            say(f"deleted namespace {name} (run {record.run_id})")
        except NatsnetError as error:
            say(f"run {record.run_id}: namespace {name} could not be deleted: {error}")
            return False
    if not found:
        say(f"run {record.run_id}: no namespace labelled {run_selector(record.run_id)} left")
    return True


def _kind_cluster(record: RunRecord, live: list[RunRecord], dry_run: bool, say: Say) -> bool:
    if record.provider != "kind" or not record.cluster_name:
        return True
    users = [r.run_id for r in live if r.provider == "kind" and r.cluster_name == record.cluster_name]
    if users:
        say(f"kind cluster {record.cluster_name}: used by running run(s) {', '.join(users)}, left alone")
        return True
    if not record.cluster_ready:
        say(f"run {record.run_id} died while starting kind cluster {record.cluster_name}: it may be half-made; "
            f"check with kind get clusters and remove it with kind delete cluster --name {record.cluster_name}")
        return True
    if not record.created_cluster:
        return True
    kind = os.environ.get("NATSNET_KIND") or shutil.which("kind")
    if dry_run:
        say(f"would delete kind cluster {record.cluster_name} (created by run {record.run_id})")
        return True
    if kind is None:
        say(f"kind cluster {record.cluster_name} (created by run {record.run_id}): no kind binary on PATH or in "
            f"$NATSNET_KIND; remove it with kind delete cluster --name {record.cluster_name}")
        return False
    done = subprocess.run([kind, "delete", "cluster", f"--name={record.cluster_name}"], capture_output=True,
                          text=True, timeout=KIND_TIMEOUT, check=False)
    if done.returncode != 0:
        say(f"kind delete cluster --name {record.cluster_name} failed: {(done.stderr or done.stdout).strip()[-300:]}")
        return False
    say(f"deleted kind cluster {record.cluster_name} (created by run {record.run_id})")
    return True


def _stop_kept_sandbox(record: RunRecord, dry_run: bool, say: Say) -> None:
    if record.provider != "sandbox" or not runrecord.alive(record.sandbox_pid):
        return
    if dry_run:
        say(f"would stop kept sandbox of run {record.run_id} (pid {record.sandbox_pid})")
        return
    os.kill(record.sandbox_pid, signal.SIGTERM)
    deadline = time.monotonic() + SANDBOX_STOP_TIMEOUT
    while runrecord.alive(record.sandbox_pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    say(f"stopped the kept sandbox of run {record.run_id} (pid {record.sandbox_pid})")


def collect(dry_run: bool = False, include_kept: bool = False, say: Say = print) -> None:
    """One pass over the records: dead runs' namespaces, clusters and directories, then dead sandboxes."""
    records, problems = runrecord.load_all()
    for problem in problems:
        say(problem)
    live = [r for r in records if r.owner_alive()]
    for record in records:
        if record in live:
            say(f"run {record.run_id}: pid {record.pid} still runs, left alone")
            continue
        if record.kept and not include_kept:
            say(f"run {record.run_id}: kept on purpose (--natsnet-keep), left alone; natsnet gc --include-kept "
                "removes it")
            continue
        if record.kept:
            _stop_kept_sandbox(record, dry_run, say)
        done = _namespaces(record, dry_run, say) if record.provider != "sandbox" else True
        done = _kind_cluster(record, live, dry_run, say) and done
        if dry_run:
            if Path(record.run_dir).is_dir():
                say(f"would remove {record.run_dir}")
            say(f"would forget run record {record.path}")
            continue
        if not done:
            continue
        if Path(record.run_dir).is_dir():
            shutil.rmtree(record.run_dir, ignore_errors=True)
            say(f"removed {record.run_dir}")
        runrecord.remove(record)
        say(f"forgot run {record.run_id}")
    from pytest_natsnet.sandbox import gc as sandbox_gc

    if dry_run:
        for line in _dead_sandboxes(sandbox_gc.STATE_DIR):
            say(line)
    else:
        for line in sandbox_gc.collect_garbage():
            say(line)


def main(dry_run: bool = False, include_kept: bool = False) -> int:
    collect(dry_run, include_kept)
    return 0
