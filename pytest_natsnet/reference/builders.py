"""Builders of the objects the NATS chart 2.14.2 renders, from effective values (see ``schema.py``).

Each builder returns one object; constants hold the chart's fixed choices (ports, paths, images, probes).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pytest_natsnet.kube import Obj
from pytest_natsnet.natsconf import dumps
from pytest_natsnet.reference.merge import deep_merge
from pytest_natsnet.reference.tplyaml import evaluate, expression_values

CHART_NAME = "nats"
CHART_VERSION = "2.14.2"
APP_VERSION = "2.14.2"
NATS_IMAGE = "nats:2.14.2-alpine"
RELOADER_IMAGE = "natsio/nats-server-config-reloader:0.23.0"
NATS_BOX_IMAGE = "natsio/nats-box:0.19.7"

PORTS = {"nats": 4222, "cluster": 6222, "monitor": 8222}
CONFIG_DIR = "/etc/nats-config"
PID_DIR = "/var/run/nats"
PID_FILE = f"{PID_DIR}/nats.pid"
CERTS_DIR = "/etc/nats-certs"
CA_DIR = "/etc/nats-ca-cert"
CA_KEY = "ca.crt"
CONTEXTS_DIR = "/etc/nats-contexts"
RELOADER_MOUNT_PREFIX = "/etc/"

_PROBE_TIMINGS = {"initialDelaySeconds": 10, "successThreshold": 1, "timeoutSeconds": 5}
PROBES = {
    "livenessProbe": ("/healthz?js-enabled-only=true", 30, 3),
    "readinessProbe": ("/healthz?js-server-only=true", 10, 3),
    "startupProbe": ("/healthz", 10, 90),
}
NATS_BOX_ENTRYPOINT = """\
work_dir="$(pwd)"
mkdir -p "$XDG_CONFIG_HOME/nats"
cd "$XDG_CONFIG_HOME/nats"
if ! [ -s context ]; then
  ln -s /etc/nats-contexts context
fi
if ! [ -f context.txt ]; then
  echo -n "default" > context.txt
fi
cd "$work_dir"
exec /entrypoint.sh "$@"
"""


@dataclass(frozen=True)
class Release:
    """One ``helm template <name> nats --namespace <namespace>`` with its effective values."""

    name: str
    namespace: str
    values: Mapping[str, Any]

    @property
    def fullname(self) -> str:
        full = self.name if CHART_NAME in self.name else f"{self.name}-{CHART_NAME}"
        return full[:63].rstrip("-")

    @property
    def headless(self) -> str:
        return f"{self.fullname}-headless"

    @property
    def cluster(self) -> Mapping[str, Any]:
        return dict(self.values["config"]["cluster"])

    @property
    def cluster_enabled(self) -> bool:
        return bool(self.cluster["enabled"])

    def tls(self, proto: str) -> Mapping[str, Any] | None:
        """The enabled tls settings of ``nats`` or ``cluster`` (None when off)."""
        if proto == "cluster" and not self.cluster_enabled:
            return None
        settings: Mapping[str, Any] = self.values["config"][proto]["tls"]
        return settings if settings["enabled"] else None

    @property
    def jetstream(self) -> Mapping[str, Any] | None:
        """The JetStream settings when ``config.jetstream.enabled`` (None when off)."""
        settings: Mapping[str, Any] = self.values["config"]["jetstream"]
        return settings if settings["enabled"] else None

    @property
    def jetstream_pvc(self) -> Mapping[str, Any] | None:
        """The file store's PVC settings when JetStream, its file store and the PVC are all on."""
        jetstream = self.jetstream
        if jetstream is None or not jetstream["fileStore"]["enabled"]:
            return None
        pvc: Mapping[str, Any] = jetstream["fileStore"]["pvc"]
        return pvc if pvc["enabled"] else None

    @property
    def jetstream_pvc_name(self) -> str:
        return f"{self.fullname}-js"

    @property
    def ca_secret(self) -> str | None:
        ca = self.values["tlsCA"]
        return str(ca["secretName"]) if ca["enabled"] else None

    def labels(self, component: str) -> dict[str, str]:
        return {
            **self.selector(component),
            "app.kubernetes.io/managed-by": "Helm",
            "app.kubernetes.io/version": APP_VERSION,
            "helm.sh/chart": f"{CHART_NAME}-{CHART_VERSION}",
        }

    def selector(self, component: str) -> dict[str, str]:
        return {
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/instance": self.name,
            "app.kubernetes.io/name": CHART_NAME,
        }

    def metadata(self, name: str, component: str = "nats") -> dict[str, Any]:
        return {"labels": self.labels(component), "name": name}


