"""Storage as kind has it: a default StorageClass ``standard`` served by rancher's local-path provisioner, which
binds a claim to a directory of the node once its first consumer is scheduled (``WaitForFirstConsumer``).

Pure functions over objects; the cluster (``cluster.py``) makes and removes the directories. The rules:

- admission's DefaultStorageClass plugin names the default class in a claim that names none (``storageClassName``
  absent; an empty string asks for no class and is never provisioned);
- the local-path provisioner (rancher/local-path-provisioner ``provisioner.go``) makes one directory per claim,
  ``pvc-<claim uid>_<namespace>_<claim>``, and a PersistentVolume ``pvc-<claim uid>`` with ``hostPath`` there,
  node affinity to the node, the class's reclaim policy; the claim is then ``Bound`` to it;
- pvc-protection (``pkg/controller/volume/pvcprotection``): a claim carries the ``kubernetes.io/pvc-protection``
  finalizer, and a deleted claim stays (Terminating) while a pod that has not finished mounts it;
- a released volume with reclaim policy ``Delete`` is removed with its directory (the provisioner's teardown).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pytest_natsnet.kube import Obj, name, namespace_of

PROVISIONER = "rancher.io/local-path"
DEFAULT_CLASS = "standard"
PVC_PROTECTION = "kubernetes.io/pvc-protection"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"


def default_storage_class() -> Obj:
    """kind's ``standard`` class (the local-path provisioner, binding on first consumer)."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": DEFAULT_CLASS, "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    }


def default_class_name(classes: Sequence[Mapping[str, Any]]) -> str | None:
    """The class annotated as default (the newest when several are, as the admission plugin picks)."""
    defaults = [c for c in classes
                if ((c.get("metadata") or {}).get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true"]
    if not defaults:
        return None
    newest = max(defaults, key=lambda c: ((c.get("metadata") or {}).get("creationTimestamp") or "", name(c)))
    return name(newest)


def admit_claim(claim: Obj, default_class: str | None) -> None:
    """What admission does to a new claim: the default class when it names none, the protection finalizer,
    ``volumeMode: Filesystem`` and a ``Pending`` status."""
    claim_spec = claim.setdefault("spec", {})
    if "storageClassName" not in claim_spec and default_class is not None:
        claim_spec["storageClassName"] = default_class
    claim_spec.setdefault("volumeMode", "Filesystem")
    finalizers = claim["metadata"].setdefault("finalizers", [])
    if PVC_PROTECTION not in finalizers:
        finalizers.append(PVC_PROTECTION)
    claim.setdefault("status", {}).setdefault("phase", "Pending")


def binding_problem(claim: Mapping[str, Any], classes: Sequence[Mapping[str, Any]]) -> str | None:
    """Why ``claim`` cannot be provisioned by the local-path provisioner (None: it can, now)."""
    class_name = (claim.get("spec") or {}).get("storageClassName")
    if not class_name:
        return "no storage class named and none is default: waiting for a volume to be created manually"
    storage_class = next((c for c in classes if name(c) == class_name), None)
    if storage_class is None:
        return f'storageclass.storage.k8s.io "{class_name}" not found'
    if storage_class.get("provisioner") != PROVISIONER:
        return (f"waiting for a volume to be created either by the external provisioner "
                f"'{storage_class.get('provisioner')}' or manually by the system administrator")
    return None


def volume_name(claim: Mapping[str, Any]) -> str:
    return f"pvc-{(claim.get('metadata') or {}).get('uid')}"


def directory_name(claim: Mapping[str, Any]) -> str:
    """The provisioner's directory for the claim: ``pvc-<uid>_<namespace>_<claim>``."""
    return f"{volume_name(claim)}_{namespace_of(claim)}_{name(claim)}"


def provisioned_volume(claim: Mapping[str, Any], storage_class: Mapping[str, Any], node: str, path: str) -> Obj:
    """The PersistentVolume the local-path provisioner creates for ``claim`` at ``path`` on ``node``."""
    claim_spec = claim.get("spec") or {}
    requested = ((claim_spec.get("resources") or {}).get("requests") or {}).get("storage", "")
    meta = claim.get("metadata") or {}
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": volume_name(claim),
            "annotations": {"local.path.provisioner/selected-node": node,
                            "pv.kubernetes.io/provisioned-by": PROVISIONER},
        },
        "spec": {
            "accessModes": list(claim_spec.get("accessModes") or ["ReadWriteOnce"]),
            "capacity": {"storage": requested},
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": name(claim),
                         "namespace": namespace_of(claim), "uid": meta.get("uid"),
                         "resourceVersion": meta.get("resourceVersion")},
            "hostPath": {"path": path, "type": "DirectoryOrCreate"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}},
            "persistentVolumeReclaimPolicy": storage_class.get("reclaimPolicy") or "Delete",
            "storageClassName": name(storage_class),
            "volumeMode": claim_spec.get("volumeMode") or "Filesystem",
        },
        "status": {"phase": "Bound"},
    }


def bind_claim(claim: Obj, volume: Mapping[str, Any], node: str) -> None:
    """The claim as the binder leaves it: ``spec.volumeName``, ``Bound`` with the volume's capacity."""
    annotations = claim["metadata"].setdefault("annotations", {})
    annotations.update({
        "pv.kubernetes.io/bind-completed": "yes",
        "pv.kubernetes.io/bound-by-controller": "yes",
        "volume.beta.kubernetes.io/storage-provisioner": PROVISIONER,
        "volume.kubernetes.io/storage-provisioner": PROVISIONER,
        "volume.kubernetes.io/selected-node": node,
    })
    claim["spec"]["volumeName"] = name(volume)
    volume_spec = volume.get("spec") or {}
    claim["status"] = {"phase": "Bound", "accessModes": list(volume_spec.get("accessModes") or []),
                       "capacity": dict(volume_spec.get("capacity") or {})}


def released(volume: Mapping[str, Any], claims: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the claim ``volume`` was bound to is gone (no claim of that namespace, name and uid)."""
    ref = (volume.get("spec") or {}).get("claimRef") or {}
    for claim in claims:
        if (namespace_of(claim), name(claim)) == (ref.get("namespace"), ref.get("name")):
            return bool(ref.get("uid")) and (claim.get("metadata") or {}).get("uid") != ref.get("uid")
    return True


def host_path(volume: Mapping[str, Any]) -> str:
    return str(((volume.get("spec") or {}).get("hostPath") or {}).get("path", ""))
