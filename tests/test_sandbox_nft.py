"""Pure tests of the nft script compilers: the generated text, its determinism and its errors."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest

from pytest_natsnet.errors import ConfigError
from pytest_natsnet.kube import Obj
from pytest_natsnet.sandbox.model import ContainerPort, PodNet
from pytest_natsnet.sandbox.nft import (
    NODE_TABLE,
    node_table,
    policy_ruleset,
    policy_tables,
    service_ruleset,
    service_tables_by_pod,
    table_script,
    table_update,
    tables_update,
)

# --- helpers ----------------------------------------------------------------------


def chains(script: str) -> dict[str, list[str]]:
    """Chain name -> rule lines (comments and counters kept), from a generated script; a set or map is
    ``@name`` -> its type line and its ``elements = { ... }`` line."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for raw in script.splitlines():
        line = raw.strip()
        opened = re.fullmatch(r"(chain|set|map) (\S+) \{", line)
        if opened:
            name = opened.group(2) if opened.group(1) == "chain" else f"@{opened.group(2)}"
            current = found.setdefault(name, [])
        elif line == "}":
            current = None
        elif current is not None and line:
            current.append(line)
    return found


def elements(script: str, set_name: str) -> list[str]:
    """The elements of set or map ``set_name`` in a generated script, in order."""
    body = chains(script)[f"@{set_name}"]
    listed = next((line for line in body if line.startswith("elements = { ")), None)
    return [] if listed is None else listed[len("elements = { "):-len(" }")].split(", ")


def dispatched(script: str, key: str) -> str | None:
    """The verdict of the ClusterIP dispatch map for ``key`` (``ip . proto . port``), None when it has none."""
    found = [e for e in elements(script, "dispatch") if e.startswith(f"{key} ")]
    return found[0].rsplit(" : ", 1)[1] if found else None


def service(namespace: str, svc_name: str, cluster_ip: str | None, *ports: dict[str, Any]) -> Obj:
    return {
        "kind": "Service",
        "metadata": {"name": svc_name, "namespace": namespace},
        "spec": {"clusterIP": cluster_ip, "ports": list(ports)},
    }


def endpoint_slice(
    namespace: str, svc_name: str, ports: list[dict[str, Any]], *endpoints: tuple[str, dict[str, Any]]
) -> Obj:
    return {
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{svc_name}-abc",
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": svc_name},
        },
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": [{"addresses": [ip], "conditions": cond} for ip, cond in endpoints],
    }


def dnat_targets(script: str) -> list[str]:
    return re.findall(r"dnat to (\d+\.\d+\.\d+\.\d+:\d+)", script)


WEB_PORT = {"name": "http", "port": 80, "targetPort": "http"}
WEB_SLICE_PORTS = [{"name": "http", "port": 8080, "protocol": "TCP"}]

# --- service_ruleset ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        pytest.param({}, ["198.18.0.10:8080"], id="ready-nil-counts-as-ready"),
        pytest.param({"ready": True}, ["198.18.0.10:8080"], id="ready-true"),
        pytest.param({"ready": False}, [], id="ready-false"),
        pytest.param(
            {"ready": False, "serving": False, "terminating": True}, [], id="terminating-not-serving"
        ),
        pytest.param(
            {"ready": False, "serving": True, "terminating": True},
            ["198.18.0.10:8080"],
            id="serving-terminating-fallback",
        ),
    ],
)
def test_service_endpoint_conditions(conditions: dict[str, Any], expected: list[str]) -> None:
    script = service_ruleset(
        [service("a", "web", "198.18.128.20", WEB_PORT)],
        [endpoint_slice("a", "web", WEB_SLICE_PORTS, ("198.18.0.10", conditions))],
    )
    assert dnat_targets(script) == expected
    assert dispatched(script, "198.18.128.20 . tcp . 80") == ("goto svc_a_web_tcp_80" if expected else
                                                             "goto no_endpoints")
    assert chains(script)["no_endpoints"] == [
        'counter ct mark set 0x4e4f dnat to 127.0.0.1 comment "ClusterIP port without ready endpoints"']


def test_terminating_endpoints_unused_while_a_ready_one_exists() -> None:
    script = service_ruleset(
        [service("a", "web", "198.18.128.20", WEB_PORT)],
        [
            endpoint_slice(
                "a",
                "web",
                WEB_SLICE_PORTS,
                ("198.18.0.10", {"ready": False, "serving": True, "terminating": True}),
                ("198.18.0.11", {"ready": True}),
            )
        ],
    )
    assert dnat_targets(script) == ["198.18.0.11:8080"]


