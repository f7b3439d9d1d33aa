"""The wheel ships the suites and the data, and the README documents every option exactly.

Building the wheel takes a few seconds (hatchling from the venv, no build isolation, no network).
"""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from configparser import ConfigParser
from pathlib import Path

import pytest

from pytest_natsnet.settings import OPTIONS

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def options_table() -> str:
    """The README's option table, generated from ``settings.OPTIONS`` (paste it when this test fails)."""
    rows = [
        "| Option | ini key | Values | What it does |",
        "|---|---|---|---|",
        "| `--natsnet` | `natsnet` | flag | Run the NATS networking conformance suites |",
    ]
    for option in OPTIONS:
        metavar = option.name.upper().replace("-", "_")
        values = " \\| ".join(f"`{c}`" for c in option.choices) if option.choices else f"`{metavar}`"
        if option.repeatable:
            values += " (repeatable)"
        described = option.help.replace("<", "\\<")  # markdown would read <scenario-id> as a tag
        rows.append(f"| `{option.flag}` | `{option.dest}` | {values} | {described} |")
    return "\n".join(rows)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "-q", "-w", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    wheels = list(out.glob("pytest_natsnet-*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as archive:
        yield archive


def dist_info_file(wheel: zipfile.ZipFile, name: str) -> str:
    matches = [n for n in wheel.namelist() if re.fullmatch(rf"pytest_natsnet-[^/]+\.dist-info/{name}", n)]
    assert len(matches) == 1, f"{name} not in the wheel: {wheel.namelist()}"
    return wheel.read(matches[0]).decode()


# ------------------------------------------------------------------------------------------------- the wheel


@pytest.mark.parametrize("path", [
    "pytest_natsnet/plugin.py",
    "pytest_natsnet/py.typed",
    "pytest_natsnet/charts-values/matrix.yaml",
    "pytest_natsnet/kind-configs/default.yaml",
    "pytest_natsnet/suites/test_dns_records.py",
    "pytest_natsnet/probe/program.py",
])
def test_wheel_contains(wheel: zipfile.ZipFile, path: str) -> None:
    assert path in wheel.namelist()


@pytest.mark.parametrize(("checkout_dir", "pattern"), [
    ("suites", "test_*.py"),
    ("charts-values", "*.yaml"),
    ("kind-configs", "*.yaml"),
])
def test_wheel_ships_every_file_of_the_data_dirs(wheel: zipfile.ZipFile, checkout_dir: str,
                                                 pattern: str) -> None:
    in_checkout = {p.name for p in (ROOT / checkout_dir).glob(pattern)}
    in_wheel = {Path(n).name for n in wheel.namelist()
                if n.startswith(f"pytest_natsnet/{checkout_dir}/") and Path(n).match(pattern)}
    assert in_checkout, f"{checkout_dir}/{pattern} matches nothing in the checkout"
    assert in_wheel == in_checkout


def test_wheel_ships_no_project_tests_or_caches(wheel: zipfile.ZipFile) -> None:
    unwanted = [n for n in wheel.namelist()
                if n.startswith("tests/") or "__pycache__" in n or n.endswith(".pyc") or ".venv" in n]
    assert unwanted == []


def test_wheel_entry_points(wheel: zipfile.ZipFile) -> None:
    parser = ConfigParser()
    parser.read_string(dist_info_file(wheel, "entry_points.txt"))
    assert parser["pytest11"]["natsnet"] == "pytest_natsnet.plugin"
    assert parser["console_scripts"]["natsnet"] == "pytest_natsnet.cli:main"


def test_wheel_metadata_carries_the_readme(wheel: zipfile.ZipFile) -> None:
    metadata = dist_info_file(wheel, "METADATA")
    assert "Description-Content-Type: text/markdown" in metadata
    assert README.read_text(encoding="utf-8").splitlines()[0] in metadata


# ------------------------------------------------------------------------------------------------ the README


def test_readme_option_table_is_generated_from_the_settings() -> None:
    expected = options_table()
    assert expected in README.read_text(encoding="utf-8"), (
        "README.md's option table differs from settings.OPTIONS; replace it with:\n" + expected)


def test_readme_mentions_every_option_in_pytest_help() -> None:
    done = subprocess.run([sys.executable, "-m", "pytest", "--help", "-p", "no:cacheprovider"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    flags = set(re.findall(r"(--natsnet(?:-[a-z]+)*)", done.stdout))
    assert len(flags) == len(OPTIONS) + 1
    readme = README.read_text(encoding="utf-8")
    missing = sorted(flag for flag in flags if f"`{flag}`" not in readme)
    assert missing == [], f"options in pytest --help but not in README.md: {missing}"


def test_readme_commands_exist() -> None:
    readme = README.read_text(encoding="utf-8")
    for path in ("scripts/test", "scripts/main", ".github/workflows/natsnet.yaml", "benchmarks/README.md"):
        assert path in readme, f"README.md does not mention {path}"
        if path != "benchmarks/README.md":  # written by the benchmarks work
            assert (ROOT / path).is_file(), f"README.md mentions {path}, which does not exist"


def test_the_shipped_workflow_tests_the_working_copy_with_a_pinned_plugin() -> None:
    """The workflow must test the chart of the commit under test (--natsnet-chart) and install the plugin from
    this checkout or a pinned requirement, never an unpinned ``pip install pytest-natsnet``."""
    import yaml

    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "natsnet.yaml").read_text(encoding="utf-8"))
    runs = "\n".join(str(step.get("run", "")) for step in workflow["jobs"]["conformance"]["steps"])
    assert "--natsnet-chart=\"$CHART_DIR\"" in runs and "--natsnet-provider=kind" in runs
    assert "pip install pytest-natsnet" not in runs
    assert 'pip install "$PYTEST_NATSNET"' in runs and "pip install ." in runs
    assert set(workflow["env"]) == {"CHART_DIR", "PYTEST_NATSNET"}
