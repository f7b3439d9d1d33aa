"""The API server's request handling over the sandbox cluster: routing, the verbs of every served resource
(get, list, watch, create, update, patch, delete, deletecollection), the ``status``, ``log`` and ``exec``
subresources, discovery, ``/version`` and OpenAPI. Anything else is answered with a ``Status`` error."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pytest_natsnet.kinds import WITH_STATUS, Resource, by_plural
from pytest_natsnet.sandbox.apiserver import bodies, discovery, podlogs, tables
from pytest_natsnet.sandbox.apiserver.patch import (
    json_patch,
    merge_patch,
    server_side_apply,
    strategic_merge_patch,
    update_managed_fields,
)
from pytest_natsnet.sandbox.apiserver.responses import (
    Answer,
    Request,
    Response,
    Stream,
    Upgrade,
    error,
    json_response,
    status,
)
from pytest_natsnet.sandbox.apiserver.selectors import selector
from pytest_natsnet.sandbox.apiserver.watch import watch_stream
from pytest_natsnet.sandbox.store import BadRequest, Conflict, NotFound, Store, StoreError, key_of, now_iso

TEXT = "text/plain"


class Cluster(Protocol):
    """What the API server needs of the sandbox cluster."""

    store: Store

    def namespace_accepts(self, namespace: str) -> None: ...

    def delete(self, wanted_kind: str, obj_name: str, namespace: str, grace: float | None = None,
               propagation: str = "Background") -> dict[str, Any]: ...

    def refresh_pod_conditions(self, namespace: str, pod_name: str) -> None: ...

    def log_path(self, namespace: str, pod_name: str, container: str) -> Path: ...

    def container_running(self, namespace: str, pod_name: str, container: str) -> bool: ...

    def exec_argv(self, namespace: str, pod_name: str, container: str, command: Sequence[str]) -> list[str]: ...


ExecHandler = Callable[[Request, list[str]], Answer]


@dataclass(frozen=True)
class Target:
    """A parsed resource URL."""

    resource: Resource
    namespace: str | None
    name: str
    subresource: str

    @property
    def key(self) -> tuple[str, str, str]:
        return self.resource.kind, self.namespace or "", self.name


def parse_resource_path(path: str) -> Target | None:
    """``/api/v1/namespaces/ns/pods/x/log`` → Target(pods, ns, x, log); None when it names no resource."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 3:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        inner = by_plural(group, version, rest[2])
        if inner is not None and inner.namespaced:
            namespace, rest = rest[1], rest[2:]
    resource = by_plural(group, version, rest[0])
    if resource is None or len(rest) > 3:
        return None
    return Target(resource, namespace, rest[1] if len(rest) > 1 else "", rest[2] if len(rest) > 2 else "")


def _status_error(exc: StoreError, resource: Resource | None) -> Response:
    return error(exc.code, exc.reason, str(exc), name=exc.name,
                 group=resource.group if resource else "", kind=resource.plural if resource and exc.name else "",
                 causes=exc.causes)


