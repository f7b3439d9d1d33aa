"""Request bodies as the API server decodes them: content types, kind/apiVersion against the URL,
``fieldValidation`` (Strict, Warn, Ignore) for unknown fields, and nulls dropped as typed decoding does.

Without schemas the sandbox checks the top level of each kind and ``metadata``; deeper unknown fields are kept
as sent (a real server drops or refuses them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import yaml

from pytest_natsnet.kinds import Resource
from pytest_natsnet.sandbox.apiserver import protobuf
from pytest_natsnet.sandbox.store import BadRequest, StoreError

JSON = "application/json"
YAML = "application/yaml"
PROTOBUF = "application/vnd.kubernetes.protobuf"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH)

COMMON_FIELDS = frozenset({"apiVersion", "kind", "metadata"})
SPEC_STATUS = frozenset({"spec", "status"})
TOP_LEVEL: dict[str, frozenset[str]] = {
    "ConfigMap": frozenset({"data", "binaryData", "immutable"}),
    "Secret": frozenset({"data", "stringData", "type", "immutable"}),
    "ServiceAccount": frozenset({"secrets", "imagePullSecrets", "automountServiceAccountToken"}),
    "Endpoints": frozenset({"subsets"}),
    "EndpointSlice": frozenset({"addressType", "endpoints", "ports"}),
    "Event": frozenset({"action", "count", "eventTime", "firstTimestamp", "involvedObject", "lastTimestamp",
                        "message", "reason", "related", "reportingComponent", "reportingInstance", "series",
                        "source", "type"}),
    "StorageClass": frozenset({"allowVolumeExpansion", "allowedTopologies", "mountOptions", "parameters",
                               "provisioner", "reclaimPolicy", "volumeBindingMode"}),
}
METADATA_FIELDS = frozenset({"name", "generateName", "namespace", "selfLink", "uid", "resourceVersion",
                             "generation", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                             "labels", "annotations", "ownerReferences", "finalizers", "managedFields"})


class UnsupportedMediaType(StoreError):
    code, reason = 415, "UnsupportedMediaType"


def media_type(content_type: str | None) -> str:
    return (content_type or JSON).split(";", 1)[0].strip().lower()


def decode(body: bytes, content_type: str | None) -> Any:
    """JSON, YAML or protobuf (``k8s\\0`` envelope) → a plain value; 415 for anything else."""
    kind = media_type(content_type)
    try:
        if kind in (JSON, JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH):
            return json.loads(body or b"null")
        if kind in (YAML, APPLY_PATCH, "application/yaml", "text/yaml"):
            return yaml.safe_load(body.decode() or "null")
        if kind == PROTOBUF:
            return protobuf.decode(body)
    except (ValueError, yaml.YAMLError, UnicodeDecodeError) as error:
        raise BadRequest(f"the body of the request was in an unknown format ({kind}): {error}") from None
    except protobuf.ProtobufError as error:
        raise BadRequest(f"the protobuf body could not be decoded: {error}") from None
    raise UnsupportedMediaType(f'the body of the request was in an unknown format - accepted media types '
                               f'include: {JSON}, {YAML}, {PROTOBUF}' if kind not in PATCH_TYPES else
                               f"the media type {kind} is not supported here")


def drop_nulls(value: Any) -> Any:
    """What decoding into typed objects does to ``null`` fields: they are absent."""
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value]
    return value


def check_type(obj: Mapping[str, Any], resource: Resource) -> None:
    """The body's apiVersion and kind must name the URL's resource (400 otherwise)."""
    if not isinstance(obj, Mapping):
        raise BadRequest(f"the body must be a {resource.kind} object")
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if api_version and api_version != resource.api_version:
        raise BadRequest(f"the API version in the data ({api_version}) does not match the expected API version "
                         f"({resource.api_version})")
    if kind and kind != resource.kind:
        raise BadRequest(f"the kind in the data ({kind}) does not match the expected kind ({resource.kind})")


def unknown_fields(obj: Mapping[str, Any], kind: str) -> list[str]:
    """Top-level and metadata fields the kind does not have, as dotted paths."""
    allowed = COMMON_FIELDS | TOP_LEVEL.get(kind, SPEC_STATUS)
    unknown = [field for field in obj if field not in allowed]
    metadata = obj.get("metadata")
    if isinstance(metadata, Mapping):
        unknown += [f"metadata.{field}" for field in metadata if field not in METADATA_FIELDS]
    return sorted(unknown)


def validate_fields(obj: dict[str, Any], kind: str, mode: str | None) -> list[str]:
    """Applies ``fieldValidation``: Strict → 400 naming the fields; Warn → warnings; Ignore → silently.
    Unknown top-level fields are dropped in every mode (typed decoding). Returns the warnings."""
    unknown = unknown_fields(obj, kind)
    if not unknown:
        return []
    if (mode or "").lower() == "strict":
        raise BadRequest("strict decoding error: " + ", ".join(f'unknown field "{f}"' for f in unknown))
    for field in unknown:
        head, _, rest = field.partition(".")
        if rest:
            obj.get(head, {}).pop(rest, None)
        else:
            obj.pop(head, None)
    if (mode or "warn").lower() == "ignore":
        return []
    return [f'unknown field "{f}"' for f in unknown]
