"""The Debugging Flow walked through the kube path: objects through the client, probe batches through a probe pod
(``Deployment.probe``), logs through the API. Bounded: every probe batch has a deadline taken from one budget, and
the logs are read while the first batch runs. Read-only apart from the probe pod the deployment creates.

``observe`` returns the :class:`~pytest_natsnet.evidence.model.Observations` the findings are computed from, and
the :class:`Raw` material the bundle keeps beside its README (full logs, objects, the DNS query log).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_natsnet import kube, natsconf
from pytest_natsnet.errors import NatsnetError
from pytest_natsnet.evidence import dnslog, natslogs, plan
from pytest_natsnet.evidence.certs import describe_secret, secret_value
from pytest_natsnet.evidence.model import CertInfo, Check, LogLine, Observations, ProbeSite
from pytest_natsnet.expect.nats import ServerConf, pod_env
from pytest_natsnet.kube import Obj
from pytest_natsnet.probe.model import ProbeAnswerError, parse_answer
from pytest_natsnet.providers.base import Deployment, ProbeTarget

NAMESPACE_KINDS = ("StatefulSet", "Pod", "Service", "EndpointSlice", "NetworkPolicy", "ConfigMap", "Event",
                   "Deployment", "PodDisruptionBudget", "PersistentVolumeClaim")
DEFAULT_BUDGET = 30.0
MIN_BATCH_SECONDS = 8.0
DNS_LABELS = {"k8s-app": "kube-dns"}


@dataclass
class Raw:
    """What the bundle keeps beside the README, as collected."""

    objects: dict[str, list[Obj]] = field(default_factory=dict)
    """Kind -> objects of the namespace; Secrets are NOT here (see ``secrets``)."""
    secrets: list[Obj] = field(default_factory=list)
    """The namespace's Secrets as read: the bundle writes them redacted; never written as they are."""
    logs: dict[str, str] = field(default_factory=dict)
    """``<pod>.<container>`` -> the log (previous run first)."""
    dns_log: list[str] = field(default_factory=list)
    """The cluster DNS log lines about the namespace (its pods' queries and queries for its names)."""
    dns_log_sources: list[str] = field(default_factory=list)
    answers: dict[str, Any] = field(default_factory=dict)
    """Batch name -> the probe program's raw answer (resolv.conf, hostname, results)."""
    cluster: dict[str, Any] = field(default_factory=dict)
    """``/version`` and the nodes' ``nodeInfo``, when readable."""
    others: dict[str, dict[str, list[Obj]]] = field(default_factory=dict)
    """The cell's other namespaces (made by its tests) -> kind -> objects."""
    other_logs: dict[str, dict[str, str]] = field(default_factory=dict)
    """The cell's other namespaces -> ``<pod>.<container>`` -> log."""


@dataclass
class Budget:
    """One deadline for the whole flow."""

    seconds: float
    started: float = field(default_factory=time.monotonic)

    def left(self) -> float:
        return max(0.0, self.seconds - (time.monotonic() - self.started))

    def for_batch(self) -> float:
        return max(MIN_BATCH_SECONDS, self.left())


LogReader = Callable[[str, str, str], str]
"""(pod, container, namespace) -> log text."""


def _list(deployment: Deployment, kind: str, namespace: str, gaps: list[str]) -> list[Obj]:
    try:
        return list(deployment.objects(kind, namespace))
    except NatsnetError as error:
        gaps.append(f"could not list {kind} in {namespace}: {error}")
        return []


def choose_statefulset(sets: Sequence[Obj], release: str) -> Obj | None:
    """The release's StatefulSet (``app.kubernetes.io/instance``), else the only one, else one running nats."""
    for sts in sets:
        if kube.labels(sts).get("app.kubernetes.io/instance") == release:
            return sts
    if len(sets) == 1:
        return sets[0]
    for sts in sets:
        containers = (kube.spec(sts).get("template") or {}).get("spec", {}).get("containers") or []
        if any(str(c.get("image", "")).split("/")[-1].startswith("nats:") for c in containers):
            return sts
    return None


def statefulset_pods(sts: Obj, pods: Iterable[Obj]) -> list[Obj]:
    selector = kube.spec(sts).get("selector") or {}
    owned = [p for p in pods if kube.selector_matches(selector, kube.labels(p))
             and kube.name(p).startswith(f"{kube.name(sts)}-")]
    return sorted(owned, key=lambda p: int(kube.name(p).rsplit("-", 1)[-1]) if kube.name(p).rsplit("-", 1)[-1]
                  .isdigit() else 1 << 30)


