"""The chart values the reference rendering understands: a schema of exactly those keys, and their defaults.

Anything else is rejected with one line naming the dotted key: the official chart (``--natsnet-chart``
with helm) renders it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pytest_natsnet.errors import ConfigError
from pytest_natsnet.reference.merge import deep_merge

Leaf = Literal["bool", "count", "string", "path", "size", "quantity", "merge", "env", "resources"]
Schema = Mapping[str, "Schema | Leaf"]

USE_HELM = "render it with the official chart instead: pass --natsnet-chart (needs helm)"
TEMPLATE_KEYS = frozenset({"$tplYaml", "$tplYamlSpread"})
# A nats-server size (the chart writes it unquoted as ``<< SIZE >>``): digits, optional k/m/g/t unit.
_SIZE = re.compile(r"[0-9]+(?:[kmgt]i?b?)?", re.IGNORECASE)
# A PVC storage request that nats-server reads as the same size (``max_file_store`` defaults to it).
_QUANTITY = re.compile(r"[0-9]+(?:[KMGT]i|k|M|G|T)?")
_PATH = re.compile(r"/[A-Za-z0-9._/-]*")

SCHEMA: Schema = {
    "config": {
        "cluster": {
            "enabled": "bool",
            "replicas": "count",
            "noAdvertise": "bool",
            "routeURLs": {"useFQDN": "bool", "k8sClusterDomain": "string"},
            "tls": {"enabled": "bool", "secretName": "string", "merge": "merge"},
            "merge": "merge",
        },
        "nats": {"tls": {"enabled": "bool", "secretName": "string"}},
        "jetstream": {
            "enabled": "bool",
            "fileStore": {
                "enabled": "bool",
                "dir": "path",
                "maxSize": "size",
                "pvc": {"enabled": "bool", "size": "quantity", "storageClassName": "string"},
            },
            "memoryStore": {"enabled": "bool", "maxSize": "size"},
            "merge": "merge",
        },
        "merge": "merge",
    },
    "container": {"env": "env"},
    "podTemplate": {"merge": "merge"},
    "headlessService": {"merge": "merge"},
    "tlsCA": {"enabled": "bool", "secretName": "string"},
    "extraResources": "resources",
}

DEFAULTS: dict[str, Any] = {
    "config": {
        "cluster": {
            "enabled": False,
            "replicas": 3,
            "noAdvertise": True,
            "routeURLs": {"useFQDN": False, "k8sClusterDomain": "cluster.local"},
            "tls": {"enabled": False, "secretName": None, "merge": {}},
            "merge": {},
        },
        "nats": {"tls": {"enabled": False, "secretName": None}},
        "jetstream": {
            "enabled": False,
            "fileStore": {
                "enabled": True,
                "dir": "/data",
                "maxSize": None,
                "pvc": {"enabled": True, "size": "10Gi", "storageClassName": None},
            },
            "memoryStore": {"enabled": False, "maxSize": "1Gi"},
            "merge": {},
        },
        "merge": {},
    },
    "container": {"env": {}},
    "podTemplate": {"merge": {}},
    "headlessService": {"merge": {}},
    "tlsCA": {"enabled": False, "secretName": None},
    "extraResources": [],
}


def effective_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` checked against :data:`SCHEMA` and laid over :data:`DEFAULTS` (``null`` keeps a default)."""
    checked = _check_map(values, SCHEMA, "")
    result = deep_merge(DEFAULTS, checked)
    ca = result["tlsCA"]
    if ca["enabled"] and not ca["secretName"]:
        raise ConfigError(
            "values key 'tlsCA.secretName'",
            "is required when tlsCA.enabled is true (the reference rendering mounts the CA from a Secret)",
            "set it, or " + USE_HELM,
        )
    return result


def unsupported(
    dotted: str, why: str = "is not supported by the built-in reference rendering"
) -> ConfigError:
    return ConfigError(f"values key '{dotted}'", why, USE_HELM)


def _check_map(values: Mapping[str, Any], schema: Schema, prefix: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if key not in schema:
            raise unsupported(dotted)
        if value is None:
            continue
        rule = schema[key]
        if isinstance(rule, Mapping):
            if not isinstance(value, Mapping):
                raise _wrong_type(dotted, "a map", value)
            result[key] = _check_map(value, rule, f"{dotted}.")
        else:
            result[key] = _check_leaf(value, rule, dotted)
    return result


def _check_leaf(value: Any, rule: Leaf, dotted: str) -> Any:
    if rule == "bool" and not isinstance(value, bool):
        raise _wrong_type(dotted, "true or false", value)
    if rule == "count" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise _wrong_type(dotted, "a whole number of at least 1", value)
    if rule == "string" and not isinstance(value, str):
        raise _wrong_type(dotted, "a string", value)
    if rule == "path" and not (isinstance(value, str) and _PATH.fullmatch(value)):
        raise _wrong_type(dotted, "an absolute path of letters, digits and ._-/ such as /data", value)
    if rule == "size" and not (isinstance(value, str) and _SIZE.fullmatch(value)):
        raise _wrong_type(dotted, "a size string such as 512Mi, 1Gi or 2GB", value)
    if rule == "quantity" and not (isinstance(value, str) and _QUANTITY.fullmatch(value)):
        raise _wrong_type(dotted, "a storage size string such as 1Gi or 10G (units Ki Mi Gi Ti k M G T)", value)
    if rule == "merge":
        if not isinstance(value, Mapping):
            raise _wrong_type(dotted, "a map", value)
        _reject_templates(value, dotted)
    if rule == "env":
        _check_env(value, dotted)
    if rule == "resources":
        _check_resources(value, dotted)
    return value


def _check_env(value: Any, dotted: str) -> None:
    if not isinstance(value, Mapping):
        raise _wrong_type(dotted, "a map of variable name to value", value)
    for name, entry in value.items():
        where = f"{dotted}.{name}"
        if isinstance(entry, str):
            continue
        if not isinstance(entry, Mapping):
            raise _wrong_type(where, "a string or a {$tplYaml: ...} map", entry)
        for key, template in entry.items():
            if key != "$tplYaml":
                raise unsupported(f"{where}.{key}")
            if not isinstance(template, str):
                raise _wrong_type(f"{where}.{key}", "a template string", template)


def _check_resources(value: Any, dotted: str) -> None:
    if not isinstance(value, list):
        raise _wrong_type(dotted, "a list of Kubernetes objects", value)
    for index, item in enumerate(value):
        where = f"{dotted}[{index}]"
        if not isinstance(item, Mapping) or not item.get("kind") or not item.get("apiVersion"):
            raise _wrong_type(where, "a Kubernetes object with apiVersion and kind", item)
        _reject_templates(item, where)


def _reject_templates(value: Any, dotted: str) -> None:
    """Template expansion is known only under ``container.env``; anywhere else it is an error."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key in TEMPLATE_KEYS:
                raise unsupported(
                    f"{dotted}.{key}", "is a template the built-in reference rendering cannot expand"
                )
            _reject_templates(item, f"{dotted}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _reject_templates(item, f"{dotted}[{index}]")


def _wrong_type(dotted: str, wanted: str, value: Any) -> ConfigError:
    return ConfigError(f"values key '{dotted}'", f"must be {wanted}, got {value!r}", "fix the values file")
