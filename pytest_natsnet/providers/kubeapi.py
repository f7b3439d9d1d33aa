"""Pure helpers of the kube path: what counts as ready or settled, readiness-gate patches, bounded waits."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import tenacity

from pytest_natsnet import kube
from pytest_natsnet.errors import NatsnetError
from pytest_natsnet.kube import Obj
from pytest_natsnet.providers.base import POD_GATE_CONDITION
from pytest_natsnet.report.progress import note

POLL_SECONDS = 2.0


class WaitTimeout(NatsnetError):
    """A bounded wait ran out; says what it waited for and what it saw last."""


class PodCannotStart(NatsnetError):
    """A pod of the cell reports that it can never start where it is (waiting longer would change nothing)."""


CANNOT_START_REASONS = ("VolumeNotEmulated", "SandboxError")
"""Pod status reasons of the sandbox for a pod that will never start: a volume kind it does not have, or an error
while reconciling the pod (contained to it). No real cluster reports them."""


def pods_that_cannot_start(pods: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per reason that pods give for never starting: ``<pod>[, <pod> ...]: <reason>: <message>``."""
    by_reason: dict[str, list[str]] = {}
    for pod in sorted(pods, key=kube.name):
        status = pod.get("status") or {}
        if status.get("reason") in CANNOT_START_REASONS and not (pod.get("metadata") or {}).get("deletionTimestamp"):
            reason = f"{status.get('reason')}: {status.get('message') or '(no message)'}"
            by_reason.setdefault(reason, []).append(kube.name(pod))
    return [f"{', '.join(names)}: {reason}" for reason, names in by_reason.items()]


def undecided_pods(sets: Sequence[Mapping[str, Any]], pods: Sequence[Mapping[str, Any]]) -> list[str]:
    """The StatefulSets' pods the kubelet has not judged yet: missing, or Pending without a reason."""
    undecided = []
    for sts in sets:
        for name, pod in _ordinal_pods(sts, pods):
            status = (pod or {}).get("status") or {}
            if pod is None or (status.get("phase", "Pending") == "Pending" and not status.get("reason")):
                undecided.append(name)
    return undecided


def kubectl_argv(kubectl: str, kubeconfig: Path | str, context: str | None, *args: str) -> list[str]:
    """kubectl with the cluster named explicitly on every call."""
    argv = [kubectl, "--kubeconfig", str(kubeconfig)]
    if context:
        argv += ["--context", context]
    return [*argv, *args]


def statefulset_ready(sts: Mapping[str, Any]) -> bool:
    """Ready = the controller observed the current generation and every replica is ready."""
    status = sts.get("status") or {}
    metadata = sts.get("metadata") or {}
    replicas = int((sts.get("spec") or {}).get("replicas", 1))
    return (
        status.get("observedGeneration") == metadata.get("generation")
        and int(status.get("readyReplicas") or 0) == replicas
    )


def _ordinal_pods(sts: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]
                  ) -> list[tuple[str, Mapping[str, Any] | None]]:
    """Each ordinal's pod name, with its pod (None when it is missing)."""
    by_name = {kube.name(p): p for p in pods}
    names = [f"{kube.name(sts)}-{ordinal}" for ordinal in range(int(kube.spec(sts).get("replicas", 1)))]
    return [(name, by_name.get(name)) for name in names]


def _ordinal_problems(sts: Mapping[str, Any], pods: Sequence[Mapping[str, Any]],
                      lacking: Callable[[Mapping[str, Any]], str | None]) -> list[str]:
    """What each ordinal's pod lacks: missing, terminating, or what ``lacking`` says of a present pod (with what its
    containers wait for)."""
    problems = []
    for name, pod in _ordinal_pods(sts, pods):
        if pod is None:
            problems.append(f"{name} missing")
        elif (pod.get("metadata") or {}).get("deletionTimestamp"):
            problems.append(f"{name} terminating")
        elif (lack := lacking(pod)) is not None:
            problems.append(f"{name} {lack}{_waiting_for(pod)}")
    return problems


