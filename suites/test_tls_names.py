"""tls_names: which names a certificate must carry, for clients and for routes.

Clients verify the name they dialled (the string they typed, not the FQDN the search path expanded it to);
routes verify the literal route hostname (``nats-0.nats-headless`` needs ``*.nats-headless``); a client that fails
over to a learned IP keeps the seed's TLS name (nats-py). Expected outcomes come from the SANs of the certificates
in the cell's Secrets.
"""

from __future__ import annotations

import re

import pytest

from pytest_natsnet import applicability
from pytest_natsnet.expect.nats import (
    expected_client_tls,
    expected_connect_urls,
    expected_mesh,
    is_ip,
    route_tls_name,
    san_covers,
    target_of,
    url_host,
)
from pytest_natsnet.probe.model import NatsRequest, Outcome, ProbeResult, TlsOptions
from pytest_natsnet.prober import Prober
from pytest_natsnet.session import Cell
from pytest_natsnet.suitekit import (
    CONTROLLER_LAG,
    DNS_BLOCKED,
    applies,
    client_service,
    dial_error,
    eventually,
    headless_service,
    learned_names_timeout,
    log_lines,
    mesh_timeout,
    not_declared,
    observe_mesh,
    require,
    secret_cert_sans,
    servers,
)
from pytest_natsnet.table import Comparison, TruthTable

X509_LOGGED = "x509 error logged"


def _sans(cell: Cell, secret: str) -> list[str]:
    sans = secret_cert_sans(cell.deployment, secret)
    if sans is None:
        pytest.fail(f"TLS cell without Secret {secret} holding tls.crt", pytrace=False)
    return sans


def _verdict(result_outcome: Outcome, detail: dict[str, object]) -> str:
    if result_outcome is Outcome.OK:
        return "ok"
    text = f"{detail.get('error', '')} {detail.get('last_attempt_error', '')}"
    for kind in ("IP address mismatch", "Hostname mismatch"):
        if kind in text:
            return f"fails: {kind}"
    return f"fails: {detail.get('error_class', 'error')}"


@applies(not_declared(DNS_BLOCKED))
def test_client_verifies_the_name_it_dialled(natsnet_cell: Cell, natsnet_probe: Prober) -> None:
    """Service FQDN and short name, the headless short name, a pod IP without and with ``tls_hostname``."""
    deployment = natsnet_cell.deployment
    group = servers(deployment)
    require(applicability.client_tls(group.confs))
    sans = _sans(natsnet_cell, "nats-client-tls")
    port = group.confs[0].client_port
    service, headless = client_service(deployment), headless_service(deployment)
    fqdn = f"{service}.{deployment.namespace}.svc.{deployment.info.cluster_domain}"
    pod_ip = group.ip(group.names[0])
    cases = {
        f"tls://{fqdn}": (fqdn, None),
        f"tls://{service}": (service, None),
        f"tls://{headless}": (headless, None),
        f"tls://{pod_ip}": (pod_ip, None),
        f"tls://{pod_ip} tls_hostname={fqdn}": (pod_ip, fqdn),
    }
    assert natsnet_probe.ca_pem is not None
    requests = [
        NatsRequest(key, (f"tls://{host}:{port}",), TlsOptions(natsnet_probe.ca_pem, hostname), roundtrip=True)
        for key, (host, hostname) in cases.items()
    ]
    expected, reasons = {}, {}
    for key, (host, hostname) in cases.items():
        want = expected_client_tls(sans, host, hostname)
        expected[key] = "ok" if want.ok else f"fails: {want.reason.split(',')[0]}"
        reasons[key] = want.reason

    def dial() -> tuple[bool, dict[str, str]]:
        """Right after the cell is Ready kube-proxy may not route the Service to its endpoints yet: bounded."""
        results = natsnet_probe.run(requests)
        observed = {key: _verdict(results[key].outcome, dict(results[key].detail)) for key in cases}
        return observed == expected, observed

    _, observed, _ = eventually(dial, CONTROLLER_LAG, interval=1.0)
    Comparison.from_dicts(expected, observed, reasons).assert_same(f"client TLS names (SANs: {', '.join(sans)})")


