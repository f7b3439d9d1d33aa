"""Watches through KubeClient against the sandbox's API, and waits woken by them (``kubewatch.Changes``): a
change ends a pause at once, closing ends the watches, a forbidden watch is given up (the wait still polls)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from conftest import SandboxApi, needs_sandbox

from pytest_natsnet.kubeclient import KubeClient, KubeError
from pytest_natsnet.kubewatch import SETTLE_SECONDS, Changes

NS = "watched"


def _config_map(name: str, value: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"value": value}}


@pytest.fixture(scope="module")
def client(sandbox_api: SandboxApi) -> Iterator[KubeClient]:
    kube_client = KubeClient(sandbox_api.kubeconfig)
    kube_client.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    yield kube_client


@needs_sandbox
def test_a_watch_starts_with_what_exists_then_follows_changes(client: KubeClient) -> None:
    client.apply(_config_map("first", "1"), NS)
    stream = client.watch("ConfigMap", NS, timeout=10)
    events: list[tuple[str, str, str]] = []

    def follow() -> None:
        for kind, obj in stream:
            events.append((kind, obj["metadata"]["name"], obj["data"]["value"]))
            if len(events) == 2:
                stream.interrupt()

    follower = threading.Thread(target=follow)
    follower.start()
    time.sleep(0.5)
    client.apply(_config_map("first", "2"), NS)
    follower.join(timeout=15)
    assert events == [("ADDED", "first", "1"), ("MODIFIED", "first", "2")]


@needs_sandbox
def test_a_change_ends_a_pause_and_closing_ends_the_watches(client: KubeClient) -> None:
    changes = Changes(client, NS, ["ConfigMap", "Pod"])
    try:
        changes.sleep(5.0)  # the watches' first events: what exists
        time.sleep(0.5)
        threading.Timer(0.5, lambda: client.apply(_config_map("woken", "1"), NS)).start()
        started = time.monotonic()
        changes.sleep(30.0)
        woken_after = time.monotonic() - started
    finally:
        changes.close()
    assert woken_after < 15.0, f"the pause ran {woken_after:.1f}s: the change did not end it"
    assert woken_after >= 0.5 + SETTLE_SECONDS, "a woken pause waits a moment for the changes that come with it"
    assert not [t.name for t in threading.enumerate() if t.name.startswith(f"natsnet-watch-{NS}-")]


class _Forbidding(KubeClient):
    def __init__(self) -> None:
        self.calls = 0

    def watch(self, kind: str, namespace: str | None, timeout: float, resource_version: str | None = None):  # type: ignore[no-untyped-def]
        self.calls += 1
        raise KubeError("GET", f"/api/v1/namespaces/{namespace}/pods", 403, "forbidden")


def test_a_forbidden_watch_is_given_up_and_the_pause_is_a_plain_sleep() -> None:
    client = _Forbidding()
    changes = Changes(client, NS, ["Pod"])
    started = time.monotonic()
    changes.sleep(0.3)
    slept = time.monotonic() - started
    changes.close()
    assert client.calls == 1
    assert slept >= 0.3
