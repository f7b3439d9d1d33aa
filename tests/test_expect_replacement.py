"""The mesh after a pod replacement, and as a cell starts: routes real NATS leaves missing (an implicit route whose
gossiped name gave no usable answer to its one attempt: NXDOMAIN, or the old pod's address) are expected missing
only with the log line that explains them."""

from __future__ import annotations

from pytest_natsnet.expect.nats import ServerConf, allowing_missing, expected_mesh, unretried_gossip_lookups
from pytest_natsnet.suitekit import MeshObservation, Servers, lost_gossip
from pytest_natsnet.table import TruthTable

NS = "natsnet-r1-pnra-false-advertise-dns-routes-seed"
SEED = "nats://nats-0.nats-headless:6222"


def fqdn(pod: str) -> str:
    return f"{pod}.nats-headless.{NS}.svc.cluster.local"


def server(ordinal: int, routes: list[str], advertise: bool = True) -> ServerConf:
    pod = f"nats-{ordinal}"
    cluster: dict[str, object] = {"port": 6222, "routes": routes}
    if advertise:
        cluster["advertise"] = f"{fqdn(pod)}:6222"
    return ServerConf(pod, f"198.18.0.{20 + ordinal}", {"server_name": pod, "cluster": cluster})


SEEDED = [server(i, [SEED]) for i in range(3)]
NXDOMAIN_LINE = (
    f'[1] 2026/11/29 03:10:01.000000 [ERR] Error trying to connect to route (attempt 1): lookup for host '
    f'"{fqdn("nats-2")}": lookup {fqdn("nats-2")} on 198.18.128.10:53: no such host'
)


def test_a_gossiped_name_that_was_nxdomain_leaves_that_route_missing() -> None:
    explained = unretried_gossip_lookups(SEEDED, "nats-2", {"nats-1": ["[INF] hello", NXDOMAIN_LINE]})
    assert set(explained) == {("nats-1", "nats-2"), ("nats-2", "nats-1")}
    assert explained[("nats-1", "nats-2")].startswith("implicit route not retried: nats-1 looked up nats-2.")
    assert NXDOMAIN_LINE in explained[("nats-1", "nats-2")]


OLD_ADDRESS_LINES = [
    "[25451] 2026/11/29 04:31:13.073163 [ERR] Error trying to connect to route (attempt 1): dial tcp "
    "198.18.0.22:6222: connect: connection refused",
    "[25451] 2026/11/29 04:31:17.099637 [ERR] Error trying to connect to route (attempt 1): dial tcp "
    "198.18.0.22:6222: i/o timeout",
]


def test_a_gossiped_name_that_still_answered_the_old_address_leaves_that_route_missing() -> None:
    """Seen with publishNotReadyAddresses true and kind-1.31's DNS cache (nats-server 2.14.2, sandbox): the new
    nats-2's name, learned by gossip, answered the old pod's address; refused, then timed out, never retried."""
    for line in OLD_ADDRESS_LINES:
        explained = unretried_gossip_lookups(SEEDED, "nats-2", {"nats-1": [line]}, old_ip="198.18.0.22")
        assert set(explained) == {("nats-1", "nats-2"), ("nats-2", "nats-1")}
        assert explained[("nats-1", "nats-2")].startswith(
            "implicit route not retried: nats-1 dialled nats-2's old address 198.18.0.22, what nats-2.")
    assert unretried_gossip_lookups(SEEDED, "nats-2", {"nats-1": OLD_ADDRESS_LINES}) == {}  # old address unknown
    other = [line.replace("198.18.0.22", "198.18.0.21") for line in OLD_ADDRESS_LINES]
    assert unretried_gossip_lookups(SEEDED, "nats-2", {"nats-1": other}, old_ip="198.18.0.22") == {}


