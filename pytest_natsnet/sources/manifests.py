"""The ``manifests`` source: a directory of pre-rendered cells, one ``<scenario-id>.yaml`` each."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pytest_natsnet.errors import ConfigError
from pytest_natsnet.kube import Obj
from pytest_natsnet.sources.helm import parse_manifests


def scenario_ids(directory: Path) -> list[str]:
    """The scenario ids a directory offers (file stems of ``*.yaml``), sorted."""
    if not directory.is_dir():
        raise ConfigError(f"--natsnet-manifests {directory}", "is not a directory")
    return sorted(p.stem for p in directory.glob("*.yaml"))


def read_cell(directory: Path, scenario_id: str) -> list[Obj]:
    """The objects of ``<directory>/<scenario_id>.yaml``."""
    path = directory / f"{scenario_id}.yaml"
    if not path.is_file():
        offered = ", ".join(scenario_ids(directory)) or "none"
        raise ConfigError(f"--natsnet-manifests {directory}", f"has no {scenario_id}.yaml",
                          f"render it or choose one of: {offered}")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), f"cannot be read ({exc.strerror})") from None
    return parse_manifests(text, str(path))


def _rewrite(node: Any, pattern: re.Pattern[str], new: str) -> Any:
    if isinstance(node, dict):
        return {k: _rewrite(v, pattern, new) for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite(v, pattern, new) for v in node]
    if isinstance(node, str):
        return pattern.sub(rf".{new}\1", node)
    return node


def retarget(objects: list[Obj], rendered_for: str, namespace: str) -> list[Obj]:
    """Moves objects rendered for namespace ``rendered_for`` into ``namespace``: ``metadata.namespace`` and
    every DNS name ``*.<rendered_for>.svc...`` in any string (nats.conf, env, args)."""
    if rendered_for == namespace:
        return objects
    pattern = re.compile(rf"\.{re.escape(rendered_for)}(\.svc\b)")
    moved = []
    for obj in objects:
        new = _rewrite(obj, pattern, namespace)
        metadata = new.setdefault("metadata", {})
        if metadata.get("namespace") in (None, rendered_for):
            metadata.pop("namespace", None)
        moved.append(new)
    return moved


def render(directory: Path, scenario_id: str, rendered_for: str, namespace: str) -> list[Obj]:
    """The cell's objects, moved from the namespace they were rendered for into ``namespace``."""
    return retarget(read_cell(directory, scenario_id), rendered_for, namespace)