def _template_spec(sts: Obj) -> dict[str, Any]:
    return dict((kube.spec(sts).get("template") or {}).get("spec") or {})


def nats_container(spec: Mapping[str, Any]) -> dict[str, Any]:
    containers = list(spec.get("containers") or [])
    return next((c for c in containers if c.get("name") == "nats"), containers[0] if containers else {})


def server_confs(sts: Obj, pods: Sequence[Obj], configmaps: Sequence[Obj], gaps: list[str]) -> list[ServerConf]:
    """Each server pod's nats.conf (the mounted ConfigMap), parsed with the pod's env."""
    spec = _template_spec(sts)
    volume = next((v for v in spec.get("volumes") or [] if "configMap" in v), None)
    configmap = kube.find(configmaps, "ConfigMap", str(volume["configMap"]["name"])) if volume else None
    if configmap is None:
        gaps.append(f"StatefulSet {kube.name(sts)} mounts no ConfigMap that exists: nats.conf unknown")
        return [ServerConf(kube.name(p), str((p.get("status") or {}).get("podIP") or ""), {}) for p in pods]
    data = configmap.get("data") or {}
    text = str(data.get("nats.conf") or next(iter(data.values()), ""))
    confs = []
    for pod in pods:
        try:
            config = natsconf.parse(text, pod_env(pod))
        except Exception as error:  # a config nats-server itself would reject: say so, keep going
            gaps.append(f"nats.conf of {kube.name(pod)} does not parse: {error}")
            config = {}
        confs.append(ServerConf(kube.name(pod), str((pod.get("status") or {}).get("podIP") or ""), config))
    return confs


def _mounted_file(spec: Mapping[str, Any], path: str) -> tuple[str, str] | None:
    """(Secret name, key) of the file at ``path`` in the nats container, when a Secret volume holds it."""
    container = nats_container(spec)
    volumes = {v.get("name"): v for v in spec.get("volumes") or []}
    for mount in container.get("volumeMounts") or []:
        prefix = str(mount.get("mountPath", "")).rstrip("/") + "/"
        volume = volumes.get(mount.get("name")) or {}
        if path.startswith(prefix) and "secret" in volume:
            return str(volume["secret"].get("secretName")), path[len(prefix):]
    return None


def certificates(sts: Obj, secrets: Sequence[Obj], confs: Sequence[ServerConf]
                 ) -> tuple[dict[str, list[CertInfo]], str | None, str | None, str | None]:
    """Every certificate in the Secrets the servers mount; the keys of the route and client certificates; and
    the CA a client should trust (PEM text, kept in memory for the probe only)."""
    spec = _template_spec(sts)
    mounted = {str((v.get("secret") or {}).get("secretName")) for v in spec.get("volumes") or [] if "secret" in v}
    described: dict[str, list[CertInfo]] = {}
    for secret in secrets:
        if kube.name(secret) in mounted:
            for key, infos in describe_secret(secret).items():
                described[f"Secret {kube.name(secret)}/{key}"] = infos
    config = confs[0].config if confs else {}

    def key_of(path: object) -> str | None:
        found = _mounted_file(spec, str(path)) if path else None
        return f"Secret {found[0]}/{found[1]}" if found else None

    cluster_tls = (config.get("cluster") or {}).get("tls") or {}
    client_tls = config.get("tls") or {}
    ca_pem = None
    ca_file = client_tls.get("ca_file") or cluster_tls.get("ca_file")
    ca_where = _mounted_file(spec, str(ca_file)) if ca_file else None
    if ca_where:
        ca_secret = kube.find(secrets, "Secret", ca_where[0])
        value = secret_value(ca_secret, ca_where[1]) if ca_secret else None
        ca_pem = value.decode("utf-8", "replace") if value and b"PRIVATE KEY" not in value else None
    return described, key_of(cluster_tls.get("cert_file")), key_of(client_tls.get("cert_file")), ca_pem