def statefulset_settled(sts: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> tuple[bool, str]:
    """Whether the StatefulSet's cell is whole, and what is missing: the controller saw the current generation,
    and every ordinal's pod exists, is not terminating and is Ready.

    ``status.readyReplicas`` alone is not enough: it still counts a pod whose deletion has begun while the pod is
    Ready (the kubelet keeps probing readiness during termination and the chart's lame duck lasts ~40 s).
    """
    name = kube.name(sts)
    problems = _ordinal_problems(sts, pods, lambda pod: None if any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []) else "not Ready")
    if not statefulset_ready(sts):
        status = sts.get("status") or {}
        return False, "; ".join([
            f"StatefulSet {name} generation {(sts.get('metadata') or {}).get('generation')} observed "
            f"{status.get('observedGeneration')}, ready {status.get('readyReplicas') or 0}/"
            f"{int(kube.spec(sts).get('replicas', 1))}", *problems])
    return not problems, "; ".join(problems) or f"StatefulSet {name}: every pod present and Ready"


def statefulset_running(sts: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> tuple[bool, str]:
    """Whether every ordinal's pod exists, is not terminating and runs (phase Running), Ready or not: what a cell
    whose servers never become Ready is installed to."""
    name = kube.name(sts)
    problems = _ordinal_problems(
        sts, pods, lambda pod: None if (pod.get("status") or {}).get("phase") == "Running" else "not running")
    return not problems, "; ".join(problems) or f"StatefulSet {name}: every pod present and running"


def _waiting_for(pod: Mapping[str, Any]) -> str:
    """What a pod that is not Ready says about itself: `` (Pending: reason: message)`` while it is Pending."""
    status = pod.get("status") or {}
    if status.get("phase") != "Pending" or not (status.get("reason") or status.get("message")):
        return ""
    return f" (Pending: {status.get('reason') or ''}: {status.get('message') or ''})"


def pod_condition_patch(pod: Mapping[str, Any], condition_type: str, status: bool, now: str) -> list[Obj]:
    """The JSON patch setting ``condition_type`` (replace in place when present, else append)."""
    value = {"type": condition_type, "status": "True" if status else "False", "lastTransitionTime": now}
    conditions = (pod.get("status") or {}).get("conditions") or []
    for index, condition in enumerate(conditions):
        if condition.get("type") == condition_type:
            return [{"op": "replace", "path": f"/status/conditions/{index}", "value": value}]
    if not conditions:
        return [{"op": "add", "path": "/status/conditions", "value": [value]}]
    return [{"op": "add", "path": "/status/conditions/-", "value": value}]


def pods_needing_gate(pods: Sequence[Mapping[str, Any]]) -> list[str]:
    """Running pods with the plugin's readinessGate whose condition was never set."""
    names = []
    for pod in pods:
        gates = [g.get("conditionType") for g in kube.spec(pod).get("readinessGates") or []]
        status = pod.get("status") or {}
        seen = {c.get("type") for c in status.get("conditions") or []}
        running = status.get("phase") == "Running"
        if POD_GATE_CONDITION in gates and running and POD_GATE_CONDITION not in seen:
            names.append(kube.name(pod))
    return names


def wait_until(check: Callable[[], tuple[bool, str]], timeout: float, what: str,
               poll: float = POLL_SECONDS, sleep: Callable[[float], None] = time.sleep) -> None:
    """Polls ``check() -> (done, state)`` until done; WaitTimeout names ``what`` and the last state. ``sleep`` may
    end a pause early (``kubewatch.Changes.sleep``: when something changed)."""
    last = ["nothing observed yet"]

    def attempt() -> bool:
        done, state = check()
        last[0] = state
        note(state)  # a long step's progress line says what it waits for
        return done

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_delay(timeout),
        wait=tenacity.wait_fixed(poll),
        retry=tenacity.retry_if_result(lambda done: not done),
        reraise=True,
        sleep=sleep,
    )
    try:
        retrying(attempt)
    except tenacity.RetryError:
        raise WaitTimeout(f"timed out after {timeout:g}s waiting for {what}; last seen: {last[0]}") from None
