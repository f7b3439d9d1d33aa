"""The suites' shared helpers: bounded polling, applicability, and the bounds of the polls (derived from the
cluster's DNS profile and the servers' own resolv.conf, never from the sandbox's timing)."""

from __future__ import annotations

import itertools

import pytest

from pytest_natsnet.dnsprofile import dns_profile
from pytest_natsnet.expect.nats import ServerConf
from pytest_natsnet.matrix import Scenario
from pytest_natsnet.providers.base import ProviderInfo
from pytest_natsnet.suitekit import (
    CONTROLLER_LAG,
    LOG_MARGIN,
    MESH_SETTLE,
    Servers,
    cluster_qnames,
    dial_error,
    dns_change_timeout,
    eventually,
    learned_names_timeout,
    mesh_timeout,
    node_address,
    not_declared,
    route_lookup_failure_timeout,
    route_qnames,
)


def test_eventually_returns_as_soon_as_done() -> None:
    counter = itertools.count()
    done, value, seconds = eventually(lambda: ((n := next(counter)) >= 2, n), timeout=5.0, interval=0.01)
    assert (done, value) == (True, 2) and seconds < 5.0


def test_eventually_reports_the_last_observation_at_its_deadline() -> None:
    counter = itertools.count()
    done, value, seconds = eventually(lambda: (False, next(counter)), timeout=0.2, interval=0.05)
    assert done is False and value >= 2 and 0.2 <= seconds < 2.0


def test_not_declared_names_the_declared_failure() -> None:
    healthy = Scenario("default", {}, ())
    broken = Scenario("netpol-egress-no-dns", {}, (), expect=frozenset({"dns-blocked", "mesh-split"}))
    predicate = not_declared("dns-blocked")
    assert predicate(healthy) is None
    assert "dns-blocked" in str(predicate(broken))


# --- bounds derived from the cluster's DNS profile and the pods' resolv.conf -------------------------------

KIND_RESOLV = ("search natsnet.svc.cluster.local svc.cluster.local cluster.local runner.internal\n"
               "nameserver 198.18.128.10\noptions ndots:5\n")


class FakeDeployment:
    """Just what the bounds read: the namespace, the provider's DNS profile, a server's resolv.conf."""

    def __init__(self, profile: str, resolv: str = KIND_RESOLV) -> None:
        self.namespace = "natsnet"
        self.info = ProviderInfo("fake", True, True, False, dns_profile=dns_profile(profile))
        self._resolv = resolv

    def read_file(self, pod: str, path: str, container: str = "nats") -> str:
        assert path == "/etc/resolv.conf"
        return self._resolv


def group(*routes: str) -> Servers:
    pods = [{"metadata": {"name": f"nats-{i}"}, "status": {"podIP": f"198.18.0.{10 + i}"}} for i in range(3)]
    confs = [ServerConf(f"nats-{i}", f"198.18.0.{10 + i}", {"server_name": f"nats-{i}",
                                                         "cluster": {"routes": list(routes)}}) for i in range(3)]
    return Servers(pods, confs)


SHORT = ("nats://nats-0.nats-headless:6222", "nats://nats-1.nats-headless:6222")
FQDN = ("nats://nats-0.nats-headless.natsnet.svc.cluster.local:6222",)


def test_route_hosts_are_judged_by_the_in_zone_name_they_resolve_as() -> None:
    assert route_qnames("natsnet", group(*SHORT, "nats://198.18.0.10:6222")) == [
        "nats-0.nats-headless.natsnet.svc.cluster.local", "nats-1.nats-headless.natsnet.svc.cluster.local"]
    assert route_qnames("natsnet", group(*FQDN)) == ["nats-0.nats-headless.natsnet.svc.cluster.local"]


@pytest.mark.parametrize(
    ("profile", "mesh", "dns_change"),
    [
        ("kind-1.31", MESH_SETTLE + 30, CONTROLLER_LAG + 30),  # cache 30 keeps cluster answers and NXDOMAIN
        ("kind-1.32", MESH_SETTLE, CONTROLLER_LAG),  # no cluster-zone cache
        ("fast", MESH_SETTLE, CONTROLLER_LAG),
    ],
)
def test_mesh_and_dns_bounds_follow_the_clusters_dns_profile(profile: str, mesh: float, dns_change: float) -> None:
    deployment = FakeDeployment(profile)
    assert mesh_timeout(deployment, group(*SHORT)) == mesh  # type: ignore[arg-type]
    qname = "nats-2.nats-headless.natsnet.svc.cluster.local"
    assert dns_change_timeout(deployment, [qname]) == dns_change  # type: ignore[arg-type]


