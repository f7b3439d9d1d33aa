"""Option parsing, ini twins, validation and the source choice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_natsnet import settings as s
from pytest_natsnet.settings import NatsnetSettings, choose_source


@pytest.mark.parametrize(("value", "expected"), [("1", 1), ("4", 4), (" 16 ", 16)])
def test_parse_positive_int_accepts(value: str, expected: int) -> None:
    assert s.parse_positive_int("--natsnet-parallel", value) == expected


@pytest.mark.parametrize("value", ["0", "-2", "four", "1.5", ""])
def test_parse_positive_int_rejects_naming_the_option(value: str) -> None:
    with pytest.raises(pytest.UsageError, match=r"^--natsnet-parallel: "):
        s.parse_positive_int("--natsnet-parallel", value)


@pytest.mark.parametrize(("value", "expected"), [("300", 300.0), ("0.5", 0.5)])
def test_parse_seconds_accepts(value: str, expected: float) -> None:
    assert s.parse_seconds("--natsnet-timeout", value) == expected


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan", "inf"])
def test_parse_seconds_rejects(value: str) -> None:
    with pytest.raises(pytest.UsageError, match=r"^--natsnet-timeout: "):
        s.parse_seconds("--natsnet-timeout", value)


@pytest.mark.parametrize("value", ["natsnet", "a", "kind-2", "x" * 63])
def test_parse_dns_label_accepts(value: str) -> None:
    assert s.parse_dns_label("--natsnet-cluster-name", value) == value


@pytest.mark.parametrize("value", ["Natsnet", "-a", "a-", "a_b", "x" * 64, ""])
def test_parse_dns_label_rejects(value: str) -> None:
    with pytest.raises(pytest.UsageError, match=r"^--natsnet-cluster-name: "):
        s.parse_dns_label("--natsnet-cluster-name", value)


@pytest.mark.parametrize("value", ["2.14.2", "v1.0.0", "1.2.3-rc.1"])
def test_parse_chart_version_accepts(value: str) -> None:
    assert s.parse_chart_version("--natsnet-chart-version", value) == value


@pytest.mark.parametrize("value", ["latest", "2.14", "two"])
def test_parse_chart_version_rejects(value: str) -> None:
    with pytest.raises(pytest.UsageError, match="--natsnet-chart-version"):
        s.parse_chart_version("--natsnet-chart-version", value)


def test_parse_chart_local_dir_tgz_and_references(tmp_path: Path) -> None:
    chart = tmp_path / "nats"
    chart.mkdir()
    (chart / "Chart.yaml").write_text("name: nats\n")
    (tmp_path / "nats-2.14.2.tgz").write_bytes(b"x")
    assert s.parse_chart("--natsnet-chart", "nats", tmp_path) == str(chart)
    tgz = str(tmp_path / "nats-2.14.2.tgz")
    assert s.parse_chart("--natsnet-chart", "./nats-2.14.2.tgz", tmp_path) == tgz
    assert s.parse_chart("--natsnet-chart", "oci://ghcr.io/x/nats", tmp_path) == "oci://ghcr.io/x/nats"
    assert s.parse_chart("--natsnet-chart", "myrepo/nats", tmp_path) == "myrepo/nats"


@pytest.mark.parametrize(("value", "message"), [
    ("./missing", "does not exist"), ("gone.tgz", "does not exist"),
    ("empty", "has no Chart.yaml"), (" ", "empty"),
])
def test_parse_chart_rejects(tmp_path: Path, value: str, message: str) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(pytest.UsageError, match=message):
        s.parse_chart("--natsnet-chart", value, tmp_path)


def _raw(values: dict[str, Any], base: Path) -> Any:
    return lambda dest: (values.get(dest), base)


def test_defaults(tmp_path: Path) -> None:
    got = NatsnetSettings.from_raw(_raw({}, tmp_path))
    assert (got.provider, got.source, got.matrix, got.keep) == ("auto", "auto", "smoke", "never")
    assert (got.chart, got.chart_repo, got.chart_version, got.chart_named) == (
        "nats", s.DEFAULT_CHART_REPO, "2.14.2", False)
    assert (got.parallel, got.timeout, got.cluster_name) == (None, 300.0, "natsnet")
    assert got.evidence_dir == tmp_path / "natsnet-evidence"
    assert got.manifests_namespace == "natsnet"
    assert got.sandbox_dns == "kind-1.32"


def test_values_parsed_and_paths_resolved(tmp_path: Path) -> None:
    (tmp_path / "vals").mkdir()
    (tmp_path / "kind.yaml").write_text("kind: Cluster\n")
    got = NatsnetSettings.from_raw(_raw({
        "natsnet_provider": "kind", "natsnet_parallel": "2", "natsnet_timeout": "60",
        "natsnet_values_dir": ["vals"], "natsnet_scenario": ["tls*", " "], "natsnet_kind_config": "kind.yaml",
        "natsnet_helm": "./bin/helm", "natsnet_kubectl": "kubectl", "natsnet_chart_version": "2.12.0",
        "natsnet_sandbox_dns": "fast",
    }, tmp_path))
    assert got.sandbox_dns == "fast"
    assert got.provider == "kind" and got.parallel == 2 and got.timeout == 60.0
    assert got.values_dirs == (tmp_path / "vals",) and got.scenarios == ("tls*",)
    assert got.kind_config == tmp_path / "kind.yaml"
    assert got.helm == str(tmp_path / "bin" / "helm") and got.kubectl == "kubectl"
    assert got.chart_named and got.chart_version == "2.12.0"


@pytest.mark.parametrize(("values", "message"), [
    ({"natsnet_provider": "docker"}, "--natsnet-provider: 'docker' is not one of"),
    ({"natsnet_sandbox_dns": "kind-1.30"}, "--natsnet-sandbox-dns: 'kind-1.30' is not one of kind-1.31, kind-1.32"),
    ({"natsnet_source": "manifests"}, "--natsnet-source=manifests needs --natsnet-manifests"),
    ({"natsnet_manifests": "m", "natsnet_source": "helm"}, "conflicts with --natsnet-source=helm"),
    ({"natsnet_manifests": "m", "natsnet_chart_version": "2.1.0"}, "conflicts with --natsnet-chart"),
    ({"natsnet_source": "reference", "natsnet_chart": "oci://x/nats"}, "drop --natsnet-chart"),
    ({"natsnet_manifests": "nope"}, "--natsnet-manifests: directory 'nope' does not exist"),
    ({"natsnet_kubeconfig": "nope"}, "--natsnet-kubeconfig: file 'nope' does not exist"),
    ({"natsnet_values_dir": ["m", "nope"]}, "--natsnet-values-dir: directory 'nope'"),
    ({"natsnet_manifests_namespace": "Bad_NS"}, "--natsnet-manifests-namespace"),
])
def test_invalid_combinations_name_the_option(tmp_path: Path, values: dict[str, Any], message: str) -> None:
    (tmp_path / "m").mkdir()
    with pytest.raises(pytest.UsageError, match=message.replace("(", r"\(")):
        NatsnetSettings.from_raw(_raw(values, tmp_path))


@pytest.mark.parametrize(("values", "helm", "reachable", "source", "reason"), [
    ({"natsnet_manifests": "m"}, True, True, "manifests", "--natsnet-manifests"),
    ({"natsnet_chart": "oci://x/nats"}, False, False, "helm", "named by --natsnet-chart"),
    ({}, True, True, "helm", "default chart nats 2.14.2"),
    ({}, False, True, "reference", "helm is not available"),
    ({}, True, False, "reference", "is not reachable"),
    ({"natsnet_source": "reference"}, True, True, "reference", "--natsnet-source=reference"),
])
def test_choose_source(
    tmp_path: Path, values: dict[str, Any], helm: bool, reachable: bool, source: str, reason: str
) -> None:
    (tmp_path / "m").mkdir()
    got = choose_source(NatsnetSettings.from_raw(_raw(values, tmp_path)), helm, reachable)
    assert got[0] == source and reason in got[1]


CONFTEST = """
from pytest_natsnet.settings import add_options, NatsnetSettings
def pytest_addoption(parser):
    add_options(parser)
