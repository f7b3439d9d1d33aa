"""A cell as it is deployed: the namespace with the run's labels, generated TLS Secrets, the rendered objects
and (helm source) the chart with its ``-f`` layers. The run and ``natsnet render`` both assemble cells here, so
``natsnet render --scenario X`` prints what a run deploys for X."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

from pytest_natsnet import kube
from pytest_natsnet.failures import NEVER_READY
from pytest_natsnet.kube import MANAGED_BY_LABEL, MANAGED_BY_VALUE, RUN_ID_LABEL, SCENARIO_LABEL, Obj
from pytest_natsnet.matrix import Scenario, namespace_for
from pytest_natsnet.providers.base import CellManifests
from pytest_natsnet.settings import NatsnetSettings
from pytest_natsnet.tlsgen import DEFAULT_DOMAIN, CertificateAuthority, TlsMaterial, tls_material
from pytest_natsnet.tools import Runner

RELEASE = "nats"
TLS_SECRETS = ("nats-ca", "nats-client-tls", "nats-route-tls")
"""The Secrets the chart's TLS settings mount (values files name them, the plugin generates them)."""


def cell_labels(run_id: str, scenario_id: str) -> dict[str, str]:
    """The labels of every namespace a run creates (``natsnet gc`` and the existing provider's sweep use them)."""
    value = re.sub(r"[^A-Za-z0-9]+$", "", re.sub(r"[^A-Za-z0-9._-]", "_", scenario_id)[:63])
    return {MANAGED_BY_LABEL: MANAGED_BY_VALUE, RUN_ID_LABEL: run_id, SCENARIO_LABEL: value}


def secrets_referenced(objects: Sequence[Obj]) -> set[str]:
    """Secret names that the pods of ``objects`` mount as volumes."""
    names = set()
    for obj in objects:
        template = kube.spec(obj).get("template", {}) if kube.kind(obj) != "Pod" else obj
        for volume in (template.get("spec") or {}).get("volumes") or []:
            if "secret" in volume:
                names.add(str(volume["secret"]["secretName"]))
    return names


def assemble_cell(
    settings: NatsnetSettings,
    scenario: Scenario,
    run_id: str,
    source: str,
    certificate_authority: Callable[[], CertificateAuthority],
    *,
    workdir: Path | None = None,
    runner: Runner | None = None,
    namespace: str | None = None,
    cluster_domain: str = DEFAULT_DOMAIN,
) -> tuple[CellManifests, TlsMaterial | None]:
    """Renders the cell from ``source`` and adds what the chart expects to exist: the TLS Secrets its values
    mount (signed by ``certificate_authority()``, asked only when needed). ``workdir`` keeps the helm source's
    ``-f`` layers for ``helm install``; ``namespace`` overrides the run's ``natsnet-<run id>-<cell id>``."""
    from pytest_natsnet.sources import render_source

    namespace = namespace or namespace_for(run_id, scenario.id)
    rendered = render_source(settings, scenario, namespace, RELEASE, source=source, runner=runner,
                             layers_dir=workdir)
    objects = rendered.objects
    tls = None
    present = {kube.name(o) for o in kube.of_kind(objects, "Secret")}
    if scenario.certs or set(TLS_SECRETS) & (secrets_referenced(objects) - present):
        tls = tls_material(certificate_authority(), scenario.certs or "good", namespace, RELEASE, cluster_domain)
        objects = [*tls.secrets, *objects]
    cell = CellManifests(scenario.id, namespace, RELEASE, tuple(objects), source, rendered.chart,
                         cell_labels(run_id, scenario.id), prerequisites=tuple(tls.secrets) if tls else (),
                         ready_expected=not scenario.expect & NEVER_READY)
    return cell, tls


def namespace_object(cell: CellManifests) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": cell.namespace, "labels": dict(cell.labels)}}


def documents(cell: CellManifests) -> str:
    """What the cell deploys as one YAML stream: its namespace, then every object in the cell's namespace."""
    objects = [namespace_object(cell)]
    for obj in cell.objects:
        placed = dict(obj)
        placed["metadata"] = {**(obj.get("metadata") or {}), "namespace": cell.namespace}
        objects.append(placed)
    return "".join("---\n" + yaml.safe_dump(o, sort_keys=False) for o in objects)
