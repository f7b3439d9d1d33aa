"""Manifest sources: what a cell deploys, from a chart (helm), a rendered directory or the built-in model."""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass
from pathlib import Path

from pytest_natsnet.errors import ConfigError, ToolNotFound
from pytest_natsnet.kube import Obj
from pytest_natsnet.matrix import Scenario
from pytest_natsnet.providers.base import ChartInstall
from pytest_natsnet.settings import NatsnetSettings, choose_source
from pytest_natsnet.tools import Runner, resolve_tool
from pytest_natsnet.values import compose

REACHABILITY_TIMEOUT = 5.0


def chart_repo_reachable(repo: str, timeout: float = REACHABILITY_TIMEOUT) -> bool:
    """True when ``<repo>/index.yaml`` answers."""
    try:
        with urllib.request.urlopen(repo.rstrip("/") + "/index.yaml", timeout=timeout) as response:
            return bool(200 <= int(response.status) < 300)
    except (OSError, ValueError):
        return False


def resolve_source(settings: NatsnetSettings, runner: Runner | None = None) -> tuple[str, str]:
    """The source for the run and why (see ``settings.choose_source``), probing helm and the repo."""
    if settings.source != "auto" or settings.manifests is not None or settings.chart_named:
        return choose_source(settings, helm_available=True, chart_reachable=True)
    try:
        resolve_tool("helm", settings.helm, runner=runner, fetch=None)
        helm_available = True
    except ToolNotFound:
        helm_available = False
    reachable = helm_available and (settings.chart_repo is None or chart_repo_reachable(settings.chart_repo))
    return choose_source(settings, helm_available, reachable)


@dataclass(frozen=True)
class Rendered:
    """A cell's objects, and for the helm source the chart and ``-f`` layers that ``helm install`` takes."""

    objects: list[Obj]
    chart: ChartInstall | None = None


def render_source(
    settings: NatsnetSettings,
    scenario: Scenario,
    namespace: str,
    release: str = "nats",
    *,
    source: str | None = None,
    runner: Runner | None = None,
    layers_dir: Path | None = None,
) -> Rendered:
    """The objects of one cell from ``source`` (default: the settings' source, ``auto`` resolved)."""
    chosen = source or settings.source
    if chosen == "auto":
        chosen, _ = resolve_source(settings, runner)
    if chosen == "manifests":
        from pytest_natsnet.sources import manifests

        if settings.manifests is None:
            raise ConfigError("--natsnet-source=manifests", "needs --natsnet-manifests DIR")
        return Rendered(manifests.render(settings.manifests, scenario.id, settings.manifests_namespace, namespace))
    if chosen == "helm":
        from pytest_natsnet.sources import helm

        tool = resolve_tool("helm", settings.helm, runner=runner)
        local_chart = Path(settings.chart).is_absolute()
        version = None if local_chart else settings.chart_version
        objects, layers = helm.render(tool.path, settings.chart, version, release, namespace,
                                      scenario.values_files, settings.chart_repo, runner, layers_dir)
        return Rendered(objects, ChartInstall(settings.chart, version, settings.chart_repo, tuple(layers)))
    if chosen == "reference":
        from pytest_natsnet.sources import reference

        composed = compose(scenario.values_files)
        return Rendered(reference.render(composed.values, namespace, release, composed.extra_resources))
    raise ConfigError("--natsnet-source", f"unknown source {chosen!r}", "use helm, manifests or reference")