class Api:
    """Answers requests over one sandbox cluster (thread-safe: every state change goes through its store)."""

    def __init__(self, cluster: Cluster, server_address: str, exec_handler: ExecHandler | None = None) -> None:
        self.cluster = cluster
        self.store = cluster.store
        self.server_address = server_address
        self.exec_handler = exec_handler

    # -- entry -------------------------------------------------------------------------------------

    def handle(self, request: Request) -> Answer:
        target = parse_resource_path(request.path)
        try:
            if target is None:
                return self._non_resource(request)
            return self._resource(request, target)
        except StoreError as exc:
            return _status_error(exc, target.resource if target else None)

    def _non_resource(self, request: Request) -> Answer:
        path = "/" + request.path.strip("/")
        if request.method not in ("GET", "HEAD"):
            return error(405, "MethodNotAllowed", f"the server does not allow this method on the requested "
                                                  f"resource ({request.method} {path})")
        accept = request.header("accept")
        if path == "/version":
            return json_response(200, discovery.KUBERNETES_VERSION)
        if path in ("/healthz", "/livez", "/readyz"):
            return Response(200, b"ok", TEXT)
        if path == "/api":
            if discovery.wants_aggregated(accept):
                return Response(200, _dumps(discovery.aggregated(core=True)), discovery.AGGREGATED_CONTENT_TYPE)
            return json_response(200, discovery.api_versions(self.server_address))
        if path == "/apis":
            if discovery.wants_aggregated(accept):
                return Response(200, _dumps(discovery.aggregated(core=False)), discovery.AGGREGATED_CONTENT_TYPE)
            return json_response(200, discovery.api_group_list())
        parts = path.strip("/").split("/")
        if parts[0] == "api" and len(parts) == 2:
            found = discovery.api_resource_list("", parts[1])
            if found is not None:
                return json_response(200, found)
        if parts[0] == "apis" and len(parts) == 2:
            group = discovery.api_group(parts[1])
            if group is not None:
                return json_response(200, group)
        if parts[0] == "apis" and len(parts) == 3:
            found = discovery.api_resource_list(parts[1], parts[2])
            if found is not None:
                return json_response(200, found)
        if path == "/openapi/v2":
            if "protobuf" in accept:
                return Response(200, b"", discovery.OPENAPI_V2_PROTOBUF)  # an empty Document: no schemas
            return json_response(200, discovery.openapi_v2())
        if path == "/openapi/v3":
            return json_response(200, discovery.openapi_root())
        if path.startswith("/openapi/v3/"):
            document = discovery.openapi_lookup(path[len("/openapi/v3/"):])
            if document is not None:
                return json_response(200, document)
        return error(404, "NotFound", "the server could not find the requested resource")

    def _resource(self, request: Request, target: Target) -> Answer:
        resource, method = target.resource, request.method
        verb = self._verb(request, target)
        if verb not in resource.verbs and not (target.subresource and target.subresource in resource.subresources):
            return error(405, "MethodNotAllowed",
                         f"the server does not allow this method on the requested resource "
                         f"({method} {resource.plural})", kind=resource.plural, group=resource.group)
        if target.subresource and target.subresource not in resource.subresources:
            return error(404, "NotFound", "the server could not find the requested resource",
                         kind=resource.plural)
        if resource.namespaced and target.namespace is None and verb not in ("list", "watch"):
            return error(404, "NotFound", "the server could not find the requested resource "
                                          f"({method} {resource.plural}): a namespace is required")
        if target.subresource == "log":
            return self._log(request, target) if method == "GET" else self._method_not_allowed(request, target)
        if target.subresource == "exec":
            return self._exec(request, target)
        if verb == "get":
            return self._get(request, target)
        if verb == "list":
            return self._list(request, target)
        if verb == "watch":
            return self._watch(request, target)
        if verb == "create":
            return self._create(request, target)
        if verb == "update":
            return self._update(request, target)
        if verb == "patch":
            return self._patch(request, target)
        if verb == "delete":
            return self._delete(request, target)
        if verb == "deletecollection":
            return self._delete_collection(request, target)
        return self._method_not_allowed(request, target)

    @staticmethod
    def _verb(request: Request, target: Target) -> str:
        method = request.method
        if method in ("GET", "HEAD"):
            if target.name:
                return "get"
            return "watch" if request.query.get("watch", "").lower() in ("true", "1") else "list"
        if method == "POST":
            return "create" if not target.name or target.subresource else "post"
        if method == "PUT":
            return "update" if target.name else "put"
        if method == "PATCH":
            return "patch" if target.name else "patch-collection"
        if method == "DELETE":
            return "delete" if target.name else "deletecollection"
        return method.lower()

    @staticmethod
    def _method_not_allowed(request: Request, target: Target) -> Response:
        return error(405, "MethodNotAllowed", f"the server does not allow this method on the requested resource "
                                              f"({request.method} {target.resource.plural})",
                     kind=target.resource.plural)

    # -- reads -------------------------------------------------------------------------------------

    def _existing(self, target: Target) -> dict[str, Any]:
        obj = self.store.get(target.key)
        if obj is None:
            raise NotFound(f'{target.resource.plural} "{target.name}" not found', kind=target.resource.kind,
                           name=target.name)
        return obj

    def _object_response(self, request: Request, target: Target, obj: Mapping[str, Any], code: int = 200,
                         warnings: Sequence[str] = ()) -> Response:
        headers = warning_headers(warnings)
        if tables.wants_table(request.header("accept")):
            table = tables.table(target.resource.kind, [obj], str(obj["metadata"].get("resourceVersion", "")),
                                 request.query.get("includeObject", "Metadata"))
            return json_response(code, table, headers)
        stored = self.store.get(target.key)
        body = self.store.encoded(obj) if stored is obj else _dumps(obj)
        return Response(code, body, headers=headers)

    def _get(self, request: Request, target: Target) -> Answer:
        return self._object_response(request, target, self._existing(target))

    def _list(self, request: Request, target: Target) -> Answer:
        matches = selector(request.query.get("labelSelector"), request.query.get("fieldSelector"))
        items, rv = self.store.list_at(target.resource.kind, target.namespace)
        items = [i for i in items if matches(i)]
        if tables.wants_table(request.header("accept")):
            return json_response(200, tables.table(target.resource.kind, items, str(rv),
                                                   request.query.get("includeObject", "Metadata")))
        head = (f'{{"kind":"{target.resource.list_kind}","apiVersion":"{target.resource.api_version}",'
                f'"metadata":{{"resourceVersion":"{rv}"}},"items":[').encode()
        return Response(200, head + b",".join(self.store.encoded(i) for i in items) + b"]}")

    def _watch(self, request: Request, target: Target) -> Answer:
        matches = selector(request.query.get("labelSelector"), request.query.get("fieldSelector"))
        resource = target.resource
        as_table = tables.wants_table(request.header("accept"))
        include = request.query.get("includeObject", "Metadata")

        def encode(obj: Mapping[str, Any]) -> bytes:
            if as_table:
                return _dumps(tables.table(resource.kind, [obj], str(obj["metadata"].get("resourceVersion")),
                                           include))
            return self.store.encoded(obj) if self.store.get(_key(obj)) is obj else _dumps(obj)

        chunks = watch_stream(self.store, resource, target.namespace, matches, request.query, encode)
        return Stream(200, "application/json", chunks)

    # -- writes ------------------------------------------------------------------------------------

    def _decode_object(self, request: Request, target: Target) -> tuple[dict[str, Any], list[str]]:
        obj = bodies.decode(request.body, request.header("content-type"))
        bodies.check_type(obj, target.resource)
        obj = bodies.drop_nulls(dict(obj))
        obj.setdefault("apiVersion", target.resource.api_version)
        obj.setdefault("kind", target.resource.kind)
        warnings = bodies.validate_fields(obj, target.resource.kind, request.query.get("fieldValidation"))
        if not isinstance(obj.get("metadata", {}), Mapping):
            raise BadRequest("metadata must be an object")
        return obj, warnings

    def _place(self, obj: dict[str, Any], target: Target) -> None:
        meta = obj.setdefault("metadata", {})
        if target.resource.namespaced:
            if meta.get("namespace") and meta["namespace"] != target.namespace:
                raise BadRequest("the namespace of the provided object does not match the namespace sent on the "
                                 "request")
            meta["namespace"] = target.namespace
        else:
            meta.pop("namespace", None)

    def _create(self, request: Request, target: Target) -> Answer:
        if target.subresource:
            return self._method_not_allowed(request, target)
        obj, warnings = self._decode_object(request, target)
        if target.resource.kind == "SelfSubjectAccessReview":
            obj["status"] = {"allowed": True, "reason": "the sandbox's client certificate is cluster-admin"}
            return json_response(201, obj)
        self._place(obj, target)
        if target.resource.namespaced:
            self.cluster.namespace_accepts(str(target.namespace))
        if target.resource.kind in WITH_STATUS:
            obj.pop("status", None)
        update_managed_fields(obj, request.query.get("fieldManager", ""), "Update", target.resource.api_version,
                              now_iso())
        if request.query.get("dryRun"):
            return json_response(201, obj, warning_headers(warnings))
        made = self.store.create(obj)
        return self._object_response(request, Target(target.resource, target.namespace, made["metadata"]["name"],
                                                     ""), made, 201, warnings)

    def _commit(self, request: Request, target: Target, old: Mapping[str, Any], new: dict[str, Any],
                expected_rv: str | None, warnings: Sequence[str] = (), code: int = 200) -> Answer:
        """The common end of update and patch: identity checks, status-subresource rules, the write."""
        resource = target.resource
        meta = new.setdefault("metadata", {})
        if meta.get("name", target.name) != target.name:
            raise BadRequest(f"the name of the object ({meta.get('name')}) does not match the name on the URL "
                             f"({target.name})")
        if new.get("kind", resource.kind) != resource.kind or new.get("apiVersion", resource.api_version) != (
                resource.api_version):
            raise BadRequest(f"the kind or apiVersion of {resource.plural} \"{target.name}\" cannot change")
        meta["name"] = target.name
        self._place(new, target)
        if target.subresource == "status":
            merged = copy.deepcopy(dict(old))
            if "status" in new:
                merged["status"] = new["status"]
            else:
                merged.pop("status", None)
            merged["metadata"] = {**merged["metadata"], **{k: v for k, v in new["metadata"].items()
                                                           if k == "managedFields"}}
            new = merged
        elif resource.kind in WITH_STATUS:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        if "managedFields" not in meta:
            meta["managedFields"] = copy.deepcopy(old["metadata"].get("managedFields") or [])
        if request.query.get("dryRun"):
            return json_response(code, new)
        updated = self.store.update(new, expected_rv)
        if resource.kind == "Pod" and target.subresource == "status":
            self.cluster.refresh_pod_conditions(str(target.namespace), target.name)
            updated = self.store.get(target.key) or updated
        return self._object_response(request, target, updated, code, warnings)

    def _update(self, request: Request, target: Target) -> Answer:
        if target.subresource not in ("", "status"):
            return self._method_not_allowed(request, target)
        obj, warnings = self._decode_object(request, target)
        body_name = (obj.get("metadata") or {}).get("name")
        if body_name and body_name != target.name:
            raise BadRequest(f"the name of the object ({body_name}) does not match the name on the URL ({target.name})")
        old = self._existing(target)
        update_managed_fields(obj, request.query.get("fieldManager", ""), "Update", target.resource.api_version,
                              now_iso(), target.subresource)
        expected = (obj.get("metadata") or {}).get("resourceVersion") or None
        return self._commit(request, target, old, obj, expected, warnings)

    def _patch(self, request: Request, target: Target) -> Answer:
        if target.subresource not in ("", "status"):
            return self._method_not_allowed(request, target)
        media = bodies.media_type(request.header("content-type"))
        if media not in bodies.PATCH_TYPES:
            raise bodies.UnsupportedMediaType(
                f"the body of the request was in an unknown format - accepted media types include: "
                f"{', '.join(bodies.PATCH_TYPES)}")
        patch = bodies.decode(request.body, media)
        old = self.store.get(target.key)
        manager = request.query.get("fieldManager", "")
        if media == bodies.APPLY_PATCH:
            return self._apply(request, target, old, patch, manager)
        if old is None:
            raise NotFound(f'{target.resource.plural} "{target.name}" not found', kind=target.resource.kind,
                           name=target.name)
        if media == bodies.JSON_PATCH:
            new = json_patch(old, patch)
        elif media == bodies.MERGE_PATCH:
            new = merge_patch(old, patch)
        else:
            new = strategic_merge_patch(old, patch)
        if not isinstance(new, dict):
            raise BadRequest("the patched object is not an object")
        new = bodies.drop_nulls(new)
        warnings = bodies.validate_fields(new, target.resource.kind, request.query.get("fieldValidation"))
        expected = None
        new_rv = (new.get("metadata") or {}).get("resourceVersion")
        if new_rv and new_rv != old["metadata"].get("resourceVersion"):
            expected = str(new_rv)
        update_managed_fields(new, manager, "Update", target.resource.api_version, now_iso(), target.subresource)
        return self._commit(request, target, old, new, expected, warnings)

    def _apply(self, request: Request, target: Target, old: Mapping[str, Any] | None, applied: Any,
               manager: str) -> Answer:
        """Server-side apply: create when absent (201), else merge (200)."""
        if not manager:
            raise BadRequest("PATCH, application/apply-patch+yaml: fieldManager is required for apply requests")
        if not isinstance(applied, Mapping):
            raise BadRequest("apply: the body must be an object")
        bodies.check_type(applied, target.resource)
        applied = bodies.drop_nulls(dict(applied))
        warnings = bodies.validate_fields(applied, target.resource.kind, request.query.get("fieldValidation"))
        applied.setdefault("metadata", {}).setdefault("name", target.name)
        self._place(applied, target)
        merged = server_side_apply(old, applied, manager, now_iso())
        if old is None:
            if target.subresource:
                raise NotFound(f'{target.resource.plural} "{target.name}" not found', kind=target.resource.kind,
                               name=target.name)
            if target.resource.namespaced:
                self.cluster.namespace_accepts(str(target.namespace))
            if target.resource.kind in WITH_STATUS:
                merged.pop("status", None)
            if request.query.get("dryRun"):
                return json_response(201, merged)
            made = self.store.create(merged)
            return self._object_response(request, target, made, 201, warnings)
        return self._commit(request, target, old, merged, None, warnings)

    # -- delete ------------------------------------------------------------------------------------

    def _delete_options(self, request: Request) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if request.body.strip():
            decoded = bodies.decode(request.body, request.header("content-type"))
            if isinstance(decoded, Mapping):
                options.update(decoded)
        query = request.query
        if "gracePeriodSeconds" in query:
            options["gracePeriodSeconds"] = query["gracePeriodSeconds"]
        if "propagationPolicy" in query:
            options["propagationPolicy"] = query["propagationPolicy"]
        if "orphanDependents" in query:
            options["orphanDependents"] = query["orphanDependents"].lower() == "true"
        return options

    def _delete_one(self, target: Target, obj: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
        preconditions = options.get("preconditions") or {}
        meta = obj["metadata"]
        if preconditions.get("uid") and preconditions["uid"] != meta.get("uid"):
            raise Conflict(f"Precondition failed: UID in precondition: {preconditions['uid']}, UID in object meta: "
                           f"{meta.get('uid')}", kind=target.resource.kind, name=target.name)
        if preconditions.get("resourceVersion") and preconditions["resourceVersion"] != meta.get("resourceVersion"):
            raise Conflict("Precondition failed: ResourceVersion in precondition: "
                           f"{preconditions['resourceVersion']}, ResourceVersion in object meta: "
                           f"{meta.get('resourceVersion')}", kind=target.resource.kind, name=target.name)
        grace = options.get("gracePeriodSeconds")
        propagation = str(options.get("propagationPolicy") or
                          ("Orphan" if options.get("orphanDependents") else "Background"))
        if propagation not in ("Background", "Foreground", "Orphan"):
            raise BadRequest(f"propagationPolicy {propagation!r} is not Background, Foreground or Orphan")
        return self.cluster.delete(target.resource.kind, str(meta["name"]), str(meta.get("namespace") or ""),
                                   None if grace is None else float(grace), propagation)

    def _delete(self, request: Request, target: Target) -> Answer:
        if target.subresource:
            return self._method_not_allowed(request, target)
        obj = self._existing(target)
        options = self._delete_options(request)
        if request.query.get("dryRun") or options.get("dryRun"):
            return self._object_response(request, target, obj)
        result = self._delete_one(target, obj, options)
        still = self.store.get(target.key)
        if still is not None:
            return self._object_response(request, target, still)
        body = status(200, "", "", name=target.name, group=target.resource.group, kind=target.resource.plural)
        body["details"]["uid"] = result["metadata"].get("uid")
        return json_response(200, body)

    def _delete_collection(self, request: Request, target: Target) -> Answer:
        matches = selector(request.query.get("labelSelector"), request.query.get("fieldSelector"))
        options = self._delete_options(request)
        deleted = []
        for obj in self.store.list(target.resource.kind, target.namespace):
            if matches(obj):
                one = Target(target.resource, obj["metadata"].get("namespace"), obj["metadata"]["name"], "")
                try:
                    deleted.append(self._delete_one(one, obj, options))
                except NotFound:
                    continue
        return json_response(200, {"kind": target.resource.list_kind, "apiVersion": target.resource.api_version,
                                   "metadata": {"resourceVersion": str(self.store.resource_version)},
                                   "items": deleted})

    # -- pods/log, pods/exec -------------------------------------------------------------------------

    def _log(self, request: Request, target: Target) -> Answer:
        pod = self._existing(target)
        query = request.query
        container = podlogs.pick_container(pod, query.get("container", ""))
        namespace = str(target.namespace)
        log = self.cluster.log_path(namespace, target.name, container)
        previous = query.get("previous", "").lower() == "true"
        is_running = self.cluster.container_running(namespace, target.name, container)
        start, end = podlogs.segment(log, previous, container, target.name, is_running)
        lines = int(query["tailLines"]) if query.get("tailLines") else None
        limit = int(query["limitBytes"]) if query.get("limitBytes") else None
        if previous or query.get("follow", "").lower() != "true":
            return Response(200, podlogs.tail(podlogs.read(log, start, end), lines, limit), TEXT)
        first = podlogs.tail(podlogs.read(log, start, end), lines, None)

        def still_running() -> bool:
            return self.cluster.container_running(namespace, target.name, container) and (
                podlogs.segment(log, False, container, target.name)[0] == start)

        return Stream(200, TEXT, podlogs.follow(log, end, first, still_running))

    def _exec(self, request: Request, target: Target) -> Answer:
        pod = self._existing(target)
        query = request.query
        container = podlogs.pick_container(pod, query.get("container", ""))
        command = list(request.multi.get("command") or [])
        if not command:
            raise BadRequest("you must specify at least 1 command")
        if self.exec_handler is None:
            return error(400, "BadRequest", "exec is not served")
        try:
            argv = self.cluster.exec_argv(str(target.namespace), target.name, container, command)
        except KeyError:
            raise BadRequest(f'container {container} is not running in pod {target.name}') from None
        return self.exec_handler(request, argv)


def warning_headers(warnings: Sequence[str]) -> list[tuple[str, str]]:
    """RFC 7234 warnings, as the API server sends them (code 299, agent "-", quoted text)."""
    return [("Warning", '299 - "' + w.replace("\\", "\\\\").replace('"', '\\"') + '"') for w in warnings]


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _key(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    return key_of(dict(obj))


__all__ = ["Api", "Request", "Stream", "Target", "Upgrade", "parse_resource_path"]
