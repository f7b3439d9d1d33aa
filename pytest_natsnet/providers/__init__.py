"""The providers, side by side: kind, an existing cluster, the sandbox. Only here is a provider named."""

from __future__ import annotations

from pathlib import Path

from pytest_natsnet.errors import ConfigError
from pytest_natsnet.providers.base import Provider
from pytest_natsnet.settings import NatsnetSettings


def make_provider(name: str, settings: NatsnetSettings, run_id: str, run_dir: Path) -> Provider:
    if name == "sandbox":
        from pytest_natsnet.providers.sandbox_provider import SandboxProvider

        return SandboxProvider(settings, run_dir)
    if name == "kind":
        from pytest_natsnet.providers.kind import KindProvider

        return KindProvider(settings, run_dir)
    if name == "existing":
        from pytest_natsnet.providers.existing import ExistingProvider

        return ExistingProvider(settings, run_id)
    raise ConfigError(
        "--natsnet-provider", f"unknown provider {name!r}", "use auto, kind, existing or sandbox"
    )


def machine_problems(name: str) -> list[str]:
    """What this machine lacks to run provider ``name``, one line each (checked before anything starts)."""
    if name == "sandbox":
        from pytest_natsnet.providers.sandbox_provider import missing_requirements

        return missing_requirements()
    return []


def header_lines(name: str, settings: NatsnetSettings) -> list[str]:
    """Extra run-header lines of provider ``name`` (the sandbox: which nats-server binary runs)."""
    if name != "sandbox":
        return []
    from pytest_natsnet.sandbox.natsbin import find_nats_server

    binary = find_nats_server(f"nats:{settings.chart_version}-alpine")
    return ["natsnet: sandbox runs " + (binary.describe() if binary else "no nats-server (not found)")]


def recorded_cluster_name(name: str, settings: NatsnetSettings) -> str:
    """The cluster a run record names for ``natsnet gc`` (kind's cluster; the others have none to delete)."""
    return settings.cluster_name if name == "kind" else ""