@applies(not_declared(DNS_BLOCKED))
def test_routes_verify_their_literal_hostnames(natsnet_cell: Cell, natsnet_probe: Prober) -> None:
    """Each configured route hostname is verified as written: covered by the route certificate's SANs → the
    route to that server forms; not covered → the server logs the x509 error naming it."""
    deployment = natsnet_cell.deployment
    group = servers(deployment)
    require(applicability.route_tls(group.confs))
    sans = _sans(natsnet_cell, "nats-route-tls")
    hosts = sorted({url_host(r) for conf in group.confs for r in conf.routes if conf.route_tls})
    verified_as = {h: h if not is_ip(h) else (route_tls_name(group.confs[0]) or h) for h in hosts}
    expected = {h: "route forms" if san_covers(sans, name) else X509_LOGGED for h, name in verified_as.items()}

    def outcome(host: str, mesh: TruthTable[bool]) -> str:
        """What happened to the routes dialled as ``host``: the x509 error, the route, or nothing yet."""
        pattern = rf"TLS route handshake error.*x509: .*not {re.escape(verified_as[host])}\b"
        if log_lines(deployment, group.names, pattern):
            return X509_LOGGED
        target = target_of(host, group.confs)
        dialers = [c for c in group.confs if c is not target and host in map(url_host, c.routes)]
        formed = target is not None and any(mesh.get(d.name, target.name) for d in dialers)
        return "route forms" if formed else "nothing yet"

    def settled() -> tuple[bool, dict[str, str]]:
        mesh = observe_mesh(natsnet_probe, group).table
        observed = {host: outcome(host, mesh) for host in hosts}
        return "nothing yet" not in observed.values(), observed

    _, observed, _ = eventually(settled, mesh_timeout(deployment, group), interval=0.5)  # route formed, or x509 logged
    reasons = {h: f"verified as {name}: {'covered' if expected[h] != X509_LOGGED else 'not covered'} by "
               f"{', '.join(sans)}" for h, name in verified_as.items()}  # fmt: skip
    Comparison.from_dicts(expected, observed, reasons).assert_same("route TLS hostnames")


@applies(not_declared(DNS_BLOCKED))
def test_learned_urls_are_dialable_with_the_name_the_client_verifies(natsnet_cell: Cell, natsnet_probe: Prober) -> None:
    """After failover a client dials learned URLs; nats-py verifies a learned IP against the seed's hostname
    (``tls_name``) and a learned name against itself: every learned URL must pass that check."""
    deployment = natsnet_cell.deployment
    group = servers(deployment)
    require(applicability.client_tls(group.confs) or applicability.advertising(group.confs))
    port = group.confs[0].client_port
    service = client_service(deployment)
    seed_host = f"{service}.{deployment.namespace}.svc.{deployment.info.cluster_domain}"
    assert natsnet_probe.ca_pem is not None
    seed = NatsRequest("seed", (f"tls://{seed_host}:{port}",), TlsOptions(natsnet_probe.ca_pem), wait_discovered=2.0)
    mesh = expected_mesh(group.confs, natsnet_cell.expect).table

    def learned() -> tuple[bool, tuple[str, list[dict[str, object]], dict[str, object]]]:
        """The URLs the client learned, once they are every URL its server advertises (bounded)."""
        first = natsnet_probe.run([seed])["seed"]
        if first.outcome is not Outcome.OK:  # kube-proxy may not route the Service to the new endpoints yet
            return False, ("", [], dict(first.detail))
        server = str((first.detail.get("server_info") or {}).get("server_name"))
        pool = list({str(p["url"]): p for p in first.detail.get("servers") or [] if p.get("discovered")}.values())
        advertised = {f"tls://{u}" for u in expected_connect_urls(group.confs, mesh).get(server, ())}
        return {str(p["url"]) for p in pool} >= advertised - {seed.servers[0]}, (server, pool, {})

    done, (server, pool, failure), _ = eventually(learned, mesh_timeout(deployment, group), interval=0.5)
    assert not failure, f"seed connect failed: {failure}"
    assert done, f"the client of {server} learned {[p['url'] for p in pool]}, less than its server advertises"
    if not pool:
        pytest.skip(f"not applicable: {server} advertises no other server (it has no routed peer)")
    requests, expected, reasons = [], {}, {}
    for entry in pool:
        host = url_host(str(entry["url"]))
        verify = str(entry.get("tls_name") or host)
        if is_ip(host):
            assert entry.get("tls_name") == seed_host, (
                f"nats-py gave learned IP {host} tls_name {entry.get('tls_name')}"
            )
        requests.append(
            NatsRequest(
                str(entry["url"]),
                (str(entry["url"]),),
                TlsOptions(natsnet_probe.ca_pem, verify),
                roundtrip=False,
            )
        )
        want = expected_client_tls(_sans(natsnet_cell, "nats-client-tls"), host, verify)
        expected[str(entry["url"])] = "ok" if want.ok else "fails"
        reasons[str(entry["url"])] = f"verified as {verify}: {want.reason}"

    def dial() -> tuple[bool, tuple[dict[str, str], dict[str, ProbeResult]]]:
        """A learned name looked up before its pod was Ready may stay NXDOMAIN in cluster DNS's cache: bounded."""
        results = natsnet_probe.run(requests)
        observed = {key: "ok" if results[key].outcome is Outcome.OK else "fails" for key in expected}
        return observed == expected, (observed, results)

    _, (observed, results), _ = eventually(dial, learned_names_timeout(deployment, expected), interval=1.0)
    reasons = {key: reason + dial_error(results[key]) for key, reason in reasons.items()}
    Comparison.from_dicts(expected, observed, reasons).assert_same("learned URLs, dialled as nats-py would")
