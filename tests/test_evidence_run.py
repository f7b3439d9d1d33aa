"""A failed cell explains itself: two bug-report tests fail on real sandbox cells (DNS blocked by an egress policy;
route TLS certificates without the short names), and each cell's bundle alone names the failing test, the seeded
fault with its culprit and the command that reruns it; the JUnit XML and the terminal summary point at it; no
bundle holds key material or Secret data."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_natsnet.evidence import keymaterial

DATA = Path(__file__).parent / "data" / "doctor"

BUG_REPORTS = """
import pytest

from pytest_natsnet.suitekit import monitor, servers


def _peers(deployment, probe):
    bodies = monitor(probe, servers(deployment), "/routez")
    return {name: sorted({r["remote_name"] for r in body.get("routes") or []}) for name, body in bodies.items()}


@pytest.mark.natsnet_values("dns-blocked.yaml")
def test_routes_form_with_an_egress_policy(natsnet_deployment, natsnet_probe):
    peers = _peers(natsnet_deployment, natsnet_probe)
    assert all(len(p) == 2 for p in peers.values()), f"mesh: {peers}"


@pytest.mark.natsnet_values("tls-san-mismatch.yaml", certs="fqdn-only")
def test_routes_form_over_tls(natsnet_deployment, natsnet_probe):
    peers = _peers(natsnet_deployment, natsnet_probe)
    assert all(len(p) == 2 for p in peers.values()), f"mesh: {peers}"
"""


@pytest.fixture
def sandbox_collectable() -> None:
    from pytest_natsnet.providers.sandbox_provider import missing_requirements

    problems = missing_requirements()
    if problems:
        pytest.skip(f"sandbox requirements missing: {'; '.join(problems)}")


def test_a_failed_cell_leaves_a_bundle_that_explains_it(pytester: pytest.Pytester, sandbox_collectable: None,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NATSNET_STATE_DIR", str(pytester.path / "state"))
    for name in ("dns-blocked.yaml", "tls-san-mismatch.yaml"):
        shutil.copy(DATA / name, pytester.path / name)
    pytester.makepyfile(test_bug_reports=BUG_REPORTS)
    result = pytester.runpytest("--natsnet", "--natsnet-provider=sandbox", "--natsnet-source=reference",
                                "--natsnet-sandbox-dns=kind-1.32", "-p", "no:cacheprovider",
                                "-o", "junit_family=xunit1", "--junitxml=junit.xml", "test_bug_reports.py")
    result.assert_outcomes(failed=2)
    evidence = {case.get("name"): Path(str(p.get("value")))
                for case in ET.parse(pytester.path / "junit.xml").iter("testcase")
                for p in case.iter("property") if p.get("name") == "natsnet_evidence"}
    assert sorted(evidence) == ["test_routes_form_over_tls[routes-form-over-tls]",
                                "test_routes_form_with_an_egress_policy[routes-form-with-an-egress-policy]"]
    expectations = {
        "test_routes_form_with_an_egress_policy[routes-form-with-an-egress-policy]": (
            "(`dns-blocked`): routes cannot form: lookup nats-1.nats-headless times out; egress NetworkPolicy "
            "bug-egress allows no DNS"),
        "test_routes_form_over_tls[routes-form-over-tls]": (
            "(`route-tls-mismatch`): routes cannot form: the route certificate (Secret nats-route-tls) is valid for "
            "*.nats-headless."),
    }
    for test, bundle in evidence.items():
        readme = (bundle / "README.md").read_text()
        head = readme.split("# The Debugging Flow")[0]
        assert f"test_bug_reports.py::{test}`: mesh: {{" in head, head
        assert expectations[test] in head, head
        cell = test.split("[")[1].rstrip("]")
        assert f"pytest --natsnet --natsnet-provider=sandbox --natsnet-source=reference --natsnet-matrix=smoke " \
               f"--natsnet-scenario={cell}" in head
        assert (bundle / "values" / "01-base.yaml").is_file()
        assert keymaterial.scan(bundle) == [], "key material in the bundle"
        timings = json.loads((bundle / "timings.json").read_text())
        print(f"{cell}: evidence collected in {timings['total']:.1f} s")  # shown with -s
        pattern = expectations[test].split("`")[1]
        result.stdout.fnmatch_lines([f"{cell} (expected healthy); evidence: {bundle.relative_to(pytester.path)}",
                                     f"  why: [[]{pattern}] routes cannot form: *"])
    tls_bundle = evidence["test_routes_form_over_tls[routes-form-over-tls]"]
    rendered = (tls_bundle / "manifests" / "rendered.yaml").read_text()
    assert "redactedData" in rendered and "tls.key: '(redacted: " in rendered
    assert not list((pytester.path / "state" / "runs").glob("*.json")), "the run's record outlived the run"


NEVER_READY = """
import pytest


@pytest.mark.natsnet_values("never-ready.yaml")
def test_never_ready(natsnet_deployment):
    pass
"""


def test_a_cell_that_never_becomes_ready_leaves_a_bundle_too(pytester: pytest.Pytester, sandbox_collectable: None,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The deploy times out (every server exits at start): the cell's evidence is written before it is torn down,
    the test points at it, and the bundle says why the servers are not Ready."""
    monkeypatch.setenv("NATSNET_STATE_DIR", str(pytester.path / "state"))
    shutil.copy(DATA / "never-ready.yaml", pytester.path / "never-ready.yaml")
    pytester.makepyfile(test_never_ready=NEVER_READY)
    result = pytester.runpytest("--natsnet", "--natsnet-provider=sandbox", "--natsnet-source=reference",
                                "--natsnet-timeout=15", "-p", "no:cacheprovider", "-o", "junit_family=xunit1",
                                "--junitxml=junit.xml", "test_never_ready.py")
    result.assert_outcomes(errors=1)
    evidence = {Path(str(p.get("value"))) for p in ET.parse(pytester.path / "junit.xml").iter("property")
                if p.get("name") == "natsnet_evidence"}
    assert len(evidence) == 1, evidence
    (bundle,) = evidence
    head = (bundle / "README.md").read_text().split("# The Debugging Flow")[0]
    assert "- `deploy of cell never-ready`: timed out after 15s waiting for StatefulSet ready" in head, head
    assert "(`pods-not-ready`): servers are not all Ready: nats-0 is not Ready" in head, head
    assert 'unknown field "no_such_setting"' in head, head
    assert keymaterial.scan(bundle) == []
    result.stdout.fnmatch_lines(["*cell never-ready could not be deployed (evidence: *never-ready)*"])