def test_a_mesh_of_ip_routes_waits_for_no_dns() -> None:
    assert mesh_timeout(FakeDeployment("kind-1.31"), group("nats://198.18.0.10:6222")) == MESH_SETTLE  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("resolv", "give_up"),
    [
        (KIND_RESOLV, 50.0),  # Go: 5 names (4 search domains + the bare name) x 2 attempts x 5 s
        ("search natsnet.svc.cluster.local svc.cluster.local cluster.local\nnameserver 198.18.128.10\n"
         "options ndots:5\n", 40.0),
        ("nameserver 198.18.128.10\noptions ndots:5 timeout:1 attempts:1\n", 1.0),
    ],
)
def test_the_route_lookup_failure_bound_comes_from_the_servers_resolv_conf(resolv: str, give_up: float) -> None:
    deployment = FakeDeployment("kind-1.31", resolv)
    assert route_lookup_failure_timeout(deployment, group(*SHORT)) == give_up + LOG_MARGIN  # type: ignore[arg-type]


def test_node_address_prefers_an_external_ip() -> None:
    internal = {"status": {"addresses": [{"type": "InternalIP", "address": "172.18.0.2"},
                                         {"type": "Hostname", "address": "kind-control-plane"}]}}
    external = {"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.5"},
                                         {"type": "ExternalIP", "address": "203.0.113.7"}]}}
    assert node_address([internal]) == "172.18.0.2"
    assert node_address([internal, external]) == "203.0.113.7"
    assert node_address([{"status": {}}]) is None


def test_the_probes_that_wait_for_jetstream_are_the_charts_startup_and_readiness_probes() -> None:
    from pytest_natsnet.suitekit import probe_failures, probes_waiting_for_jetstream

    def probe(path: str) -> dict[str, object]:
        return {"httpGet": {"path": path, "port": "monitor"}, "periodSeconds": 10}

    pod = {"spec": {"containers": [{"name": "nats", "startupProbe": probe("/healthz"),
                                    "readinessProbe": probe("/healthz?js-server-only=true"),
                                    "livenessProbe": probe("/healthz?js-enabled-only=true")}]}}
    assert [kind for kind, _ in probes_waiting_for_jetstream(pod)] == ["startupProbe", "readinessProbe"]
    enabled_only = {"spec": {"containers": [{"name": "nats",
                                             "readinessProbe": probe("/healthz?js-enabled-only=true")}]}}
    assert probes_waiting_for_jetstream(enabled_only) == []
    events = [
        {"involvedObject": {"name": "nats-0"}, "reason": "Unhealthy", "count": 3,
         "message": "Startup probe failed: HTTP probe failed with statuscode: 503"},
        {"involvedObject": {"name": "nats-0"}, "reason": "Unhealthy", "message": "Readiness probe failed: x"},
        {"involvedObject": {"name": "nats-1"}, "reason": "Unhealthy", "message": "Startup probe failed: y"},
    ]
    assert probe_failures(events, "nats-0", "startupProbe") == 3  # a real cluster aggregates repeats in count
    assert probe_failures(events, "nats-0", "readinessProbe") == 1
    assert probe_failures(events, "nats-2", "startupProbe") == 0


def test_learned_urls_wait_for_dns_only_for_names_in_the_cluster_domain() -> None:
    deployment = FakeDeployment("kind-1.31")
    by_name = ["tls://nats-1.nats-headless.natsnet.svc.cluster.local:4222", "tls://198.18.0.11:4222"]
    assert learned_names_timeout(deployment, by_name) == CONTROLLER_LAG + 30  # type: ignore[arg-type]
    assert learned_names_timeout(deployment, ["nats://198.18.0.11:4222", "nats://nats.example.com:4222"]) == 0.0  # type: ignore[arg-type]
    assert learned_names_timeout(FakeDeployment("kind-1.32"), by_name) == CONTROLLER_LAG  # type: ignore[arg-type]
    short = ["nats://nats-1.nats-headless:4222"]  # e.g. client_advertise: nats-1.nats-headless
    assert learned_names_timeout(deployment, short) == CONTROLLER_LAG + 30  # type: ignore[arg-type]


