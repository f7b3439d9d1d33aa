"""The HTTPS server: loopback only, TLS with a required client certificate from the sandbox's CA, HTTP/1.1
keep-alive, chunked streams (watch, log follow) and protocol upgrades (exec).

The TLS handshake happens in the connection's own thread, so a client that connects and never speaks TLS
holds only its thread. A connection without the sandbox's client certificate (none, or one from another CA)
fails the handshake and never reaches a handler.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pytest_natsnet.sandbox.apiserver.handlers import Api
from pytest_natsnet.sandbox.apiserver.pki import Pki
from pytest_natsnet.sandbox.apiserver.responses import Request, Response, Stream, Upgrade, error

HANDSHAKE_TIMEOUT = 10.0
IDLE_TIMEOUT = 120.0
MAX_BODY = 64 * 1024 * 1024
LOOPBACK = "127.0.0.1"


def server_context(pki: Pki) -> ssl.SSLContext:
    """TLS 1.2+, the server certificate, and client certificates required from the sandbox's CA only."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.load_verify_locations(cafile=str(pki.ca_cert))
    context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols(["http/1.1"])
    return context


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ApiHttpServer
    timeout = IDLE_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are logged by :meth:`_access_log` (method, path, code, ms), never bodies."""

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def _access_log(self, code: int, started: float) -> None:
        log = self.server.access_log
        path = urlsplit(self.path).path
        line = f"{time.strftime('%H:%M:%S')} {self.command} {path} {code} {(time.monotonic() - started) * 1000:.1f}ms\n"
        if log is not None:
            with self.server.access_log_lock:
                if not log.closed:  # a request still streaming when the server stops is not logged
                    log.write(line)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ValueError(f"request body of {length} bytes is larger than {MAX_BODY}")
        if length:
            return self.rfile.read(length)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline()
                if len(data) > MAX_BODY:
                    raise ValueError(f"request body larger than {MAX_BODY}")
        return b""

    def _dispatch(self) -> None:
        started = time.monotonic()
        url = urlsplit(self.path)
        multi = parse_qs(url.query, keep_blank_values=True)
        try:
            body = self._read_body()
        except ValueError as exc:
            self._send(error(413, "RequestEntityTooLarge", str(exc)), started)
            return
        request = Request(
            method=self.command,
            path=url.path,
            query={k: v[0] for k, v in multi.items()},
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            multi=multi,
        )
        try:
            answer = self.server.api.handle(request)
        except Exception as exc:  # a bug must answer a Status, never hang the client
            answer = error(500, "InternalError", f"an error on the server ({type(exc).__name__}: {exc}) has "
                                                 "prevented the request from succeeding")
        if isinstance(answer, Stream):
            self._stream(answer, started)
        elif isinstance(answer, Upgrade):
            self._upgrade(answer, started)
        else:
            self._send(answer, started)

    def _send(self, response: Response, started: float) -> None:
        self.send_response(response.code)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Cache-Control", "no-cache, private")
        for name, value in response.headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)
        self._access_log(response.code, started)

    def _client_gone(self) -> bool:
        """Whether the client closed the connection (checked between stream chunks)."""
        connection = self.connection
        try:
            readable, _, _ = select.select([connection], [], [], 0)
        except (OSError, ValueError):
            return True
        if not readable and not (isinstance(connection, ssl.SSLSocket) and connection.pending()):
            return False
        connection.setblocking(False)
        try:
            return bool(connection.recv(1024) == b"")
        except (ssl.SSLWantReadError, BlockingIOError):
            return False
        except OSError:
            return True
        finally:
            with contextlib.suppress(OSError):
                connection.setblocking(True)
                connection.settimeout(IDLE_TIMEOUT)

    def _stream(self, stream: Stream, started: float) -> None:
        self.send_response(stream.code)
        self.send_header("Content-Type", stream.content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self._access_log(stream.code, started)
        try:
            for chunk in stream.chunks:
                if chunk is None:
                    if self._client_gone() or self.server.stopping.is_set():
                        break
                    continue
                if chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True
        finally:
            close = getattr(stream.chunks, "close", None)
            if close is not None:
                close()

    def _upgrade(self, upgrade: Upgrade, started: float) -> None:
        self.send_response(101)
        for name, value in upgrade.headers:
            self.send_header(name, value)
        self.end_headers()
        self._access_log(101, started)
        self.close_connection = True
        self.wfile.flush()
        upgrade.run(self.connection)


class ApiHttpServer(ThreadingHTTPServer):
    """One listening socket on loopback; a thread per connection."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, api_factory: Any, pki: Pki, port: int = 0, access_log: Path | None = None) -> None:
        self.context = server_context(pki)
        self.stopping = threading.Event()
        self.access_log = access_log.open("a", buffering=1) if access_log else None
        self.access_log_lock = threading.Lock()
        super().__init__((LOOPBACK, port), _Handler)
        self.api: Api = api_factory(self.url)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"https://{LOOPBACK}:{self.port}"

    def finish_request(self, request: Any, client_address: Any) -> None:
        """TLS first (in this connection's thread), then HTTP."""
        request.settimeout(HANDSHAKE_TIMEOUT)
        tcp_nodelay(request)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # no (or a foreign) client certificate: refused before any HTTP
        tls.settimeout(IDLE_TIMEOUT)
        try:
            _Handler(tls, client_address, self)
        finally:
            with contextlib.suppress(OSError):
                tls.close()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2},
                                  name="natsnet-apiserver", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()
        if self.access_log is not None:
            with self.access_log_lock:
                self.access_log.close()


def serve(api_factory: Any, pki: Pki, port: int = 0, access_log: Path | None = None) -> ApiHttpServer:
    """Starts the API server on 127.0.0.1 (``port`` 0: any free port) in a background thread."""
    server = ApiHttpServer(api_factory, pki, port, access_log)
    server.start()
    return server


def tcp_nodelay(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
