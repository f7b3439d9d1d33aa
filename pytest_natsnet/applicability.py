"""Whether a suite applies to a cell, decided from what the cell deployed, the way the expectations are computed:
NetworkPolicies in its namespace, TLS blocks in the parsed nats.conf, the advertise settings, readiness gates.
The matrix setting that produced a cell is only a label: a values file that brings a feature gets the suite
that checks it. Pure; each function returns the reason the suite does not apply, or None when it does."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pytest_natsnet import kube
from pytest_natsnet.expect.nats import ServerConf
from pytest_natsnet.expect.netpol import policy_types
from pytest_natsnet.failures import DeclaredFailure
from pytest_natsnet.kube import Obj


def egress_policies(policies: Iterable[Obj], namespace: str, declared: Iterable[str] = ()) -> str | None:
    """dns_egress: a NetworkPolicy in ``namespace`` restricts egress (or the cell declares dns-blocked, which
    only such a policy can cause: the suite then reports that the two disagree)."""
    if DeclaredFailure.DNS_BLOCKED in set(declared):
        return None
    restricting = [
        kube.name(p) for p in policies if kube.namespace_of(p) == namespace and "Egress" in policy_types(kube.spec(p))
    ]
    if restricting:
        return None
    return "no NetworkPolicy in the cell's namespace restricts egress (none has policyTypes Egress)"


def client_tls(servers: Sequence[ServerConf]) -> str | None:
    """tls_names (clients): a server's nats.conf has a ``tls`` block on the client port."""
    if any(server.config.get("tls") for server in servers):
        return None
    return "no server's nats.conf has a tls block for clients"


def route_tls(servers: Sequence[ServerConf]) -> str | None:
    """tls_names (routes): a server's nats.conf has ``cluster.tls`` and routes to verify."""
    if not any(server.route_tls for server in servers):
        return "no server's nats.conf has a cluster.tls block"
    if not any(server.routes for server in servers if server.route_tls):
        return "the TLS servers configure no routes (their hostnames are what route TLS verifies)"
    return None


def advertising(servers: Sequence[ServerConf]) -> str | None:
    """advertise (learned URLs): some server gossips client URLs, i.e. not every one has ``no_advertise``."""
    if servers and all(server.no_advertise for server in servers):
        return "every server's nats.conf has cluster.no_advertise: true (clients learn no URLs)"
    return None


def readiness_gate(pods: Iterable[Obj], condition_type: str) -> str | None:
    """dns_records (not-ready pods): a server pod declares the readinessGate the plugin flips."""
    for pod in pods:
        gates = [gate.get("conditionType") for gate in kube.spec(pod).get("readinessGates") or []]
        if condition_type in gates:
            return None
    return (
        f"no server pod declares the readinessGate {condition_type}: add charts-values/readiness-gate.yaml to "
        "the cell's values to test publishNotReadyAddresses"
    )



def jetstream(servers: Sequence[ServerConf]) -> str | None:
    """bootstrap (JetStream): a server's nats.conf has a ``jetstream`` block."""
    if any(server.config.get("jetstream") for server in servers):
        return None
    return "no server's nats.conf has a jetstream block"


def publishes_not_ready(services: Iterable[Obj], name: str) -> str | None:
    """bootstrap (dials before listeners): the headless Service ``name`` publishes not-ready addresses."""
    for service in services:
        if kube.name(service) == name and kube.spec(service).get("publishNotReadyAddresses"):
            return None
    return f"Service {name} does not publish not-ready addresses: peers cannot dial a pod before it is Ready"


def store_on_claim(pod: Obj) -> str | None:
    """bootstrap (data survives a replacement): the server's JetStream store is on a PersistentVolumeClaim."""
    if any("persistentVolumeClaim" in volume for volume in kube.spec(pod).get("volumes") or []):
        return None
    return f"pod {kube.name(pod)} mounts no PersistentVolumeClaim: a replaced pod starts with an empty store"