def test_service_picks_ready_endpoints_randomly_with_resolved_ports() -> None:
    script = service_ruleset(
        [service("a", "web", "198.18.128.20", WEB_PORT)],
        [
            endpoint_slice(
                "a", "web", WEB_SLICE_PORTS, ("198.18.0.12", {}), ("198.18.0.10", {"ready": False})
            ),
            endpoint_slice("a", "web", [{"name": "http", "port": 9090}], ("198.18.0.11", {})),
        ],
    )
    found = chains(script)
    assert found["services"][1] == "ip daddr . meta l4proto . th dport vmap @dispatch"
    assert elements(script, "dispatch") == [
        '198.18.128.20 . tcp . 80 comment "a/web:80/TCP (http)" : goto svc_a_web_tcp_80']
    assert found["svc_a_web_tcp_80"] == [
        "numgen random mod 2 vmap { 0 : goto svc_a_web_tcp_80_ep0, 1 : goto svc_a_web_tcp_80_ep1 }"
    ]
    assert dnat_targets(script) == ["198.18.0.11:9090", "198.18.0.12:8080"]
    assert all(line.startswith("meta l4proto tcp counter dnat") for line in found["svc_a_web_tcp_80_ep0"])


@pytest.mark.parametrize(
    ("slice_obj", "why"),
    [
        (endpoint_slice("b", "web", WEB_SLICE_PORTS, ("198.18.0.10", {})), "other namespace"),
        (endpoint_slice("a", "web2", WEB_SLICE_PORTS, ("198.18.0.10", {})), "other service"),
        (
            endpoint_slice("a", "web", [{"name": "metrics", "port": 8080}], ("198.18.0.10", {})),
            "other port name",
        ),
        (
            endpoint_slice(
                "a", "web", [{"name": "http", "port": 8080, "protocol": "UDP"}], ("198.18.0.10", {})
            ),
            "other protocol",
        ),
        (
            {**endpoint_slice("a", "web", WEB_SLICE_PORTS, ("fd00::1", {})), "addressType": "IPv6"},
            "IPv6 slice",
        ),
    ],
)
def test_service_ignores_slices_that_do_not_match(slice_obj: Obj, why: str) -> None:
    script = service_ruleset([service("a", "web", "198.18.128.20", WEB_PORT)], [slice_obj])
    assert dnat_targets(script) == [], why
    assert "a/web:80/TCP (http) has no ready endpoints" in script


def test_dns_service_gets_udp_and_tcp() -> None:
    ports = [
        {"name": "dns", "port": 53, "protocol": "UDP"},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
    ]
    script = service_ruleset(
        [service("kube-system", "kube-dns", "198.18.128.10", *ports)],
        [endpoint_slice("kube-system", "kube-dns", ports, ("198.18.0.5", {}))],
    )
    assert dispatched(script, "198.18.128.10 . udp . 53") == "goto svc_kube_system_kube_dns_udp_53"
    assert dispatched(script, "198.18.128.10 . tcp . 53") == "goto svc_kube_system_kube_dns_tcp_53"
    assert "meta l4proto udp counter dnat to 198.18.0.5:53" in script
    assert "meta l4proto tcp counter dnat to 198.18.0.5:53" in script


@pytest.mark.parametrize("cluster_ip", ["None", None, "", "fd00::10"])
def test_headless_and_ipless_services_get_nothing(cluster_ip: str | None) -> None:
    script = service_ruleset(
        [service("a", "web", cluster_ip, WEB_PORT)],
        [endpoint_slice("a", "web", WEB_SLICE_PORTS, ("198.18.0.10", {}))],
    )
    assert (elements(script, "dispatch"), elements(script, "cluster_ips"), dnat_targets(script)) == ([], [], [])


def test_unknown_ports_on_cluster_ips_are_dropped_last() -> None:
    """kube-proxy iptables mode (kubernetes pkg/proxy/iptables/proxier.go) has rules only for the Service's
    (ClusterIP, protocol, port) triples and REJECTs ports without endpoints: any other port of a ClusterIP
    matches nothing and is lost (timeout), a port without endpoints is refused."""
    script = service_ruleset(
        [
            service("a", "web", "198.18.128.20", WEB_PORT),
            service("a", "db", "198.18.128.3", {"port": 5432}),
            service("a", "portless", "198.18.128.4"),
        ],
        [],
    )
    last = chains(script)["services"][-1]
    assert last.startswith(
        "ip daddr @cluster_ips meta l4proto { tcp, udp, sctp } counter ct mark set 0x4e50 dnat to 127.0.0.1")
    assert elements(script, "cluster_ips") == ["198.18.128.3", "198.18.128.4", "198.18.128.20"]
    assert dispatched(script, "198.18.128.20 . tcp . 80") == dispatched(script, "198.18.128.3 . tcp . 5432") == (
        "goto no_endpoints")
    verdicts = chains(script)["input"]
    assert verdicts[1].startswith("ct direction original ct mark 0x4e4f counter reject")
    assert verdicts[2].startswith("ct direction original ct mark 0x4e50 counter drop")


