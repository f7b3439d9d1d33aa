"""Rulesets into network namespaces through libnftables, one context kept open per namespace.

An ``nft`` process costs little CPU but waits ~12 ms on exit for the kernel to release its netlink socket (an
RCU grace period); the sandbox re-programs every pod's kube-proxy rules whenever an endpoint changes, so with a
few cells side by side that wait was most of its reconcile loop. A libnftables context keeps its socket: the
same script applies in ~0.1 ms. The rules, the parser and the kernel's checks are nft's own, as with the command.

``setns`` moves only the calling thread, so each apply runs on a worker thread that joins the target namespace
and returns to the process's own afterwards (a thread inside a namespace keeps it alive); a context is created
there, so its socket lives there. An open socket keeps a deleted namespace (and its veth) alive too:
:meth:`LibNft.release` before deleting one. Without the library (another distribution), the
``nft`` command does the work (:class:`CommandNft`).
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import threading
from collections.abc import Mapping
from typing import Any, Protocol

from pytest_natsnet.sandbox import nft
from pytest_natsnet.sandbox.netns import enter, netns_path

LIBRARY = "libnftables.so.1"
HOME = "/proc/self/ns/net"
"""The process's network namespace (its main thread's), where a worker returns after each apply."""
WORKERS = 4


class Applier(Protocol):
    def apply(self, netns: str, script: str) -> None: ...

    def apply_each(self, scripts: Mapping[str, str]) -> dict[str, nft.NftApplyError]: ...

    def release(self, netns: str) -> None: ...

    def close(self) -> None: ...


class CommandNft:
    """``ip netns exec <netns> nft -f -`` per script, namespaces concurrently."""

    def apply(self, netns: str, script: str) -> None:
        nft.apply(netns, script)

    def apply_each(self, scripts: Mapping[str, str]) -> dict[str, nft.NftApplyError]:
        return nft.apply_each(scripts)

    def release(self, netns: str) -> None:
        """Nothing is kept open."""

    def close(self) -> None:
        """Nothing is kept open."""


def load_library() -> Any | None:
    """libnftables with the few functions used here typed, or None when it is not installed."""
    try:
        lib = ctypes.CDLL(LIBRARY)
    except OSError:
        return None
    lib.nft_ctx_new.argtypes, lib.nft_ctx_new.restype = [ctypes.c_uint32], ctypes.c_void_p
    lib.nft_ctx_free.argtypes, lib.nft_ctx_free.restype = [ctypes.c_void_p], None
    for name in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
        getattr(lib, name).argtypes, getattr(lib, name).restype = [ctypes.c_void_p], ctypes.c_int
    for name in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
        getattr(lib, name).argtypes, getattr(lib, name).restype = [ctypes.c_void_p], ctypes.c_char_p
    lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
    return lib


class LibNft:
    """libnftables contexts by network namespace, used from worker threads that join the namespace first."""

    def __init__(self, lib: Any, workers: int = WORKERS) -> None:
        self._lib = lib
        self._contexts: dict[str, int] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="natsnet-nft")

    def apply(self, netns: str, script: str) -> None:
        error = self._pool.submit(self._apply_here, netns, script).result()
        if error is not None:
            raise error

    def apply_each(self, scripts: Mapping[str, str]) -> dict[str, nft.NftApplyError]:
        futures = {name: self._pool.submit(self._apply_here, name, script) for name, script in scripts.items()}
        return {name: error for name, future in futures.items() if (error := future.result()) is not None}

    def release(self, netns: str) -> None:
        """Closes the namespace's context (and its netlink socket); the next apply there opens a new one."""
        with self._lock:
            lock = self._locks.setdefault(netns, threading.Lock())
        with lock:
            context = self._contexts.pop(netns, None)
            if context is not None:
                self._lib.nft_ctx_free(context)

    def close(self) -> None:
        for netns in list(self._contexts):
            self.release(netns)
        self._pool.shutdown(wait=True)

    def _apply_here(self, netns: str, script: str) -> nft.NftApplyError | None:
        with self._lock:
            lock = self._locks.setdefault(netns, threading.Lock())
        with lock:
            try:
                enter(netns_path(netns))
            except OSError as error:
                return nft.NftApplyError(netns, script, -1, f"cannot enter network namespace {netns}: {error}")
            try:
                return self._run(netns, script)
            finally:
                enter(HOME)

    def _run(self, netns: str, script: str) -> nft.NftApplyError | None:
        """The script through the namespace's context (created here, in the namespace, the first time)."""
        context = self._contexts.get(netns)
        if context is None:
            context = self._lib.nft_ctx_new(0)
            if not context:
                return nft.NftApplyError(netns, script, -1, "libnftables could not create a context")
            self._lib.nft_ctx_buffer_output(context)
            self._lib.nft_ctx_buffer_error(context)
            self._contexts[netns] = context
        code = self._lib.nft_run_cmd_from_buffer(context, script.encode())
        self._lib.nft_ctx_get_output_buffer(context)  # read (and so emptied) after every command
        message = (self._lib.nft_ctx_get_error_buffer(context) or b"").decode(errors="replace")
        if code != 0:
            return nft.NftApplyError(netns, script, code, message or f"libnftables returned {code}")
        return None


def open_applier() -> Applier:
    """libnftables when it is installed (the ``nftables`` package brings it), else the ``nft`` command."""
    lib = load_library()
    return LibNft(lib) if lib is not None else CommandNft()
