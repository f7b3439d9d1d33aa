"""The kubelet's timing rules as pure functions, as Kubernetes 1.31 (the pinned kind node image) codes them.

The sandbox kubelet (:mod:`pytest_natsnet.sandbox.kubelet`) follows these; the tests pin each rule with its
upstream source:

- **Probe ticker** (kubernetes ``pkg/kubelet/prober/worker.go`` ``run``/``doProbe``, ``prober_manager.go``
  ``AddPod``/``UpdatePodStatus``): one worker per container and probe type starts when the kubelet admits the
  pod (before its containers start) and probes on a ticker of ``periodSeconds`` from then on, across container
  restarts. A tick probes only when the container runs and ``int(seconds since it started) >=
  initialDelaySeconds`` (the seconds are truncated); liveness and readiness wait until the container has
  started (startup probe passed). Readiness alone is also run at once when the kubelet syncs the pod while the
  container is started and not ready (``UpdatePodStatus``'s manual trigger), e.g. right after the startup
  probe passes. So the first probe comes on the first tick at or after ``start + initialDelaySeconds``, not at
  that instant: with the chart's ``initialDelaySeconds: 10, periodSeconds: 10`` a server is probed first about
  20 s after the kubelet admitted it.
- **Termination** (``worker.go`` "Graceful shutdown of the pod", ``prober_manager.go``
  ``StopLivenessAndStartup``): once the pod has a deletionTimestamp, liveness and startup stop (their last result
  is set to success) and readiness keeps running, so a terminating pod stays Ready, and its endpoints serving,
  until its containers stop or readiness fails.
- **Restart back-off** (``pkg/kubelet/kuberuntime/kuberuntime_manager.go`` ``doBackOff`` over client-go
  ``util/flowcontrol/backoff.go``, initial 10 s, max 300 s; kubernetes issue #133472): a container that exits is
  restarted at once the first time; after that each restart waits the back-off counted from the exit, doubling
  up to 300 s; a back-off not renewed for 2 x 300 s is forgotten (the next exit restarts at once again).
- **Killing a container** (``kuberuntime_container.go`` ``killContainer``, ``setTerminationGracePeriod``): a
  liveness or startup failure kills the container like a deletion does: the preStop hook runs first (bounded by
  the grace period), then SIGTERM, then SIGKILL after what is left of the grace period but never less than 2 s.
  The grace period is the probe's own ``terminationGracePeriodSeconds`` when set, else the pod's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

BACKOFF_INITIAL = 10.0
"""kubelet ``backOffPeriod`` (``pkg/kubelet/kubelet.go``): the first CrashLoopBackOff wait."""
BACKOFF_MAX = 300.0
"""kubelet ``MaxContainerBackOff``: the longest CrashLoopBackOff wait."""
MINIMUM_GRACE_SECONDS = 2.0
"""``minimumGracePeriodInSeconds`` (``kuberuntime_container.go``): SIGTERM always gets this long before SIGKILL."""
LIVENESS_KINDS = ("livenessProbe", "startupProbe")
"""Probes that stop when the pod starts terminating; ``readinessProbe`` keeps running."""


def next_tick(worker_start: float, period: float, now: float) -> float:
    """The prober worker's first tick strictly after ``now`` (ticks at ``worker_start + k * period``)."""
    if now < worker_start:
        return worker_start
    return worker_start + (math.floor((now - worker_start) / period) + 1) * period


def past_initial_delay(container_start: float, initial_delay: float, now: float) -> bool:
    """``doProbe``: ``int32(time.Since(StartedAt).Seconds()) < InitialDelaySeconds`` skips the tick."""
    return now >= container_start and math.floor(now - container_start) >= initial_delay


def first_probe_time(worker_start: float, container_start: float, initial_delay: float, period: float) -> float:
    """When the first probe of a container that started at ``container_start`` runs, on the ticker of a worker
    started at ``worker_start`` (no manual trigger)."""
    tick = worker_start
    while not past_initial_delay(container_start, initial_delay, tick):
        tick = next_tick(worker_start, period, tick)
    return tick


def probes_while_terminating(kind: str) -> bool:
    """Whether a probe of ``kind`` still runs once the pod has a deletionTimestamp (readiness only)."""
    return kind not in LIVENESS_KINDS


@dataclass
class CrashLoopBackOff:
    """client-go ``flowcontrol.Backoff`` for one container, as ``doBackOff`` uses it (no jitter: the kubelet's
    has none)."""

    initial: float = BACKOFF_INITIAL
    maximum: float = BACKOFF_MAX
    backoff: float | None = None
    """The current window; None while there is no entry (the first exit restarts at once)."""
    last_update: float = 0.0

    def _expired(self, event_time: float) -> bool:
        return event_time - self.last_update > 2 * self.maximum

    def restart_at(self, exited_at: float) -> float:
        """When a container that exited at ``exited_at`` may start again (``IsInBackOffSince``)."""
        if self.backoff is None or self._expired(exited_at):
            return exited_at
        return exited_at + self.backoff

    def restarted(self, exited_at: float, now: float) -> None:
        """The restart happened (``Next``): the window starts at ``initial`` or doubles, capped."""
        if self.backoff is None or self._expired(exited_at):
            self.backoff = self.initial
        else:
            self.backoff = min(self.backoff * 2, self.maximum)
        self.last_update = now


def kill_grace_seconds(pod_spec: Mapping[str, Any], container: Mapping[str, Any], reason: str) -> float:
    """The grace period of killing ``container`` for ``reason`` (``livenessProbe``/``startupProbe`` failure):
    the probe's ``terminationGracePeriodSeconds`` when set, else the pod's (default 30)."""
    probe = container.get(reason) or {}
    if reason in LIVENESS_KINDS and probe.get("terminationGracePeriodSeconds") is not None:
        return float(probe["terminationGracePeriodSeconds"])
    return float(pod_spec.get("terminationGracePeriodSeconds", 30))


def sigkill_after(grace: float, hook_seconds: float) -> float:
    """Seconds between SIGTERM and SIGKILL once the preStop hook took ``hook_seconds`` of ``grace``."""
    return max(grace - hook_seconds, MINIMUM_GRACE_SECONDS)
