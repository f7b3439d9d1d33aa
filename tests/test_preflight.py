"""Preflight of a cluster the user brings: RBAC reviews, the cluster domain and the DNS pods' selector."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_natsnet.preflight import (
    NEEDED,
    Permission,
    access_review,
    cluster_domain_from_corefile,
    dns_service_selector,
    missing_permissions,
)

KIND_COREFILE = """.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    forward . /etc/resolv.conf
    cache 30
}
"""


@pytest.mark.parametrize(("corefile", "domain"), [
    (KIND_COREFILE, "cluster.local"),
    (KIND_COREFILE.replace("cluster.local", "corp.example."), "corp.example"),
    (".:53 {\n    forward . /etc/resolv.conf\n}\n", None),
])
def test_cluster_domain_comes_from_the_kubernetes_plugin(corefile: str, domain: str | None) -> None:
    assert cluster_domain_from_corefile(corefile) == domain


def test_dns_pods_are_found_by_the_kube_dns_services_selector() -> None:
    services = [{"metadata": {"name": "other"}, "spec": {"selector": {"a": "b"}}},
                {"metadata": {"name": "kube-dns"}, "spec": {"selector": {"k8s-app": "coredns"}}}]
    assert dns_service_selector(services) == {"k8s-app": "coredns"}
    assert dns_service_selector(services[:1]) is None


def test_access_reviews_ask_in_the_namespace_unless_cluster_wide() -> None:
    scoped = access_review(Permission("patch", "pods", subresource="status"), "ns1")
    assert scoped["spec"]["resourceAttributes"] == {"verb": "patch", "resource": "pods", "group": "",
                                                    "subresource": "status", "namespace": "ns1"}
    wide = access_review(Permission("list", "networkpolicies", "networking.k8s.io", cluster_wide=True), "ns1")
    assert "namespace" not in wide["spec"]["resourceAttributes"]


def test_each_denied_permission_is_one_line_saying_why() -> None:
    def ask(review: dict[str, Any]) -> dict[str, Any]:
        attributes = review["spec"]["resourceAttributes"]
        denied = attributes["resource"] == "pods" and attributes.get("subresource") == "status"
        return {"status": {"allowed": not denied}}

    problems = missing_permissions(ask, "natsnet-x")
    assert problems == ["RBAC: the kubeconfig's user may not patch pods/status in namespaces like natsnet-x "
                        "(readiness gates force a pod not-ready); grant it in a Role/ClusterRole bound to that user"]
    assert missing_permissions(lambda review: {"status": {"allowed": True}}, "natsnet-x") == []
    assert len(NEEDED) == len({p.label + str(p.cluster_wide) for p in NEEDED})