def _run_batch(deployment: Deployment, target: ProbeTarget, checks: Sequence[Check], timeout: float,
               name: str, raw: Raw, gaps: list[str]) -> dict[str, Check]:
    runnable = [c for c in checks if not c.skipped]
    batch = {"requests": [dict(c.request) for c in runnable], "concurrency": 16}
    done = {c.key: c for c in checks}
    try:
        answer = deployment.probe(target, batch, timeout)
        raw.answers[name] = answer
        for result in parse_answer(answer, batch):
            done[result.key] = dataclasses.replace(done[result.key], result=result)
    except (NatsnetError, ProbeAnswerError) as error:
        gaps.append(f"probe batch {name} from {target.namespace}/{target.pod_name} failed: {error}")
    return done


def _read_logs(pods: Sequence[Obj], namespace: str, read: LogReader) -> dict[str, str]:
    logs = {}
    for pod in pods:
        for container in kube.spec(pod).get("containers") or []:
            try:
                logs[f"{kube.name(pod)}.{container['name']}"] = read(kube.name(pod), container["name"], namespace)
            except NatsnetError as error:
                logs[f"{kube.name(pod)}.{container['name']}"] = f"(no log: {error})"
    return logs


def _dns_log(dns_pods: Sequence[Obj], read: LogReader, extra: Iterable[str], namespace: str,
             client_ips: set[str], raw: Raw) -> None:
    for pod in dns_pods:
        for container in kube.spec(pod).get("containers") or []:
            where = kube.namespace_of(pod, "kube-system")
            try:
                lines = read(kube.name(pod), container["name"], where).splitlines()
            except NatsnetError:
                continue
            kept = 0
            for line in lines:
                query = dnslog.parse(line)
                if (query is None and ("[ERROR]" in line or "[WARNING]" in line)) or (
                        query is not None and dnslog.relevant(query, namespace, client_ips)):
                    raw.dns_log.append(line)
                    kept += 1
            raw.dns_log_sources.append(f"kubectl logs -n {where} {kube.name(pod)} -c {container['name']} "
                                       f"({kept} of {len(lines)} lines)")
    found = 0
    for line in extra:
        if namespace in line or any(ip in line for ip in client_ips):
            query = dnslog.parse(line)
            if query is not None and dnslog.relevant(query, namespace, client_ips):
                raw.dns_log.append(line.rstrip("\n"))
                found += 1
    if found:
        raw.dns_log_sources.append(f"the provider's DNS query log ({found} lines)")


