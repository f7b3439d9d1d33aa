"""``pods/<name>/exec`` over WebSocket: RFC 6455 framing and the Kubernetes channel protocol.

The subprotocols ``v5.channel.k8s.io`` (kubectl >= 1.30, the kubernetes Python client) and
``v4.channel.k8s.io``. Every message is a channel byte followed by data: 0 stdin, 1 stdout, 2 stderr, 3 error
(the exit Status, JSON), 4 resize (``{"Width": w, "Height": h}``, with a tty). In v5, ``[255, channel]``
closes a channel (kubectl sends ``[255, 0]`` at the end of stdin). Frames to the client are binary; from the
client both binary and text frames are accepted (the Python client sends text). The client's pings get pongs.

One thread multiplexes the socket, the process's pipes (or its pty) and stdin with ``select``, so the TLS
socket is never used from two threads. A client that goes away kills the command's process group.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import select
import signal
import socket
import ssl
import struct
import subprocess
import termios
from collections.abc import Sequence
from typing import Any

from pytest_natsnet.sandbox.apiserver.responses import Answer, Request, Upgrade, error

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE_CHANNEL = 0, 1, 2, 3, 4, 255
READ_SIZE = 32 * 1024
MAX_FRAME = 16 * 1024 * 1024


class ProtocolError(Exception):
    """The client broke the websocket protocol."""


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def negotiate(offered_header: str) -> str | None:
    """The subprotocol to speak: v5 if offered, else v4, else None."""
    offered = [p.strip() for p in offered_header.split(",") if p.strip()]
    for protocol in PROTOCOLS:
        if protocol in offered:
            return protocol
    return None


def apply_mask(payload: bytes, mask: bytes) -> bytes:
    """XOR with the repeated 4-byte mask (RFC 6455 5.3), as one big-integer XOR: a Python loop per byte held
    the GIL for ~0.4 s on each 1.9 MB probe upload and slowed every other exec of the sandbox."""
    length = len(payload)
    if not length:
        return payload
    key = (mask * (length // 4 + 1))[:length]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(length, "big")


def encode_frame(opcode: int, payload: bytes, mask: bytes | None = None) -> bytes:
    """One final frame; server frames are unmasked (``mask`` is for tests acting as a client)."""
    head = bytes([0x80 | opcode])
    length = len(payload)
    mask_bit = 0x80 if mask else 0
    if length < 126:
        head += bytes([mask_bit | length])
    elif length < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", length)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", length)
    if mask:
        return head + mask + apply_mask(payload, mask)
    return head + payload


def decode_frames(buffer: bytearray) -> list[tuple[bool, int, bytes]]:
    """Complete frames (fin, opcode, unmasked payload) taken off the front of ``buffer``."""
    frames = []
    while len(buffer) >= 2:
        fin, opcode = bool(buffer[0] & 0x80), buffer[0] & 0x0F
        masked, length = bool(buffer[1] & 0x80), buffer[1] & 0x7F
        offset = 2
        if length == 126:
            if len(buffer) < 4:
                break
            length, offset = struct.unpack("!H", buffer[2:4])[0], 4
        elif length == 127:
            if len(buffer) < 10:
                break
            length, offset = struct.unpack("!Q", buffer[2:10])[0], 10
        if length > MAX_FRAME:
            raise ProtocolError(f"frame of {length} bytes is too large")
        mask = b""
        if masked:
            if len(buffer) < offset + 4:
                break
            mask, offset = bytes(buffer[offset:offset + 4]), offset + 4
        if len(buffer) < offset + length:
            break
        payload = bytes(buffer[offset:offset + length])
        if masked:
            payload = apply_mask(payload, mask)
        del buffer[:offset + length]
        frames.append((fin, opcode, payload))
    return frames


def exit_status(code: int, argv: Sequence[str]) -> dict[str, Any]:
    """The channel-3 Status for an exit code (kubectl prints "command terminated with exit code N")."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: error executing command {list(argv)}, "
                       f"exit code {code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


