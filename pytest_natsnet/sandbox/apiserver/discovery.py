"""Discovery and OpenAPI documents of the sandbox API server, from the resource table (``pytest_natsnet/kinds.py``).

- ``/api`` and ``/apis``: aggregated discovery (``apidiscovery.k8s.io/v2``) when the client asks for it (kubectl
  and helm do), else the legacy ``APIVersions`` / ``APIGroupList``; ``/api/v1``, ``/apis/<g>``, ``/apis/<g>/<v>``:
  the legacy per-group documents.
- ``/version``.
- ``/openapi/v3``: a root naming one document per group-version, and a minimal document per group-version:
  each resource's item path with its group-version-kind and the ``fieldValidation`` parameter, which is what
  kubectl's and helm's query-parameter verifier looks for. There are no schemas.
- ``/openapi/v2``: an empty document (no definitions). kubectl falls back to it for what the v3 verifier does
  not know (a ``kind: List`` file, client-side apply's patch schema) and then skips client-side schema checks
  and uses its built-in types, as it does for any kind the server has no schema for.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pytest_natsnet.kinds import RESOURCES, Resource, group_versions

AGGREGATED_CONTENT_TYPE = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
KUBERNETES_VERSION = {"major": "1", "minor": "35", "gitVersion": "v1.35.0", "gitCommit": "natsnet-sandbox",
                      "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.25",
                      "compiler": "gc", "platform": "linux/amd64"}
OPENAPI_V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
SUBRESOURCE_VERBS = {"status": ["get", "patch", "update"], "log": ["get"], "exec": ["create", "get"]}
SUBRESOURCE_KIND = {"log": "Pod", "exec": "PodExecOptions"}


def wants_aggregated(accept: str) -> bool:
    return "as=APIGroupDiscoveryList" in accept.replace(" ", "")


def _resources_of(group: str, version: str) -> list[Resource]:
    return [r for r in RESOURCES if r.group == group and r.version == version]


def _aggregated_resource(resource: Resource) -> dict[str, Any]:
    kind = {"group": resource.group, "version": resource.version, "kind": resource.kind}
    entry: dict[str, Any] = {
        "resource": resource.plural,
        "responseKind": kind,
        "scope": "Namespaced" if resource.namespaced else "Cluster",
        "singularResource": resource.singular,
        "verbs": list(resource.verbs),
    }
    if resource.short_names:
        entry["shortNames"] = list(resource.short_names)
    if resource.categories:
        entry["categories"] = list(resource.categories)
    if resource.subresources:
        entry["subresources"] = [
            {"subresource": sub,
             "responseKind": {**kind, "kind": SUBRESOURCE_KIND.get(sub, resource.kind)},
             "verbs": SUBRESOURCE_VERBS[sub]}
            for sub in resource.subresources
        ]
    return entry


def aggregated(core: bool) -> dict[str, Any]:
    """``/api`` (core=True) or ``/apis`` as an APIGroupDiscoveryList."""
    items = []
    for group, version in group_versions():
        if (group == "") != core:
            continue
        items.append({
            "metadata": {"name": group},
            "versions": [{"version": version, "freshness": "Current",
                          "resources": [_aggregated_resource(r) for r in _resources_of(group, version)]}],
        })
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
            "items": items}


def api_versions(server_address: str) -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def _group(group: str, version: str) -> dict[str, Any]:
    gv = {"groupVersion": f"{group}/{version}", "version": version}
    return {"name": group, "versions": [gv], "preferredVersion": gv}


def api_group_list() -> dict[str, Any]:
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [_group(g, v) for g, v in group_versions() if g]}


def api_group(group: str) -> dict[str, Any] | None:
    for g, v in group_versions():
        if g == group and g:
            return {"kind": "APIGroup", "apiVersion": "v1", **_group(g, v)}
    return None


def api_resource_list(group: str, version: str) -> dict[str, Any] | None:
    resources = _resources_of(group, version)
    if not resources:
        return None
    entries: list[dict[str, Any]] = []
    for r in resources:
        entry: dict[str, Any] = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                                 "kind": r.kind, "verbs": list(r.verbs)}
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        entries.append(entry)
        for sub in r.subresources:
            entries.append({"name": f"{r.plural}/{sub}", "singularName": "", "namespaced": r.namespaced,
                            "kind": SUBRESOURCE_KIND.get(sub, r.kind), "verbs": SUBRESOURCE_VERBS[sub]})
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version, "resources": entries}


def openapi_v2() -> dict[str, Any]:
    return {"swagger": "2.0", "info": {"title": "Kubernetes (natsnet sandbox)", "version": "v1.35.0"},
            "paths": {}, "definitions": {}}


# -- OpenAPI v3 -----------------------------------------------------------------------------------------


def openapi_prefix(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _item_path(resource: Resource) -> str:
    base = f"/{openapi_prefix(resource.group, resource.version)}"
    if resource.namespaced:
        return f"{base}/namespaces/{{namespace}}/{resource.plural}/{{name}}"
    return f"{base}/{resource.plural}/{{name}}"


def openapi_document(group: str, version: str) -> dict[str, Any] | None:
    """The minimal per-group-version document: each resource's collection and item paths with their GVK and
    the query parameters the verifier checks (fieldValidation, dryRun, fieldManager)."""
    resources = _resources_of(group, version)
    if not resources:
        return None
    parameters = [{"name": p, "in": "query", "schema": {"type": "string"}, "uniqueItems": True}
                  for p in ("dryRun", "fieldManager", "fieldValidation")]
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for resource in resources:
        gvk = {"group": resource.group, "version": resource.version, "kind": resource.kind}
        operation = {"x-kubernetes-group-version-kind": gvk, "parameters": parameters,
                     "responses": {"200": {"description": "OK"}}}
        item = _item_path(resource)
        paths[item] = {verb: operation for verb in ("get", "put", "patch", "delete")}
        paths[item.rsplit("/", 1)[0]] = {verb: operation for verb in ("get", "post")}
        schema_name = f"io.k8s.natsnet.{resource.group or 'core'}.{resource.version}.{resource.kind}"
        schemas[schema_name] = {"type": "object", "x-kubernetes-group-version-kind": [gvk],
                                "x-kubernetes-preserve-unknown-fields": True}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes (natsnet sandbox)", "version": "v1.35.0"},
            "paths": paths, "components": {"schemas": schemas}}


def openapi_hash(group: str, version: str) -> str:
    document = json.dumps(openapi_document(group, version), sort_keys=True).encode()
    return hashlib.sha256(document).hexdigest()[:32].upper()


def openapi_root() -> dict[str, Any]:
    return {"paths": {
        openapi_prefix(g, v): {"serverRelativeURL": f"/openapi/v3/{openapi_prefix(g, v)}?hash={openapi_hash(g, v)}"}
        for g, v in group_versions()
    }}


def openapi_lookup(rest: str) -> dict[str, Any] | None:
    """``api/v1`` or ``apis/apps/v1`` → that document."""
    parts = rest.strip("/").split("/")
    if parts[:1] == ["api"] and len(parts) == 2:
        return openapi_document("", parts[1])
    if parts[:1] == ["apis"] and len(parts) == 3:
        return openapi_document(parts[1], parts[2])
    return None
