"""Real tests of the libnftables applier: rulesets land in the right network namespace, refusals are reported
per namespace with nft's message, and a released context lets a deleted namespace (and its veth) go.

Needs root with ``ip``, ``nft`` and libnftables; namespaces are named ``nntest-nftlib-<pid>-...``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from pytest_natsnet.sandbox import nftlib
from pytest_natsnet.sandbox.nft import NftApplyError

LIB = nftlib.load_library() if os.geteuid() == 0 and shutil.which("ip") and shutil.which("nft") else None
pytestmark = pytest.mark.skipif(LIB is None, reason="needs root with ip, nft and libnftables")

PREFIX = f"nntest-nftlib-{os.getpid()}"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)


def _listing(netns: str) -> str:
    argv = ["ip", "netns", "exec", netns, "nft", "list", "ruleset"]
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=20).stdout


def _table(comment: str) -> str:
    return f'table ip natsnet_lib_test {{\n\tchain c {{\n\t\tcomment "{comment}"\n\t}}\n}}\n'


@pytest.fixture
def namespaces() -> Iterator[list[str]]:
    names = [f"{PREFIX}-{i}" for i in range(3)]
    for name in names:
        _ip("netns", "add", name)
    yield names
    for name in names:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=20, check=False)


@pytest.fixture
def applier() -> Iterator[nftlib.LibNft]:
    lib = nftlib.LibNft(LIB)
    yield lib
    lib.close()


def test_each_namespace_gets_its_own_ruleset_and_reapplying_replaces_it(
    namespaces: list[str], applier: nftlib.LibNft
) -> None:
    assert applier.apply_each({name: _table(name) for name in namespaces}) == {}
    for name in namespaces:
        assert f'comment "{name}"' in _listing(name)
    flushed = "table ip natsnet_lib_test\ndelete table ip natsnet_lib_test\n" + _table("second")
    applier.apply(namespaces[0], flushed)
    assert 'comment "second"' in _listing(namespaces[0]) and namespaces[0] not in _listing(namespaces[0])
    assert _listing(namespaces[1]).count("table ip natsnet_lib_test") == 1
    assert "natsnet_lib_test" not in subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True,
                                                    check=True).stdout  # never the caller's namespace


def test_a_refused_script_is_reported_for_its_namespace_only(namespaces: list[str], applier: nftlib.LibNft) -> None:
    refused = applier.apply_each({namespaces[0]: "table ip natsnet_lib_test {\n\tbogus\n}\n",
                                  namespaces[1]: _table("fine")})
    assert list(refused) == [namespaces[0]]
    assert "syntax error" in refused[namespaces[0]].message
    assert "natsnet_lib_test" not in _listing(namespaces[0]) and 'comment "fine"' in _listing(namespaces[1])
    with pytest.raises(NftApplyError, match="cannot enter network namespace"):
        applier.apply(f"{PREFIX}-missing", _table("x"))


def _peer_gone(peer: str, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = subprocess.run(["ip", "link", "show", peer], capture_output=True, check=False, timeout=20)
        if found.returncode != 0:
            return True
        time.sleep(0.05)
    return False


def test_a_deleted_namespace_goes_only_once_its_context_is_released(
    namespaces: list[str], applier: nftlib.LibNft
) -> None:
    """A context's netlink socket keeps its namespace alive after ``ip netns delete``: the veth peer in this
    namespace stays until the context is released (so the sandbox releases before deleting)."""
    name, peer = namespaces[2], f"nnl{os.getpid() % 100000}"
    _ip("link", "add", peer, "type", "veth", "peer", "name", "eth0", "netns", name)
    try:
        applier.apply(name, _table("held"))
        _ip("netns", "delete", name)
        assert not _peer_gone(peer, seconds=0.5), "the namespace went although a context was open in it"
        applier.release(name)
        assert _peer_gone(peer), "the namespace stayed after its context was released"
    finally:
        subprocess.run(["ip", "link", "delete", peer], capture_output=True, check=False, timeout=20)