# -- nats.conf


def nats_config(release: Release) -> dict[str, Any]:
    """The config document (``<< X >>`` strings stay as the chart's unquoted values)."""
    config: dict[str, Any] = {
        "http_port": PORTS["monitor"],
        "lame_duck_duration": "30s",
        "lame_duck_grace_period": "10s",
        "pid_file": PID_FILE,
        "port": PORTS["nats"],
        "server_name": "<< $SERVER_NAME >>",
    }
    if release.cluster_enabled:
        config["cluster"] = _cluster_block(release)
    nats_tls = release.tls("nats")
    if nats_tls is not None:
        config["tls"] = _tls_block(release, "nats", nats_tls)
    jetstream = release.jetstream
    if jetstream is not None:
        config["jetstream"] = _jetstream_block(jetstream)
    return deep_merge(config, release.values["config"]["merge"])


def _jetstream_block(jetstream: Mapping[str, Any]) -> dict[str, Any]:
    """The chart's ``files/config/jetstream.yaml``: a disabled store gets a limit of 0; sizes stay unquoted."""
    block: dict[str, Any] = {}
    memory = jetstream["memoryStore"]
    if not memory["enabled"]:
        block["max_memory_store"] = 0
    elif memory["maxSize"]:
        block["max_memory_store"] = f"<< {memory['maxSize']} >>"
    files = jetstream["fileStore"]
    if not files["enabled"]:
        block["max_file_store"] = 0
    else:
        block["store_dir"] = files["dir"]
        if files["maxSize"]:
            block["max_file_store"] = f"<< {files['maxSize']} >>"
        elif files["pvc"]["enabled"]:
            block["max_file_store"] = f"<< {files['pvc']['size']} >>"
    return deep_merge(block, jetstream["merge"])


def route_urls(release: Release) -> list[str]:
    """``<scheme>://<sts>-<i>.<headless>[.<ns>.svc.<domain>]:<port>`` for every replica."""
    cluster = release.cluster
    scheme = "tls" if release.tls("cluster") is not None else "nats"
    host = release.headless
    if cluster["routeURLs"]["useFQDN"]:
        host = f"{host}.{release.namespace}.svc.{cluster['routeURLs']['k8sClusterDomain']}"
    port = PORTS["cluster"]
    return [f"{scheme}://{release.fullname}-{i}.{host}:{port}" for i in range(int(cluster["replicas"]))]


def _cluster_block(release: Release) -> dict[str, Any]:
    block: dict[str, Any] = {
        "name": release.fullname,
        "no_advertise": bool(release.cluster["noAdvertise"]),
        "port": PORTS["cluster"],
        "routes": route_urls(release),
    }
    cluster_tls = release.tls("cluster")
    if cluster_tls is not None:
        block["tls"] = _tls_block(release, "cluster", cluster_tls)
    return deep_merge(block, release.cluster["merge"])


def _tls_block(release: Release, proto: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    block = {"ca_file": f"{CA_DIR}/{CA_KEY}"} if release.ca_secret else {}
    if settings["secretName"]:
        block["cert_file"] = f"{CERTS_DIR}/{proto}/tls.crt"
        block["key_file"] = f"{CERTS_DIR}/{proto}/tls.key"
    return deep_merge(block, settings.get("merge") or {})


def config_map(release: Release) -> Obj:
    return {
        "apiVersion": "v1",
        "data": {"nats.conf": dumps(nats_config(release))},
        "kind": "ConfigMap",
        "metadata": release.metadata(f"{release.fullname}-config"),
    }


# -- Services and PDB


def _service_port(name: str, app_protocol: str) -> dict[str, Any]:
    return {"appProtocol": app_protocol, "name": name, "port": PORTS[name], "targetPort": name}


def _tcp_protocol(release: Release, proto: str) -> str:
    return "tls" if release.tls(proto) is not None else "tcp"


def headless_service(release: Release) -> Obj:
    ports = [_service_port("nats", _tcp_protocol(release, "nats"))]
    if release.cluster_enabled:
        ports.append(_service_port("cluster", _tcp_protocol(release, "cluster")))
    ports.append(_service_port("monitor", "http"))
    service: Obj = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": release.metadata(release.headless),
        "spec": {
            "clusterIP": "None",
            "ports": ports,
            "publishNotReadyAddresses": True,
            "selector": release.selector("nats"),
        },
    }
    return deep_merge(service, release.values["headlessService"]["merge"])


