"""What the sandbox's pieces exchange: a pod's place on the sandbox network."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


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
