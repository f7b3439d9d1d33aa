"""The probe bundle: the probe program with the pure-Python packages it imports, as one zip application.

A probe pod needs nothing beyond a stock Python and this one file (``python3 probe.pyz serve``). The packages
are found without importing them (nats-py imports aiohttp when it can: half a second of CPU in every pytest-xdist
worker, for a path), and the bundle is kept in a cache file named by what it is built from, so the workers of
a run build it once between them.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import io
import os
import py_compile
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from pytest_natsnet.tools import natsnet_cache

PROGRAM = Path(__file__).resolve().parent / "program.py"
PACKAGES = ("dns", "nats")
CACHE_PREFIX = "probe-"


def package_root(name: str) -> Path:
    """Where the installed package ``name`` lives, found without running its ``__init__``."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the probe program needs the {name!r} package: install pytest-natsnet's "
                                  "dependencies (pip install pytest-natsnet)", name=name)
    return Path(next(iter(spec.submodule_search_locations)))


def _sources() -> list[tuple[Path, str]]:
    """Every module source of the packages, with its name in the bundle."""
    found = []
    for package in PACKAGES:
        root = package_root(package)
        found += [(source, source.relative_to(root.parent).as_posix()) for source in sorted(root.rglob("*.py"))]
    return found


def bundle_key(sources: list[tuple[Path, str]]) -> str:
    """What the bundle is built from: this interpreter, this module and the program's text, each source's size
    and time."""
    digest = hashlib.sha256(sys.version.encode())
    digest.update(Path(__file__).read_bytes())
    digest.update(PROGRAM.read_bytes())
    for source, name in sources:
        stat = source.stat()
        digest.update(f"\0{name}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:20]


def build_bundle(sources: list[tuple[Path, str]]) -> bytes:
    """The zip application: ``__main__.py`` (the program) and the packages' sources.

    The program's bytecode (compiled here) and the packages' own for this interpreter go along (pip's
    ``__pycache__`` entry as ``module.pyc`` beside ``module.py``, where zipimport looks; the source's time in the
    zip is the UTC time the bytecode was checked against, as a container without a time zone reads it): a pod
    whose Python is this one runs and imports them without compiling (~0.35 s of CPU per probe program; the
    sandbox's pods run this interpreter), another Python finds the bytecode foreign and compiles the sources."""

    def add_source(archive: zipfile.ZipFile, source: Path, name: str) -> None:
        info = zipfile.ZipInfo(name, time.gmtime(source.stat().st_mtime)[:6])
        info.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(info, source.read_bytes())

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        add_source(archive, PROGRAM, "__main__.py")
        with tempfile.TemporaryDirectory() as scratch:  # the program's own bytecode: compiled here, once
            py_compile.compile(str(PROGRAM), cfile=f"{scratch}/__main__.pyc", dfile="__main__.py", doraise=True)
            archive.write(f"{scratch}/__main__.pyc", "__main__.pyc")
        for source, name in sources:
            add_source(archive, source, name)
            compiled = Path(importlib.util.cache_from_source(str(source)))
            if compiled.is_file():
                archive.write(compiled, name + "c")
    return buffer.getvalue()


def _store(directory: Path, name: str, bundle: bytes) -> None:
    """Writes the bundle whole (a temporary file renamed) and removes bundles built from something else."""
    directory.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".probe-", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(bundle)
        os.replace(temporary, directory / name)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    for other in directory.glob(f"{CACHE_PREFIX}*.pyz"):
        if other.name != name:
            with contextlib.suppress(OSError):
                other.unlink()


@functools.cache
def probe_bundle(cache: Path | None = None) -> bytes:
    """The bundle, from the cache when one was built from the same files (``cache``: the cache directory, by
    default ``tools.natsnet_cache()``); built and cached otherwise. An unwritable cache only costs the build."""
    sources = _sources()
    directory = cache or natsnet_cache()
    name = f"{CACHE_PREFIX}{bundle_key(sources)}.pyz"
    with contextlib.suppress(OSError):
        return (directory / name).read_bytes()
    bundle = build_bundle(sources)
    with contextlib.suppress(OSError):
        _store(directory, name, bundle)
    return bundle
