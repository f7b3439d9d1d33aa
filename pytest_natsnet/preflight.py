"""Checks, before any cell deploys, that a cluster can run the suites; each problem is one line that says what to do.

On a cluster the user brings (``--natsnet-provider=existing``), three things fail late and obscurely when they are
not checked first: RBAC (a missing verb surfaces as a 403 in the middle of a suite), Pod Security Admission (a
``restricted`` default rejects the probe and nats pods, and the deploy just times out), and the cluster's DNS
(its domain and its DNS pods' labels differ between distributions).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from pytest_natsnet import kube
from pytest_natsnet.dnsprofile import KIND_1_31, DnsProfile, profile_from_corefile
from pytest_natsnet.errors import NatsnetError
from pytest_natsnet.kube import Obj
from pytest_natsnet.kubeclient import KubeClient

DEFAULT_CLUSTER_DOMAIN = "cluster.local"


@dataclass(frozen=True)
class Permission:
    """One verb on one resource the plugin needs, and why (for the message)."""

    verb: str
    resource: str
    group: str = ""
    subresource: str = ""
    cluster_wide: bool = False
    why: str = ""

    @property
    def label(self) -> str:
        name = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        return f"{self.verb} {name}" + (f".{self.group}" if self.group else "")


NEEDED: tuple[Permission, ...] = (
    Permission("create", "namespaces", cluster_wide=True, why="each cell gets its own namespace"),
    Permission("delete", "namespaces", cluster_wide=True, why="cells are removed with their namespace"),
    Permission("list", "namespaces", cluster_wide=True, why="NetworkPolicy namespace selectors are evaluated"),
    Permission("create", "pods", why="probe pods run the checks inside the cluster network"),
    Permission("delete", "pods", why="the disruptive tests delete a server's pod"),
    Permission("create", "pods", subresource="exec", why="probes run in the probe pod"),
    Permission("get", "pods", subresource="log", why="server logs explain failures"),
    Permission("patch", "pods", subresource="status", why="readiness gates force a pod not-ready"),
    Permission("list", "pods", cluster_wide=True, why="the DNS pods in kube-system are NetworkPolicy peers"),
    Permission("list", "networkpolicies", "networking.k8s.io", cluster_wide=True,
               why="expectations are computed from every policy in force"),
    Permission("create", "networkpolicies", "networking.k8s.io", why="dns_egress applies policies"),
    Permission("list", "endpointslices", "discovery.k8s.io", why="DNS expectations follow the EndpointSlices"),
    Permission("create", "statefulsets", "apps", why="the chart installs a StatefulSet"),
    Permission("create", "services", why="the chart installs Services"),
    Permission("create", "configmaps", why="the chart installs its nats.conf"),
    Permission("create", "secrets", why="TLS cells need their certificates; helm stores releases"),
    Permission("create", "poddisruptionbudgets", "policy", why="the chart installs a PodDisruptionBudget"),
)


def access_review(permission: Permission, namespace: str) -> Obj:
    """The SelfSubjectAccessReview asking for ``permission`` (in ``namespace`` unless cluster-wide)."""
    attributes = {"verb": permission.verb, "resource": permission.resource, "group": permission.group}
    if permission.subresource:
        attributes["subresource"] = permission.subresource
    if not permission.cluster_wide:
        attributes["namespace"] = namespace
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attributes}}


def missing_permissions(ask: Callable[[Obj], Obj], namespace: str,
                        needed: Sequence[Permission] = NEEDED) -> list[str]:
    """One line per permission the cluster denies (``ask`` posts a review and returns the answer)."""
    problems = []
    for permission in needed:
        answer = ask(access_review(permission, namespace))
        if not (answer.get("status") or {}).get("allowed"):
            where = "cluster-wide" if permission.cluster_wide else f"in namespaces like {namespace}"
            problems.append(f"RBAC: the kubeconfig's user may not {permission.label} {where} ({permission.why}); "
                            "grant it in a Role/ClusterRole bound to that user")
    return problems


def cluster_domain_from_corefile(corefile: str) -> str | None:
    """The zone of CoreDNS's ``kubernetes`` plugin (``kubernetes cluster.local in-addr.arpa ip6.arpa {``)."""
    match = re.search(r"^\s*kubernetes\s+([A-Za-z0-9.-]+)", corefile, re.MULTILINE)
    return match.group(1).rstrip(".") if match else None


