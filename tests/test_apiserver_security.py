"""The sandbox API server refuses whoever lacks its client certificate, listens on loopback only, keeps its
kubeconfig and keys private, answers what it does not serve with a Status (never a hang), and ``natsnet
sandbox up`` leaves nothing behind on SIGINT or SIGTERM."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from conftest import SandboxApi, leftovers, needs_sandbox, start_sandbox_up, stop_sandbox_up

from pytest_natsnet.sandbox.apiserver import pki

pytestmark = [needs_sandbox, pytest.mark.xdist_group("sandbox-api-security")]


def address(api: SandboxApi) -> tuple[str, int]:
    url = urlsplit(api.server)
    assert url.hostname and url.port
    return url.hostname, url.port


def client_context(api: SandboxApi, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    directory = Path(str(api.ready["dir"])) / "pki"
    context = ssl.create_default_context(cafile=str(directory / "ca.crt"))
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


def admin_context(api: SandboxApi) -> ssl.SSLContext:
    directory = Path(str(api.ready["dir"])) / "pki"
    return client_context(api, directory / "admin.crt", directory / "admin.key")


def request(api: SandboxApi, context: ssl.SSLContext, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, Any]:
    host, port = address(api)
    connection = http.client.HTTPSConnection(host, port, context=context, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        answer = connection.getresponse()
        data = answer.read()
        return answer.status, json.loads(data) if data.startswith(b"{") else data
    finally:
        connection.close()


def refused(api: SandboxApi, context: ssl.SSLContext) -> str:
    """Why a request with ``context`` got no HTTP answer (fails the test if it got one)."""
    try:
        code, body = request(api, context, "GET", "/api/v1/namespaces")
    except (ssl.SSLError, ConnectionError, http.client.HTTPException, OSError) as error:
        return f"{type(error).__name__}: {error}"
    pytest.fail(f"the API server answered {code} to a client it should refuse: {body!r}"[:500], pytrace=False)


@pytest.fixture(scope="module")
def api(sandbox_api: SandboxApi) -> SandboxApi:
    return sandbox_api


def test_the_client_certificate_is_accepted(api: SandboxApi) -> None:
    code, body = request(api, admin_context(api), "GET", "/api/v1/namespaces")
    assert code == 200 and body["kind"] == "NamespaceList"


def test_no_client_certificate_is_refused(api: SandboxApi) -> None:
    assert refused(api, client_context(api))


def test_a_certificate_from_another_ca_is_refused(api: SandboxApi, tmp_path: Path) -> None:
    other = pki.issue(tmp_path / "other", "other")
    assert refused(api, client_context(api, other.client_cert, other.client_key))


def test_kubectl_without_the_client_certificate_is_refused(api: SandboxApi, tmp_path: Path) -> None:
    config = yaml.safe_load(api.kubeconfig.read_text())
    config["users"][0]["user"] = {}
    stripped = tmp_path / "kubeconfig"
    stripped.write_text(yaml.safe_dump(config))
    done = subprocess.run([api.kubectl_bin, "--kubeconfig", str(stripped), "get", "pods", "--request-timeout=10s"],
                          capture_output=True, text=True, timeout=30, env={**api.env, "KUBECONFIG": str(stripped)})
    assert done.returncode != 0 and "coredns" not in done.stdout


def test_a_plain_http_request_gets_no_api(api: SandboxApi) -> None:
    host, port = address(api)
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b"GET /api/v1/namespaces HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(10)
        try:
            data = sock.recv(4096)
        except (ConnectionError, TimeoutError):
            data = b""
    assert b"NamespaceList" not in data


def test_it_listens_on_loopback_only(api: SandboxApi) -> None:
    host, port = address(api)
    assert host == "127.0.0.1"
    listening = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        ip_hex, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:  # LISTEN
            listening.append(socket.inet_ntoa(bytes.fromhex(ip_hex)[::-1]))
    assert listening == ["127.0.0.1"]


def test_kubeconfig_and_keys_are_private_and_inside_the_directory(api: SandboxApi) -> None:
    directory = Path(str(api.ready["dir"]))
    assert api.kubeconfig.parent == directory
    private = [api.kubeconfig, *sorted((directory / "pki").iterdir())]
    assert {p.name for p in private} >= {"kubeconfig", "admin.key", "apiserver.key", "admin.crt", "ca.crt"}
    for path in private:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, f"{path} is {oct(path.stat().st_mode)}"
    assert stat.S_IMODE((directory / "pki").stat().st_mode) == 0o700


def test_secrets_are_never_logged(api: SandboxApi) -> None:
    api.kubectl("create", "secret", "generic", "hush", "--from-literal=password=do-not-log-me")
    api.kubectl("get", "secret", "hush", "-o", "yaml")
    directory = Path(str(api.ready["dir"]))
    logs = [p for p in directory.rglob("*") if p.is_file() and p.suffix in (".log", ".jsonl")]
    assert logs, "expected the API server's access log"
    for log in logs:
        text = log.read_text(errors="replace")
        assert "do-not-log-me" not in text and "ZG8tbm90LWxvZy1tZQ" not in text, f"{log} holds the Secret"


@pytest.mark.parametrize(
    ("method", "path", "body", "content_type", "code", "reason"),
    [
        ("GET", "/apis/example.com/v1/widgets", None, "application/json", 404, "NotFound"),
        ("GET", "/api/v1/namespaces/default/pods/nope", None, "application/json", 404, "NotFound"),
        ("POST", "/api/v1/nodes", b'{"kind":"Node","metadata":{"name":"x"}}', "application/json", 405,
         "MethodNotAllowed"),
        ("DELETE", "/version", None, "application/json", 405, "MethodNotAllowed"),
        ("POST", "/api/v1/namespaces/default/configmaps", b"<a/>", "application/xml", 415, "UnsupportedMediaType"),
        ("PATCH", "/api/v1/namespaces/kube-system/services/kube-dns",
         b'[{"op":"test","path":"/metadata/name","value":"other"}]', "application/json-patch+json", 422,
         "Invalid"),
        ("POST", "/api/v1/namespaces/default/configmaps", b'{"kind":"Secret","metadata":{"name":"x"}}',
         "application/json", 400, "BadRequest"),
        ("GET", "/api/v1/namespaces/kube-system/pods/coredns-sandbox/exec?command=ls", None, "application/json",
         400, "BadRequest"),
    ],
)
def test_unsupported_requests_answer_a_status(api: SandboxApi, method: str, path: str, body: bytes | None,
                                              content_type: str, code: int, reason: str) -> None:
    started = time.monotonic()
    got, status = request(api, admin_context(api), method, path, body, {"Content-Type": content_type})
    assert got == code and time.monotonic() - started < 5
    assert status["kind"] == "Status" and status["code"] == code and status["reason"] == reason
    assert status["message"]


def test_exec_over_spdy_is_refused_with_a_status(api: SandboxApi) -> None:
    code, status = request(api, admin_context(api), "POST",
                           "/api/v1/namespaces/kube-system/pods/coredns-sandbox/exec?command=ls&stdout=true",
                           headers={"Connection": "Upgrade", "Upgrade": "SPDY/3.1",
                                    "X-Stream-Protocol-Version": "v4.channel.k8s.io"})
    assert code == 400 and "SPDY is not supported" in status["message"]


def pids_of(text: str) -> list[str]:
    return subprocess.run(["pgrep", "-f", text], capture_output=True, text=True, check=False).stdout.split()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_sandbox_up_stops_and_leaves_nothing(tmp_path: Path, real_kubectl: str, sig: int) -> None:
    process, ready = start_sandbox_up(tmp_path)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "KUBECONFIG": str(ready["kubeconfig"])}
    kubectl = [real_kubectl]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sleeper"},
           "spec": {"containers": [{"name": "c", "image": "python:3.12-alpine", "command": ["sleep", "86400"]}]}}
    subprocess.run([*kubectl, "apply", "-f", "-"], input=json.dumps(pod), env=env, check=True, timeout=60,
                   capture_output=True, text=True)
    subprocess.run([*kubectl, "wait", "--for=condition=Ready", "pod/sleeper", "--timeout=60s"], env=env, check=True,
                   timeout=90, capture_output=True)
    marker = f"sleep {600 + os.getpid() % 1000}"  # an exec'd command that would outlive a careless teardown
    lingering = subprocess.Popen([*kubectl, "exec", "sleeper", "--", *marker.split()], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not pids_of(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pids_of(marker), "the exec'd command did not start"
    code, out, err = stop_sandbox_up(process, sig)
    lingering.wait(timeout=30)
    assert code == 0, f"exit {code}:\n{out}\n{err}"
    assert f"export KUBECONFIG={ready['kubeconfig']}" in out
    assert leftovers(ready) == []
    assert pids_of(str(ready["dir"])) == [], "processes of the stopped sandbox are still running"
    assert pids_of(marker) == [], "the exec'd command survived the sandbox"
    assert not Path(tmp_path / "ready.json").exists()


def test_sandbox_up_refuses_a_directory_in_use_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "something").write_text("x")
    done = subprocess.run([sys.executable, "-m", "pytest_natsnet.cli", "sandbox", "up", "--dir",
                           str(tmp_path / "state")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"natsnet sandbox up: --dir {tmp_path / 'state'}: exists and is not an empty directory; give a new or "
        "empty one"]
    assert (tmp_path / "state" / "something").exists()
