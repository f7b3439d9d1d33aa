"""The run plan: which provider and manifest source a run uses, and why, decided once.

Deciding probes the machine (``docker info``, helm on PATH, the chart repository over the network), so it
happens once per run, on the process that owns the run: the only process without pytest-xdist, the controller
with it. Workers receive the plan (``workerinput``) and never probe. ``--collect-only`` and ``--help`` decide
nothing: they get an undecided plan naming what was requested.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from pytest_natsnet.settings import NatsnetSettings

WORKERINPUT_KEY = "natsnet_plan"


def new_run_id() -> str:
    """Six hex digits: short enough for namespace names, random enough for concurrent runs."""
    return uuid.uuid4().hex[:6]


@dataclass(frozen=True)
class RunPlan:
    """What a run uses and why (the run header prints the reasons)."""

    run_id: str
    provider: str
    provider_reason: str
    source: str
    source_reason: str
    decided: bool = True
    """False for --collect-only/--help: nothing was probed, ``provider``/``source`` are the requested values."""
    cluster: Mapping[str, str] = field(default_factory=dict)
    """How workers reach a cluster the controller started (kubeconfig, context); empty until one is."""

    def to_wire(self) -> dict[str, Any]:
        """A plain dict for ``workerinput`` (execnet sends only builtin types)."""
        data = asdict(self)
        data["cluster"] = dict(self.cluster)
        return data

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> RunPlan:
        values = dict(data)
        values["cluster"] = dict(values.get("cluster") or {})
        return cls(**values)

    def with_cluster(self, cluster: Mapping[str, str]) -> RunPlan:
        return RunPlan(self.run_id, self.provider, self.provider_reason, self.source, self.source_reason,
                       self.decided, dict(cluster))


def docker_answers(timeout: float = 5.0) -> bool:
    """True when a Docker engine answers ``docker info`` (kind needs one)."""
    if shutil.which("docker") is None:
        return False
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def choose_provider(requested: str, docker: bool) -> tuple[str, str]:
    """The provider and why, for the run header (``auto``: kind when Docker answers, else the sandbox)."""
    if requested != "auto":
        return requested, f"--natsnet-provider={requested}"
    if docker:
        return "kind", "auto: a Docker engine answers"
    return (
        "sandbox",
        "auto: no Docker engine answers (docker info), so the Docker-free sandbox runs the cells",
    )


def decide(
    settings: NatsnetSettings,
    run_id: str,
    *,
    docker: Callable[[], bool] = docker_answers,
    source: Callable[[NatsnetSettings], tuple[str, str]] | None = None,
) -> RunPlan:
    """Probes what ``auto`` needs (Docker for the provider; helm and the chart repository for the source)."""
    if source is None:
        from pytest_natsnet.sources import resolve_source

        source = resolve_source
    provider, provider_reason = choose_provider(settings.provider, docker() if settings.provider == "auto" else False)
    chosen_source, source_reason = source(settings)
    return RunPlan(run_id, provider, provider_reason, chosen_source, source_reason)


def undecided(settings: NatsnetSettings, run_id: str, why: str) -> RunPlan:
    """The plan of a run that deploys nothing (``why``: e.g. ``--collect-only``): nothing is probed."""
    return RunPlan(run_id, settings.provider, f"not resolved ({why})", settings.source,
                   f"not resolved ({why})", decided=False)