def test_nothing_is_left_missing_without_every_condition() -> None:
    logs = {"nats-1": [NXDOMAIN_LINE]}
    assert unretried_gossip_lookups(SEEDED, "nats-2", {"nats-1": ["[INF] nothing failed"]}) == {}
    by_ip = [server(i, [SEED], advertise=False) for i in range(3)]
    assert unretried_gossip_lookups(by_ip, "nats-2", logs) == {}  # gossip by pod IP: no lookup
    short = [server(i, [f"nats://nats-{j}.nats-headless:6222" for j in range(3)]) for i in range(3)]
    assert unretried_gossip_lookups(short, "nats-2", logs) == {}  # a configured route is retried
    retrying = [ServerConf(c.pod, c.ip, {**c.config, "cluster": {**c.cluster, "connect_retries": 120}})
                for c in SEEDED]
    assert retrying[1].connect_retries == 120 and SEEDED[1].connect_retries == 0
    assert unretried_gossip_lookups(retrying, "nats-2", logs) == {}  # connect_retries: retried
    other = NXDOMAIN_LINE.replace("nats-2", "nats-9")
    assert unretried_gossip_lookups(SEEDED, "nats-2", {"nats-1": [other]}) == {}


def test_an_explained_route_is_expected_missing_only_when_it_is_missing() -> None:
    full = expected_mesh(SEEDED)
    explained = unretried_gossip_lookups(SEEDED, "nats-2", {"nats-1": [NXDOMAIN_LINE]})
    split = TruthTable(full.table.rows, full.table.cols, False)
    for a, b in full.table.grid_keys():
        split.set(a, b, full.table.get(a, b) and {a, b} != {"nats-1", "nats-2"})
    expected = allowing_missing(full, split, explained)
    assert expected.table.as_dict() == split.as_dict()
    assert expected.reasons[("nats-2", "nats-1")] == explained[("nats-2", "nats-1")]
    assert allowing_missing(full, full.table, explained).table.as_dict() == full.table.as_dict()
    assert full.table.get("nats-1", "nats-2")  # the expectation it started from is unchanged


class Logs:
    """A deployment whose servers' logs are given, counting the reads."""

    def __init__(self, by_pod: dict[str, list[str]]) -> None:
        self.by_pod, self.reads = by_pod, 0

    def logs(self, pod: str, container: str = "nats", namespace: str | None = None) -> str:
        self.reads += 1
        return "\n".join(self.by_pod.get(pod, []))


def test_a_route_gossiped_before_its_peer_was_published_is_expected_missing_at_formation() -> None:
    """Not only after a replacement: at the cell's start, with publishNotReadyAddresses false, a server that joins
    the seed before it is Ready is gossiped to the other servers by a name that does not resolve yet; their one
    implicit dial fails and is not retried (seen in full-matrix runs, pnra-false+advertise-dns+routes-seed). The
    missing route is accepted with that log line; the logs are read only when such a route is missing."""
    pods = [{"metadata": {"name": c.pod}, "status": {"podIP": c.ip}} for c in SEEDED]
    group = Servers(pods, SEEDED)
    full = expected_mesh(SEEDED)
    split = TruthTable(full.table.rows, full.table.cols, False)
    for a, b in full.table.grid_keys():
        split.set(a, b, full.table.get(a, b) and {a, b} != {"nats-1", "nats-2"})
    deployment = Logs({"nats-1": [NXDOMAIN_LINE]})
    assert lost_gossip(deployment, group, full, MeshObservation(full.table, {})) is full  # type: ignore[arg-type]
    assert deployment.reads == 0
    relaxed = lost_gossip(deployment, group, full, MeshObservation(split, {}))  # type: ignore[arg-type]
    assert relaxed.table.as_dict() == split.as_dict() and deployment.reads == 3
    assert relaxed.reasons[("nats-1", "nats-2")].startswith("implicit route not retried: nats-1 looked up nats-2.")
    silent = Logs({})
    assert lost_gossip(silent, group, full, MeshObservation(split, {})).table.get("nats-1", "nats-2")  # type: ignore[arg-type]
    configured = [server(i, [f"nats://nats-{j}.nats-headless:6222" for j in range(3)]) for i in range(3)]
    deployment.reads = 0
    lost_gossip(deployment, Servers(pods, configured), expected_mesh(configured),  # type: ignore[arg-type]
                MeshObservation(split, {}))
    assert deployment.reads == 0  # every route configured: retried until it connects, nothing to explain