def pytest_configure(config):
    config.natsnet_settings = NatsnetSettings.from_config(config)
"""

TEST = """
def test_show(request):
    st = request.config.natsnet_settings
    print("SETTINGS", st.enabled, st.provider, st.parallel, st.scenarios, st.matrix)
"""


@pytest.mark.parametrize(("ini", "args", "expected"), [
    ("", [], "SETTINGS False auto None () smoke"),
    ("natsnet = true\nnatsnet_provider = sandbox\nnatsnet_parallel = 2\n"
     "natsnet_scenario =\n  tls*\n  default\n",
     [], "SETTINGS True sandbox 2 ('tls*', 'default') smoke"),
    ("natsnet_provider = sandbox\nnatsnet_parallel = 2\n",
     ["--natsnet", "--natsnet-provider=kind", "--natsnet-parallel=8", "--natsnet-scenario=a",
      "--natsnet-matrix=full"],
     "SETTINGS True kind 8 ('a',) full"),
])
def test_cli_wins_over_ini(pytester: pytest.Pytester, ini: str, args: list[str], expected: str) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makeini(f"[pytest]\n{ini}")
    pytester.makepyfile(TEST)
    result = pytester.runpytest_inprocess("-p", "no:natsnet", "-s", *args)
    result.stdout.fnmatch_lines([f"*{expected}*"])
    assert result.ret == 0


def test_bad_option_is_one_usage_line(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(TEST)
    result = pytester.runpytest_inprocess("-p", "no:natsnet", "--natsnet-parallel=0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--natsnet-parallel: must be at least 1, given 0*"])
    assert "Traceback" not in result.stderr.str()


def test_help_lists_every_option(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    result = pytester.runpytest_inprocess("-p", "no:natsnet", "--help")
    text = result.stdout.str()
    for option in s.OPTIONS:
        assert option.flag in text and option.dest in text
    assert "--natsnet " in text
