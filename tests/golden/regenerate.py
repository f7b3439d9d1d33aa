"""Re-renders ``tests/golden/rendered/`` from a chart directory with real helm (see README.md beside this file).

Usage: ``python tests/golden/regenerate.py --chart DIR [--helm PATH] [--check]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
RELEASE = "nats"
NAMESPACE = "natsnet"


def template_argv(helm: str, chart: Path, values: Sequence[Path]) -> list[str]:
    """``helm template`` of one scenario, exactly as the renders were made."""
    argv = [helm, "template", RELEASE, str(chart), "--namespace", NAMESPACE]
    for path in values:
        argv += ["-f", str(path)]
    return argv


def render_all(helm: str, chart: Path, golden: Path = HERE) -> dict[str, str]:
    """Scenario id -> rendered text, for every scenario of ``golden/scenarios.yaml``."""
    scenarios = yaml.safe_load((golden / "scenarios.yaml").read_text())
    out = {}
    for scenario, files in scenarios.items():
        argv = template_argv(helm, chart, [golden / "values" / name for name in files])
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise SystemExit(f"regenerate: {' '.join(argv)} failed: {done.stderr.strip().splitlines()[-1:]}")
        out[str(scenario)] = done.stdout
    return out


def main(argv: Sequence[str] | None = None, golden: Path = HERE) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chart", type=Path, required=True, help="the chart directory (with Chart.yaml)")
    parser.add_argument("--helm", default=os.environ.get("NATSNET_HELM") or shutil.which("helm"))
    parser.add_argument("--check", action="store_true", help="compare with the stored renders, write nothing")
    args = parser.parse_args(argv)
    if not (args.chart / "Chart.yaml").is_file():
        print(f"regenerate: --chart {args.chart} has no Chart.yaml: give the chart directory", file=sys.stderr)
        return 2
    if not args.helm:
        print("regenerate: no helm found: pass --helm PATH or set NATSNET_HELM", file=sys.stderr)
        return 2
    renders = render_all(args.helm, args.chart, golden)
    differing = []
    for scenario, text in renders.items():
        path = golden / "rendered" / f"{scenario}.yaml"
        if args.check:
            if not path.is_file() or path.read_text() != text:
                differing.append(scenario)
        else:
            path.write_text(text)
    if args.check:
        print(f"regenerate: {len(renders) - len(differing)} of {len(renders)} renders unchanged"
              + (f"; differ: {', '.join(differing)}" if differing else ""))
        return 1 if differing else 0
    print(f"regenerate: wrote {len(renders)} renders to {golden / 'rendered'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
