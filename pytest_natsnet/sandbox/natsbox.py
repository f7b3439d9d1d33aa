#!/usr/bin/env python3
"""A stand-in for nats-box's ``nats`` command, with the Python standard library only (it runs in the sandbox's
nats-box image, whose Python has no site-packages).

It speaks the NATS client protocol itself and implements what the chart's ``helm test`` hooks use:
``rtt``, ``pub``, ``sub``, ``request`` (``req``) and ``reply``, with ``--server/-s`` (comma-separated URLs),
``--context`` (natscli contexts: ``$XDG_CONFIG_HOME/nats/context.txt`` and ``context/<name>.json`` with
``url``, ``user``, ``password``, ``ca``, ``cert``, ``key``), ``--user``/``--password``, ``--tlsca``/``--tlscert``/
``--tlskey``, ``--timeout``, ``--count`` and ``--echo``. Anything else fails with one line on stderr (exit 1).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import ssl
import sys
import time
from urllib.parse import urlsplit

VERSION = "0.1.0-natsnet-standin"
GLOBAL_WITH_VALUE = {"--server": "server", "-s": "server", "--context": "context", "--timeout": "timeout",
                     "--user": "user", "--password": "password", "--tlsca": "tlsca", "--tlscert": "tlscert",
                     "--tlskey": "tlskey", "--count": "count", "--connection-name": "name"}
FLAGS = {"--echo": "echo", "--raw": "raw", "-r": "raw", "--no-context": "no_context"}


class Failure(Exception):
    """A user-visible error: printed as ``nats: error: <message>``, exit 1."""


def parse(argv: list[str]) -> tuple[str, list[str], dict[str, str]]:
    """natscli accepts flags anywhere: (command, positional arguments, options)."""
    options: dict[str, str] = {}
    positional: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, _, inline = arg.partition("=")
        if name in GLOBAL_WITH_VALUE:
            if inline:
                options[GLOBAL_WITH_VALUE[name]] = inline
            else:
                if i + 1 >= len(argv):
                    raise Failure(f"expected argument for flag '{name}'")
                options[GLOBAL_WITH_VALUE[name]] = argv[i + 1]
                i += 1
        elif arg in FLAGS:
            options[FLAGS[arg]] = "true"
        elif arg.startswith("-") and arg != "-":
            raise Failure(f"unknown flag '{arg}' (this nats is the sandbox's stand-in: rtt, pub, sub, request, "
                          "reply)")
        else:
            positional.append(arg)
        i += 1
    if not positional:
        raise Failure("expected command: rtt, pub, sub, request, reply")
    return positional[0], positional[1:], options


def context_settings(options: dict[str, str]) -> dict[str, str]:
    """The selected natscli context (``--context`` or context.txt), or {}."""
    if options.get("no_context"):
        return {}
    home = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    directory = os.path.join(home, "nats")
    name = options.get("context") or os.environ.get("NATS_CONTEXT", "")
    if not name:
        try:
            with open(os.path.join(directory, "context.txt")) as selected:
                name = selected.read().strip()
        except OSError:
            return {}
    if not name:
        return {}
    try:
        with open(os.path.join(directory, "context", f"{name}.json")) as handle:
            settings = json.load(handle)
    except (OSError, ValueError) as exc:
        if options.get("context"):
            raise Failure(f"unknown context {name!r}: {exc}") from None
        return {}
    return {k: str(v) for k, v in settings.items() if v not in (None, "")}


class Connection:
    """One NATS client connection (plain or TLS), synchronous."""

    def __init__(self, options: dict[str, str]) -> None:
        context = context_settings(options)
        urls = options.get("server") or os.environ.get("NATS_URL") or context.get("url") or "nats://127.0.0.1:4222"
        self.timeout = float(options.get("timeout", "5").rstrip("s") or 5)
        self.user = options.get("user") or context.get("user", "")
        self.password = options.get("password") or context.get("password", "")
        self.ca = options.get("tlsca") or context.get("ca", "")
        self.cert = options.get("tlscert") or context.get("cert", "")
        self.key = options.get("tlskey") or context.get("key", "")
        self.name = options.get("name", "NATS CLI Version natsnet-standin")
        errors = []
        for url in [u.strip() for u in urls.split(",") if u.strip()]:
            try:
                self._connect(url)
                self.url = url
                return
            except (OSError, Failure) as exc:
                errors.append(f"{url}: {exc}")
        raise Failure("nats: no servers available for connection (" + "; ".join(errors) + ")")

    def _connect(self, url: str) -> None:
        if "://" not in url:
            url = f"nats://{url}"
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 4222
        if parts.username and not self.user:
            self.user, self.password = parts.username, parts.password or ""
        self.sock: socket.socket = socket.create_connection((host, port), timeout=self.timeout)
        self.buffer = b""
        info = self._line()
        if not info.startswith(b"INFO "):
            raise Failure(f"expected INFO, got {info[:40]!r}")
        self.info = json.loads(info[5:])
        tls = parts.scheme == "tls" or self.info.get("tls_required") or self.ca or self.cert
        if tls:
            context = ssl.create_default_context(cafile=self.ca or None)
            if self.cert:
                context.load_cert_chain(self.cert, self.key or None)
            self.sock = context.wrap_socket(self.sock, server_hostname=host)
        connect = {"verbose": False, "pedantic": False, "tls_required": bool(tls), "name": self.name,
                   "lang": "python-stdlib", "version": VERSION, "protocol": 1, "echo": True, "headers": False}
        if self.user:
            connect.update(user=self.user, **{"pass": self.password})
        self.send(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
        while True:
            line = self._line()
            if line == b"PONG":
                return
            if line.startswith(b"-ERR"):
                raise Failure(line[5:].decode(errors="replace").strip("'"))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise Failure("connection closed by the server")
        self.buffer += chunk

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._fill()
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def _exactly(self, size: int) -> bytes:
        while len(self.buffer) < size + 2:
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size + 2:]
        return data

    def next_message(self, timeout: float | None) -> tuple[str, str, bytes] | None:
        """The next MSG as (subject, reply, payload); answers PINGs; None on timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                line = self._line()
                if line == b"PING":
                    self.send(b"PONG\r\n")
                elif line.startswith(b"MSG "):
                    fields = line.decode().split()
                    subject, size = fields[1], int(fields[-1])
                    reply = fields[3] if len(fields) == 5 else ""
                    return subject, reply, self._exactly(size)
                elif line.startswith(b"-ERR"):
                    raise Failure(line[5:].decode(errors="replace").strip("'"))
        except TimeoutError:
            return None

    def publish(self, subject: str, payload: bytes, reply: str = "") -> None:
        head = f"PUB {subject} {reply} {len(payload)}" if reply else f"PUB {subject} {len(payload)}"
        self.send(head.encode() + b"\r\n" + payload + b"\r\n")

    def subscribe(self, subject: str, sid: int, queue: str = "") -> None:
        self.send(f"SUB {subject} {queue} {sid}\r\n".replace("  ", " ").encode())

    def flush(self) -> None:
        self.send(b"PING\r\n")
        while self._line() != b"PONG":
            pass

    def rtt(self) -> float:
        started = time.perf_counter()
        self.flush()
        return time.perf_counter() - started


