"""Every suite applies to a ``--natsnet-values-dir`` cell that brings the feature it checks, and to no other.

A real run on the sandbox: one cell per values file in ``values-dirs/brings-features`` (NetworkPolicies, TLS,
advertised client URLs, none of them a matrix setting), the suites that decide from the cell's objects.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_natsnet.resources import suites_dir

BRINGS = Path(__file__).parent / "values-dirs" / "brings-features"
BROUGHT = {
    "brings-netpol": {"netpol"},
    "brings-tls-and-advertise": {"tls", "advertise"},
    "brings-advertise": {"advertise"},
}
"""What each values file brings."""
CHECKS = {
    "test_dns_egress": {"netpol"},
    "test_dns_egress.test_servers_log_the_route_lookups_their_policies_block": {"netpol", "declares dns-blocked"},
    "test_tls_names": {"tls"},
    "test_tls_names.test_learned_urls_are_dialable_with_the_name_the_client_verifies": {"tls", "advertise"},
    "test_advertise.test_external_clients_cannot_use_cluster_local_names": {"advertise"},
}
"""What a test needs (by module, or module.test); a test not listed applies to every cell."""
SUITES = ("test_dns_egress.py", "test_tls_names.py", "test_advertise.py")


def _outcomes(junit: Path) -> dict[tuple[str, str, str], tuple[str, str]]:
    """(module, test, cell) -> (outcome, skip or failure message)."""
    outcomes = {}
    for case in ET.parse(junit).iter("testcase"):
        module = case.get("classname", "").rsplit(".", 1)[-1]
        test, _, cell = case.get("name", "").partition("[")
        skipped, failed = case.find("skipped"), case.find("failure") or case.find("error")
        if failed is not None:
            outcomes[(module, test, cell.rstrip("]"))] = ("failed", (failed.get("message") or "")[:500])
        elif skipped is not None:
            outcomes[(module, test, cell.rstrip("]"))] = ("skipped", skipped.get("message") or "")
        else:
            outcomes[(module, test, cell.rstrip("]"))] = ("passed", "")
    return outcomes


def test_each_suite_applies_exactly_to_the_cells_that_bring_its_feature(tmp_path: Path) -> None:
    from pytest_natsnet.providers.sandbox_provider import missing_requirements

    if missing_requirements():
        pytest.skip("; ".join(missing_requirements()))
    junit = tmp_path / "junit.xml"
    argv = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--natsnet", "--natsnet-provider=sandbox",
        "--natsnet-source=reference", f"--natsnet-values-dir={BRINGS}", "--natsnet-scenario=brings-*",
        f"--natsnet-evidence-dir={tmp_path / 'evidence'}", "-n", "3", "--dist", "loadgroup",
        f"--junitxml={junit}", "-o", "junit_family=xunit1", *(str(suites_dir() / s) for s in SUITES),
    ]  # fmt: skip
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    assert junit.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    outcomes = _outcomes(junit)
    assert {cell for _, _, cell in outcomes} == set(BROUGHT), sorted(outcomes)

    wrong, applied = [], set()
    for (module, test, cell), (outcome, message) in sorted(outcomes.items()):
        needs = CHECKS.get(f"{module}.{test}", CHECKS.get(module, set()))
        if needs <= BROUGHT[cell]:
            applied.add((module, cell) if needs else ("", ""))
            if outcome != "passed":
                wrong.append(f"{module}::{test}[{cell}] {outcome} (it applies): {message}")
        elif outcome != "skipped" or not message.startswith("not applicable: "):
            wrong.append(f"{module}::{test}[{cell}] {outcome} (it does not apply): {message}")
    assert not wrong, "\n".join(wrong) + "\n" + done.stdout[-3000:]
    assert {("test_dns_egress", "brings-netpol"), ("test_tls_names", "brings-tls-and-advertise"),
            ("test_advertise", "brings-advertise"), ("test_advertise", "brings-tls-and-advertise")} <= applied
