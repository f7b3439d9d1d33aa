"""The in-cluster probe: answers a batch of network questions as an application pod would see them.

Self-contained (stdlib + dnspython + nats-py, no pytest_natsnet import): it is copied into probe pods.

    python3 program.py < batch.json > answer.json      # {"requests": [...], "concurrency": 8}
    python3 program.py watch < request.json             # JSON lines until duration, SIGTERM or stdin EOF
    python3 program.py serve < batches.jsonl            # one answer line per batch line, until stdin EOF;
                                                        # watches beside them ({"watch": ID, "request": ...})

It never raises across the boundary: a check that could not run is ``probe-error`` with the error text.
Test hooks: ``NATSNET_PROBE_RESOLV_CONF`` (resolv.conf path) and ``NATSNET_PROBE_DNS_PORT`` (nameserver port).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import json
import os
import queue
import signal
import socket
import ssl
import stat
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

Json = dict[str, Any]

RESOLV_CONF_ENV = "NATSNET_PROBE_RESOLV_CONF"
DNS_PORT_ENV = "NATSNET_PROBE_DNS_PORT"
RDTYPES = ("A", "AAAA", "SRV", "PTR", "TXT")
_REQUIRED: dict[str, tuple[str, ...]] = {
    "dns": ("name", "rdtype"),
    "getaddrinfo": ("name", "port"),
    "tcp": ("host", "port"),
    "http": ("url",),
    "nats": ("servers",),
    "relay": ("publish", "subscribe"),
    "jetstream": ("servers", "stream"),
}


class CheckError(Exception):
    """A check could not run (bad request, missing module): reported as ``probe-error``."""


def resolv_conf_path() -> str:
    return os.environ.get(RESOLV_CONF_ENV) or "/etc/resolv.conf"


def read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as err:
        return f"# unreadable: {err}"


def error_text(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def ms_since(start: float) -> float:
    return round((time.monotonic() - start) * 1000.0, 3)


# ---------------------------------------------------------------------------------------------- validation


def validate_batch(batch: Any) -> str | None:
    """The first problem with ``batch`` as one line, or None when it is well-formed."""
    if not isinstance(batch, dict):
        return "batch must be a JSON object with a 'requests' list"
    requests = batch.get("requests")
    if not isinstance(requests, list):
        return "batch key 'requests' must be a list"
    concurrency = batch.get("concurrency", 8)
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        return "batch key 'concurrency' must be a positive integer"
    seen: set[str] = set()
    for index, request in enumerate(requests):
        if not isinstance(request, dict):
            return f"requests[{index}] must be an object"
        key = request.get("key")
        if not isinstance(key, str) or not key:
            return f"requests[{index}] needs a non-empty string 'key'"
        if key in seen:
            return f"requests[{index}]: duplicate key {key!r}"
        seen.add(key)
        kind = request.get("kind")
        if kind not in _REQUIRED:
            return f"requests[{index}] ({key}): unknown kind {kind!r}; use one of {', '.join(_REQUIRED)}"
        missing = [f for f in _REQUIRED[kind] if f not in request]
        if missing:
            return f"requests[{index}] ({key}): {kind} request needs {', '.join(missing)}"
    return None


# ---------------------------------------------------------------------------------------------- dns


def qnames_to_try(name: str, search: list[str], ndots: int, use_search: bool) -> list[str]:
    """resolv.conf(5) order: absolute names only themselves; fewer than ndots dots → suffixes first."""
    if name.endswith("."):
        return [name]
    absolute = name + "."
    if not use_search:
        return [absolute]
    suffixed = [f"{name}.{suffix.rstrip('.')}." for suffix in search]
    if name.count(".") >= ndots:
        return [absolute, *suffixed]
    return [*suffixed, absolute]


def normalised_answer(rdata: Any, rdtype: str) -> str:
    """Comparable text: addresses as-is, names lowercased, SRV as ``<port> <target>``, TXT unquoted."""
    if rdtype == "SRV":
        return f"{rdata.port} {rdata.target.to_text().lower()}"
    if rdtype == "PTR":
        return str(rdata.target.to_text().lower())
    if rdtype == "TXT":
        return "".join(s.decode("utf-8", "replace") for s in rdata.strings)
    return str(rdata.to_text())


def without_optional_dnspython_features() -> None:
    """Tells dnspython, before its first import in this process, that none of its optional packages (cryptography,
    httpx, aioquic, idna, trio, wmi) is to be used: the probe asks plain DNS over UDP and TCP for ASCII names,
    and the bundle carries none of them. dnspython would otherwise import ``importlib.metadata`` and look each
    package up among the installed distributions when ``dns.name`` is imported: ~15 ms of a probe program's
    ~100 ms start, in every probe pod. A process that imported dnspython already keeps what it has."""
    if "dns" in sys.modules:
        return
    import types

    import dns

    features = types.ModuleType("dns._features", "dnspython's optional features: all off (the natsnet probe)")
    features.have = lambda feature: False  # type: ignore[attr-defined]
    features.force = lambda feature, enabled: None  # type: ignore[attr-defined]
    sys.modules["dns._features"] = features
    dns._features = features  # what ``import dns._features`` would have bound


def read_resolv_conf(path: str) -> tuple[list[str], list[str], int | None]:
    """Nameservers, search list (each suffix absolute) and ndots of a resolv.conf, read as dnspython's
    ``Resolver.read_resolv_conf`` reads it (which the probe used before; importing ``dns.resolver`` cost a probe
    program ~13 ms): comment lines and lines of one token skipped, the last ``search`` or ``domain`` line wins
    and ``domain`` leaves no search list, ``options ndots:N``. ``CheckError`` when it cannot be read or names no
    nameserver."""
    nameservers: list[str] = []
    search: list[str] = []
    ndots: int | None = None
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.readlines()
    except OSError as err:
        raise CheckError(f"cannot read {path}: {error_text(err)}") from err
    for line in lines:
        tokens = line.split()
        if len(tokens) < 2 or line[0] in "#;":
            continue
        if tokens[0] == "nameserver":
            nameservers.append(tokens[1])
        elif tokens[0] in ("domain", "search"):
            search = [s if s.endswith(".") else f"{s}." for s in tokens[1:]] if tokens[0] == "search" else []
        elif tokens[0] == "options":
            for option in tokens[1:]:
                if option.startswith("ndots:") and option[6:].isdigit():
                    ndots = int(option[6:])
    if not nameservers:
        raise CheckError(f"{path} names no nameserver")
    return nameservers, search, ndots


def check_dns(request: Json) -> tuple[str, Json]:
    without_optional_dnspython_features()
    try:
        import dns.flags
        import dns.message
        import dns.rcode
        import dns.reversename
    except ImportError as err:
        raise CheckError(f"dnspython is not available: {err}") from err
    rdtype = str(request["rdtype"]).upper()
    if rdtype not in RDTYPES:
        raise CheckError(f"unsupported rdtype {rdtype!r}; use one of {', '.join(RDTYPES)}")
    transport = request.get("transport", "udp")
    if transport not in ("udp", "tcp"):
        raise CheckError(f"unsupported transport {transport!r}; use udp or tcp")
    timeout = float(request.get("timeout", 3.0))
    nameservers, search, configured_ndots = read_resolv_conf(resolv_conf_path())
    port = int(os.environ.get(DNS_PORT_ENV) or 53)
    ndots = 1 if configured_ndots is None else configured_ndots
    name = str(request["name"])
    if rdtype == "PTR" and _is_ip(name):
        names = [dns.reversename.from_address(name).to_text()]
    else:
        names = qnames_to_try(name, search, ndots, bool(request.get("search", False)))
    deadline = time.monotonic() + timeout
    tried: list[Json] = []
    detail: Json = {"names_tried": tried, "nameservers": nameservers, "port": port, "transport": transport,
                    "search": search, "ndots": ndots, "answers": [], "records": [], "qname": None}
    outcome = "timeout"
    for qname in names:
        query = dns.message.make_query(qname, rdtype)
        response, server, latency, failure = ask_nameservers(query, nameservers, port, transport, deadline)
        detail.update(qname=qname, nameserver=server, latency_ms=latency)
        if response is None:
            outcome = failure
            tried.append({"qname": qname, "rcode": failure, "nameserver": server})
            break
        truncated = bool(response.flags & dns.flags.TC)
        entry: Json = {"qname": qname, "nameserver": server, "latency_ms": latency, "truncated": truncated}
        detail["truncated"] = truncated
        if truncated and transport == "udp" and server is not None:
            # glibc (res_send.c) and Go (dnsclient_unix.go) drop a truncated UDP answer and ask again over TCP.
            response, _, tcp_latency, failure = ask_nameservers(query, [server], port, "tcp", deadline)
            entry["tcp_retry"] = detail["tcp_retry"] = True
            if response is None:
                outcome = failure
                tried.append({**entry, "rcode": failure})
                break
            detail["latency_ms"] = entry["latency_ms"] = round((latency or 0.0) + (tcp_latency or 0.0), 3)
        outcome = dns.rcode.to_text(response.rcode())
        tried.append({**entry, "rcode": outcome})
        if outcome != "NXDOMAIN":
            detail.update(answers_of(response, rdtype))
            break
    return outcome, detail


SERVER_FAILURES = ("SERVFAIL", "REFUSED", "NOTIMP", "FORMERR")


def ask_nameservers(
    query: Any, nameservers: list[str], port: int, transport: str, deadline: float
) -> tuple[Any, str | None, float | None, str]:
    """The first usable response (None when every nameserver failed) and the last failure as an outcome."""
    import dns.exception
    import dns.query
    import dns.rcode

    failure, server = "timeout", None
    for server in nameservers:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        started = time.monotonic()
        try:
            if transport == "tcp":
                response = dns.query.tcp(query, server, timeout=remaining, port=port)
            else:
                response = dns.query.udp(query, server, timeout=remaining, port=port)
        except dns.exception.Timeout:
            failure = "timeout"
            continue
        except OSError as err:
            failure = classify_connect_error(err)
            continue
        rcode = dns.rcode.to_text(response.rcode())
        if rcode in SERVER_FAILURES:
            failure = rcode
            continue
        return response, server, ms_since(started), ""
    return None, server, None, failure


def answers_of(response: Any, rdtype: str) -> Json:
    import dns.rdatatype

    wanted = dns.rdatatype.from_text(rdtype)
    answers, records = [], []
    for rrset in response.answer:
        for rdata in rrset:
            records.append(f"{rrset.name.to_text()} {dns.rdatatype.to_text(rrset.rdtype)} {rdata.to_text()}")
            if rrset.rdtype == wanted:
                answers.append(normalised_answer(rdata, rdtype))
    return {"answers": sorted(answers), "records": sorted(records)}


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------------------------- sockets


def gai_error_name(code: int) -> str:
    for attr in dir(socket):
        if attr.startswith("EAI_") and getattr(socket, attr) == code:
            return attr
    return f"EAI_{code}"


def check_getaddrinfo(request: Json) -> tuple[str, Json]:
    name, port = str(request["name"]), int(request["port"])
    try:
        infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        return "gaierror", {"errno": gai_error_name(err.errno or 0), "error": str(err)}
    addresses = sorted({str(info[4][0]) for info in infos})
    return "ok", {"addresses": addresses}


def resolve_host(host: str, port: int) -> tuple[str | None, Json]:
    """First address of ``host`` (an IP passes through); None plus the gaierror when it does not resolve."""
    if _is_ip(host):
        return host, {}
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        return None, {"errno": gai_error_name(err.errno or 0), "error": str(err)}
    return str(infos[0][4][0]), {"resolved": sorted({str(i[4][0]) for i in infos})}


def classify_connect_error(err: OSError) -> str:
    if isinstance(err, ConnectionRefusedError):
        return "refused"
    if isinstance(err, (TimeoutError, socket.timeout)):
        return "blocked"
    if err.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT):
        return "blocked"
    return "probe-error"


def check_tcp(request: Json) -> tuple[str, Json]:
    host, port = str(request["host"]), int(request["port"])
    timeout = float(request.get("timeout", 2.0))
    address, detail = resolve_host(host, port)
    if address is None:
        return "unresolved", detail
    detail["address"] = address
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect((address, port))
        except OSError as err:
            detail["error"] = error_text(err)
            return classify_connect_error(err), detail
    return "allowed", detail


def check_http(request: Json) -> tuple[str, Json]:
    import urllib.error  # here, not at the top: most probe programs never ask HTTP
    import urllib.parse
    import urllib.request

    url = str(request["url"])
    timeout = float(request.get("timeout", 3.0))
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise CheckError(f"http url must be http(s)://host[:port]/path, got {url!r}")
    address, detail = resolve_host(parsed.hostname, parsed.port or 80)
    if address is None:
        return "unresolved", detail
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as err:
        status, body = err.code, err.read()
    except urllib.error.URLError as err:
        reason = err.reason
        detail["error"] = error_text(reason) if isinstance(reason, BaseException) else str(reason)
        return (classify_connect_error(reason) if isinstance(reason, OSError) else "probe-error"), detail
    except OSError as err:
        detail["error"] = error_text(err)
        return classify_connect_error(err), detail
    detail["status"] = status
    text = body.decode("utf-8", "replace")
    try:
        detail["json"] = json.loads(text)
    except ValueError:
        detail["text"] = text[:4000]
    return "ok", detail


# ---------------------------------------------------------------------------------------------- nats


def tls_context(tls: Json | None) -> tuple[ssl.SSLContext | None, str | None]:
    if not tls:
        return None, None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=str(tls["ca_pem"]))
    return context, tls.get("hostname") or None


def server_info(nc: Any) -> Json:
    info = dict(getattr(nc, "_server_info", None) or {})
    keep = ("server_id", "server_name", "connect_urls", "ldm", "tls_required", "host", "port", "version")
    return {k: info.get(k) for k in keep}


def pool_of(nc: Any) -> list[Json]:
    return [{"url": srv.uri.geturl(), "discovered": bool(srv.discovered), "tls_name": srv.tls_name}
            for srv in list(getattr(nc, "_server_pool", []))]


def attempts_of(nc: Any) -> list[Json]:
    """The server pool with each URL's failed attempts since it last worked (nats-py resets them on connect)."""
    return [{"url": srv.uri.geturl(), "failed_attempts": int(srv.reconnects), "discovered": bool(srv.discovered)}
            for srv in list(getattr(nc, "_server_pool", []))]


