"""Exec over WebSocket: RFC 6455 framing, subprotocol choice, and an exec session bridging a real local process
to a client on a socket pair (stdin with the v5 close, text frames, stdout/stderr channels, exit Status, pings,
a client that goes away)."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from pytest_natsnet.sandbox.apiserver.streams import (
    BINARY,
    CLOSE,
    PING,
    PONG,
    TEXT,
    ExecSession,
    ProtocolError,
    accept_key,
    decode_frames,
    encode_frame,
    exit_status,
    negotiate,
)

MASK = b"\x01\x02\x03\x04"


def test_accept_key_is_the_rfc_example() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [("v5.channel.k8s.io", "v5.channel.k8s.io"), ("v4.channel.k8s.io, v5.channel.k8s.io", "v5.channel.k8s.io"),
     ("v4.channel.k8s.io", "v4.channel.k8s.io"), ("channel.k8s.io,base64.channel.k8s.io", None), ("", None)],
)
def test_negotiate(offered: str, chosen: str | None) -> None:
    assert negotiate(offered) == chosen


@pytest.mark.parametrize("size", [0, 5, 125, 126, 65535, 65536, 200_000])
def test_frames_round_trip_masked_and_unmasked(size: int) -> None:
    payload = os.urandom(size)
    buffer = bytearray(encode_frame(BINARY, payload) + encode_frame(TEXT, payload, MASK))
    assert decode_frames(buffer) == [(True, BINARY, payload), (True, TEXT, payload)]
    assert buffer == bytearray()


def test_a_masked_frame_decodes_as_rfc_6455_shows() -> None:
    """RFC 6455 5.7: a single-frame masked text message with mask 37 fa 21 3d."""
    frame = bytes.fromhex("818537fa213d7f9f4d5158")
    assert decode_frames(bytearray(frame)) == [(True, TEXT, b"Hello")]
    assert encode_frame(TEXT, b"Hello", bytes.fromhex("37fa213d")) == frame


def test_partial_frames_wait_for_the_rest() -> None:
    frame = encode_frame(BINARY, b"x" * 300, MASK)
    buffer = bytearray(frame[:100])
    assert decode_frames(buffer) == [] and len(buffer) == 100
    buffer += frame[100:]
    assert decode_frames(buffer) == [(True, BINARY, b"x" * 300)]


def test_oversized_frames_are_refused() -> None:
    with pytest.raises(ProtocolError, match="too large"):
        decode_frames(bytearray(b"\x82\x7f" + (1 << 40).to_bytes(8, "big")))


def test_exit_status_shapes() -> None:
    assert exit_status(0, ["true"]) == {"metadata": {}, "status": "Success"}
    failed = exit_status(3, ["sh", "-c", "exit 3"])
    assert failed["reason"] == "NonZeroExitCode"
    assert failed["details"] == {"causes": [{"reason": "ExitCode", "message": "3"}]}


class Client:
    """The client end of a socket pair: masked frames out, channel messages in."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.channels: dict[int, bytes] = {}
        self.control: list[tuple[int, bytes]] = []

    def send(self, channel: int, data: bytes, opcode: int = BINARY) -> None:
        self.sock.sendall(encode_frame(opcode, bytes([channel]) + data, MASK))

    def read_until_close(self, timeout: float = 10) -> None:
        self.sock.settimeout(timeout)
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                return
            self.buffer += chunk
            for _, opcode, payload in decode_frames(self.buffer):
                if opcode == CLOSE:
                    self.control.append((opcode, payload))
                    return
                if opcode in (PING, PONG):
                    self.control.append((opcode, payload))
                    continue
                assert opcode == BINARY, "frames to the client must be binary"
                self.channels[payload[0]] = self.channels.get(payload[0], b"") + payload[1:]

    def status(self) -> dict[str, object]:
        return dict(json.loads(self.channels[3]))


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, Client]]:
    server, client = socket.socketpair()
    yield server, Client(client)
    server.close()
    client.close()


def run_session(server: socket.socket, argv: list[str], *, stdin: bool = False, protocol: str = "v5.channel.k8s.io",
                tty: bool = False) -> threading.Thread:
    session = ExecSession(server, argv, argv, protocol, stdin, True, True, tty)
    thread = threading.Thread(target=session.run, daemon=True)
    thread.start()
    return thread


def test_stdin_to_stdout_with_the_v5_close(pair: tuple[socket.socket, Client]) -> None:
    server, client = pair
    thread = run_session(server, ["cat"], stdin=True)
    client.send(0, b"hello ")
    client.send(0, b"world", TEXT)  # the Python client sends text frames
    client.send(255, b"\x00")  # end of stdin
    client.read_until_close()
    thread.join(5)
    assert client.channels[1] == b"hello world"
    assert client.status() == {"metadata": {}, "status": "Success"}
    assert client.control[-1][0] == CLOSE


def test_stderr_and_a_non_zero_exit(pair: tuple[socket.socket, Client]) -> None:
    server, client = pair
    run_session(server, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    client.read_until_close()
    assert client.channels[1] == b"out\n" and client.channels[2] == b"err\n"
    assert client.status()["reason"] == "NonZeroExitCode"


def test_large_output_is_complete(pair: tuple[socket.socket, Client]) -> None:
    server, client = pair
    run_session(server, ["sh", "-c", "head -c 3000000 /dev/zero"])
    client.read_until_close()
    assert client.channels[1] == b"\0" * 3_000_000


def test_pings_get_pongs(pair: tuple[socket.socket, Client]) -> None:
    server, client = pair
    run_session(server, ["sh", "-c", "sleep 0.5"])
    client.sock.sendall(encode_frame(PING, b"are you there", MASK))
    client.read_until_close()
    assert (PONG, b"are you there") in client.control


def test_a_tty_session_echoes_through_the_terminal(pair: tuple[socket.socket, Client]) -> None:
    server, client = pair
    run_session(server, ["sh", "-c", "read line; echo got:$line"], stdin=True, tty=True)
    client.send(4, json.dumps({"Width": 100, "Height": 30}).encode())
    client.send(0, b"abc\n")
    client.read_until_close()
    assert b"got:abc" in client.channels[1]
    assert 2 not in client.channels  # a terminal has one output stream


def test_a_client_that_leaves_kills_the_command(pair: tuple[socket.socket, Client]) -> None:
    server, client = pair
    session = ExecSession(server, ["sleep", "60"], ["sleep", "60"], "v5.channel.k8s.io", False, True, True, False)
    thread = threading.Thread(target=session.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while session.process is None and time.monotonic() < deadline:
        time.sleep(0.01)
    client.sock.close()
    thread.join(5)
    assert not thread.is_alive()
    assert session.process is not None and session.process.poll() is not None