def test_cluster_names_are_the_in_zone_names_hosts_resolve_as() -> None:
    hosts = ["nats", "nats-0.nats-headless", "nats.other.svc", "nats.natsnet.svc.corp.example", "198.18.0.1",
             "nats.example.com"]
    assert cluster_qnames(hosts, "natsnet", "corp.example") == [
        "nats-0.nats-headless.natsnet.svc.corp.example", "nats.natsnet.svc.corp.example",
        "nats.other.svc.corp.example"]


def test_dns_bounds_use_the_clusters_own_domain() -> None:
    deployment = FakeDeployment("kind-1.31")
    deployment.info = ProviderInfo("fake", True, True, False, cluster_domain="corp.example",
                                   dns_profile=dns_profile("kind-1.32"))
    # kind-1.32 caches everything but the cluster zone: judged against cluster.local, corp.example names would be
    # "outside" and get a 30 s bound
    assert dns_change_timeout(deployment, ["nats-0.nats-headless.natsnet.svc.corp.example"]) == CONTROLLER_LAG  # type: ignore[arg-type]


def test_a_failed_dial_says_why_in_the_reason() -> None:
    from pytest_natsnet.probe.model import Outcome, ProbeResult

    failed = ProbeResult("u", "nats", Outcome.UNRESOLVED, {"error": "[Errno -2] Name does not resolve"})
    assert dial_error(failed, "inside") == "; inside dial: [Errno -2] Name does not resolve"
    assert dial_error(ProbeResult("u", "nats", Outcome.TIMEOUT, {})) == "; dial: timeout"
    assert dial_error(ProbeResult("u", "nats", Outcome.OK, {"error": "ignored"})) == ""


class ReplacingDeployment:
    """A cell whose StatefulSet has just recreated nats-1 (new uid, running) behind the plugin's readiness gate."""

    namespace = "natsnet"

    def __init__(self) -> None:
        self.conditions: list[tuple[str, str, bool]] = []

    def objects(self, kind: str) -> list[dict[str, object]]:
        gate = [{"conditionType": "natsnet.io/ready"}]
        if kind == "Pod":
            return [{"kind": "Pod", "metadata": {"name": f"nats-{i}", "uid": f"uid-{i}", "labels": {"app": "nats"}},
                     "spec": {"readinessGates": gate},
                     "status": {"phase": "Running", "podIP": f"198.18.0.{20 + i}",
                                "conditions": [] if i == 1 else [{"type": "natsnet.io/ready", "status": "True"}]}}
                    for i in range(3)]
        if kind == "StatefulSet":
            template = {"spec": {"volumes": [{"name": "config", "configMap": {"name": "nats-config"}}]}}
            return [{"kind": "StatefulSet", "metadata": {"name": "nats"},
                     "spec": {"selector": {"matchLabels": {"app": "nats"}}, "template": template}}]
        if kind == "ConfigMap":
            return [{"kind": "ConfigMap", "metadata": {"name": "nats-config"}, "data": {"nats.conf": "port: 4222\n"}}]
        return []

    def set_pod_condition(self, pod: str, condition_type: str, status: bool) -> None:
        self.conditions.append((pod, condition_type, status))


def test_a_replaced_pod_gets_the_plugins_readiness_gate_opened() -> None:
    """Behind a gate nobody sets, a replaced pod is never Ready (with publishNotReadyAddresses false never in DNS:
    the full matrix's routes-seed cells lost their seed that way)."""
    from pytest_natsnet.session import Cell, Replacement
    from pytest_natsnet.suitekit import wait_for_replacement

    deployment = ReplacingDeployment()
    cell = Cell(Scenario("pnra-false", {}, ()), deployment, None, 0.0)  # type: ignore[arg-type]
    after = wait_for_replacement(cell, Replacement("nats-1", "uid-old", "198.18.0.9", {}, 0.0), 5.0)
    assert deployment.conditions == [("nats-1", "natsnet.io/ready", True)]
    assert after.ip("nats-1") == "198.18.0.21"