def connected_url(nc: Any) -> str | None:
    url = getattr(nc, "connected_url", None)
    return None if url is None else str(url.geturl())


async def check_nats(request: Json) -> tuple[str, Json]:
    try:
        from nats.aio.client import Client
    except ImportError as err:
        raise CheckError(f"nats-py is not available: {err}") from err
    servers = [str(s) for s in request["servers"]]
    connect_timeout = float(request.get("connect_timeout", 2.0))
    context, tls_hostname = tls_context(request.get("tls"))
    attempts: list[str] = []
    discovered_events: list[list[str]] = []
    nc = Client()

    rejected = asyncio.Event()

    async def on_error(err: Exception) -> None:
        attempts.append(error_text(err))
        if isinstance(err, ssl.SSLCertVerificationError) and len(servers) == 1:
            rejected.set()  # the one server's certificate does not cover the name: retrying cannot change that

    async def on_discovered() -> None:
        discovered_events.append([str(u.geturl()) for u in nc.discovered_servers])

    options: Json = {
        "servers": servers, "connect_timeout": connect_timeout, "max_reconnect_attempts": 1,
        "reconnect_time_wait": 0, "dont_randomize": bool(request.get("dont_randomize", True)),
        "error_cb": on_error, "discovered_server_cb": on_discovered, "allow_reconnect": True,
    }
    if context is not None:
        options["tls"] = context
        if tls_hostname:
            options["tls_hostname"] = tls_hostname
    detail: Json = {"servers_requested": servers, "attempts": attempts}
    bound = connect_timeout * (2 * len(servers) + 1) + 2.0
    try:
        await connect_unless(nc.connect(**options), rejected, bound)
    except BaseException as err:
        if isinstance(err, (KeyboardInterrupt, SystemExit)):
            raise
        last = attempts[-1] if attempts else error_text(err)
        detail.update(error_class=type(err).__name__, error=str(err), last_attempt_error=last,
                      servers=pool_of(nc))
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), 2.0)
        return "failed", detail
    try:
        wait = float(request.get("wait_discovered", 0.0))
        deadline = time.monotonic() + wait
        while wait > 0 and not nc.discovered_servers and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        detail.update(server_info=server_info(nc), connected_url=connected_url(nc), servers=pool_of(nc),
                      discovered_servers=[str(u.geturl()) for u in nc.discovered_servers],
                      discovered_events=discovered_events)
        if request.get("roundtrip", True):
            detail["roundtrip"] = await nats_roundtrip(nc, connect_timeout)
            if not detail["roundtrip"]["ok"]:
                return "failed", detail
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), 2.0)
    return "ok", detail


