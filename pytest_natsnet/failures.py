"""The declared failures: the one vocabulary of ``expect`` (matrix.yaml, the natsnet_values marker, the
``# natsnet-expect:`` header of a values file), checked when those are loaded, never in the middle of a suite."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from pytest_natsnet.errors import ConfigError


class DeclaredFailure(StrEnum):
    """A documented failure a cell reproduces; a cell that declares none is expected healthy."""

    DNS_BLOCKED = "dns-blocked"
    """Pods in the cell's namespace cannot reach kube-dns (NetworkPolicy egress)."""
    MESH_SPLIT = "mesh-split"
    """The route mesh does not fully form."""
    ROUTE_TLS_MISMATCH = "route-tls-mismatch"
    """Route TLS handshakes fail hostname verification."""
    LEARNED_URLS_UNREACHABLE = "learned-urls-unreachable"
    """Advertised client URLs cannot be used by in-cluster clients."""
    BOOTSTRAP_DEADLOCK = "bootstrap-deadlock"
    """The servers never become Ready: their probe waits for JetStream (a meta leader, which needs routes) and the
    routes wait for per-pod DNS names, which only Ready pods get without publishNotReadyAddresses
    (nats-io/k8s#441)."""
    META_QUORUM_UNREACHABLE = "meta-quorum-unreachable"
    """The servers never become Ready: JetStream sizes its meta group from the route list (plus itself) and fewer
    servers than a quorum of it can ever join (a single replica whose only route is itself: a group of 2)."""


NEVER_READY: frozenset[DeclaredFailure] = frozenset(
    {DeclaredFailure.BOOTSTRAP_DEADLOCK, DeclaredFailure.META_QUORUM_UNREACHABLE}
)
"""Failures of a cell whose servers never become Ready: it is installed, not waited for, and only the tests that
say they cover the failure apply to it."""


def valid_names() -> str:
    return ", ".join(failure.value for failure in DeclaredFailure)


def parse_declared(names: Iterable[object], where: str) -> frozenset[DeclaredFailure]:
    """The declared failures named by ``names``; an unknown name is a :class:`ConfigError` naming ``where``,
    the bad name(s) and the valid ones."""
    known = {failure.value: failure for failure in DeclaredFailure}
    wanted = list(names)
    unknown = [name for name in wanted if not isinstance(name, str) or name not in known]
    if unknown:
        bad = ", ".join(repr(name) for name in unknown)
        raise ConfigError(where, f"unknown declared failure {bad}", f"use one of {valid_names()}")
    return frozenset(known[str(name)] for name in wanted)


def never_ready_reason(expect: Iterable[DeclaredFailure], covered: Iterable[str]) -> str | None:
    """Why a test does not apply to a cell whose servers never become Ready (its ``expect`` holds one of
    :data:`NEVER_READY`), unless the test covers each such failure (``covered``); None when it applies."""
    blocking = sorted(set(expect) & NEVER_READY - set(covered))
    if not blocking:
        return None
    return (f"the cell declares {', '.join(blocking)}: its servers never become Ready, and only tests that cover "
            "that failure apply")