def test_service_script_replaces_its_table_atomically_and_is_deterministic() -> None:
    services = [service("a", f"s{i}", f"198.18.128.{20 + i}", WEB_PORT) for i in range(5)]
    slices = [
        endpoint_slice("a", f"s{i}", WEB_SLICE_PORTS, *((f"198.18.0.{10 + j}", {}) for j in range(4)))
        for i in range(5)
    ]
    script = service_ruleset(services, slices)
    assert script.splitlines()[:3] == [
        "table ip natsnet_svc",
        "delete table ip natsnet_svc",
        "table ip natsnet_svc {",
    ]
    shuffled_rng = random.Random(7)
    for _ in range(5):
        shuffled_services, shuffled_slices = services[:], slices[:]
        shuffled_rng.shuffle(shuffled_services)
        shuffled_rng.shuffle(shuffled_slices)
        assert service_ruleset(shuffled_services, shuffled_slices) == script


# --- policy_ruleset ----------------------------------------------------------------------

CLIENT = PodNet("a", "client", {"app": "client"}, "198.18.0.11", "veth-client")
WEB_A = PodNet("a", "web", {"app": "web"}, "198.18.0.12", "veth-web-a", (ContainerPort("http", 5000),))
WEB_B = PodNet(
    "b",
    "web",
    {"app": "web"},
    "198.18.0.13",
    "veth-web-b",
    (ContainerPort("http", 5001), ContainerPort("dns", 53, "UDP")),
)
DNS = PodNet("kube-system", "coredns", {"k8s-app": "kube-dns"}, "198.18.0.14", "veth-dns")
PODS = [CLIENT, WEB_A, WEB_B, DNS]
NAMESPACES = {"a": {"team": "x"}, "b": {"team": "y"}, "kube-system": {}}


def policy(namespace: str, policy_name: str, **policy_spec: Any) -> Obj:
    policy_spec.setdefault("podSelector", {})
    return {
        "kind": "NetworkPolicy",
        "metadata": {"name": policy_name, "namespace": namespace},
        "spec": policy_spec,
    }


def rules_of(script: str, pod: PodNet, direction: str) -> list[str] | None:
    """The allow matches of ``pod``'s chain (without counter/verdict/comment), None when not isolated."""
    named = f"pod_{direction}_{pod.namespace}_{pod.name}".replace("-", "_")
    for chain_name, body in chains(script).items():
        if re.fullmatch(rf"{named}_[0-9a-f]{{8}}", chain_name):  # the pod's chain: its name and a checksum
            assert body[-1].startswith("counter drop comment")
            return [line.split("counter return")[0].strip() for line in body[:-1]]
    return None


CLIENT_ONLY = {"matchLabels": {"app": "client"}}

ISOLATION_CASES = [
    pytest.param({"ingress": [{}]}, True, False, id="ingress-rules-default-ingress-only"),
    pytest.param({}, True, False, id="no-rules-no-types-is-ingress-deny"),
    pytest.param({"egress": [{}]}, True, True, id="egress-rules-default-both"),
    pytest.param({"egress": [], "ingress": []}, True, False, id="empty-egress-list-not-egress"),
    pytest.param({"policyTypes": ["Egress"]}, False, True, id="explicit-egress"),
    pytest.param({"policyTypes": ["Egress"], "ingress": [{}]}, False, True, id="explicit-types-win"),
]


@pytest.mark.parametrize(("policy_spec", "ingress", "egress"), ISOLATION_CASES)
def test_policy_types_defaulting(policy_spec: dict[str, Any], ingress: bool, egress: bool) -> None:
    script = policy_ruleset(PODS, NAMESPACES, [policy("a", "p", podSelector=CLIENT_ONLY, **policy_spec)])
    assert (rules_of(script, CLIENT, "ingress") is not None) is ingress
    assert (rules_of(script, CLIENT, "egress") is not None) is egress
    for other in (WEB_A, WEB_B, DNS):
        assert rules_of(script, other, "ingress") is None
        assert rules_of(script, other, "egress") is None


def test_no_policies_leave_every_pod_open_but_keep_conntrack_and_arp() -> None:
    script = policy_ruleset(PODS, NAMESPACES, [])
    assert chains(script)["forward"][:3] == [
        "type filter hook forward priority 0; policy accept;",
        "ether type arp accept",
        'meta mark 0x4e4e counter accept comment "established or related flow"',
    ]
    assert "jump" not in script
    assert "ct state established,related meta mark set 0x4e4e" in chains(script)["prerouting"]


