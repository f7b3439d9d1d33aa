"""The Kubernetes kinds pytest-natsnet reads and writes, and the sandbox serves: group, version, plural, scope,
verbs and subresources (pure data, one table for the client and the sandbox API)."""

from __future__ import annotations

from dataclasses import dataclass

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
READ_VERBS = ("get", "list", "watch")


@dataclass(frozen=True)
class Resource:
    """One served resource, as discovery describes it."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    verbs: tuple[str, ...] = ALL_VERBS
    subresources: tuple[str, ...] = ()
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def group_version(self) -> tuple[str, str]:
        return self.group, self.version


RESOURCES: tuple[Resource, ...] = (
    Resource("", "v1", "Namespace", "namespaces", False, ("create", "delete", "get", "list", "patch", "update",
                                                          "watch"), ("status",), ("ns",)),
    Resource("", "v1", "Node", "nodes", False, READ_VERBS, ("status",), ("no",)),
    Resource("", "v1", "Pod", "pods", True, ALL_VERBS, ("status", "log", "exec"), ("po",), ("all",)),
    Resource("", "v1", "Service", "services", True, ALL_VERBS, ("status",), ("svc",), ("all",)),
    Resource("", "v1", "Endpoints", "endpoints", True, READ_VERBS, (), ("ep",)),
    Resource("", "v1", "ConfigMap", "configmaps", True, ALL_VERBS, (), ("cm",)),
    Resource("", "v1", "Secret", "secrets", True),
    Resource("", "v1", "Event", "events", True, ALL_VERBS, (), ("ev",)),
    Resource("", "v1", "ServiceAccount", "serviceaccounts", True, ALL_VERBS, (), ("sa",)),
    Resource("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", True, ALL_VERBS, ("status",), ("pvc",)),
    Resource("", "v1", "PersistentVolume", "persistentvolumes", False, ALL_VERBS, ("status",), ("pv",)),
    Resource("apps", "v1", "StatefulSet", "statefulsets", True, ALL_VERBS, ("status",), ("sts",), ("all",)),
    Resource("apps", "v1", "Deployment", "deployments", True, ALL_VERBS, ("status",), ("deploy",), ("all",)),
    Resource("apps", "v1", "ReplicaSet", "replicasets", True, READ_VERBS, (), ("rs",), ("all",)),
    Resource("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", True, READ_VERBS),
    Resource("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", True, ALL_VERBS, ("status",), ("pdb",)),
    Resource("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", True, ALL_VERBS, (), ("netpol",)),
    Resource("storage.k8s.io", "v1", "StorageClass", "storageclasses", False, ALL_VERBS, (), ("sc",)),
    Resource("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", False,
             ("create",)),
)

BY_KIND: dict[str, Resource] = {r.kind: r for r in RESOURCES}
CLUSTER_SCOPED: frozenset[str] = frozenset(r.kind for r in RESOURCES if not r.namespaced)
WITH_STATUS: frozenset[str] = frozenset(r.kind for r in RESOURCES if "status" in r.subresources)


def group_versions() -> list[tuple[str, str]]:
    """Every served (group, version), core first, in table order."""
    seen: list[tuple[str, str]] = []
    for resource in RESOURCES:
        if resource.group_version not in seen:
            seen.append(resource.group_version)
    return seen


def by_plural(group: str, version: str, plural: str) -> Resource | None:
    for resource in RESOURCES:
        if resource.group == group and resource.version == version and resource.plural == plural:
            return resource
    return None


def is_namespaced(kind: str) -> bool:
    """Unknown kinds (custom objects applied in-process) count as namespaced, like most kinds."""
    return kind not in CLUSTER_SCOPED


def collection_path(kind: str, namespace: str | None) -> str:
    """The REST path of ``kind``'s collection: in ``namespace``, or across all namespaces when None."""
    resource = BY_KIND.get(kind)
    if resource is None:
        raise KeyError(f"kind {kind} is not in the table (pytest_natsnet/kinds.py)")
    prefix = f"/apis/{resource.group}/{resource.version}" if resource.group else f"/api/{resource.version}"
    if resource.namespaced and namespace is not None:
        return f"{prefix}/namespaces/{namespace}/{resource.plural}"
    return f"{prefix}/{resource.plural}"


def object_path(kind: str, name: str, namespace: str | None, subresource: str = "") -> str:
    """The REST path of one object (and its ``subresource``: status, log, exec)."""
    path = f"{collection_path(kind, namespace)}/{name}"
    return f"{path}/{subresource}" if subresource else path
