"""The ``helm`` source: argv builders (pure) and ``helm template`` parsed into objects."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from pytest_natsnet.errors import CommandError, ConfigError
from pytest_natsnet.kube import Obj
from pytest_natsnet.tools import Runner, SubprocessRunner, run_checked
from pytest_natsnet.values import compose, write_layers

HOOK_ANNOTATION = "helm.sh/hook"
TEMPLATE_TIMEOUT = 120.0


def _chart_args(chart: str, version: str | None, repo: str | None) -> list[str]:
    args = [chart]
    if version:
        args += ["--version", version]
    if repo:
        args += ["--repo", repo]
    return args


def _values_args(values_files: Sequence[Path | str]) -> list[str]:
    return [arg for f in values_files for arg in ("-f", str(f))]


def _cluster_args(kubeconfig: Path | str, context: str | None) -> list[str]:
    args = ["--kubeconfig", str(kubeconfig)]
    if context:
        args += ["--kube-context", context]
    return args


def helm_template_argv(
    helm: str, chart: str, version: str | None, release: str, namespace: str,
    values_files: Sequence[Path | str], repo: str | None = None,
) -> list[str]:
    """``helm template`` of one cell (no cluster access)."""
    return [helm, "template", release, *_chart_args(chart, version, repo), "--namespace", namespace,
            *_values_args(values_files)]


def helm_install_argv(
    helm: str, chart: str, version: str | None, release: str, namespace: str,
    values_files: Sequence[Path | str], kubeconfig: Path | str, context: str | None, timeout: float,
    repo: str | None = None,
) -> list[str]:
    """``helm install`` into an existing namespace; no ``--create-namespace`` (the plugin labels it) and
    no ``--wait`` (the plugin waits with its own deadline)."""
    return [helm, "install", release, *_chart_args(chart, version, repo), "--namespace", namespace,
            *_cluster_args(kubeconfig, context), "--timeout", f"{max(1, int(timeout))}s",
            *_values_args(values_files)]


def helm_uninstall_argv(
    helm: str, release: str, namespace: str, kubeconfig: Path | str, context: str | None, timeout: float
) -> list[str]:
    return [helm, "uninstall", release, "--namespace", namespace, *_cluster_args(kubeconfig, context),
            "--timeout", f"{max(1, int(timeout))}s"]


def is_test_hook(obj: Obj) -> bool:
    hooks = str((obj.get("metadata", {}).get("annotations") or {}).get(HOOK_ANNOTATION, ""))
    return any(h.strip().startswith("test") for h in hooks.split(","))


def parse_manifests(text: str, where: str) -> list[Obj]:
    """Multi-document YAML into objects (empty documents and helm test hooks dropped)."""
    try:
        documents: list[Any] = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{where}:{mark.line + 1}" if mark is not None else where
        raise ConfigError(at, f"invalid YAML ({getattr(exc, 'problem', None) or exc})") from None
    objects = []
    for index, document in enumerate(documents):
        if document is None:
            continue
        if not isinstance(document, dict) or "kind" not in document:
            raise ConfigError(where, f"document {index + 1} is not a Kubernetes object (no kind)")
        if not is_test_hook(document):
            objects.append(document)
    return objects


def render(
    helm: str, chart: str, version: str | None, release: str, namespace: str,
    values_files: Sequence[Path], repo: str | None = None, runner: Runner | None = None,
    layers_dir: Path | None = None,
) -> tuple[list[Obj], list[Path]]:
    """Runs ``helm template`` with the cell's layered values files; helm's complaint becomes a ConfigError
    naming the values files. Returns the objects and the ``-f`` layers, which are kept in ``layers_dir`` (for a
    later ``helm install`` of the same values) or dropped with a temporary directory."""
    composed = compose(values_files)
    with tempfile.TemporaryDirectory(prefix="natsnet-helm-") as workdir:
        layers = write_layers(composed, layers_dir or Path(workdir))
        argv = helm_template_argv(helm, chart, version, release, namespace, layers, repo)
        try:
            output = run_checked(runner or SubprocessRunner(), argv, timeout=TEMPLATE_TIMEOUT)
        except CommandError as exc:
            names = ", ".join(str(f) for f in values_files)
            detail = " ".join(exc.output.split()) or f"exit {exc.returncode}"
            raise ConfigError(f"helm template {chart} with values {names}", detail,
                              f"reproduce with: {exc.command}") from None
    return parse_manifests(output, f"helm template {chart}"), layers
