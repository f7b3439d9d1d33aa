"""What the sandbox's pieces exchange: a pod's place on the sandbox network."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

EXTERNAL_ANNOTATION = "sandbox.natsnet.io/network"
"""A pod annotated ``external`` runs outside the cluster network, as a CI runner next to a kind cluster: on the
outside bridge, with a route to the node's address only (no pod IP, no Service IP), the node's resolver instead of
cluster DNS (which answers nothing); it reaches the cluster through NodePorts on the node's address."""


@dataclass(frozen=True)
class ContainerPort:
    name: str
    port: int
    protocol: str = "TCP"


@dataclass(frozen=True)
class PodNet:
    """A running pod as the network sees it.

    ``veth`` is the bridge-side interface of the pod's link; NetworkPolicy is enforced on it.
    """

    namespace: str
    name: str
    labels: Mapping[str, str]
    ip: str
    veth: str
    ports: tuple[ContainerPort, ...] = field(default_factory=tuple)
