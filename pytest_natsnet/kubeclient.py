"""The kubernetes Python client, spoken in plain dicts: list, get, create, server-side apply, patch, delete, logs,
watch and exec, with paths from ``kinds.py``.

Responses are read raw (``_preload_content=False``) and parsed as JSON: the client's generated models cost more
CPU than everything else a suite does, and the suites want plain dicts anyway. Errors become ``KubeError`` with
the API's own Status message in one line.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_natsnet.errors import NatsnetError
from pytest_natsnet.kinds import collection_path, object_path
from pytest_natsnet.kube import Obj

FIELD_MANAGER = "pytest-natsnet"
REQUEST_TIMEOUT = 60.0


class KubeError(NatsnetError):
    """An API request failed: the method, path, HTTP status and the Status message."""

    def __init__(self, method: str, path: str, status: int, message: str) -> None:
        self.method, self.path, self.status, self.message = method, path, status, message
        super().__init__(method, path, status, message)

    def __str__(self) -> str:
        return f"{self.method} {self.path}: {self.status} {' '.join(self.message.split())}"


@dataclass(frozen=True)
class ExecResult:
    stdout: str
    stderr: str
    returncode: int


def exit_code(status: bytes | str) -> int | None:
    """The exit code in an exec's error-channel Status (``Success``: 0; else the ``ExitCode`` cause), as the
    kubernetes client's ``WSClient.returncode`` reads it; None when there is none."""
    try:
        answer = json.loads(status or "null")
    except ValueError:
        return None
    if not isinstance(answer, dict):
        return None
    if answer.get("status") == "Success":
        return 0
    for cause in (answer.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            with contextlib.suppress(TypeError, ValueError):
                return int(cause.get("message"))
    return None


def _status_message(body: bytes | str) -> str:
    try:
        status = json.loads(body)
    except ValueError:
        return (body.decode(errors="replace") if isinstance(body, bytes) else body)[:500]
    return str(status.get("message") or status.get("reason") or status)[:500] if isinstance(status, dict) else ""


def _loopback(url: str) -> bool:
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class WatchStream:
    """One open watch: its events as ``(type, object)`` in order; ``interrupt`` ends it from another thread."""

    def __init__(self, response: Any, kind: str, path: str) -> None:
        self._response, self._kind, self._path = response, kind, path
        self._interrupted = False

    def __iter__(self) -> Iterator[tuple[str, Obj]]:
        buffer = b""
        try:
            for chunk in self._response.stream(64 * 1024, decode_content=True):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield self._event(line)
        except KubeError:  # an ERROR event (410 Gone: the resourceVersion is too old), a line that is not JSON
            raise
        except Exception as error:  # the connection dropped, or ``interrupt`` ended it
            if not self._interrupted:
                raise KubeError("GET", self._path, 0, f"watch ended: {error}") from None
        finally:
            self._response.close()

    def _event(self, line: bytes) -> tuple[str, Obj]:
        try:
            event = json.loads(line)
        except ValueError:
            raise KubeError("GET", self._path, 0, f"watch sent no JSON: {line[:200]!r}") from None
        obj = dict(event.get("object") or {})
        if event.get("type") == "ERROR":  # e.g. 410 Gone: the resourceVersion is too old
            raise KubeError("GET", self._path, int(obj.get("code") or 0), _status_message(json.dumps(obj)))
        obj.setdefault("kind", self._kind)
        return str(event.get("type")), obj

    def interrupt(self) -> None:
        self._interrupted = True
        with contextlib.suppress(Exception):
            self._response.shutdown()


class KubeClient:
    """One cluster (kubeconfig file and context). Thread-safe: the client's connection pool is shared."""

    def __init__(self, kubeconfig: Path | str, context: str | None = None) -> None:
        from kubernetes import client, config

        configuration = client.Configuration()
        # persist_config=False: never write refreshed credentials back into the user's kubeconfig.
        config.load_kube_config(config_file=str(kubeconfig), context=context,  # type: ignore[no-untyped-call]
                                client_configuration=configuration, persist_config=False)
        if _loopback(configuration.host):
            configuration.proxy = None  # as kubectl (Go's ProxyFromEnvironment): loopback never goes via a proxy
        self.api = client.ApiClient(configuration)
        self.kubeconfig = Path(kubeconfig)
        self.context = context

    # -- raw requests --------------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float = REQUEST_TIMEOUT,
        missing_ok: bool = False,
    ) -> Any:
        """One request; the parsed JSON answer (text for non-JSON answers, None for a tolerated 404)."""
        headers = {"Accept": "application/json", "Content-Type": content_type}
        serialized = self.api.param_serialize(method=method, resource_path=path,
                                              query_params=list((query or {}).items()), header_params=headers,
                                              body=body, auth_settings=["BearerToken"])
        try:
            response = self.api.call_api(*serialized, _request_timeout=timeout)
            response.read()  # type: ignore[no-untyped-call]
        except Exception as error:  # urllib3/ssl errors: the cluster did not answer
            raise KubeError(method, path, 0, f"no answer: {error}") from None
        status, data = int(response.status), response.data or b""
        if status == 404 and missing_ok:
            return None
        if not 200 <= status <= 299:
            raise KubeError(method, path, status, _status_message(data))
        try:
            return json.loads(data)
        except ValueError:
            return data.decode(errors="replace") if isinstance(data, bytes) else str(data)

    # -- objects -------------------------------------------------------------------------------------------

    def list(self, kind: str, namespace: str | None, label_selector: str | None = None) -> list[Obj]:
        """Objects of ``kind`` in ``namespace`` (None: every namespace), each with ``kind`` and ``apiVersion``."""
        query = {"labelSelector": label_selector} if label_selector else None
        answer = self.request("GET", collection_path(kind, namespace), query=query)
        items = list(answer.get("items") or [])
        api_version = str(answer.get("apiVersion", "v1"))
        for item in items:
            item.setdefault("kind", kind)
            item.setdefault("apiVersion", api_version)
        return items

    def watch(self, kind: str, namespace: str | None, timeout: float, resource_version: str | None = None
              ) -> WatchStream:
        """A watch of ``kind`` in ``namespace`` that the server ends after ``timeout`` seconds. Without
        ``resource_version`` it starts with an ADDED event for each object that exists."""
        path = collection_path(kind, namespace)
        query: dict[str, Any] = {"watch": "true", "timeoutSeconds": max(1, round(timeout))}
        if resource_version:
            query["resourceVersion"] = resource_version
        serialized = self.api.param_serialize(method="GET", resource_path=path, query_params=list(query.items()),
                                              header_params={"Accept": "application/json"},
                                              auth_settings=["BearerToken"])
        try:
            response = self.api.call_api(*serialized, _request_timeout=(REQUEST_TIMEOUT, timeout + REQUEST_TIMEOUT))
        except Exception as error:
            raise KubeError("GET", path, 0, f"no answer: {error}") from None
        if not 200 <= int(response.status) <= 299:
            raise KubeError("GET", path, int(response.status), _status_message(response.read() or b""))  # type: ignore[no-untyped-call]
        return WatchStream(response.response, kind, path)

    def get(self, kind: str, name: str, namespace: str | None) -> Obj | None:
        found = self.request("GET", object_path(kind, name, namespace), missing_ok=True)
        return dict(found) if found is not None else None

    def create(self, obj: Obj, namespace: str | None = None) -> Obj:
        kind = str(obj["kind"])
        where = namespace or (obj.get("metadata") or {}).get("namespace")
        return dict(self.request("POST", collection_path(kind, where), body=obj))

    def apply(self, obj: Obj, namespace: str | None = None, field_manager: str = FIELD_MANAGER) -> Obj:
        """Server-side apply of one object (created or updated; our field manager wins conflicts)."""
        kind, name = str(obj["kind"]), str(obj["metadata"]["name"])
        where = namespace or (obj.get("metadata") or {}).get("namespace")
        return dict(self.request("PATCH", object_path(kind, name, where),
                                 query={"fieldManager": field_manager, "force": "true"},
                                 body=json.dumps(obj), content_type="application/apply-patch+yaml"))

    def patch_status(self, kind: str, name: str, namespace: str, json_patch: Sequence[Obj]) -> Obj:
        return dict(self.request("PATCH", object_path(kind, name, namespace, "status"), body=list(json_patch),
                                 content_type="application/json-patch+json"))

    def delete(self, kind: str, name: str, namespace: str | None, grace_seconds: float | None = None) -> None:
        """Deletes one object (background propagation); a missing object is fine."""
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        if grace_seconds is not None:
            body["gracePeriodSeconds"] = max(0, round(grace_seconds))
        self.request("DELETE", object_path(kind, name, namespace), body=body, missing_ok=True)

    def logs(self, pod: str, container: str, namespace: str, previous: bool = False) -> str:
        query: dict[str, Any] = {"container": container}
        if previous:
            query["previous"] = "true"
        answer = self.request("GET", object_path("Pod", pod, namespace, "log"), query=query)
        return answer if isinstance(answer, str) else json.dumps(answer)

    # -- exec ----------------------------------------------------------------------------------------------

    def exec_stream(self, pod: str, container: str, namespace: str, command: Sequence[str]) -> Any:
        """A running exec (the client's WSClient): stdin, stdout and stderr channels, ``returncode``.

        The WebSocket is opened as ``kubernetes.stream.stream`` opens it (same URL, headers and auth), without
        ``CoreV1Api``: importing it builds the client's pydantic models, ~0.8 s of CPU in every process that
        execs (``benchmarks/README.md``)."""
        from kubernetes.stream.ws_client import websocket_call

        query: list[tuple[str, Any]] = [("command", part) for part in command]
        query += [("container", container), ("stdin", True), ("stdout", True), ("stderr", True), ("tty", False)]
        method, url, headers, _, _ = self.api.param_serialize(
            method="GET", resource_path=object_path("Pod", pod, namespace, "exec"), query_params=query,
            header_params={"Accept": "*/*"}, auth_settings=["BearerToken"])
        try:
            return websocket_call(self.api.configuration, method, url, headers=headers,  # type: ignore[no-untyped-call]
                                  _preload_content=False)
        except Exception as error:  # the client's ApiException(status=0): the handshake failed
            raise KubeError("GET", object_path("Pod", pod, namespace, "exec"), 0, str(error)) from None

    def exec(self, pod: str, container: str, namespace: str, command: Sequence[str], stdin: bytes | str = b"",
             timeout: float = REQUEST_TIMEOUT) -> ExecResult:
        """Runs ``command`` in the container with ``stdin`` (then closed), bounded by ``timeout``."""
        from websocket import WebSocketConnectionClosedException

        ws = self.exec_stream(pod, container, namespace, command)
        try:
            if stdin:
                ws.write_stdin(stdin)
            ws.close_channel(0)
            deadline = time.monotonic() + timeout
            stdout: list[str] = []
            stderr: list[str] = []
            closed_early = False
            while ws.is_open():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise NatsnetError(f"exec {' '.join(command)} in {namespace}/{pod} did not end within "
                                       f"{timeout:g}s")
                try:
                    ws.update(timeout=min(left, 1.0))
                except WebSocketConnectionClosedException:
                    # The server closed the connection right after its Close frame, before the client's reply
                    # went out: every frame before it (output, the exit status) is already buffered.
                    closed_early = True
                    break
                stdout.append(ws.read_stdout(timeout=0) or "")
                stderr.append(ws.read_stderr(timeout=0) or "")
            stdout.append(ws.read_stdout(timeout=0) or "")
            stderr.append(ws.read_stderr(timeout=0) or "")
            code = exit_code(ws.read_channel(3, timeout=0)) if closed_early else ws.returncode
        finally:
            ws.close()
        return ExecResult("".join(stdout), "".join(stderr), int(code if code is not None else -1))