PEER_CASES = [
    pytest.param([{"podSelector": {}}], ["ip daddr { 198.18.0.11, 198.18.0.12 }"], id="podSelector-own-ns"),
    pytest.param(
        [{"podSelector": {"matchLabels": {"app": "web"}}}], ["ip daddr 198.18.0.12"], id="podSelector-labels"
    ),
    pytest.param(
        [{"namespaceSelector": {"matchLabels": {"team": "y"}}}],
        ["ip daddr 198.18.0.13"],
        id="namespaceSelector",
    ),
    pytest.param(
        [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "web"}}}],
        ["ip daddr { 198.18.0.12, 198.18.0.13 }"],
        id="both-selectors-and",
    ),
    pytest.param(
        [{"namespaceSelector": {}}, {"podSelector": {"matchLabels": {"app": "web"}}}],
        ["ip daddr { 198.18.0.11, 198.18.0.12, 198.18.0.13, 198.18.0.14 }", "ip daddr 198.18.0.12"],
        id="two-entries-or",
    ),
    pytest.param(
        [
            {
                "namespaceSelector": {
                    "matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["x"]}]
                },
                "podSelector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]},
            }
        ],
        ["ip daddr 198.18.0.13"],
        id="match-expressions",
    ),
    pytest.param(
        [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
        ["ip daddr 198.18.0.14"],
        id="namespace-name-label-added",
    ),
    pytest.param([{"podSelector": {"matchLabels": {"app": "nope"}}}], [], id="selects-nobody"),
    pytest.param(
        [{"ipBlock": {"cidr": "198.18.0.0/16", "except": ["198.18.0.12/32", "198.18.0.64/26"]}}],
        ["ip daddr 198.18.0.0/16 ip daddr != { 198.18.0.12/32, 198.18.0.64/26 }"],
        id="ipBlock-except",
    ),
    pytest.param([{"ipBlock": {"cidr": "fd00::/8"}}], [], id="ipv6-ipBlock-never-matches"),
    pytest.param([], [""], id="no-peers-any-destination"),
]


@pytest.mark.parametrize(("peers", "expected"), PEER_CASES)
def test_egress_peers(peers: list[dict[str, Any]], expected: list[str]) -> None:
    rule = {"to": peers} if peers else {}
    script = policy_ruleset(PODS, NAMESPACES, [policy("a", "p", podSelector=CLIENT_ONLY, egress=[rule])])
    assert rules_of(script, CLIENT, "egress") == expected


@pytest.mark.parametrize(("peers", "expected"), PEER_CASES[:3])
def test_ingress_peers_match_the_source(peers: list[dict[str, Any]], expected: list[str]) -> None:
    script = policy_ruleset(
        PODS, NAMESPACES, [policy("a", "p", podSelector=CLIENT_ONLY, ingress=[{"from": peers}])]
    )
    assert rules_of(script, CLIENT, "ingress") == [e.replace("daddr", "saddr") for e in expected]


PORT_CASES = [
    pytest.param([{"port": 5000}], ["ip daddr {all} tcp dport 5000"], id="number-default-tcp"),
    pytest.param([{"port": 53, "protocol": "UDP"}], ["ip daddr {all} udp dport 53"], id="udp"),
    pytest.param([{"port": 5000, "endPort": 5010}], ["ip daddr {all} tcp dport 5000-5010"], id="endPort"),
    pytest.param([{"protocol": "UDP"}], ["ip daddr {all} meta l4proto udp"], id="protocol-only"),
    pytest.param(
        [{"port": "http"}],
        ["ip daddr 198.18.0.12 tcp dport 5000", "ip daddr 198.18.0.13 tcp dport 5001"],
        id="named-per-destination",
    ),
    pytest.param([{"port": "dns", "protocol": "UDP"}], ["ip daddr 198.18.0.13 udp dport 53"], id="named-udp"),
    pytest.param([{"port": "dns"}], [], id="named-protocol-mismatch"),
    pytest.param([{"port": "nope"}], [], id="named-unknown"),
]
ALL_PODS = "{ 198.18.0.11, 198.18.0.12, 198.18.0.13, 198.18.0.14 }"


@pytest.mark.parametrize(("ports", "expected"), PORT_CASES)
def test_egress_ports(ports: list[dict[str, Any]], expected: list[str]) -> None:
    rule = {"to": [{"namespaceSelector": {}}], "ports": ports}
    script = policy_ruleset(PODS, NAMESPACES, [policy("a", "p", podSelector=CLIENT_ONLY, egress=[rule])])
    assert rules_of(script, CLIENT, "egress") == [e.replace("{all}", ALL_PODS) for e in expected]


