"""Pure tests of the sandbox's storage rules: kind's default class, admission of claims, the local-path
provisioner's volume and binding, released volumes (``sandbox/storage.py``)."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_natsnet.kube import Obj
from pytest_natsnet.sandbox.admission import Admission
from pytest_natsnet.sandbox.storage import (
    PROVISIONER,
    PVC_PROTECTION,
    admit_claim,
    bind_claim,
    binding_problem,
    default_class_name,
    default_storage_class,
    directory_name,
    host_path,
    provisioned_volume,
    released,
)


def claim(spec: dict[str, Any] | None = None, uid: str = "u-1") -> Obj:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "nats-js-nats-0", "namespace": "natsnet", "uid": uid, "resourceVersion": "7"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
            if spec is None else spec}


def test_the_default_class_is_kinds_standard_local_path_class() -> None:
    standard = default_storage_class()
    assert standard["metadata"]["name"] == "standard"
    assert standard["metadata"]["annotations"] == {"storageclass.kubernetes.io/is-default-class": "true"}
    assert (standard["provisioner"], standard["reclaimPolicy"], standard["volumeBindingMode"]) == (
        "rancher.io/local-path", "Delete", "WaitForFirstConsumer")
    assert default_class_name([standard, {"metadata": {"name": "other"}}]) == "standard"
    assert default_class_name([{"metadata": {"name": "other"}}]) is None


@pytest.mark.parametrize(("spec", "class_name"), [
    ({}, "standard"),                                  # DefaultStorageClass fills it in
    ({"storageClassName": "fast"}, "fast"),            # named: kept
    ({"storageClassName": ""}, ""),                    # empty: asks for no class, kept
])
def test_admission_names_the_default_class_only_when_none_is_named(spec: dict[str, Any], class_name: str) -> None:
    obj = claim(spec)
    Admission(lambda: "198.18.128.11", default_storage_class=lambda: "standard")(obj, None)
    assert obj["spec"]["storageClassName"] == class_name
    assert obj["metadata"]["finalizers"] == [PVC_PROTECTION]
    assert obj["spec"]["volumeMode"] == "Filesystem" and obj["status"] == {"phase": "Pending"}


def test_admission_without_a_default_class_leaves_the_claim_classless() -> None:
    obj = claim({})
    admit_claim(obj, None)
    assert "storageClassName" not in obj["spec"]
    assert binding_problem(obj, [default_storage_class()]) is not None


@pytest.mark.parametrize(("class_name", "classes", "problem"), [
    ("standard", [default_storage_class()], None),
    ("gp3", [default_storage_class()], 'storageclass.storage.k8s.io "gp3" not found'),
    ("ebs", [{"metadata": {"name": "ebs"}, "provisioner": "ebs.csi.aws.com"}],
     "waiting for a volume to be created either by the external provisioner 'ebs.csi.aws.com'"),
    ("", [default_storage_class()], "no storage class named"),
])
def test_what_the_local_path_provisioner_binds(class_name: str, classes: list[Obj], problem: str | None) -> None:
    found = binding_problem(claim({"storageClassName": class_name}), classes)
    assert found == problem if problem is None else found is not None and found.startswith(problem)


def test_the_provisioned_volume_and_the_bound_claim() -> None:
    """local-path-provisioner: ``pvc-<uid>``, hostPath ``pvc-<uid>_<ns>_<claim>`` on the node, the class's reclaim
    policy; the binder: ``spec.volumeName``, ``Bound`` with the capacity."""
    obj = claim()
    obj["spec"]["storageClassName"] = "standard"
    assert directory_name(obj) == "pvc-u-1_natsnet_nats-js-nats-0"
    volume = provisioned_volume(obj, default_storage_class(), "sandbox-node", "/x/pvc-u-1_natsnet_nats-js-nats-0")
    assert volume["metadata"]["name"] == "pvc-u-1"
    assert volume["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == PROVISIONER
    assert volume["spec"]["claimRef"] == {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                          "name": "nats-js-nats-0", "namespace": "natsnet", "uid": "u-1",
                                          "resourceVersion": "7"}
    assert volume["spec"]["capacity"] == {"storage": "1Gi"}
    assert volume["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    assert volume["spec"]["storageClassName"] == "standard"
    assert volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == [
        "sandbox-node"]
    assert host_path(volume) == "/x/pvc-u-1_natsnet_nats-js-nats-0"
    bind_claim(obj, volume, "sandbox-node")
    assert obj["spec"]["volumeName"] == "pvc-u-1"
    assert obj["status"] == {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}}
    assert obj["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] == "sandbox-node"


def test_a_volume_is_released_when_its_claim_is_gone_or_replaced() -> None:
    volume = provisioned_volume(claim(), default_storage_class(), "n", "/x")
    assert not released(volume, [claim()])
    assert released(volume, [])
    assert released(volume, [claim(uid="u-2")])  # a new claim of the same name is another claim
