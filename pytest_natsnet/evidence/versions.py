"""Tool and component versions for the bundle: the provider, Kubernetes and the nodes, kubectl and helm, the
chart and nats-server (image and what ``/varz`` reports), pytest-natsnet and Python."""

from __future__ import annotations

import json
import platform
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_natsnet import kube
from pytest_natsnet.evidence.model import Observations

TOOL_TIMEOUT = 10.0


def tool_version(argv: Sequence[str]) -> str:
    """The first line a ``version`` command prints (bounded); the error when it fails."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=TOOL_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError) as error:
        return f"(could not run {argv[0]}: {error})"
    text = (done.stdout or done.stderr).strip()
    if argv[1:2] == ["version"] and "-o" in argv:
        try:
            client = json.loads(text).get("clientVersion") or {}
            return str(client.get("gitVersion") or text.splitlines()[0])
        except (ValueError, AttributeError):
            pass
    return text.splitlines()[0] if text else f"(exit {done.returncode}, no output)"


def component_versions(obs: Observations, cluster: Mapping[str, Any], provider: Sequence[str],
                       tools: Mapping[str, str | None]) -> list[tuple[str, str]]:
    """(component, version) rows, in reading order."""
    from importlib import metadata

    rows: list[tuple[str, str]] = [(f"provider{'' if i == 0 else f' ({i + 1})'}", line) for i, line in
                                   enumerate(provider)]
    version = cluster.get("version")
    if isinstance(version, Mapping):
        rows.append(("Kubernetes API", f"{version.get('gitVersion')} ({version.get('platform', '')})"))
    elif version:
        rows.append(("Kubernetes API", str(version)))
    nodes = cluster.get("nodes")
    if isinstance(nodes, list):
        for node in nodes:
            rows.append((f"node {node.get('name')}", f"{node.get('osImage')}, kubelet {node.get('kubeletVersion')}, "
                                                    f"{node.get('containerRuntimeVersion')}"))
    for name, path in tools.items():
        if path:
            argv = [path, "version", "--client", "-o", "json"] if name == "kubectl" else [path, "version", "--short"]
            rows.append((name, f"{tool_version(argv)} ({path})"))
    sts = kube.find(obs.of_kind("StatefulSet"), "StatefulSet", obs.statefulset or "")
    if sts is not None:
        chart = kube.labels(sts).get("helm.sh/chart")
        if chart:
            rows.append(("chart", chart))
        images = sorted({str(c.get("image")) for c in (kube.spec(sts).get("template") or {}).get("spec", {})
                         .get("containers") or []})
        rows.append(("images", ", ".join(images)))
    served = sorted({str(body["/varz"].get("version")) for body in obs.monitor.values()
                     if isinstance(body.get("/varz"), Mapping) and body["/varz"].get("version")})
    if served:
        rows.append(("nats-server (/varz)", ", ".join(served)))
    try:
        rows.append(("pytest-natsnet", metadata.version("pytest-natsnet")))
    except metadata.PackageNotFoundError:
        rows.append(("pytest-natsnet", "(not installed)"))
    rows.append(("python", platform.python_version()))
    return rows