def test_named_port_with_ip_block_resolves_against_pods_inside_the_block() -> None:
    rule = {
        "to": [{"ipBlock": {"cidr": "198.18.0.0/16", "except": ["198.18.0.12/32"]}}],
        "ports": [{"port": "http"}],
    }
    script = policy_ruleset(PODS, NAMESPACES, [policy("a", "p", podSelector=CLIENT_ONLY, egress=[rule])])
    assert rules_of(script, CLIENT, "egress") == ["ip daddr 198.18.0.13 tcp dport 5001"]


@pytest.mark.parametrize(
    ("owner", "expected"),
    [(WEB_A, ["tcp dport 5000"]), (WEB_B, ["tcp dport 5001"]), (DNS, [])],
)
def test_ingress_named_port_resolves_on_the_selected_pod(owner: PodNet, expected: list[str]) -> None:
    selector = {"matchLabels": dict(owner.labels)}
    script = policy_ruleset(
        PODS,
        NAMESPACES,
        [policy(owner.namespace, "in", podSelector=selector, ingress=[{"ports": [{"port": "http"}]}])],
    )
    assert rules_of(script, owner, "ingress") == expected


def test_policies_are_additive_and_commented_with_policy_and_rule_index() -> None:
    policies = [
        policy("a", "deny", policyTypes=["Egress"]),
        policy("a", "dns", egress=[{"ports": [{"port": 53, "protocol": "UDP"}]}], policyTypes=["Egress"]),
        policy("a", "web", egress=[{}, {"ports": [{"port": 80}]}], policyTypes=["Egress"]),
    ]
    body = chains(policy_ruleset(PODS, NAMESPACES, policies))
    client_chain = next(v for k, v in body.items() if re.fullmatch(r"pod_egress_a_client_[0-9a-f]{8}", k))
    assert client_chain == [
        'udp dport 53 counter return comment "a/dns egress[0]"',
        'counter return comment "a/web egress[0]"',
        'tcp dport 80 counter return comment "a/web egress[1]"',
        'counter drop comment "a/client: egress not allowed"',
    ]
    forward = body["forward"]
    assert 'iifname "veth-client" jump' in " ".join(forward)
    assert "oifname" not in " ".join(forward)


def test_policy_in_one_namespace_does_not_isolate_another() -> None:
    script = policy_ruleset(PODS, NAMESPACES, [policy("b", "deny", policyTypes=["Ingress", "Egress"])])
    assert rules_of(script, WEB_B, "ingress") == []
    assert rules_of(script, WEB_B, "egress") == []
    assert rules_of(script, WEB_A, "ingress") is None


