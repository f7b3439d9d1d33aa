"""``natsnet render`` and ``natsnet gc``: output, exit codes, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from golden_data import RENDERED

from pytest_natsnet import cli

GOLDEN = RENDERED


def test_list_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["render", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 11
    assert lines[0].split() == ["default", "[healthy]", "base.yaml", "readiness-gate.yaml"]
    bad_sans = next(line for line in lines if line.startswith("tls-bad-sans "))
    assert "[mesh-split, route-tls-mismatch]" in bad_sans
    assert lines[-1].split()[:2] == ["pnra-false+jetstream", "[bootstrap-deadlock]"]


@pytest.mark.parametrize("matrix", ["smoke", "pairwise", "full"])
def test_list_json(capsys: pytest.CaptureFixture[str], matrix: str) -> None:
    assert cli.main(["render", "--list", "--matrix", matrix, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(set(r) == {"id", "settings", "values_files", "expect", "certs"} for r in rows)
    assert rows[0]["values_files"][:2] == ["base.yaml", "readiness-gate.yaml"]
    assert len({r["id"] for r in rows}) == len(rows)


def test_render_reference_prints_multidoc_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pytest_natsnet.sources.reference", reason="reference renderer not written yet")
    assert cli.main(["render", "--scenario", "netpol-egress-dns", "--source", "reference",
                     "--namespace", "demo"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("---\n")
    documents = [d for d in yaml.safe_load_all(out) if d]
    kinds = [d["kind"] for d in documents]
    assert kinds.count("NetworkPolicy") == 3 and "StatefulSet" in kinds
    assert kinds[0] == "Namespace" and documents[0]["metadata"]["name"] == "demo"
    assert {d["metadata"]["namespace"] for d in documents[1:]} == {"demo"}


def test_render_prints_what_the_run_deploys(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The namespace with the run's labels, the generated TLS Secrets and the objects: the run's own assembly."""
    from pytest_natsnet.matrix import load_matrix, scenario_by_id
    from pytest_natsnet.plan import RunPlan
    from pytest_natsnet.session import NatsnetRun
    from pytest_natsnet.settings import NatsnetSettings

    assert cli.main(["render", "--scenario", "tls", "--source", "reference", "--run-id", "abc123"]) == 0
    printed = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    run = NatsnetRun(NatsnetSettings(enabled=True), load_matrix(),
                     RunPlan("abc123", "sandbox", "test", "reference", "test"))
    cell, tls = run.manifests(scenario_by_id(load_matrix(), "tls"))
    assert tls is not None
    assert printed[0] == {"apiVersion": "v1", "kind": "Namespace",
                          "metadata": {"name": "natsnet-abc123-tls", "labels": dict(cell.labels)}}
    assert [(d["kind"], d["metadata"]["name"]) for d in printed[1:]] == [
        (o["kind"], o["metadata"]["name"]) for o in cell.objects]
    assert {"nats-ca", "nats-client-tls", "nats-route-tls"} <= {
        d["metadata"]["name"] for d in printed if d["kind"] == "Secret"}


def test_render_manifests_accepts_ids_outside_the_matrix(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["render", "--scenario", "combined", "--source", "manifests", "--manifests", str(GOLDEN),
                     "--namespace", "other"]) == 0
    out = capsys.readouterr().out
    assert ".other.svc.cluster.local" in out and ".natsnet.svc" not in out


@pytest.mark.parametrize(("argv", "message"), [
    (["render", "--scenario", "nope", "--source", "reference"], "--scenario nope: is not a cell"),
    (["render", "--scenario", "default", "--source", "manifests"], "--source manifests: needs --manifests"),
    (["render", "--scenario", "x", "--source", "manifests", "--manifests", "/no"], "not a directory"),
    (["render", "--list", "--matrix", "huge"], "no matrix named 'huge'"),
    (["render"], "give --list or --scenario ID"),
])
def test_errors_are_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert captured.out == ""


def test_helm_source_without_helm_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("NATSNET_HELM", raising=False)
    monkeypatch.setattr("pytest_natsnet.tools.urllib_fetch", _offline)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    argv = ["render", "--scenario", "default", "--source", "helm", "--helm", str(tmp_path / "helm")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("natsnet: helm not found: --natsnet-helm=") and err.count("\n") == 1


def _offline(url: str, timeout: float) -> bytes:
    raise OSError("offline")


def test_gc_removes_what_a_dead_run_left_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from pytest_natsnet.sandbox import gc

    state = tmp_path / "state"
    state.mkdir()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # pid 2**22 + 1 is above the kernel's pid_max: certainly not running. No netns carries the prefix.
    (state / "deadbeef.json").write_text(json.dumps(
        {"pid": 2**22 + 1, "run_dir": str(run_dir), "netns_prefix": "natsnet-test-none-"}))
    monkeypatch.setattr(gc, "STATE_DIR", state)
    monkeypatch.setenv("NATSNET_STATE_DIR", str(state))  # run records too (none here)
    assert cli.main(["gc"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"removed {run_dir}"]
    assert not run_dir.exists() and not (state / "deadbeef.json").exists()
    assert cli.main(["gc"]) == 0
    assert capsys.readouterr().out == ""
