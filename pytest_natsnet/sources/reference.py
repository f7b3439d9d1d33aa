"""The built-in ``reference`` source: what the official NATS chart 2.14.2 renders, without helm or network.

``render`` returns the objects of ``helm template <release> nats --namespace <ns>`` (no metadata.namespace,
the helm test hook left out), in helm's order, for values that use only the keys in
``pytest_natsnet.reference.schema``; any other key raises ``ConfigError`` naming it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pytest_natsnet.kube import Obj
from pytest_natsnet.reference import builders
from pytest_natsnet.reference.builders import Release
from pytest_natsnet.reference.schema import effective_values

# helm's install order of kinds (pkg/release/util/kind_sorter.go); other kinds follow, alphabetically.
HELM_KIND_ORDER = (
    "PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
    "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass",
    "PersistentVolume", "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole", "ClusterRoleList",
    "ClusterRoleBinding", "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList",
    "Service", "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
    "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress", "APIService",
)  # fmt: skip

# The chart's template files, by path (helm reads them in path order before sorting by kind).
TEMPLATES: tuple[tuple[str, Callable[[Release], Obj]], ...] = (
    ("config-map.yaml", builders.config_map),
    ("headless-service.yaml", builders.headless_service),
    ("nats-box/contexts-secret.yaml", builders.nats_box_contexts),
    ("nats-box/deployment.yaml", builders.nats_box_deployment),
    ("pod-disruption-budget.yaml", builders.pod_disruption_budget),
    ("service.yaml", builders.client_service),
    ("stateful-set.yaml", builders.stateful_set),
)
EXTRA_RESOURCES_TEMPLATE = "extra-resources.yaml"


def render(
    values: Mapping[str, Any],
    namespace: str,
    release: str = "nats",
    extra_resources: Sequence[Mapping[str, Any]] = (),
) -> list[Obj]:
    """The chart's objects for composed ``values``; ``extra_resources`` follow the values' extraResources."""
    effective = effective_values(values)
    chart = Release(name=release, namespace=namespace, values=effective)
    rendered: list[tuple[str, Obj]] = [(path, build(chart)) for path, build in TEMPLATES]
    extras = [*effective["extraResources"], *extra_resources]
    rendered += [(EXTRA_RESOURCES_TEMPLATE, copy.deepcopy(dict(obj))) for obj in extras]
    return [obj for _, obj in sorted(rendered, key=_helm_order)]


def _helm_order(item: tuple[str, Obj]) -> tuple[int, str, str]:
    path, obj = item
    kind = str(obj.get("kind", ""))
    rank = HELM_KIND_ORDER.index(kind) if kind in HELM_KIND_ORDER else len(HELM_KIND_ORDER)
    unknown_kind = "" if kind in HELM_KIND_ORDER else kind
    return rank, unknown_kind, path