def test_policy_script_is_deterministic_and_replaces_both_tables() -> None:
    policies = [
        policy("a", f"p{i}", egress=[{"to": [{"namespaceSelector": {}}], "ports": [{"port": "http"}]}])
        for i in range(4)
    ]
    script = policy_ruleset(PODS, NAMESPACES, policies)
    lines = script.splitlines()
    for family, table in (("ip", "natsnet_np_ct"), ("bridge", "natsnet_np")):
        start = lines.index(f"table {family} {table}")
        assert lines[start + 1 : start + 3] == [
            f"delete table {family} {table}",
            f"table {family} {table} {{",
        ]
    rng = random.Random(3)
    for _ in range(5):
        pods, shuffled = PODS[:], policies[:]
        rng.shuffle(pods)
        rng.shuffle(shuffled)
        assert policy_ruleset(pods, dict(reversed(NAMESPACES.items())), shuffled) == script


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            {"kind": "NetworkPolicy", "metadata": {"name": "p"}, "spec": {"podSelector": {}}},
            "NetworkPolicy p: has no metadata.namespace; set it before compiling",
        ),
        (
            policy("a", "p", egress=[{"to": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}]),
            "NetworkPolicy a/p spec.egress[0].to[0]: ipBlock is not a valid CIDR",
        ),
        (
            policy("a", "p", ingress=[{"from": [{}, {"ipBlock": {"cidr": "x"}}]}]),
            "NetworkPolicy a/p spec.ingress[0].from[0]: has no podSelector, namespaceSelector or ipBlock",
        ),
        (
            policy("a", "p", ingress=[{"ports": [{"port": 80, "protocol": "ICMP"}]}]),
            "NetworkPolicy a/p spec.ingress[0].ports[0]: protocol 'ICMP' is not one of TCP, UDP, SCTP",
        ),
        (
            policy("a", "p", ingress=[{"ports": [{"port": "http", "endPort": 90}]}]),
            "NetworkPolicy a/p spec.ingress[0].ports[0]: has endPort with a named port",
        ),
    ],
)
def test_bad_policies_raise_one_clear_line(bad: Obj, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as raised:
        policy_ruleset(PODS, NAMESPACES, [bad])
    assert "\n" not in str(raised.value)


# --- hairpin: a pod reaching itself through a ClusterIP ----------------------------------------------


def test_hairpin_checks_follow_the_pods_own_policies() -> None:
    """On a cluster the hairpin flow goes through the node, where kube-network-policies judges it as pod ->
    pod (kubernetes-sigs/kube-network-policies pkg/dataplane/controller.go, postrouting before SNAT): the pod's
    egress and its ingress both apply. In the sandbox it stays in the pod netns, so the same chains run there."""
    web_in = policy("a", "web-in", podSelector={"matchLabels": {"app": "web"}},
                    ingress=[{"from": [{"podSelector": CLIENT_ONLY}]}])
    script = service_ruleset([], [], PODS, NAMESPACES, [web_in])
    found = chains(script)
    jumps = [rule for rule in found["input"] if "jump hairpin_" in rule]
    assert jumps == [
        "ct direction original ct state new ct status dnat ip saddr 198.18.0.12 ip daddr 198.18.0.12 "
        "jump hairpin_ingress_1_a_web comment \"a/web to itself through a ClusterIP: ingress\"",
    ]
    body = found["hairpin_ingress_1_a_web"]
    assert body[0].startswith("ip saddr 198.18.0.11 counter return")
    assert body[-1].startswith("counter drop")


def test_hairpin_chains_only_with_policies() -> None:
    script = service_ruleset([], [], PODS, NAMESPACES, [])
    assert not any(name.startswith("hairpin_") for name in chains(script))
    assert service_ruleset([], []) == script


def test_each_pod_gets_the_same_dnat_and_only_its_own_hairpin_checks() -> None:
    """A pod's flow to itself through a ClusterIP is judged in its own netns, where another pod's hairpin chains
    never match: each pod's script carries only its own, with the same verdicts for that flow."""
    web_in = policy("a", "web-in", podSelector={"matchLabels": {"app": "web"}},
                    ingress=[{"from": [{"podSelector": CLIENT_ONLY}]}])
    web_self = policy("b", "web-self", podSelector={"matchLabels": {"app": "web"}},
                      ingress=[{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}])
    client_out = policy("a", "client-out", podSelector=CLIENT_ONLY, policyTypes=["Egress"])
    svc = service("a", "web", "198.18.128.20", WEB_PORT)
    slices = [endpoint_slice("a", "web", WEB_SLICE_PORTS, ("198.18.0.12", {"ready": True}))]
    policies = [web_in, web_self, client_out]
    by_pod = {ip: table_script("ip", "natsnet_svc", table)
              for ip, table in service_tables_by_pod([svc], slices, PODS, NAMESPACES, policies).items()}
    full = chains(service_ruleset([svc], slices, PODS, NAMESPACES, policies))
    assert set(by_pod) == {pod.ip for pod in PODS}
    own = {pod.ip: chains(by_pod[pod.ip]) for pod in PODS}
    hairpins = {ip: sorted(c for c in found if c.startswith("hairpin_")) for ip, found in own.items()}
    assert hairpins == {CLIENT.ip: ["hairpin_egress_0_a_client"], WEB_A.ip: ["hairpin_ingress_0_a_web"],
                        WEB_B.ip: ["hairpin_ingress_0_b_web"], DNS.ip: []}
    for pod in PODS:
        assert own[pod.ip]["services"] == full["services"] and dnat_targets(by_pod[pod.ip]) == ["198.18.0.12:8080"]
        assert [r for r in own[pod.ip]["input"] if "hairpin_" not in r] == [
            r for r in full["input"] if "hairpin_" not in r]
    assert own[WEB_A.ip]["hairpin_ingress_0_a_web"] == [  # web -> web is not the client: dropped, as before
        r for r in full["hairpin_ingress_1_a_web"] if r.startswith("counter drop")]
    assert own[WEB_B.ip]["hairpin_ingress_0_b_web"][0].startswith(f"ip saddr {WEB_B.ip} counter return")


# --- node_table (kube-proxy NodePorts on the node, the outside bridge) ------------------------------------


def node_service(svc_type: str, node_port: int | None, **extra: Any) -> Obj:
    port: dict[str, Any] = {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    if node_port is not None:
        port["nodePort"] = node_port
    obj = service("a", "web", "198.18.128.20", port)
    obj["spec"].update({"type": svc_type, **extra})
    return obj


NODE_ADDRESSES = ("198.18.0.1", "198.19.0.1")


def node_script(*services: Obj, slices: tuple[Obj, ...] | None = None) -> str:
    ready = endpoint_slice("a", "web", WEB_SLICE_PORTS, ("198.18.0.10", {"ready": True}))
    chosen = list(slices if slices is not None else (ready,))
    return table_script("ip", NODE_TABLE, node_table(list(services), chosen, NODE_ADDRESSES, "br0", "br1"))


@pytest.mark.parametrize(
    ("svc", "dnat"),
    [
        pytest.param(node_service("NodePort", 30080), ["198.18.0.10:8080"], id="nodeport"),
        pytest.param(node_service("LoadBalancer", 30080), ["198.18.0.10:8080"], id="loadbalancer-by-its-nodeport"),
        pytest.param(node_service("ClusterIP", None), [], id="clusterip-has-none"),
        pytest.param(node_service("NodePort", None), [], id="no-nodeport-allocated"),
    ],
)
def test_node_ports_dnat_on_every_node_address(svc: Obj, dnat: list[str]) -> None:
    script = node_script(svc)
    assert dnat_targets(script) == dnat
    if dnat:
        assert "ip daddr { 198.18.0.1, 198.19.0.1 } tcp dport 30080 goto np_30080_tcp" in chains(script)["nodeports"][1]


def test_node_port_masquerades_unless_external_traffic_policy_is_local() -> None:
    cluster = chains(node_script(node_service("NodePort", 30080)))["np_30080_tcp_ep0"][0]
    local = chains(node_script(node_service("NodePort", 30080, externalTrafficPolicy="Local")))["np_30080_tcp_ep0"][0]
    assert "ct mark set 0x4e51 dnat to 198.18.0.10:8080" in cluster
    assert "ct mark set" not in local and "dnat to 198.18.0.10:8080" in local


def test_node_port_flows_are_snatted_to_the_pod_network_address_without_a_masquerade_statement() -> None:
    """The address masquerade would pick on the pod bridge, without its kernel notifiers (see ``node_table``)."""
    script = node_script(node_service("NodePort", 30080))
    assert chains(script)["nodeport_masq"][1].startswith("ct mark 0x4e51 counter snat ip to 198.18.0.1 ")
    assert "masquerade" not in script


def test_node_port_without_ready_endpoints_gets_no_rule_and_falls_back_to_serving_terminating() -> None:
    gone = endpoint_slice("a", "web", WEB_SLICE_PORTS, ("198.18.0.10", {"ready": False, "serving": False}))
    assert dnat_targets(node_script(node_service("NodePort", 30080), slices=(gone,))) == []
    draining = endpoint_slice("a", "web", WEB_SLICE_PORTS,
                              ("198.18.0.10", {"ready": False, "serving": True, "terminating": True}))
    assert dnat_targets(node_script(node_service("NodePort", 30080), slices=(draining,))) == ["198.18.0.10:8080"]


def test_the_outside_bridge_forwards_only_what_a_node_port_translated() -> None:
    forward = chains(node_script())["from_outside"]
    assert forward[1:] == [
        'iifname "br1" oifname "br0" ct state established,related accept',
        'iifname "br1" oifname "br0" ct status dnat counter accept comment "a NodePort translated it"',
        'iifname "br1" oifname "br0" counter drop comment "outside the cluster: no route into the pod or Service '
        'network"',
    ]


def test_node_port_flows_meet_the_target_pods_ingress_policies() -> None:
    web = PodNet("a", "web", {"app": "web"}, "198.18.0.10", "vp1", (ContainerPort("http", 8080),))
    policy = {"kind": "NetworkPolicy", "metadata": {"name": "only-runner", "namespace": "a"},
              "spec": {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "198.19.0.0/16"}}]}]}}
    table = node_table([node_service("NodePort", 30080)], [], NODE_ADDRESSES, "br0", "br1", [web], {"a": {}}, [policy])
    script = table_script("ip", NODE_TABLE, table)
    found = chains(script)
    jump = re.match(r'ct state new ct status dnat oifname "br0" ip daddr 198\.18\.0\.10 jump '
                    r"(nodeport_ingress_a_web_[0-9a-f]{8}) ", found["nodeport_ingress"][1])
    assert jump is not None, found["nodeport_ingress"]
    assert found[jump.group(1)][0].startswith("ip saddr 198.19.0.0/16 counter return")
    assert found[jump.group(1)][-1].startswith("counter drop")
    assert jump.group(1) not in chains(node_script())