async def connect_unless(connecting: Any, rejected: asyncio.Event, bound: float) -> None:
    """Awaits ``connecting`` within ``bound`` seconds, or until ``rejected`` is set (then raises). nats-py retries
    a server whose certificate failed verification, and that retry hangs until the bound (8 s per dial): a
    verdict that retrying cannot change is taken at once."""
    task = asyncio.ensure_future(connecting)
    gave_up = asyncio.ensure_future(rejected.wait())
    try:
        done, _ = await asyncio.wait({task, gave_up}, timeout=bound, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gave_up.cancel()
    if task in done:
        task.result()
        return
    task.cancel()
    await asyncio.wait({task}, timeout=2.0)  # nats-py may swallow the cancellation: do not wait on it forever
    if task.done() and not task.cancelled():
        task.exception()  # retrieved: no "exception was never retrieved" warning
    if rejected.is_set():
        raise ssl.SSLCertVerificationError("the server's certificate does not cover the name dialled")
    raise TimeoutError(f"no connection within {bound:g}s")


async def nats_roundtrip(nc: Any, timeout: float) -> Json:
    subject = f"natsnet.probe.{os.getpid()}.{time.monotonic_ns()}"
    received: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def on_message(msg: Any) -> None:
        if not received.done():
            received.set_result(bytes(msg.data))

    started = time.monotonic()
    try:
        sub = await nc.subscribe(subject, cb=on_message)
        await nc.flush(timeout=timeout)
        await nc.publish(subject, b"natsnet")
        data = await asyncio.wait_for(received, timeout)
        await sub.unsubscribe()
    except Exception as err:
        return {"ok": False, "error": error_text(err), "elapsed_ms": ms_since(started)}
    return {"ok": data == b"natsnet", "elapsed_ms": ms_since(started)}



async def _connect_one(servers: list[str], request: Json) -> Any:
    from nats.aio.client import Client

    context, tls_hostname = tls_context(request.get("tls"))
    nc = Client()
    options: Json = {"servers": servers, "connect_timeout": float(request.get("connect_timeout", 2.0)),
                     "max_reconnect_attempts": 1, "reconnect_time_wait": 0, "dont_randomize": True,
                     "allow_reconnect": False}
    if context is not None:
        options["tls"] = context
        if tls_hostname:
            options["tls_hostname"] = tls_hostname
    await nc.connect(**options)
    return nc


async def check_relay(request: Json) -> tuple[str, Json]:
    """Subscribe through ``subscribe`` servers, publish through ``publish`` servers: does a message cross?"""
    timeout = float(request.get("timeout", 5.0))
    detail: Json = {}
    subscriber = publisher = None
    try:
        subscriber = await _connect_one([str(s) for s in request["subscribe"]], request)
        publisher = await _connect_one([str(s) for s in request["publish"]], request)
        detail["subscriber_server"] = server_info(subscriber).get("server_name")
        detail["publisher_server"] = server_info(publisher).get("server_name")
        subject = f"natsnet.relay.{os.getpid()}.{time.monotonic_ns()}"
        received: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def on_message(msg: Any) -> None:
            if not received.done():
                received.set_result(bytes(msg.data))

        await subscriber.subscribe(subject, cb=on_message)
        await subscriber.flush(timeout=timeout)
        started = time.monotonic()
        sent = 0
        while not received.done() and time.monotonic() - started < timeout:
            await publisher.publish(subject, b"natsnet-relay")
            sent += 1
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(received), 0.1)
        detail.update(published=sent, elapsed_ms=ms_since(started))
        return ("ok" if received.done() else "failed"), detail
    except Exception as err:
        detail.update(error_class=type(err).__name__, error=error_text(err))
        return "failed", detail
    finally:
        for nc in (subscriber, publisher):
            if nc is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(nc.close(), 2.0)


