"""The bundle as written: README on top naming the failing behaviour, the culprit and the reproduce command; raw
material beside it; Secrets only redacted; no key material anywhere, even when the inputs carry some."""

from __future__ import annotations

import base64
import gzip
import json
import re
from pathlib import Path

import yaml
from evidence_builders import NAMES, healthy
from test_evidence_findings import BUG_EGRESS, DNS_TIMEOUTS, NO_MESH

from pytest_natsnet.evidence import keymaterial
from pytest_natsnet.evidence.bundle import write_bundle
from pytest_natsnet.evidence.collect import Raw
from pytest_natsnet.evidence.findings import analyse
from pytest_natsnet.evidence.readme import BundleContext, TestFailure
from pytest_natsnet.tlsgen import new_ca, tls_material

MESH_FAILURE = """route mesh of netpol: 0/6 as expected, 6 differ from the expectation

expected | nats-0 | nats-1 | nats-2
nats-0   | .      | ✓      | ✓"""


def _bundle(tmp_path: Path, failed: bool = True) -> tuple[Path, Raw]:
    values = tmp_path / "my-values.yaml"
    values.write_text("config:\n  cluster:\n    enabled: true\n")
    material = tls_material(new_ca("bundle test"), "good", "shop")
    key_pem = base64.b64decode(material.secrets[1]["data"]["tls.key"]).decode()
    obs = healthy(policies=[BUG_EGRESS], mesh=NO_MESH, outcomes=DNS_TIMEOUTS) if failed else healthy()
    raw = Raw(objects={"Pod": list(obs.of_kind("Pod")), "Service": list(obs.of_kind("Service"))},
              secrets=list(material.secrets),
              logs={f"{n}.nats": f"[1] 2026/01/01 00:00:00.000000 [INF] Starting nats-server\n{key_pem}\n"
                    for n in NAMES},
              dns_log=[json.dumps({"ts": 1.0, "client": "10.0.0.10:1", "qname": "nats.shop.svc.cluster.local.",
                                   "qtype": "A", "rcode": "NOERROR"})],
              dns_log_sources=["the provider's DNS query log (1 lines)"],
              others={"shop-other": {"NetworkPolicy": [dict(BUG_EGRESS, metadata={"name": "other-policy",
                                                                                   "namespace": "shop-other"})]}},
              other_logs={"shop-other": {"natsnet-probe.probe": f"probe log\n{key_pem}"}})
    ctx = BundleContext(
        title="cell netpol", verdict="failed" if failed else "kept", declared=("dns-blocked",) if failed else (),
        failures=(TestFailure("suites/test_route_mesh.py::test_full_mesh[netpol]", MESH_FAILURE),) if failed else (),
        reproduce="pytest --natsnet --natsnet-scenario=netpol", values_files=(values,),
        reattach=("kubectl --kubeconfig k -n shop get pods",))
    readme = write_bundle(tmp_path / "bundle", ctx, obs, analyse(obs), raw,
                          manifests=[*material.secrets, *raw.objects["Service"]])
    return readme, raw


def test_the_readme_says_what_failed_why_and_how_to_reproduce(tmp_path: Path) -> None:
    readme, _ = _bundle(tmp_path)
    text = readme.read_text()
    head = text.split("# The Debugging Flow")[0]
    assert head.startswith("# natsnet evidence: cell netpol (failed)\n")
    assert ("- `suites/test_route_mesh.py::test_full_mesh[netpol]`: route mesh of netpol: 0/6 as expected, 6 differ "
            "from the expectation") in head
    assert ("1. **Pods cannot reach cluster DNS** (`dns-blocked`): routes cannot form: lookup nats-1.nats-headless "
            "times out; egress NetworkPolicy bug-egress allows no DNS") in head
    assert "   - culprit: NetworkPolicy bug-egress (egress of nats-0, nats-1, nats-2)" in head
    assert "Declared failures reproduced by the findings: dns-blocked." in head
    assert "pytest --natsnet --natsnet-scenario=netpol" in head and "kubectl --kubeconfig k -n shop get pods" in head
    steps = re.findall(r"^## (\d)\. ", text, re.M)
    assert steps == [str(i) for i in range(1, 9)]
    assert len(head.splitlines()) < 60, "the part above the flow stays short enough to read in two minutes"


def test_every_file_the_readme_lists_exists_and_the_raw_material_is_beside_it(tmp_path: Path) -> None:
    readme, _ = _bundle(tmp_path)
    root = readme.parent
    listed = re.findall(r"^- \[([^\]]+)\]\(\1\)$", readme.read_text(), re.M)
    assert listed and all((root / f).is_file() for f in listed), listed
    assert {"README.md", "REPRODUCE.txt", "findings.json", "tests/failures.md", "values/01-my-values.yaml",
            "manifests/rendered.yaml", "objects/Secret.redacted.yaml", "logs/nats-0.nats.log",
            "probes/checks.json", "network/reachability.md", "dns/summary.md", "dns/queries.log.gz",
            "nats/nats-0-routez.json", "namespaces/shop-other/NetworkPolicy.yaml",
            "namespaces/shop-other/logs/natsnet-probe.probe.log"} <= set(listed)
    assert "other-policy" in (root / "namespaces/shop-other/NetworkPolicy.yaml").read_text()
    assert (root / "values/01-my-values.yaml").read_text() == "config:\n  cluster:\n    enabled: true\n"
    assert "route mesh of netpol" in (root / "tests/failures.md").read_text()
    assert json.loads((root / "findings.json").read_text())[0]["pattern"] == "dns-blocked"
    assert b"nats.shop.svc.cluster.local." in gzip.decompress((root / "dns/queries.log.gz").read_bytes())
    assert (root / "REPRODUCE.txt").read_text().splitlines()[0] == "pytest --natsnet --natsnet-scenario=netpol"


def test_no_key_material_and_no_secret_data_reach_the_bundle(tmp_path: Path) -> None:
    readme, raw = _bundle(tmp_path)
    root = readme.parent
    assert keymaterial.scan(root) == []
    texts = [p.read_bytes().decode("utf-8", "replace") for p in root.rglob("*") if p.is_file()]
    values = [str(v) for s in raw.secrets for v in (s.get("data") or {}).values()]
    assert not [v[:16] for v in values if any(v in t for t in texts)]
    rendered = list(yaml.safe_load_all((root / "manifests/rendered.yaml").read_text()))
    secrets = [d for d in rendered if d["kind"] == "Secret"]
    assert secrets and all("data" not in s and "redactedData" in s for s in secrets)
    route = next(s for s in secrets if s["metadata"]["name"] == "nats-route-tls")
    assert route["redactedData"]["tls.crt"]["certificates"][0]["sans"]
    assert "[private key removed by pytest-natsnet]" in (root / "logs/nats-0.nats.log").read_text()
    assert not (root / "REMOVED-KEY-MATERIAL.txt").exists()


def test_a_healthy_bundle_says_nothing_was_found(tmp_path: Path) -> None:
    readme, _ = _bundle(tmp_path, failed=False)
    text = readme.read_text()
    assert text.startswith("# natsnet evidence: cell netpol (kept)")
    assert "The Debugging Flow found nothing wrong" in text
    assert "## What failed" not in text
