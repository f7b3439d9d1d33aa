"""The official chart's renders, carried in the repository (``tests/golden/``) and read lazily.

Nothing here reads a file at import time; every path is relative to this file, so a bare clone has the data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

GOLDEN = Path(__file__).resolve().parent / "golden"
RENDERED = GOLDEN / "rendered"
VALUES = GOLDEN / "values"
SCENARIOS_FILE = GOLDEN / "scenarios.yaml"
NAMESPACE = "natsnet"
"""The namespace every golden render was made for (``helm template --namespace natsnet``)."""


def scenarios() -> dict[str, list[str]]:
    """Scenario id -> the values files (names in ``values/``) passed to ``helm template``, in order."""
    return {str(k): [str(f) for f in v] for k, v in yaml.safe_load(SCENARIOS_FILE.read_text()).items()}


def scenario_ids() -> list[str]:
    """The scenario ids in file order (for parametrize: reads one small file at collection, not at import)."""
    return list(scenarios())


def jetstream_scenario_ids() -> list[str]:
    """The scenarios whose values enable JetStream (every JetStream values file is named ``jetstream*``)."""
    return [sid for sid, files in scenarios().items() if any(f.startswith("jetstream") for f in files)]


def rendered_path(scenario: str) -> Path:
    return RENDERED / f"{scenario}.yaml"


def rendered_text(scenario: str) -> str:
    return rendered_path(scenario).read_text()


def objects(scenario: str, *, hooks: bool = True) -> list[dict[str, Any]]:
    """The render's objects; ``hooks=False`` leaves out helm hooks (the chart's test Pod)."""
    docs = [d for d in yaml.safe_load_all(rendered_text(scenario)) if d]
    if hooks:
        return docs
    return [d for d in docs if "helm.sh/hook" not in ((d.get("metadata") or {}).get("annotations") or {})]


def values_path(name: str) -> Path:
    return VALUES / name


def values_files(scenario: str) -> list[Path]:
    return [values_path(name) for name in scenarios()[scenario]]
