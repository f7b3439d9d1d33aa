"""Command-line and ini options (``--natsnet-...``) and the frozen settings built from them."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_natsnet.dnsprofile import DEFAULT_PROFILE, PROFILES

PROVIDERS = ("auto", "kind", "existing", "sandbox")
SOURCES = ("auto", "helm", "manifests", "reference")
MATRICES = ("smoke", "pairwise", "full")
KEEP_POLICIES = ("never", "on-failure", "always")

DEFAULT_CHART = "nats"
DEFAULT_CHART_REPO = "https://nats-io.github.io/k8s/helm/charts/"
DEFAULT_CHART_VERSION = "2.14.2"
DEFAULT_MANIFESTS_NAMESPACE = "natsnet"
DEFAULT_CLUSTER_NAME = "natsnet"
DEFAULT_TIMEOUT = 300.0
DEFAULT_EVIDENCE_DIR = "natsnet-evidence"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_VERSION = re.compile(r"^v?\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$")


@dataclass(frozen=True)
class _Option:
    name: str
    help: str
    choices: tuple[str, ...] | None = None
    repeatable: bool = False
    ini_type: str = "string"

    @property
    def flag(self) -> str:
        return f"--natsnet-{self.name}"

    @property
    def dest(self) -> str:
        return "natsnet_" + self.name.replace("-", "_")


OPTIONS: tuple[_Option, ...] = (
    _Option("provider", "Cluster provider (default: auto, kind when a Docker engine answers, else sandbox)",
            PROVIDERS),
    _Option("chart", "Chart to test: a local chart directory or .tgz, an oci:// or repo/chart reference "
            f"(default: {DEFAULT_CHART} from {DEFAULT_CHART_REPO})"),
    _Option("chart-version", f"Chart version (default: {DEFAULT_CHART_VERSION})"),
    _Option("source", "Where the manifests come from (default: auto)", SOURCES),
    _Option("manifests", "Directory of pre-rendered manifests, one <scenario-id>.yaml per cell"),
    _Option("manifests-namespace",
            f"Namespace the manifests were rendered for (default: {DEFAULT_MANIFESTS_NAMESPACE})"),
    _Option("values-dir", "Directory of extra scenarios, one values file per cell (repeatable)",
            repeatable=True, ini_type="linelist"),
    _Option("matrix", "Named matrix of cells to run (default: smoke)", MATRICES),
    _Option("scenario", "Only cells whose id matches this glob (repeatable)", repeatable=True,
            ini_type="linelist"),
    _Option("keep", "Keep the cluster and namespaces after the run (default: never)", KEEP_POLICIES),
    _Option("cluster-name", f"kind cluster name (default: {DEFAULT_CLUSTER_NAME})"),
    _Option("kind-config", "kind cluster config file (default: the shipped kind-configs/default.yaml)"),
    _Option("kubeconfig", "Kubeconfig for the existing provider (default: $KUBECONFIG or ~/.kube/config)"),
    _Option("context", "Kubeconfig context for the existing provider (default: the current context)"),
    _Option("parallel", "Cells run at the same time, one pytest-xdist worker each, unless -n is given "
            "(default: as many as the machine holds; -n 0 runs serially)"),
    _Option("timeout", f"Seconds allowed for each cell's deploy (default: {DEFAULT_TIMEOUT:g})"),
    _Option("evidence-dir", f"Where evidence of failed cells is written (default: {DEFAULT_EVIDENCE_DIR})"),
    _Option("report", "Also write the cell × suite grid, failed cells' tables and timings as one self-contained "
            "HTML page to this file (e.g. next to the JUnit XML)"),
    _Option("helm", "Path to the helm binary (else $NATSNET_HELM, PATH, or a pinned download)"),
    _Option("kind", "Path to the kind binary (else $NATSNET_KIND, PATH, or a pinned download)"),
    _Option("kubectl", "Path to the kubectl binary (else $NATSNET_KUBECTL, PATH, or a pinned download)"),
    _Option("sandbox-dns", "DNS profile of the sandbox: TTL, cache, upstream, node search domains "
            f"(default: {DEFAULT_PROFILE}, what the pinned kind node image does)", tuple(PROFILES)),
    _Option("sandbox-policy-delay", "Seconds a new pod's traffic passes on the sandbox before its NetworkPolicies "
            "hold, as while kind's kube-network-policies has not learned the pod (default: 0, from its first "
            "packet)"),
)


def add_options(parser: pytest.Parser) -> None:
    """Registers the ``natsnet`` option group and an ini twin (``natsnet_...``) of every option."""
    group = parser.getgroup("natsnet", "NATS networking conformance on Kubernetes")
    group.addoption("--natsnet", action="store_true", dest="natsnet", default=None,
                    help="Run the NATS networking conformance suites")
    parser.addini("natsnet", "Run the NATS networking conformance suites", type="bool", default=False)
    for option in OPTIONS:
        group.addoption(
            option.flag,
            dest=option.dest,
            action="append" if option.repeatable else "store",
            choices=option.choices,
            default=None,
            metavar=option.name.upper().replace("-", "_") if option.choices is None else None,
            help=option.help,
        )
        parser.addini(option.dest, option.help + "; the command-line option wins",
                      type=option.ini_type,  # type: ignore[arg-type]
                      default=[] if option.repeatable else None)


# ----------------------------------------------------------------------------------------------- parsers


def parse_choice(flag: str, value: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise pytest.UsageError(f"{flag}: {value!r} is not one of {', '.join(choices)}")
    return value


def parse_positive_int(flag: str, value: str) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise pytest.UsageError(f"{flag}: {value!r} is not a whole number; give e.g. {flag}=4") from None
    if number < 1:
        raise pytest.UsageError(f"{flag}: must be at least 1, given {number}")
    return number


def parse_non_negative_seconds(flag: str, value: str) -> float:
    try:
        seconds = float(str(value).strip())
    except ValueError:
        raise pytest.UsageError(f"{flag}: {value!r} is not a number; give e.g. {flag}=2") from None
    if not 0 <= seconds < float("inf"):
        raise pytest.UsageError(f"{flag}: must be 0 or a positive number of seconds, given {value!r}")
    return seconds


def parse_seconds(flag: str, value: str) -> float:
    try:
        seconds = float(str(value).strip())
    except ValueError:
        raise pytest.UsageError(f"{flag}: {value!r} is not a number; give e.g. {flag}=300") from None
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise pytest.UsageError(f"{flag}: must be a positive number of seconds, given {value!r}")
    return seconds


def parse_existing_dir(flag: str, value: str, base: Path) -> Path:
    path = (base / Path(value).expanduser()).resolve()
    if not path.is_dir():
        raise pytest.UsageError(f"{flag}: directory {value!r} does not exist (resolved to {path})")
    return path


def parse_existing_file(flag: str, value: str, base: Path) -> Path:
    path = (base / Path(value).expanduser()).resolve()
    if not path.is_file():
        raise pytest.UsageError(f"{flag}: file {value!r} does not exist (resolved to {path})")
    return path


def parse_report_path(flag: str, value: str, base: Path) -> Path:
    """A file to write (its directory is created when the run ends); an existing directory is refused."""
    path = (base / Path(value).expanduser()).resolve()
    if path.is_dir():
        raise pytest.UsageError(f"{flag}: {value!r} is a directory; give a file name such as report.html")
    return path


def parse_dns_label(flag: str, value: str) -> str:
    if not _DNS_LABEL.match(value):
        raise pytest.UsageError(
            f"{flag}: {value!r} is not a DNS label (lowercase letters, digits and '-', at most 63 characters)"
        )
    return value


def parse_chart_version(flag: str, value: str) -> str:
    if not _VERSION.match(value):
        raise pytest.UsageError(f"{flag}: {value!r} is not a chart version like {DEFAULT_CHART_VERSION}")
    return value


def _looks_local(value: str) -> bool:
    return value.startswith((".", "/", "~")) or value.endswith((".tgz", ".tar.gz"))


def parse_chart(flag: str, value: str, base: Path) -> str:
    """A local chart directory or .tgz (resolved to an absolute path), or a reference helm understands."""
    if not value.strip():
        raise pytest.UsageError(f"{flag}: empty chart; give a chart directory, a .tgz or a chart reference")
    local = (base / Path(value).expanduser()).resolve()
    if local.is_dir():
        if not (local / "Chart.yaml").is_file():
            raise pytest.UsageError(f"{flag}: {value!r} has no Chart.yaml; point at the chart")
        return str(local)
    if local.is_file() and value.endswith((".tgz", ".tar.gz")):
        return str(local)
    if _looks_local(value):
        raise pytest.UsageError(f"{flag}: chart {value!r} does not exist (resolved to {local})")
    return value


# ---------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class NatsnetSettings:
    """Every ``--natsnet-...`` option, validated; paths are absolute."""

    enabled: bool = False
    provider: str = "auto"
    chart: str = DEFAULT_CHART
    chart_repo: str | None = DEFAULT_CHART_REPO
    """The Helm repository URL when ``chart`` is a name in it (the default chart); None otherwise."""
    chart_version: str = DEFAULT_CHART_VERSION
    chart_named: bool = False
    """True when the user chose the chart or its version (never fall back to another source then)."""
    source: str = "auto"
    manifests: Path | None = None
    manifests_namespace: str = DEFAULT_MANIFESTS_NAMESPACE
    values_dirs: tuple[Path, ...] = ()
    matrix: str = "smoke"
    scenarios: tuple[str, ...] = ()
    keep: str = "never"
    cluster_name: str = DEFAULT_CLUSTER_NAME
    kind_config: Path | None = None
    kubeconfig: Path | None = None
    context: str | None = None
    parallel: int | None = None
    """None: as many as the machine holds (see ``parallel.py``)."""
    timeout: float = DEFAULT_TIMEOUT
    evidence_dir: Path = Path(DEFAULT_EVIDENCE_DIR)
    report: Path | None = None
    """The HTML report's path (``--natsnet-report``); None: no HTML report."""
    helm: str | None = None
    kind: str | None = None
    kubectl: str | None = None
    sandbox_dns: str = DEFAULT_PROFILE
    """The sandbox's DNS profile (:mod:`pytest_natsnet.dnsprofile`)."""
    sandbox_policy_delay: float = 0.0
    """Seconds before NetworkPolicy holds for a new pod on the sandbox (``SandboxCluster.policy_delay``)."""

    @classmethod
    def from_config(cls, config: pytest.Config) -> NatsnetSettings:
        """Builds the settings from the command line (winning) and the ini file; raises UsageError."""
        cli_base = Path(config.invocation_params.dir)
        ini_base = Path(config.inipath).parent if config.inipath else Path(config.rootpath)

        def raw(dest: str) -> tuple[Any, Path]:
            value = config.getoption(dest, default=None)
            if value is not None:
                return value, cli_base
            return config.getini(dest), ini_base

        enabled_cli = config.getoption("natsnet", default=None)
        enabled = bool(enabled_cli) if enabled_cli else bool(config.getini("natsnet"))
        return cls.from_raw(raw, enabled=enabled)

    @classmethod
    def from_raw(cls, raw: Callable[[str], tuple[Any, Path]], enabled: bool = False) -> NatsnetSettings:
        """Builds the settings from ``raw(dest) -> (value or None/[], base dir for relative paths)``."""
        values: dict[str, Any] = {"enabled": enabled}
        by_name = {o.name: o for o in OPTIONS}

        def get(name: str) -> tuple[Any, Path]:
            value, base = raw(by_name[name].dest)
            if isinstance(value, str):
                value = value.strip()
            return (value if value not in (None, "", []) else None), base

        for name in ("provider", "source", "matrix", "keep", "sandbox-dns"):
            value, _ = get(name)
            if value is not None:
                values[name.replace("-", "_")] = parse_choice(by_name[name].flag, value, by_name[name].choices or ())
        chart, base = get("chart")
        version, _ = get("chart-version")
        if chart is not None:
            values["chart"] = parse_chart("--natsnet-chart", chart, base)
            values["chart_repo"] = DEFAULT_CHART_REPO if values["chart"] == DEFAULT_CHART else None
        if version is not None:
            values["chart_version"] = parse_chart_version("--natsnet-chart-version", version)
        values["chart_named"] = chart is not None or version is not None
        manifests, base = get("manifests")
        if manifests is not None:
            values["manifests"] = parse_existing_dir("--natsnet-manifests", manifests, base)
        namespace, _ = get("manifests-namespace")
        if namespace is not None:
            values["manifests_namespace"] = parse_dns_label("--natsnet-manifests-namespace", namespace)
        dirs, base = get("values-dir")
        if dirs is not None:
            values["values_dirs"] = tuple(parse_existing_dir("--natsnet-values-dir", d, base) for d in dirs)
        globs, _ = get("scenario")
        if globs is not None:
            values["scenarios"] = tuple(str(g).strip() for g in globs if str(g).strip())
        cluster, _ = get("cluster-name")
        if cluster is not None:
            values["cluster_name"] = parse_dns_label("--natsnet-cluster-name", cluster)
        for name in ("kind-config", "kubeconfig"):
            value, base = get(name)
            if value is not None:
                values[name.replace("-", "_")] = parse_existing_file(by_name[name].flag, value, base)
        context, _ = get("context")
        values["context"] = context
        parallel, _ = get("parallel")
        if parallel is not None:
            values["parallel"] = parse_positive_int("--natsnet-parallel", parallel)
        timeout, _ = get("timeout")
        if timeout is not None:
            values["timeout"] = parse_seconds("--natsnet-timeout", timeout)
        delay, _ = get("sandbox-policy-delay")
        if delay is not None:
            values["sandbox_policy_delay"] = parse_non_negative_seconds("--natsnet-sandbox-policy-delay", delay)
        evidence, base = get("evidence-dir")
        values["evidence_dir"] = (base / Path(evidence or DEFAULT_EVIDENCE_DIR)).resolve()
        report, base = get("report")
        if report is not None:
            values["report"] = parse_report_path("--natsnet-report", report, base)
        for tool in ("helm", "kind", "kubectl"):
            value, base = get(tool)
            if value is not None and ("/" in value or value.startswith(".")):
                value = str((base / Path(value).expanduser()).resolve())
            values[tool] = value
        settings = cls(**values)
        settings.check_combinations()
        return settings

    def check_combinations(self) -> None:
        """Rejects options that contradict each other, naming both."""
        if self.source == "manifests" and self.manifests is None:
            raise pytest.UsageError("--natsnet-source=manifests needs --natsnet-manifests DIR")
        if self.manifests is not None and self.source in ("helm", "reference"):
            raise pytest.UsageError(
                f"--natsnet-manifests conflicts with --natsnet-source={self.source}; drop one of them"
            )
        if self.manifests is not None and self.chart_named:
            raise pytest.UsageError("--natsnet-manifests conflicts with --natsnet-chart/-version; drop one")
        if self.source == "reference" and self.chart_named:
            raise pytest.UsageError(
                "--natsnet-source=reference renders the built-in chart model; drop --natsnet-chart/-version"
            )

    @property
    def chart_label(self) -> str:
        """The chart for the run header, e.g. ``nats 2.14.2 from https://...``."""
        where = f" from {self.chart_repo}" if self.chart_repo else ""
        return f"{self.chart} {self.chart_version}{where}"


def choose_source(settings: NatsnetSettings, helm_available: bool, chart_reachable: bool) -> tuple[str, str]:
    """The manifest source for the run and the reason, for the run header."""
    if settings.source != "auto":
        return settings.source, f"--natsnet-source={settings.source}"
    if settings.manifests is not None:
        return "manifests", f"--natsnet-manifests {settings.manifests}"
    if settings.chart_named:
        return "helm", f"chart {settings.chart_label} named by --natsnet-chart/--natsnet-chart-version"
    if helm_available and chart_reachable:
        return "helm", f"default chart {settings.chart_label}"
    missing = "helm is not available" if not helm_available else f"{settings.chart_repo} is not reachable"
    return "reference", (
        f"{missing}: using the built-in reference rendering of {settings.chart} {settings.chart_version}"
    )