def observe(
    deployment: Deployment,
    target: ProbeTarget,
    *,
    release: str = "nats",
    budget: float = DEFAULT_BUDGET,
    read_log: LogReader | None = None,
    client: Any = None,
    extra_dns_log: Callable[[], Iterable[str]] | None = None,
    other_namespaces: Sequence[str] = (),
) -> tuple[Observations, Raw]:
    """Walks the Debugging Flow for ``deployment``'s namespace, probing from ``target`` (created if needed);
    ``other_namespaces`` (those the cell's tests made) are only dumped: objects and logs."""
    clock = Budget(budget)
    namespace = deployment.namespace
    read = read_log or (lambda pod, container, ns: deployment.logs(pod, container, ns))
    gaps: list[str] = []
    timings: dict[str, float] = {}
    raw = Raw()

    started = time.monotonic()
    for kind in NAMESPACE_KINDS:
        raw.objects[kind] = _list(deployment, kind, namespace, gaps)
    raw.secrets = _list(deployment, "Secret", namespace, gaps)
    namespaces = _list(deployment, "Namespace", "*", gaps)
    dns_pods = [p for p in _list(deployment, "Pod", "kube-system", gaps)
                if all(kube.labels(p).get(k) == v for k, v in DNS_LABELS.items())]
    if client is not None:
        _cluster_facts(client, raw)
    timings["objects"] = time.monotonic() - started

    sts = choose_statefulset(raw.objects["StatefulSet"], release)
    pods = statefulset_pods(sts, raw.objects["Pod"]) if sts else []
    if sts is None:
        gaps.append(f"no StatefulSet of release {release} in {namespace}: nothing to walk the flow on")
    confs = server_confs(sts, pods, raw.objects["ConfigMap"], gaps) if sts else []
    certs, route_cert, client_cert, ca_pem = certificates(sts, raw.secrets, confs) if sts else ({}, None, None,
                                                                                                 None)
    obs = Observations(
        namespace=namespace, release=release, objects={k: raw.objects[k] for k in NAMESPACE_KINDS},
        namespace_labels={kube.name(n): kube.labels(n) for n in namespaces}, dns_pods=dns_pods,
        statefulset=kube.name(sts) if sts else None, servers=confs, certificates=certs, route_cert=route_cert,
        client_cert=client_cert, probe=ProbeSite(target.pod_name, target.namespace, dict(target.labels)))
    if sts is None:
        return dataclasses.replace(obs, gaps=tuple(gaps), timings=timings), raw

    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="natsnet-evidence") as pool:
        logs_future = pool.submit(_read_logs, raw.objects["Pod"], namespace, read)
        started = time.monotonic()
        checks = _run_batch(deployment, target, [], clock.for_batch(), "start", raw, gaps)
        timings["probe pod"] = time.monotonic() - started
        resolv = str((raw.answers.get("start") or {}).get("resolv_conf") or "")
        obs = dataclasses.replace(obs, zone=plan.zone_of(resolv, namespace),
                                  probe=ProbeSite(target.pod_name, target.namespace, dict(target.labels), resolv))
        if "start" in raw.answers:
            started = time.monotonic()
            checks = _run_batch(deployment, target, plan.first_batch(obs), clock.for_batch(), "first", raw, gaps)
            timings["first probe batch"] = time.monotonic() - started
            obs = dataclasses.replace(obs, checks=checks, monitor=_monitor(obs, checks))
        started = time.monotonic()
        raw.logs = logs_future.result(timeout=max(5.0, clock.left() + 5.0))
        timings["logs"] = time.monotonic() - started
    lines: list[LogLine] = []
    for conf in confs:
        key = f"{conf.pod}.{nats_container(_template_spec(sts)).get('name', 'nats')}"
        lines += natslogs.extract(conf.pod, raw.logs.get(key, ""))
    obs = dataclasses.replace(obs, log_lines=tuple(lines))
    if "start" in raw.answers:
        tls = plan.ClientTls(ca_pem, None) if ca_pem and any(s.config.get("tls") for s in confs) else None
        started = time.monotonic()
        second = _run_batch(deployment, target, plan.second_batch(obs, tls), clock.for_batch(), "second", raw, gaps)
        timings["second probe batch"] = time.monotonic() - started
        obs = dataclasses.replace(obs, checks={**obs.checks, **second})
    started = time.monotonic()
    client_ips = {str((p.get("status") or {}).get("podIP")) for p in raw.objects["Pod"]
                  if (p.get("status") or {}).get("podIP")}
    extra: Iterable[str] = ()
    if extra_dns_log is not None:
        try:
            extra = extra_dns_log()
        except OSError as error:
            gaps.append(f"the provider's DNS query log could not be read: {error}")
    _dns_log(dns_pods, read, extra, namespace, client_ips, raw)
    timings["dns log"] = time.monotonic() - started
    started = time.monotonic()
    for other in other_namespaces:
        raw.others[other] = {kind: items for kind in NAMESPACE_KINDS if (items := _list(deployment, kind, other, gaps))}
        raw.other_logs[other] = _read_logs(raw.others[other].get("Pod", []), other, read)
    if other_namespaces:
        timings["other namespaces"] = time.monotonic() - started
    timings["total"] = time.monotonic() - clock.started
    return dataclasses.replace(obs, gaps=tuple(gaps), timings=timings), raw


def _monitor(obs: Observations, checks: Mapping[str, Check]) -> dict[str, dict[str, Any]]:
    bodies: dict[str, dict[str, Any]] = {}
    for server in obs.servers:
        for path in ("/varz", "/routez"):
            check = checks.get(plan.monitor_key(server.pod, path))
            body = check.result.detail.get("json") if check and check.result else None
            if isinstance(body, dict):
                bodies.setdefault(server.name, {})[path] = body
    return bodies


def _cluster_facts(client: Any, raw: Raw) -> None:
    try:
        raw.cluster["version"] = client.request("GET", "/version")
    except NatsnetError as error:
        raw.cluster["version"] = f"(unreadable: {error})"
    try:
        raw.cluster["nodes"] = [{"name": kube.name(n), **((n.get("status") or {}).get("nodeInfo") or {})}
                                for n in client.list("Node", None)]
    except NatsnetError as error:
        raw.cluster["nodes"] = f"(unreadable: {error})"