def client_service(release: Release) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": release.metadata(release.fullname),
        "spec": {
            "ports": [_service_port("nats", _tcp_protocol(release, "nats"))],
            "selector": release.selector("nats"),
        },
    }


def pod_disruption_budget(release: Release) -> Obj:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": release.metadata(release.fullname),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": release.selector("nats")}},
    }


# -- StatefulSet


def _tls_volumes(release: Release) -> list[tuple[str, str, str]]:
    """``(volume name, secret name, mount path)`` in the chart's order: CA, nats, cluster."""
    volumes = []
    if release.ca_secret:
        volumes.append(("tls-ca", release.ca_secret, CA_DIR))
    for proto in ("nats", "cluster"):
        settings = release.tls(proto)
        if settings is not None and settings["secretName"]:
            volumes.append((f"{proto}-tls", str(settings["secretName"]), f"{CERTS_DIR}/{proto}"))
    return volumes


def _reloaded_files(release: Release) -> list[str]:
    """Every CA/cert/key file of an enabled tls block, protocols in alphabetical order."""
    files: list[str] = []
    for proto in sorted(("nats", "cluster")):
        settings = release.tls(proto)
        if settings is not None:
            files.extend(
                str(v) for k, v in sorted(_tls_block(release, proto, settings).items()) if k.endswith("_file")
            )
    return files


def container_env(release: Release) -> list[dict[str, Any]]:
    """POD_NAME and SERVER_NAME, then ``container.env`` in alphabetical order (as the chart emits a map)."""
    env: list[dict[str, Any]] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "SERVER_NAME", "value": "$(POD_NAME)"},
    ]
    known = expression_values(
        fullname=release.fullname, headless=release.headless, namespace=release.namespace, ports=PORTS
    )
    for name, value in sorted(release.values["container"]["env"].items()):
        if isinstance(value, Mapping):
            value = evaluate(str(value["$tplYaml"]), known, f"container.env.{name}.$tplYaml")
        env.append({"name": name, "value": str(value)})
    return env


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "failureThreshold": failures,
        "httpGet": {"path": path, "port": "monitor"},
        "periodSeconds": period,
        **_PROBE_TIMINGS,
    }


def _nats_mounts(release: Release, tls_mounts: list[dict[str, str]]) -> list[dict[str, str]]:
    """config, pid, the JetStream PVC at the file store's dir, then the TLS mounts (the chart's order)."""
    mounts = [{"mountPath": CONFIG_DIR, "name": "config"}, {"mountPath": PID_DIR, "name": "pid"}]
    jetstream = release.jetstream
    if jetstream is not None and release.jetstream_pvc is not None:
        mounts.append({"mountPath": str(jetstream["fileStore"]["dir"]), "name": release.jetstream_pvc_name})
    return [*mounts, *tls_mounts]


def _nats_container(release: Release, nats_mounts: list[dict[str, str]]) -> dict[str, Any]:
    ports = [{"containerPort": PORTS["nats"], "name": "nats"}]
    if release.cluster_enabled:
        ports.append({"containerPort": PORTS["cluster"], "name": "cluster"})
    ports.append({"containerPort": PORTS["monitor"], "name": "monitor"})
    return {
        "args": ["--config", f"{CONFIG_DIR}/nats.conf"],
        "env": container_env(release),
        "image": NATS_IMAGE,
        "lifecycle": {"preStop": {"exec": {"command": ["nats-server", f"-sl=ldm={PID_FILE}"]}}},
        **{name: _probe(*spec) for name, spec in PROBES.items()},
        "name": "nats",
        "ports": ports,
        "resources": {},
        "volumeMounts": nats_mounts,
    }