# --- table_update (only the chains that changed) ---------------------------------------------------------

BASE = "type nat hook output priority -100; policy accept;"


def test_an_update_touches_only_the_chains_that_differ_and_adds_before_it_deletes() -> None:
    before = {"services": (BASE, "ip daddr 1.1.1.1 goto a"), "a": ("dnat to 2.2.2.2",), "b": ("drop",)}
    after = {"services": (BASE, "ip daddr 1.1.1.1 goto c"), "a": ("dnat to 2.2.2.2",), "c": ("accept",)}
    assert table_update("ip", "t", before, after).splitlines() == [
        "add chain ip t c",
        "flush chain ip t services",
        "add rule ip t services ip daddr 1.1.1.1 goto c",
        "add rule ip t c accept",
        "delete chain ip t b",
    ]
    assert table_update("ip", "t", after, after) == ""


def test_an_update_is_the_whole_table_when_nothing_was_applied_or_a_hook_changes() -> None:
    table = {"services": (BASE, "counter")}
    assert table_update("ip", "t", None, table) == table_script("ip", "t", table)
    other_hook = {"services": ("type nat hook output priority -101; policy accept;", "counter")}
    assert table_update("ip", "t", table, other_hook) == table_script("ip", "t", other_hook)
    assert table_update("ip", "t", {}, {"input": ("type filter hook input priority 0; policy accept;",)}) == (
        "add chain ip t input { type filter hook input priority 0; policy accept; }\n")