def dns_service_selector(services: Iterable[Obj]) -> dict[str, str] | None:
    """The selector of the ``kube-dns`` Service (every distribution keeps that Service name for compatibility)."""
    for service in services:
        if kube.name(service) == "kube-dns":
            selector = kube.spec(service).get("selector")
            return dict(selector) if isinstance(selector, dict) else None
    return None


@dataclass(frozen=True)
class ClusterFacts:
    """What the suites must not assume: the cluster domain, how the DNS pods are labelled and what the cluster
    DNS caches."""

    domain: str = DEFAULT_CLUSTER_DOMAIN
    dns_selector: tuple[tuple[str, str], ...] = (("k8s-app", "kube-dns"),)
    notes: tuple[str, ...] = ()
    dns: DnsProfile = KIND_1_31
    """Until read: the conservative profile (cluster answers and NXDOMAIN cached up to 30 s)."""


def discover_facts(client: KubeClient) -> ClusterFacts:
    """Reads the cluster domain and the DNS cache from CoreDNS's Corefile and the DNS pods' selector from the
    kube-dns Service; falls back to the Kubernetes defaults (and a cache that keeps cluster answers) and says so."""
    notes = []
    corefile = client.get("ConfigMap", "coredns", "kube-system")
    text = str(((corefile or {}).get("data") or {}).get("Corefile", ""))
    domain = cluster_domain_from_corefile(text)
    dns = profile_from_corefile(text, domain) if domain else KIND_1_31
    if domain is None:
        notes.append(f"cluster domain: no CoreDNS Corefile in kube-system/coredns; assuming {DEFAULT_CLUSTER_DOMAIN} "
                     f"and DNS like {KIND_1_31.name} ({KIND_1_31.description})")
    else:
        notes.append(f"cluster DNS {dns.description}")
    selector = dns_service_selector(client.list("Service", "kube-system"))
    if selector is None:
        raise NatsnetError("preflight: no kube-system/kube-dns Service with a selector: the suites need the "
                           "cluster DNS behind the standard kube-dns Service")
    return ClusterFacts(domain or DEFAULT_CLUSTER_DOMAIN, tuple(sorted(selector.items())), tuple(notes), dns)


def pod_security_problems(client: KubeClient, namespace: str, pods: Sequence[Obj]) -> list[str]:
    """Dry-run creates ``pods`` in ``namespace``: what Pod Security Admission (or another admission) refuses."""
    from pytest_natsnet.kinds import collection_path
    from pytest_natsnet.kubeclient import KubeError

    problems = []
    for pod in pods:
        try:
            client.request("POST", collection_path("Pod", namespace), query={"dryRun": "All"}, body=pod)
        except KubeError as error:
            problems.append(f"admission: a pod like {kube.name(pod)} is refused in {namespace} ({error.message}); "
                            "label the run's namespaces pod-security.kubernetes.io/enforce=privileged or relax "
                            "the cluster's default Pod Security level")
    return problems


def preflight_problems(client: KubeClient, namespace: str, labels: dict[str, str], pods: Sequence[Obj]) -> list[str]:
    """Every reason the run cannot work on this cluster, one line each: RBAC (reviews asked for ``namespace``, a
    namespace like the run's), then Pod Security (``pods`` dry-run in a short-lived namespace carrying ``labels``,
    removed again)."""
    problems = missing_permissions(lambda review: client.create(review), namespace)
    if problems:
        return problems  # without the rights, the dry run below would only repeat them
    client.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": labels}})
    try:
        return pod_security_problems(client, namespace, pods)
    finally:
        client.delete("Namespace", namespace, None)