async def _js_api(nc: Any, subject: str, body: Json | None, timeout: float) -> Json:
    """One JetStream API request; the answer's JSON (an ``error`` member when the server refused)."""
    msg = await nc.request(subject, json.dumps(body or {}).encode(), timeout=timeout)
    answer = json.loads(bytes(msg.data) or b"{}")
    return answer if isinstance(answer, dict) else {"error": {"description": f"unexpected answer {answer!r}"}}


async def check_jetstream(request: Json) -> tuple[str, Json]:
    """Through ``servers`` (the JetStream API, as any client uses it): create the stream when ``create`` (its
    ``subjects``, ``replicas``, file storage; one that exists already is fine), publish ``publish`` messages on
    its first subject, each acknowledged (stored by a quorum of its replicas), then the stream's info (state,
    cluster: leader and replicas) as its leader reports it."""
    timeout = float(request.get("timeout", 5.0))
    stream = str(request["stream"])
    subjects = [str(s) for s in request.get("subjects") or [f"{stream.lower()}.>"]]
    detail: Json = {"stream": stream}
    nc = None
    try:
        nc = await _connect_one([str(s) for s in request["servers"]], request)
        detail["server"] = server_info(nc).get("server_name")
        if request.get("create"):
            config = {"name": stream, "subjects": subjects, "num_replicas": int(request.get("replicas", 1)),
                      "storage": "file"}
            created = await _js_api(nc, f"$JS.API.STREAM.CREATE.{stream}", config, timeout)
            exists = (created.get("error") or {}).get("err_code") == 10058  # stream name already in use
            if created.get("error") and not exists:
                detail.update(error=f"stream create: {created['error']}")
                return "failed", detail
        subject = subjects[0].replace(">", "msg").replace("*", "msg")
        acked: list[Any] = []
        for index in range(int(request.get("publish", 0))):
            ack = await _js_api(nc, subject, {"n": index}, timeout)
            if ack.get("error"):
                detail.update(acked=acked, error=f"publish {index}: {ack['error']}")
                return "failed", detail
            acked.append(ack.get("seq"))
        detail["acked"] = acked
        info = await _js_api(nc, f"$JS.API.STREAM.INFO.{stream}", None, timeout)
        if info.get("error"):
            detail.update(error=f"stream info: {info['error']}")
            return "failed", detail
        detail.update(state=info.get("state") or {}, cluster=info.get("cluster") or {},
                      replicas=(info.get("config") or {}).get("num_replicas"))
        return "ok", detail
    except Exception as err:
        detail.update(error_class=type(err).__name__, error=error_text(err))
        return "failed", detail
    finally:
        if nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), 2.0)


