"""Where the shipped data lives: inside the installed wheel, or at the top of a source checkout."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def _data_dir(name: str, package_dir: Path = PACKAGE_DIR) -> Path:
    """``<package>/<name>`` in a wheel (force-included), else ``<checkout>/<name>``."""
    for candidate in (package_dir / name, package_dir.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"pytest-natsnet data directory {name!r} is missing from {package_dir} and {package_dir.parent}; "
        "reinstall pytest-natsnet"
    )


def suites_dir() -> Path:
    return _data_dir("suites")


def charts_values_dir() -> Path:
    return _data_dir("charts-values")


def kind_configs_dir() -> Path:
    return _data_dir("kind-configs")
