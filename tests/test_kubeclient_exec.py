"""The exit code of an exec, read from its error-channel Status (what ``KubeClient.exec`` falls back to when the
API server closes the connection right after its Close frame, before the client's reply went out)."""

from __future__ import annotations

import json

import pytest

from pytest_natsnet.kubeclient import exit_code
from pytest_natsnet.sandbox.apiserver.streams import exit_status


@pytest.mark.parametrize("code", [0, 1, 137])
def test_the_exit_code_comes_back_from_the_status_the_server_sends(code: int) -> None:
    assert exit_code(json.dumps(exit_status(code, ["cat", "/etc/resolv.conf"]))) == code


@pytest.mark.parametrize("status", ["", "not json", "[]", json.dumps({"status": "Failure", "message": "boom"})])
def test_no_exit_code_without_a_status_that_has_one(status: str) -> None:
    assert exit_code(status) is None
