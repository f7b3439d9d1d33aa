"""Expected mesh, connect_urls and TLS outcomes from parsed nats.conf (golden chart renders as input)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from golden_data import RENDERED

from pytest_natsnet.expect.nats import (
    ServerConf,
    expected_client_tls,
    expected_connect_urls,
    expected_mesh,
    observed_mesh,
    pod_env,
    san_covers,
    server_confs,
)
from pytest_natsnet.table import Comparison

GOLDEN = RENDERED
NS = "natsnet"
FQDN_SANS = ["*.nats-headless.natsnet.svc.cluster.local"]
GOOD_SANS = ["*.nats-headless", *FQDN_SANS]


def rendered(scenario: str) -> list[dict[str, Any]]:
    path = GOLDEN / f"{scenario}.yaml"
    if not path.exists():
        pytest.skip(f"golden render {path} is not available")
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def servers_of(
    scenario: str, advertise: str | None = None, routes: list[str] | None = None
) -> list[ServerConf]:
    docs = rendered(scenario)
    conf = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["nats.conf"]
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    pod_spec = sts["spec"]["template"]["spec"]
    pods = [{"kind": "Pod", "metadata": {"name": f"nats-{i}", "namespace": NS}, "spec": pod_spec,
             "status": {"podIP": f"198.18.0.{10 + i}"}} for i in range(3)]
    servers = server_confs(pods, conf)
    if advertise is None and routes is None:
        return servers
    patched = []
    for server in servers:
        cluster = dict(server.cluster)
        if advertise is not None:
            cluster["advertise"] = advertise
        if routes is not None:
            cluster["routes"] = routes
        patched.append(ServerConf(server.pod, server.ip, {**server.config, "cluster": cluster}))
    return patched


def edges(servers: list[ServerConf], failures: frozenset[str], sans: list[str] | None = None) -> set[str]:
    mesh = expected_mesh(servers, failures, sans).table
    return {f"{a[-1]}{b[-1]}" for a, b in mesh.grid_keys() if a < b and mesh.get(a, b)}


FULL = {"01", "02", "12"}


def test_pod_env_expands_field_refs_and_references() -> None:
    sts = next(d for d in rendered("advertise-dns") if d["kind"] == "StatefulSet")
    pod = {"metadata": {"name": "nats-1", "namespace": NS}, "spec": sts["spec"]["template"]["spec"]}
    env = pod_env(pod)
    assert env["SERVER_NAME"] == "nats-1"
    assert env["CLIENT_ADVERTISE"] == "nats-1.nats-headless.natsnet.svc.cluster.local:4222"


def test_healthy_cell_expects_full_mesh_even_when_config_is_wrong() -> None:
    servers = servers_of("default", routes=["nats://nats-9.nowhere:6222"])
    mesh = expected_mesh(servers)
    assert edges(servers, frozenset()) == FULL
    assert mesh.reasons[("nats-0", "nats-1")] == "healthy cell: full mesh"
    assert mesh.table.get("nats-0", "nats-0") is False


@pytest.mark.parametrize(("scenario", "failures", "sans", "advertise", "routes", "expected"), [
    pytest.param("netpol-egress-no-dns", {"dns-blocked", "mesh-split"}, None, None, None, set(),
                 id="dns-blocked"),
    pytest.param("default", {"dns-blocked"}, None, None,
                 ["nats://198.18.0.10:6222"], FULL, id="dns-blocked-ip-seed-gossips-by-ip"),
    pytest.param("tls", {"route-tls-mismatch", "mesh-split"}, FQDN_SANS, None, None, set(), id="bad-sans"),
    pytest.param("tls", {"route-tls-mismatch"}, GOOD_SANS, None, None, FULL,
                 id="good-sans-under-declaration"),
    pytest.param("default", {"mesh-split"}, None, "nats-unreachable.invalid:6222",
                 ["nats://nats-0.nats-headless:6222"], {"01", "02"}, id="cluster-advertise-wrong-seed"),
    pytest.param("default", {"mesh-split"}, None, None,
                 ["nats://nats-0.nats-headless:6222"], FULL, id="seed-without-advertise-gossips-pod-ips"),
])
def test_island_model(scenario: str, failures: set[str], sans: list[str] | None, advertise: str | None,
                      routes: list[str] | None, expected: set[str]) -> None:
    servers = servers_of(scenario, advertise, routes)
    assert edges(servers, frozenset(failures), sans) == expected


def test_absent_edges_carry_reasons() -> None:
    servers = servers_of("default", "nats-unreachable.invalid:6222", ["nats://nats-0.nats-headless:6222"])
    reasons = expected_mesh(servers, {"mesh-split"}).reasons
    assert reasons[("nats-1", "nats-2")].startswith("gossip via nats-0 fails: mesh-split: nats-2 advertises")
    assert reasons[("nats-1", "nats-0")] == "nats-1 dials route nats://nats-0.nats-headless:6222"
    tls = expected_mesh(servers_of("tls"), {"route-tls-mismatch", "mesh-split"}, FQDN_SANS).reasons
    assert "SANs do not cover nats-1.nats-headless" in tls[("nats-0", "nats-1")]


def test_unknown_declared_failure_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown declared failure"):
        expected_mesh(servers_of("default"), {"dns-broken"})


def test_observed_mesh_from_routez_counts_distinct_remote_names() -> None:
    names = ["nats-0", "nats-1", "nats-2"]
    routez = {"nats-0": {"routes": [{"remote_name": "nats-1"}] * 4 + [{"remote_name": "nats-2"}]},
              "nats-1": {"routes": [{"remote_name": "nats-0"}]},
              "nats-2": {"routes": [{"remote_name": "nats-0"}, {"remote_name": "nats-9"}]}}
    observed = observed_mesh(names, routez)
    expected = expected_mesh(servers_of("default", "nats-unreachable.invalid:6222",
                                        ["nats://nats-0.nats-headless:6222"]), {"mesh-split"}).table
    assert Comparison.from_tables(expected, observed).is_same
    assert not Comparison.from_tables(expected_mesh(servers_of("default")).table, observed).is_same


def test_connect_urls() -> None:
    assert set(expected_connect_urls(servers_of("default")).values()) == {frozenset()}
    pod_ip = expected_connect_urls(servers_of("advertise-pod-ip"))
    assert pod_ip["nats-0"] == frozenset({"198.18.0.10:4222", "198.18.0.11:4222", "198.18.0.12:4222"})
    dns = expected_connect_urls(servers_of("advertise-dns"))
    fqdns = frozenset(f"nats-{i}.nats-headless.natsnet.svc.cluster.local:4222" for i in range(3))
    assert dns["nats-2"] == fqdns
    unreachable = expected_connect_urls(servers_of("advertise-unreachable"))
    assert unreachable["nats-1"] == frozenset({"nats.external.invalid:4222"})


def test_connect_urls_follow_a_partial_mesh() -> None:
    servers = servers_of("advertise-pod-ip", "nats-unreachable.invalid:6222", ["nats://nats-0.nats-headless:6222"])
    mesh = expected_mesh(servers, {"mesh-split"}).table
    urls = expected_connect_urls(servers, mesh)
    assert urls["nats-1"] == frozenset({"198.18.0.11:4222", "198.18.0.10:4222"})
    assert len(urls["nats-0"]) == 3


@pytest.mark.parametrize(("sans", "host", "covered"), [
    (["*.nats-headless"], "nats-0.nats-headless", True),
    (["*.nats-headless"], "NATS-0.nats-headless.", True),
    (["*.nats-headless"], "a.b.nats-headless", False),
    (["*.nats-headless"], "nats-headless", False),
    (FQDN_SANS, "nats-0.nats-headless", False),
    (FQDN_SANS, "nats-0.nats-headless.natsnet.svc.cluster.local", True),
    (["nats", "nats.natsnet.svc"], "nats.natsnet.svc", True),
    (["nats"], "nats.natsnet", False),
    (["nats-*.nats-headless"], "nats-0.nats-headless", False),
    (["*.nats-headless"], "198.18.0.10", False),
    (["IP:198.18.0.10"], "198.18.0.10", True),
    (["198.18.0.10"], "198.18.0.10", True),
    (["198.18.0.10"], "198.18.0.11", False),
    ([], "nats", False),
])
def test_san_covers(sans: list[str], host: str, covered: bool) -> None:
    assert san_covers(sans, host) is covered


@pytest.mark.parametrize(("host", "tls_hostname", "ok", "reason"), [
    ("nats.natsnet.svc.cluster.local", None, True, "SANs cover nats.natsnet.svc.cluster.local"),
    ("nats.natsnet.svc", None, False, "Hostname mismatch, certificate is not valid for 'nats.natsnet.svc'"),
    ("198.18.0.10", None, False, "IP address mismatch, certificate is not valid for '198.18.0.10'"),
    ("198.18.0.10", "nats.natsnet.svc.cluster.local", True, "SANs cover nats.natsnet.svc.cluster.local"),
])
def test_expected_client_tls(host: str, tls_hostname: str | None, ok: bool, reason: str) -> None:
    expectation = expected_client_tls(["nats", "nats.natsnet.svc.cluster.local"], host, tls_hostname)
    assert (expectation.ok, expectation.reason) == (ok, reason)