def _stamp() -> str:
    return time.strftime("%H:%M:%S")


def _duration(seconds: float) -> str:
    micro = seconds * 1e6
    return f"{micro:.1f}µs" if micro < 1000 else f"{micro / 1000:.3f}ms"


def cmd_rtt(args: list[str], options: dict[str, str]) -> int:
    connection = Connection(options)
    rounds = int(args[0]) if args else 5
    total = sum(connection.rtt() for _ in range(max(rounds, 1))) / max(rounds, 1)
    print(f"{connection.url}:\n\n   {connection.url}: {_duration(total)}\n")
    return 0


def cmd_pub(args: list[str], options: dict[str, str]) -> int:
    if not args:
        raise Failure("required argument 'subject' not provided")
    body = " ".join(args[1:]).encode()
    connection = Connection(options)
    for _ in range(int(options.get("count", "1"))):
        connection.publish(args[0], body)
    connection.flush()
    print(f"{_stamp()} Published {len(body)} bytes to \"{args[0]}\"")
    return 0


def cmd_sub(args: list[str], options: dict[str, str]) -> int:
    if not args:
        raise Failure("required argument 'subject' not provided")
    connection = Connection(options)
    connection.subscribe(args[0], 1)
    connection.flush()
    print(f"{_stamp()} Subscribing on {args[0]}", flush=True)
    wanted, seen = int(options.get("count", "0")), 0
    while not wanted or seen < wanted:
        message = connection.next_message(None)
        if message is None:
            continue
        seen += 1
        if options.get("raw"):
            print(message[2].decode(errors="replace"), flush=True)
        else:
            print(f"[#{seen}] Received on \"{message[0]}\"\n{message[2].decode(errors='replace')}\n", flush=True)
    return 0


def cmd_request(args: list[str], options: dict[str, str]) -> int:
    if not args:
        raise Failure("required argument 'subject' not provided")
    connection = Connection(options)
    inbox = f"_INBOX.{secrets.token_hex(11)}"
    connection.subscribe(inbox, 1)
    body = " ".join(args[1:]).encode()
    print(f"{_stamp()} Sending request on \"{args[0]}\"", file=sys.stderr, flush=True)
    started = time.perf_counter()
    connection.publish(args[0], body, inbox)
    message = connection.next_message(connection.timeout)
    if message is None:
        raise Failure("nats: timeout")
    print(f"{_stamp()} Received with rtt {_duration(time.perf_counter() - started)}", file=sys.stderr, flush=True)
    print(message[2].decode(errors="replace"), flush=True)
    return 0


def cmd_reply(args: list[str], options: dict[str, str]) -> int:
    if not args:
        raise Failure("required argument 'subject' not provided")
    echo = bool(options.get("echo"))
    answer = " ".join(args[1:]).encode()
    if not echo and not answer:
        raise Failure("a reply body or --echo is required")
    connection = Connection(options)
    connection.subscribe(args[0], 1, "NATS-RPLY-22")
    connection.flush()
    print(f"{_stamp()} Listening on \"{args[0]}\" in group \"NATS-RPLY-22\"", flush=True)
    wanted, seen = int(options.get("count", "0")), 0
    while not wanted or seen < wanted:
        message = connection.next_message(None)
        if message is None or not message[1]:
            continue
        seen += 1
        print(f"{_stamp()} [#{seen}] Received on subject \"{message[0]}\":\n\n{message[2].decode(errors='replace')}\n",
              flush=True)
        connection.publish(message[1], message[2] if echo else answer)
    return 0


COMMANDS = {"rtt": cmd_rtt, "pub": cmd_pub, "publish": cmd_pub, "sub": cmd_sub, "subscribe": cmd_sub,
            "request": cmd_request, "req": cmd_request, "reply": cmd_reply}


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        if argv[:1] in (["--version"], ["-v"]):
            print(VERSION)
            return 0
        command, args, options = parse(argv)
        if command not in COMMANDS:
            raise Failure(f"unknown command {command!r} (this nats is the sandbox's stand-in: "
                          f"{', '.join(sorted(COMMANDS))})")
        return COMMANDS[command](args, options)
    except Failure as exc:
        print(f"nats: error: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"nats: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