# ---------------------------------------------------------------------------------------------- batch


SyncCheck = Callable[[Json], tuple[str, Json]]
SYNC_CHECKS: dict[str, SyncCheck] = {
    "dns": check_dns, "getaddrinfo": check_getaddrinfo, "tcp": check_tcp, "http": check_http,
}


async def run_one(request: Json, limit: asyncio.Semaphore) -> Json:
    kind = str(request["kind"])
    timeout = float(request.get("timeout") or request.get("connect_timeout") or 5.0)
    started = time.monotonic()
    async with limit:
        started = time.monotonic()
        try:
            if kind == "nats":
                outcome, detail = await check_nats(request)
            elif kind == "relay":
                outcome, detail = await check_relay(request)
            elif kind == "jetstream":
                outcome, detail = await check_jetstream(request)
            else:
                check = SYNC_CHECKS[kind]
                outcome, detail = await asyncio.wait_for(asyncio.to_thread(check, request), timeout + 5.0)
        except TimeoutError:
            outcome, detail = "timeout" if kind in ("dns", "getaddrinfo") else "blocked", {"error": "overran"}
        except Exception as err:
            outcome, detail = "probe-error", {"error": error_text(err),
                                              "traceback": traceback.format_exc(limit=5)}
    return {"key": request["key"], "kind": kind, "outcome": outcome, "detail": detail,
            "elapsed_ms": ms_since(started)}