def _reloader_container(release: Release, nats_mounts: list[dict[str, str]]) -> dict[str, Any]:
    """The reloader mounts pid, then those of the nats container's mounts under ``/etc/`` (the chart's
    ``reloader.natsVolumeMountPrefixes``)."""
    args = ["-pid", PID_FILE, "-config", f"{CONFIG_DIR}/nats.conf"]
    for path in _reloaded_files(release):
        args += ["-config", path]
    return {
        "args": args,
        "image": RELOADER_IMAGE,
        "name": "reloader",
        "volumeMounts": [
            {"mountPath": PID_DIR, "name": "pid"},
            *(mount for mount in nats_mounts if mount["mountPath"].startswith(RELOADER_MOUNT_PREFIX)),
        ],
    }


def stateful_set(release: Release) -> Obj:
    tls = _tls_volumes(release)
    nats_mounts = _nats_mounts(release, [{"mountPath": path, "name": volume} for volume, _, path in tls])
    pod_template: dict[str, Any] = {
        "metadata": {"annotations": None, "labels": release.labels("nats")},
        "spec": {
            "containers": [_nats_container(release, nats_mounts), _reloader_container(release, nats_mounts)],
            "enableServiceLinks": False,
            "shareProcessNamespace": True,
            "terminationGracePeriodSeconds": 60,
            "volumes": [
                {"configMap": {"name": f"{release.fullname}-config"}, "name": "config"},
                {"emptyDir": {}, "name": "pid"},
                *({"name": volume, "secret": {"secretName": secret}} for volume, secret, _ in tls),
            ],
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": release.metadata(release.fullname),
        "spec": {
            "podManagementPolicy": "Parallel",
            "replicas": int(release.cluster["replicas"]) if release.cluster_enabled else 1,
            "selector": {"matchLabels": release.selector("nats")},
            "serviceName": release.headless,
            "template": deep_merge(pod_template, release.values["podTemplate"]["merge"]),
            "volumeClaimTemplates": _volume_claim_templates(release),
        },
    }


def _volume_claim_templates(release: Release) -> list[dict[str, Any]] | None:
    """The chart's ``stateful-set/jetstream-pvc.yaml`` when the file store is on a PVC, else null."""
    pvc = release.jetstream_pvc
    if pvc is None:
        return None
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": str(pvc["size"])}}}
    if pvc["storageClassName"]:
        spec["storageClassName"] = str(pvc["storageClassName"])
    return [{"metadata": {"name": release.jetstream_pvc_name}, "spec": spec}]


# -- nats-box


def _box_has_ca(release: Release) -> bool:
    """The chart gives nats-box the CA only when client TLS is on too."""
    return bool(release.ca_secret) and release.tls("nats") is not None


def nats_box_contexts(release: Release) -> Obj:
    context: dict[str, str] = {"url": f"nats://{release.fullname}"}
    if _box_has_ca(release):
        context["ca"] = f"{CA_DIR}/{CA_KEY}"
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": release.metadata(f"{release.fullname}-box-contexts", "nats-box"),
        "stringData": {"default.json": json.dumps(context, indent=2, sort_keys=True) + "\n"},
        "type": "Opaque",
    }


def nats_box_deployment(release: Release) -> Obj:
    mounts = [{"mountPath": CONTEXTS_DIR, "name": "contexts"}]
    volumes: list[dict[str, Any]] = [
        {"name": "contexts", "secret": {"secretName": f"{release.fullname}-box-contexts"}}
    ]
    if _box_has_ca(release):
        mounts.append({"mountPath": CA_DIR, "name": "tls-ca"})
        volumes.append({"name": "tls-ca", "secret": {"secretName": release.ca_secret}})
    container = {
        "args": ["sh", "-ec", "trap true INT TERM; sleep infinity & wait"],
        "command": ["sh", "-ec", NATS_BOX_ENTRYPOINT, "--"],
        "image": NATS_BOX_IMAGE,
        "name": "nats-box",
        "resources": None,
        "volumeMounts": mounts,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": release.metadata(f"{release.fullname}-box", "nats-box"),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": release.selector("nats-box")},
            "template": {
                "metadata": {"labels": release.labels("nats-box")},
                "spec": {"containers": [container], "enableServiceLinks": False, "volumes": volumes},
            },
        },
    }