class ExecSession:
    """One exec: the command's process bridged to the websocket until it exits (or the client leaves)."""

    def __init__(self, sock: socket.socket, argv: Sequence[str], command: Sequence[str], protocol: str,
                 stdin: bool, stdout: bool, stderr: bool, tty: bool) -> None:
        self.sock = sock
        self.argv = list(argv)
        self.command = list(command)
        self.v5 = protocol.startswith("v5")
        self.want_stdin, self.want_stdout, self.want_stderr, self.tty = stdin, stdout, stderr, tty
        self.inbox = bytearray()
        self.stdin_pending = bytearray()
        self.stdin_closing = False
        self.stdin_fd: int | None = None
        self.outputs: dict[int, int] = {}
        self.master: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.message: list[bytes] = []
        self.message_opcode = BINARY

    # -- socket ------------------------------------------------------------------------------------

    def send(self, opcode: int, payload: bytes) -> None:
        self.sock.sendall(encode_frame(opcode, payload))

    def send_channel(self, channel: int, data: bytes) -> None:
        self.send(BINARY, bytes([channel]) + data)

    def _socket_ready(self) -> bool:
        return isinstance(self.sock, ssl.SSLSocket) and self.sock.pending() > 0

    def _read_socket(self) -> bool:
        """Reads what the client sent and handles complete messages; False once the client is gone."""
        try:
            data = self.sock.recv(READ_SIZE)
        except (ssl.SSLWantReadError, BlockingIOError):
            return True
        except OSError:
            return False
        if not data:
            return False
        self.inbox += data
        for fin, opcode, payload in decode_frames(self.inbox):
            if opcode == PING:
                self.send(PONG, payload)
            elif opcode == CLOSE:
                with contextlib.suppress(OSError):
                    self.send(CLOSE, payload[:2] or struct.pack("!H", 1000))
                return False
            elif opcode in (TEXT, BINARY, CONTINUATION):
                if opcode != CONTINUATION:
                    self.message, self.message_opcode = [], opcode
                self.message.append(payload)
                if fin:
                    self._channel_message(b"".join(self.message))
        return True

    def _channel_message(self, message: bytes) -> None:
        if not message:
            return
        channel, data = message[0], message[1:]
        if channel == STDIN:
            self.stdin_pending += data
        elif channel == CLOSE_CHANNEL and self.v5 and data[:1] == bytes([STDIN]):
            self.stdin_closing = True
        elif channel == RESIZE and self.master is not None:
            with contextlib.suppress(ValueError, OSError, KeyError, TypeError):
                size = json.loads(data)
                fcntl.ioctl(self.master, termios.TIOCSWINSZ,
                            struct.pack("HHHH", int(size["Height"]), int(size["Width"]), 0, 0))

    # -- process -----------------------------------------------------------------------------------

    def _start(self) -> None:
        if self.tty:
            import pty

            master, slave = pty.openpty()
            self.master = master
            self.process = subprocess.Popen(self.argv, stdin=slave, stdout=slave, stderr=slave,
                                            start_new_session=True)
            os.close(slave)
            self.stdin_fd = master if self.want_stdin else None
            self.outputs = {master: STDOUT}
            return
        self.process = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE if self.want_stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        if self.process.stdin is not None:
            self.stdin_fd = self.process.stdin.fileno()
            os.set_blocking(self.stdin_fd, False)
        self.outputs = {self.process.stdout.fileno(): STDOUT, self.process.stderr.fileno(): STDERR}

    def _write_stdin(self) -> None:
        if self.stdin_fd is None:
            self.stdin_pending.clear()
            return
        if self.stdin_pending:
            try:
                written = os.write(self.stdin_fd, bytes(self.stdin_pending))
                del self.stdin_pending[:written]
            except BlockingIOError:
                return
            except OSError:  # the command closed its stdin
                self.stdin_pending.clear()
                self._close_stdin()
                return
        if self.stdin_closing and not self.stdin_pending:
            self._close_stdin()

    def _close_stdin(self) -> None:
        if self.stdin_fd is None:
            return
        if self.master is not None:
            with contextlib.suppress(OSError):
                os.write(self.master, b"\x04")  # end of input on a terminal
            self.stdin_fd = None
            return
        assert self.process is not None and self.process.stdin is not None
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        self.stdin_fd = None

    def _read_output(self, fd: int) -> None:
        try:
            data = os.read(fd, READ_SIZE)
        except OSError:  # EIO: the terminal's other side closed
            data = b""
        channel = self.outputs[fd]
        if not data:
            del self.outputs[fd]
            return
        if (channel == STDOUT and self.want_stdout) or (channel == STDERR and self.want_stderr):
            self.send_channel(channel, data)

    def _kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)

    def run(self) -> None:
        try:
            self._start()
        except OSError as exc:
            self.send_channel(ERROR, json.dumps({"metadata": {}, "status": "Failure",
                                                 "message": f"exec failed: {exc}"}).encode())
            self.send(CLOSE, struct.pack("!H", 1000))
            return
        assert self.process is not None
        client_here = True
        try:
            while self.outputs and client_here:
                readers: list[Any] = [self.sock, *self.outputs]
                writers = [self.stdin_fd] if self.stdin_fd is not None and self.stdin_pending else []
                readable: list[Any]
                writable: list[Any]
                if self._socket_ready():
                    readable, writable = [self.sock], []
                else:
                    readable, writable, _ = select.select(readers, writers, [], 1.0)
                if self.sock in readable:
                    client_here = self._read_socket()
                for fd in readable:
                    if isinstance(fd, int):
                        self._read_output(fd)
                if writable or self.stdin_pending or self.stdin_closing:
                    self._write_stdin()
                if self.master is not None and self.process.poll() is not None and not readable:
                    break
            if not client_here:
                self._kill()
                return
            code = self.process.wait()
            self.send_channel(ERROR, json.dumps(exit_status(code, self.command)).encode())
            self.send(CLOSE, struct.pack("!H", 1000))
        except OSError:
            self._kill()
        finally:
            if self.master is not None:
                with contextlib.suppress(OSError):
                    os.close(self.master)
            if self.process is not None:
                for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
                    if pipe is not None:
                        with contextlib.suppress(OSError):
                            pipe.close()


