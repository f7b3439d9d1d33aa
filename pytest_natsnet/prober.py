"""The ``natsnet_probe`` helper: run batched probe requests from inside the cluster network."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_natsnet.probe.model import (
    ProbeBatch,
    ProbeRequest,
    ProbeResult,
    TlsOptions,
    WatchRequest,
    by_key,
    parse_answer,
)
from pytest_natsnet.providers.base import CLIENT_LABELS, Deployment, ProbeTarget, WatchHandle


@dataclass
class Prober:
    """Runs probes for one cell. ``namespace`` defaults to the cell's; ``external`` runs outside the cluster."""

    deployment: Deployment
    ca_pem: str | None = None

    def target(
        self,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
        name: str = "natsnet-probe",
        external: bool = False,
    ) -> ProbeTarget:
        return ProbeTarget(
            namespace or self.deployment.namespace,
            dict(CLIENT_LABELS if labels is None else labels),
            name,
            external,
        )

    def tls(self, hostname: str | None = None) -> TlsOptions:
        """TLS options trusting the run's CA (the cell must be a TLS cell)."""
        if self.ca_pem is None:
            raise ValueError("this cell has no TLS material: it is not a TLS cell")
        return TlsOptions(ca_pem=self.ca_pem, hostname=hostname)

    def run(
        self,
        requests: Sequence[ProbeRequest],
        *,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
        name: str = "natsnet-probe",
        external: bool = False,
        timeout: float = 120.0,
        concurrency: int = 8,
    ) -> dict[str, ProbeResult]:
        """One exec answering every request; results by key (the count is checked)."""
        batch = ProbeBatch(tuple(requests), concurrency=concurrency)
        answer = self.deployment.probe(
            self.target(namespace, labels, name, external), batch.to_json(), timeout
        )
        return by_key(parse_answer(answer, batch))

    def raw(self, requests: Sequence[ProbeRequest], **kwargs: Any) -> dict[str, Any]:
        """The program's JSON answer itself (resolv.conf, hostname, results)."""
        batch = ProbeBatch(tuple(requests))
        target = self.target(
            kwargs.get("namespace"),
            kwargs.get("labels"),
            kwargs.get("name", "natsnet-probe"),
            kwargs.get("external", False),
        )
        return self.deployment.probe(target, batch.to_json(), kwargs.get("timeout", 120.0))

    def watch(
        self,
        request: WatchRequest,
        *,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
        name: str = "natsnet-probe",
        external: bool = False,
    ) -> WatchHandle:
        """Starts a watching client in the probe pod ``name`` (by default the one ``run`` uses), beside its
        probes."""
        return self.deployment.watch(self.target(namespace, labels, name, external), request.to_json())