async def run_batch(batch: Json) -> Json:
    started = time.monotonic()
    limit = asyncio.Semaphore(int(batch.get("concurrency", 8)))
    results = await asyncio.gather(*(run_one(r, limit) for r in batch["requests"]))
    return {"results": list(results), "resolv_conf": read_text(resolv_conf_path()),
            "hostname": socket.gethostname(), "elapsed_ms": ms_since(started)}


def answer_batch(text: str) -> Json:
    """The answer to a batch given as JSON text; a malformed batch gets a top-level ``error``."""
    try:
        batch = json.loads(text)
    except ValueError as err:
        return {"error": f"batch is not valid JSON: {err}", "results": []}
    problem = validate_batch(batch)
    if problem is not None:
        return {"error": problem, "results": []}
    try:
        return asyncio.run(run_batch(batch))
    except Exception as err:
        return {"error": f"probe failed: {error_text(err)}", "results": []}


# ---------------------------------------------------------------------------------------------- watch


class EventWriter:
    """JSON lines with monotonic and wall timestamps, flushed one by one. ``fields`` lead every event (a
    session's watch events carry their watch's id); ``write`` puts any record through the same lock."""

    def __init__(self, stream: Any, lock: threading.Lock | None = None, fields: Json | None = None) -> None:
        self.stream = stream
        self.lock = lock or threading.Lock()
        self.fields = dict(fields or {})

    def __call__(self, event: str, **fields: Any) -> None:
        self.write({**self.fields, "event": event, "mono": time.monotonic(), "ts": time.time(), **fields})

    def write(self, record: Json) -> None:
        line = json.dumps(record, default=str)
        with self.lock:
            self.stream.write(line + "\n")
            self.stream.flush()


