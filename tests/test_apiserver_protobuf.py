"""The protobuf body decoder against bytes captured from real kubectl 1.35.2 (``create ns``, ``create
configmap``, ``create secret``, ``auth can-i``) and helm 4.1.4 (its release Secret, and the DeleteOptions of
its uninstall)."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

import pytest

from pytest_natsnet.sandbox.apiserver import protobuf
from pytest_natsnet.sandbox.apiserver.protobuf import ProtobufError, decode, encode_field

CAPTURED = Path(__file__).parent / "data" / "protobuf"


def captured(name: str) -> bytes:
    return (CAPTURED / f"{name}.bin").read_bytes()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("kubectl-create-namespace", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "capture-ns"}}),
        ("kubectl-create-configmap", {"apiVersion": "v1", "kind": "ConfigMap",
                                      "metadata": {"name": "cm1", "namespace": "capture-ns"},
                                      "data": {"a": "1", "b": "two"}}),
        ("kubectl-create-secret", {"apiVersion": "v1", "kind": "Secret",
                                   "metadata": {"name": "s1", "namespace": "capture-ns"},
                                   "data": {"password": base64.b64encode(b"hunter2").decode()}, "type": "Opaque"}),
        ("helm-delete-options", {"apiVersion": "v1", "kind": "DeleteOptions"}),
        ("kubectl-auth-can-i", {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                                "metadata": {}, "spec": {"resourceAttributes": {
                                    "namespace": "default", "verb": "create", "resource": "pods"}}}),
    ],
)
def test_captured_bodies_decode_as_their_json(name: str, expected: dict[str, object]) -> None:
    assert decode(captured(name)) == expected


def test_helm_release_secret() -> None:
    secret = decode(captured("helm-release-pending-install"))
    assert secret["type"] == "helm.sh/release.v1"
    assert secret["metadata"]["name"] == "sh.helm.release.v1.caprel.v1"
    assert secret["metadata"]["labels"]["owner"] == "helm"
    assert secret["metadata"]["labels"]["status"] == "pending-install"
    release = json.loads(gzip.decompress(base64.b64decode(base64.b64decode(secret["data"]["release"]))))
    assert release["name"] == "caprel" and release["info"]["status"] == "pending-install"
    assert release["apply_method"] == "ssa"


def _unknown(kind: str, raw: bytes) -> bytes:
    type_meta = encode_field(1, "v1") + encode_field(2, kind)
    return protobuf.MAGIC + encode_field(1, type_meta) + encode_field(2, raw)


def test_delete_options_fields() -> None:
    preconditions = encode_field(1, "uid-1") + encode_field(2, "42")
    raw = encode_field(1, 0) + encode_field(2, preconditions) + encode_field(4, "Foreground") + encode_field(5, "All")
    assert decode(_unknown("DeleteOptions", raw)) == {
        "apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
        "preconditions": {"uid": "uid-1", "resourceVersion": "42"}, "propagationPolicy": "Foreground",
        "dryRun": ["All"]}


def test_object_meta_maps_owner_references_and_times() -> None:
    label = encode_field(1, "app") + encode_field(2, "nats")
    owner = encode_field(1, "StatefulSet") + encode_field(3, "nats") + encode_field(4, "u") + encode_field(6, 1)
    zero_time = encode_field(1, 0)
    meta = (encode_field(1, "c") + encode_field(11, label) + encode_field(13, owner) + encode_field(8, zero_time)
            + encode_field(7, 0) + encode_field(14, "f1"))
    data_entry = encode_field(1, "k") + encode_field(2, "")
    decoded = decode(_unknown("ConfigMap", encode_field(1, meta) + encode_field(2, data_entry)))
    assert decoded["metadata"] == {"name": "c", "labels": {"app": "nats"}, "finalizers": ["f1"],
                                   "ownerReferences": [{"kind": "StatefulSet", "name": "nats", "uid": "u",
                                                        "controller": True}]}
    assert decoded["data"] == {"k": ""}  # an empty value stays


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b'{"kind":"Secret"}', "missing the k8s"),
        (_unknown("Deployment", b""), "kind Deployment is not decoded by the sandbox"),
        (protobuf.MAGIC + b"\x0a\x05ab", "past the end"),
        (protobuf.MAGIC + b"\x0a\xff", "truncated varint"),
        (protobuf.MAGIC + b"\x0b", "unsupported wire type"),
        (protobuf.MAGIC + encode_field(3, "gzip"), "compressed"),
    ],
)
def test_bad_bodies_say_why(body: bytes, match: str) -> None:
    with pytest.raises(ProtobufError, match=match):
        decode(body)
