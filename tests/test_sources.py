"""Manifest sources: helm argv, helm template parsing, rendered directories, dispatch."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml
from golden_data import RENDERED

from pytest_natsnet import kube
from pytest_natsnet.errors import ConfigError
from pytest_natsnet.matrix import expand, load_matrix, scenario_by_id
from pytest_natsnet.settings import NatsnetSettings
from pytest_natsnet.sources import helm, manifests, render_source

GOLDEN = RENDERED


class FakeRunner:
    """Records argv; answers version queries and ``helm template`` with canned output."""

    def __init__(self, template_output: str = "", returncode: int = 0, stderr: str = "") -> None:
        self.calls: list[list[str]] = []
        self.template_output, self.returncode, self.stderr = template_output, returncode, stderr

    def run(
        self, argv: Sequence[str], *, input: str | None = None, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(argv))
        if list(argv[1:]) == ["version", "--short"]:
            return subprocess.CompletedProcess(list(argv), 0, "v3.16.2+gabc\n", "")
        return subprocess.CompletedProcess(list(argv), self.returncode, self.template_output, self.stderr)


def test_helm_template_argv() -> None:
    assert helm.helm_template_argv("helm", "nats", "2.14.2", "nats", "ns1", [Path("/v/a.yaml"), "b.yaml"],
                                   "https://repo/") == [
        "helm", "template", "nats", "nats", "--version", "2.14.2", "--repo", "https://repo/",
        "--namespace", "ns1", "-f", "/v/a.yaml", "-f", "b.yaml",
    ]
    assert helm.helm_template_argv("/bin/helm", "/charts/nats", None, "r", "ns", []) == [
        "/bin/helm", "template", "r", "/charts/nats", "--namespace", "ns"]


def test_helm_install_and_uninstall_argv_are_explicit_about_the_cluster() -> None:
    install = helm.helm_install_argv("helm", "nats", "2.14.2", "nats", "ns1", ["a.yaml"], "/run/kubeconfig",
                                     "kind-natsnet", 300, "https://repo/")
    assert install == [
        "helm", "install", "nats", "nats", "--version", "2.14.2", "--repo", "https://repo/",
        "--namespace", "ns1", "--kubeconfig", "/run/kubeconfig", "--kube-context", "kind-natsnet",
        "--timeout", "300s", "-f", "a.yaml",
    ]
    assert "--create-namespace" not in install and "--wait" not in install
    assert helm.helm_uninstall_argv("helm", "nats", "ns1", "/k", None, 60.5) == [
        "helm", "uninstall", "nats", "--namespace", "ns1", "--kubeconfig", "/k", "--timeout", "60s"]


def test_parse_drops_the_test_hook_and_empty_documents() -> None:
    objects = helm.parse_manifests((GOLDEN / "default.yaml").read_text() + "\n---\n", "default.yaml")
    assert [kube.kind(o) for o in objects] == [
        "PodDisruptionBudget", "Secret", "ConfigMap", "Service", "Service", "Deployment", "StatefulSet"]
    assert not any(helm.is_test_hook(o) for o in objects)


@pytest.mark.parametrize(("text", "message"), [
    ("a: [1\n", "invalid YAML"),
    ("- just\n- a list\n", "document 1 is not a Kubernetes object"),
    ("kind: A\n---\nfoo: bar\n", "document 2 is not a Kubernetes object"),
])
def test_parse_rejects_non_objects(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        helm.parse_manifests(text, "x.yaml")


def test_helm_render_runs_template_with_layers_and_parses(tmp_path: Path) -> None:
    runner = FakeRunner((GOLDEN / "netpol-egress-dns.yaml").read_text())
    cell = {s.id: s for s in expand(load_matrix(), "smoke")}["netpol-egress-dns"]
    objects, _ = helm.render("/bin/helm", "nats", "2.14.2", "nats", "ns1", cell.values_files, "https://r/",
                          runner)
    (argv,) = runner.calls
    files = [argv[i + 1] for i, a in enumerate(argv) if a == "-f"]
    assert argv[:9] == ["/bin/helm", "template", "nats", "nats", "--version", "2.14.2", "--repo", "https://r/",
                        "--namespace"]
    assert files[:-1] == [str(f) for f in cell.values_files]
    assert files[-1].endswith("natsnet-extra-resources.yaml")
    assert len(kube.of_kind(objects, "NetworkPolicy")) == 3


def test_helm_error_becomes_one_config_line_naming_the_values(tmp_path: Path) -> None:
    values = tmp_path / "mine.yaml"
    values.write_text("config: {cluster: {replica: 3}}\n")
    runner = FakeRunner(returncode=1, stderr="Error: values don't meet the specifications\n- config: bad\n")
    with pytest.raises(ConfigError) as info:
        helm.render("helm", "nats", "2.14.2", "nats", "ns", [values], None, runner)
    message = str(info.value)
    assert "\n" not in message and str(values) in message
    assert "values don't meet the specifications" in message
    assert "helm template nats nats --version 2.14.2" in message


def test_manifests_dir_lists_and_reads_cells() -> None:
    assert "default" in manifests.scenario_ids(GOLDEN) and "tls" in manifests.scenario_ids(GOLDEN)
    assert len(manifests.read_cell(GOLDEN, "default")) == 7


def test_manifests_are_moved_into_the_cell_namespace() -> None:
    objects = manifests.render(GOLDEN, "routes-fqdn", "natsnet", "natsnet-r1-routes-fqdn")
    text = yaml.safe_dump_all(objects)
    assert "nats-0.nats-headless.natsnet-r1-routes-fqdn.svc.cluster.local:6222" in text
    assert ".natsnet.svc" not in text
    assert all("namespace" not in o["metadata"] for o in objects)
    assert manifests.retarget(objects, "x", "x") is objects


def test_manifests_errors(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("kind: A\n")
    with pytest.raises(ConfigError, match=r"has no b\.yaml; render it or choose one of: a"):
        manifests.read_cell(tmp_path, "b")
    with pytest.raises(ConfigError, match="is not a directory"):
        manifests.scenario_ids(tmp_path / "nope")


def _settings(**kwargs: object) -> NatsnetSettings:
    return NatsnetSettings(**kwargs)  # type: ignore[arg-type]


def test_render_cell_manifests_and_helm(tmp_path: Path) -> None:
    matrix = load_matrix()
    got = render_source(_settings(source="manifests", manifests=GOLDEN), scenario_by_id(matrix, "tls"), "ns-a").objects
    assert kube.find(got, "StatefulSet", "nats") is not None
    fake_helm = tmp_path / "helm"
    fake_helm.write_text("#!/bin/sh\n")
    fake_helm.chmod(0o755)
    runner = FakeRunner((GOLDEN / "default.yaml").read_text())
    got = render_source(_settings(source="helm", helm=str(fake_helm)), scenario_by_id(matrix, "default"),
                        "ns-b", runner=runner).objects
    assert len(got) == 7
    assert runner.calls[-1][:4] == [str(fake_helm), "template", "nats", "nats"]
    assert "ns-b" in runner.calls[-1]


def test_render_cell_reference() -> None:
    pytest.importorskip("pytest_natsnet.sources.reference", reason="reference renderer not written yet")
    scenario = scenario_by_id(load_matrix(), "netpol-egress-dns")
    got = render_source(_settings(source="reference"), scenario, "ns-c").objects
    assert kube.find(got, "StatefulSet", "nats") is not None
    assert len(kube.of_kind(got, "NetworkPolicy")) == 3


def test_render_cell_rejects_unknown_source() -> None:
    with pytest.raises(ConfigError, match="unknown source 'git'"):
        render_source(_settings(), scenario_by_id(load_matrix(), "default"), "ns", source="git")
