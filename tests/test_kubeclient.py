"""The kube client's own rules: loopback API servers never go through an HTTP(S) proxy (as kubectl's Go client)."""

from __future__ import annotations

import pytest

from pytest_natsnet.kubeclient import _loopback


@pytest.mark.parametrize(("url", "loopback"), [
    ("https://127.0.0.1:6443", True), ("https://127.9.9.9", True), ("https://localhost:1", True),
    ("https://[::1]:6443", True), ("https://10.0.0.1:6443", False), ("https://api.example.com", False),
])
def test_loopback(url: str, loopback: bool) -> None:
    assert _loopback(url) is loopback