def exec_handler(request: Request, argv: list[str]) -> Answer:
    """The exec subresource's answer: a websocket upgrade running ``argv`` (the container's nsenter argv)."""
    if request.header("upgrade").lower() != "websocket":
        return error(400, "BadRequest", "Upgrade request required: the sandbox serves exec over WebSocket "
                                        f"({', '.join(PROTOCOLS)}); SPDY is not supported")
    protocol = negotiate(request.header("sec-websocket-protocol"))
    if protocol is None:
        return error(400, "BadRequest", "unable to upgrade connection: none of the offered subprotocols "
                                        f"is supported ({', '.join(PROTOCOLS)} are)")
    key = request.header("sec-websocket-key")
    if not key:
        return error(400, "BadRequest", "websocket upgrade without Sec-WebSocket-Key")
    query = request.query

    def flag(name: str, default: bool = False) -> bool:
        value = query.get(name)
        return default if value is None else value.lower() in ("true", "1")

    command = list(request.multi.get("command") or [])
    headers = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
               ("Sec-WebSocket-Accept", accept_key(key)), ("Sec-WebSocket-Protocol", protocol)]

    def run(sock: socket.socket) -> None:
        sock.settimeout(None)
        ExecSession(sock, argv, command, protocol, flag("stdin"), flag("stdout", True), flag("stderr", True),
                    flag("tty")).run()

    return Upgrade(headers, run)