def read_request(stream: Any) -> Json:
    """One JSON object from the start of ``stream`` (a single line, or the whole stream)."""
    decoder = json.JSONDecoder()
    buffer = ""
    for line in stream:
        buffer += line
        with contextlib.suppress(ValueError):
            request, _ = decoder.raw_decode(buffer.strip())
            if isinstance(request, dict):
                return request
            raise ValueError("watch request must be a JSON object")
    request, _ = decoder.raw_decode(buffer.strip())
    if not isinstance(request, dict):
        raise ValueError("watch request must be a JSON object")
    return request


def stdin_is_stream(stream: Any) -> bool:
    """A pipe, socket or terminal (a controller can close it to stop us); a plain file is not."""
    try:
        return not stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError, AttributeError):
        return False


async def watch(request: Json, emit: EventWriter, stop: asyncio.Event) -> None:
    from nats.aio.client import Client

    servers = [str(s) for s in request["servers"]]
    subject = str(request.get("subject", "natsnet.watch"))
    duration = float(request.get("duration", 30.0))
    interval = float(request.get("publish_interval", 0.2))
    context, tls_hostname = tls_context(request.get("tls"))
    nc = Client()
    counters = {"received": 0, "sent": 0, "last_seq": -1}

    def where() -> Json:
        return {"url": connected_url(nc), "server_name": server_info(nc).get("server_name")}

    async def on_disconnected() -> None:
        emit("disconnected", url=connected_url(nc))

    async def on_reconnected() -> None:  # subscriptions were replayed: messages from next_seq on are new
        emit("reconnected", **where(), connect_urls=server_info(nc).get("connect_urls"), next_seq=counters["sent"])

    async def on_discovered() -> None:
        emit("discovered", servers=[str(u.geturl()) for u in nc.discovered_servers])

    async def on_error(err: Exception) -> None:  # after a failed attempt: which URLs have failed since they worked
        emit("error", text=error_text(err), pool=attempts_of(nc))

    async def on_lame_duck() -> None:
        emit("lame_duck", url=connected_url(nc))

    async def on_closed() -> None:
        emit("closed")

    async def on_message(msg: Any) -> None:
        counters["received"] += 1
        with contextlib.suppress(ValueError):
            counters["last_seq"] = int(msg.data)
        emit("message", seq=counters["last_seq"])

    options: Json = {
        "servers": servers, "dont_randomize": bool(request.get("dont_randomize", False)),
        "reconnect_time_wait": float(request.get("reconnect_time_wait", 0.5)),
        "max_reconnect_attempts": -1, "connect_timeout": float(request.get("connect_timeout", 2.0)),
        "disconnected_cb": on_disconnected, "reconnected_cb": on_reconnected, "error_cb": on_error,
        "discovered_server_cb": on_discovered, "closed_cb": on_closed, "lame_duck_mode_cb": on_lame_duck,
    }
    if context is not None:
        options["tls"] = context
        if tls_hostname:
            options["tls_hostname"] = tls_hostname
    try:
        await asyncio.wait_for(nc.connect(**{**options, "max_reconnect_attempts": 1}), duration)
    except Exception as err:
        watch_failed(emit, error_text(err))
        return
    nc.options["max_reconnect_attempts"] = -1
    info = server_info(nc)
    emit("connected", **where(), connect_urls=info.get("connect_urls"))
    await nc.subscribe(subject, cb=on_message)
    deadline = time.monotonic() + duration
    while not stop.is_set() and time.monotonic() < deadline:
        if nc.is_connected:
            try:
                await nc.publish(subject, str(counters["sent"]).encode())
                counters["sent"] += 1
            except Exception as err:
                emit("error", text=error_text(err))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
    summary: Json = {"connected": True, "reconnects": int(nc.stats.get("reconnects", 0)),
                     "last_url": connected_url(nc), "discovered_servers": [str(u.geturl()) for u in
                                                                            nc.discovered_servers]}
    with contextlib.suppress(Exception):
        await asyncio.wait_for(nc.close(), 2.0)
    emit("summary", **summary, received=counters["received"], sent=counters["sent"],
         last_seq=counters["last_seq"])


