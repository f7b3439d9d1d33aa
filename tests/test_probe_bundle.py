"""The probe bundle is found without importing its packages and built once per set of files (a cache file)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pytest_natsnet.probe import bundle


def names_in(data: bytes) -> set[str]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return set(archive.namelist())


def test_building_the_bundle_imports_neither_package(tmp_path: Path) -> None:
    code = ("import sys\n"
            "from pathlib import Path\n"
            "from pytest_natsnet.probe.bundle import probe_bundle\n"
            f"data = probe_bundle(Path({str(tmp_path)!r}))\n"
            "print(len(data), sorted(m for m in sys.modules if m.split('.')[0] in ('nats', 'dns', 'aiohttp')))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    size, imported = done.stdout.split(" ", 1)
    assert int(size) > 100_000 and imported.strip() == "[]", done.stdout


def test_a_cached_bundle_is_reused_and_a_changed_source_builds_anew(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    extra = tmp_path / "extra.py"
    extra.write_text("VALUE = 1\n")
    sources = [*bundle._sources(), (extra, "extra.py")]
    monkeypatch.setattr(bundle, "_sources", lambda: list(sources))
    cache = tmp_path / "cache"
    key = bundle.bundle_key(sources)
    first = bundle.probe_bundle.__wrapped__(cache)
    cached = cache / f"probe-{key}.pyz"
    assert cached.read_bytes() == first
    assert {"__main__.py", "nats/__init__.py", "dns/message.py", "extra.py"} <= names_in(first)

    cached.write_bytes(b"what the cache holds is what is handed out")
    assert bundle.probe_bundle.__wrapped__(cache) == b"what the cache holds is what is handed out"

    extra.write_text("VALUE = 22\n")
    assert bundle.bundle_key(sources) != key
    rebuilt = bundle.probe_bundle.__wrapped__(cache)
    with zipfile.ZipFile(io.BytesIO(rebuilt)) as archive:
        assert archive.read("extra.py") == b"VALUE = 22\n"
    assert [p.name for p in cache.glob("probe-*.pyz")] == [f"probe-{bundle.bundle_key(sources)}.pyz"]


def test_an_unwritable_cache_only_costs_the_build(tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    assert "__main__.py" in names_in(bundle.probe_bundle.__wrapped__(blocked / "cache"))


def run_bootstrap(path: Path, size: int, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    from pytest_natsnet.deployment import PROBE_BOOTSTRAP

    return subprocess.run([sys.executable, "-c", PROBE_BOOTSTRAP, str(path), str(size)], input=stdin,
                          capture_output=True, timeout=60, check=False)


def test_the_session_bootstrap_writes_the_program_then_serves_the_rest_of_stdin(tmp_path: Path) -> None:
    data = bundle.probe_bundle()
    path = tmp_path / "natsnet" / "probe.pyz"
    batch = json.dumps({"requests": [{"key": "t", "kind": "tcp", "host": "127.0.0.1", "port": 9, "timeout": 0.5}]})
    done = run_bootstrap(path, len(data), data + f"{batch}\n{batch}\n".encode())
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 0, done.stderr
    assert [[r["key"] for r in a["results"]] for a in answers] == [["t"], ["t"]]
    assert path.read_bytes() == data


def test_a_cut_bundle_or_an_unwritable_path_is_one_line(tmp_path: Path) -> None:
    data = bundle.probe_bundle()
    cut = run_bootstrap(tmp_path / "probe.pyz", len(data), data[:1000])
    assert (cut.returncode, cut.stderr.decode()) == (
        1, f"natsnet: the probe program arrived cut short (1000 of {len(data)} bytes)\n")
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    unwritable = run_bootstrap(blocked / "probe.pyz", len(data), data)
    assert unwritable.returncode == 1
    assert unwritable.stderr.decode().startswith(f"natsnet: cannot write the probe program to {blocked}/probe.pyz")
    assert b"Traceback" not in unwritable.stderr