def test_a_new_isolated_pod_changes_only_its_own_chain_and_the_jumps() -> None:
    """The hub's policy tables name each pod's chain after the pod: a pod coming adds its chain and its jump, and
    leaves every other pod's chain (and the connection-tracking table) as it was."""
    deny_all = policy("a", "deny-all", podSelector={}, policyTypes=["Ingress", "Egress"])
    before = policy_tables([WEB_A], NAMESPACES, [deny_all])
    after = policy_tables([CLIENT, WEB_A], NAMESPACES, [deny_all])
    update = tables_update(before, after).splitlines()
    assert [line.split(" {")[0] for line in update if not line.startswith("add rule")] == [
        f"add chain bridge natsnet_np {name}" for name in after[("bridge", "natsnet_np")]
        if name not in before[("bridge", "natsnet_np")]] + ["flush chain bridge natsnet_np forward"]
    touched = {line.split()[4] for line in update if line.startswith("add rule")}
    assert touched == {"forward"} | set(after[("bridge", "natsnet_np")]) - set(before[("bridge", "natsnet_np")])
    assert all("_a_client_" in name for name in touched - {"forward"}) and len(touched) == 3
    assert tables_update(after, after) == ""
    assert tables_update(None, after) == policy_ruleset([CLIENT, WEB_A], NAMESPACES, [deny_all])


def test_an_update_changes_a_maps_elements_not_the_rules_that_use_it() -> None:
    """A Service losing its endpoints and another going away are element changes of the dispatch map: the
    element pointing at a chain is deleted before the chain, a new chain exists before an element points at it."""
    vmap = "type ipv4_addr . inet_proto . inet_service : verdict"
    before = {"services": (BASE, "ip daddr . meta l4proto . th dport vmap @dispatch"),
              "@dispatch": (vmap, "1.1.1.1 . tcp . 80 : goto a", "2.2.2.2 . tcp . 80 : goto b"),
              "a": ("dnat to 10.0.0.1",), "b": ("dnat to 10.0.0.2",), "none": ("reject",)}
    after = {"services": before["services"],
             "@dispatch": (vmap, "1.1.1.1 . tcp . 80 : goto none", "3.3.3.3 . udp . 53 : goto c"),
             "c": ("dnat to 10.0.0.3",), "none": ("reject",)}
    assert table_update("ip", "t", before, after).splitlines() == [
        "add chain ip t c",
        "add rule ip t c dnat to 10.0.0.3",
        "delete element ip t dispatch { 1.1.1.1 . tcp . 80, 2.2.2.2 . tcp . 80 }",
        "add element ip t dispatch { 1.1.1.1 . tcp . 80 : goto none, 3.3.3.3 . udp . 53 : goto c }",
        "delete chain ip t a",
        "delete chain ip t b",
    ]
    other_type = {**after, "@dispatch": ("type ipv4_addr : verdict", "1.1.1.1 : goto none")}
    assert table_update("ip", "t", after, other_type) == table_script("ip", "t", other_type)
    assert table_update("ip", "t", {}, {"@ips": ("type ipv4_addr", "1.1.1.1")}).splitlines() == [
        "add set ip t ips { type ipv4_addr; }", "add element ip t ips { 1.1.1.1 }"]