async def watch_main(request: Json, emit: EventWriter, watch_stdin: bool) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    if watch_stdin:
        def wait_eof() -> None:
            with contextlib.suppress(Exception):
                while sys.stdin.readline():
                    pass
            loop.call_soon_threadsafe(stop.set)

        threading.Thread(target=wait_eof, daemon=True).start()
    await watch(request, emit, stop)


def watch_request_problem(request: Any) -> str | None:
    if not isinstance(request, dict):
        return "watch request must be a JSON object"
    if not isinstance(request.get("servers"), list) or not request["servers"]:
        return "watch request needs a non-empty 'servers' list"
    return None


def watch_failed(emit: EventWriter, text: str) -> None:
    """A watch that could not run: its error, then the summary every watch ends with."""
    emit("error", text=text)
    emit("summary", connected=False, reconnects=0, last_url=None, received=0, sent=0)


def run_watch() -> int:
    emit = EventWriter(sys.stdout)
    try:
        request = read_request(sys.stdin)
    except ValueError as err:
        watch_failed(emit, f"bad watch request: {err}")
        return 2
    problem = watch_request_problem(request)
    if problem is not None:
        watch_failed(emit, f"bad watch request: {problem}")
        return 2
    try:
        asyncio.run(watch_main(request, emit, stdin_is_stream(sys.stdin)))
    except Exception as err:
        watch_failed(emit, f"probe failed: {error_text(err)}")
        return 1
    return 0


class BackgroundWatch:
    """A watch beside a session's batches: its own thread and event loop; ``stop`` asks it to end, and it then
    writes its summary."""

    def __init__(self, request: Json, emit: EventWriter) -> None:
        self._request = request
        self._emit = emit
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        async def main() -> None:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            self._started.set()
            await watch(self._request, self._emit, self._stop)

        try:
            asyncio.run(main())
        except Exception as err:
            watch_failed(self._emit, f"probe failed: {error_text(err)}")
        finally:
            self._started.set()

    def stop(self) -> None:
        self._started.wait(10)
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # its loop has ended already
                self._loop.call_soon_threadsafe(self._stop.set)


def session_command(line: str) -> tuple[str, str, Any] | None:
    """``("watch", id, request)`` or ``("unwatch", id, None)`` for a session's watch commands; None for a batch."""
    try:
        command = json.loads(line)
    except ValueError:
        return None
    if isinstance(command, dict) and "watch" in command:
        return "watch", str(command["watch"]), command.get("request")
    if isinstance(command, dict) and "unwatch" in command:
        return "unwatch", str(command["unwatch"]), None
    return None


def serve(stdin: Any = None, stdout: Any = None) -> int:
    """``serve``: one batch per line on stdin, its answer as one line on stdout, until stdin ends. One process
    answers every batch of a probe pod: the interpreter and its imports start once, not once per batch.

    Watches run beside the batches, in the same process: ``{"watch": ID, "request": {...}}`` starts one, whose
    events are lines that begin ``{"watch": ID``; ``{"unwatch": ID}`` stops it (its last event is ``summary``).
    Batches are answered in order by one thread, so a watch command is read while a batch runs."""
    stdin = stdin or sys.stdin
    out = EventWriter(stdout or sys.stdout)
    batches: queue.Queue[str | None] = queue.Queue()

    def answer_batches() -> None:
        while (line := batches.get()) is not None:
            out.write(answer_batch(line))

    answering = threading.Thread(target=answer_batches, daemon=True)
    answering.start()
    watches: dict[str, BackgroundWatch] = {}
    for line in stdin:
        if not line.strip():
            continue
        command = session_command(line)
        if command is None:
            batches.put(line)
            continue
        kind, watch_id, request = command
        emit = EventWriter(out.stream, out.lock, {"watch": watch_id})
        if kind == "unwatch":
            if watch_id in watches:
                watches[watch_id].stop()
        elif watch_id in watches:
            emit("error", text=f"watch {watch_id} runs already")
        elif (problem := watch_request_problem(request)) is not None:
            watch_failed(emit, f"bad watch request: {problem}")
        else:
            watches[watch_id] = BackgroundWatch(request, emit)
    batches.put(None)
    answering.join()
    for running in watches.values():
        running.stop()
    for running in watches.values():
        running.thread.join(timeout=10)
    return 0


def main(argv: list[str]) -> int:
    if argv[1:2] == ["watch"]:
        return run_watch()
    if argv[1:2] == ["serve"]:
        return serve()
    answer = answer_batch(sys.stdin.read())
    json.dump(answer, sys.stdout, default=str)
    sys.stdout.write("\n")
    return 0 if not answer.get("error") else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
