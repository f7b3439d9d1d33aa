"""A real check: rendered nats.conf files load with ``nats-server -t`` under the env a pod would have.

Each check runs inside bwrap with throwaway certificates bound at the chart's mount paths (the host's ``/``
is never bound), so TLS configs load their files exactly where the chart puts them; every mount backed by a
volumeClaimTemplate (the JetStream PVC) is a fresh writable directory at its mountPath. JetStream configs are
also started for real (own network namespace, loopback only) to see the store land on the claim.
"""

from __future__ import annotations

import datetime
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from test_reference import SMOKE_CORRESPONDENCE, cell_files, compose, golden_objects

from pytest_natsnet.natsconf import parse
from pytest_natsnet.sources.reference import render
from pytest_natsnet.suitekit import eventually

NATS_SERVER = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "nats-server"
CHART_CERT_DIRS = {
    "nats": "/etc/nats-certs/nats",
    "cluster": "/etc/nats-certs/cluster",
    "ca": "/etc/nats-ca-cert",
}
POD = "nats-0"
READY_LINE = "Server is ready"
START_TIMEOUT = 30.0

pytestmark = pytest.mark.skipif(
    not NATS_SERVER.exists() or shutil.which("bwrap") is None, reason="needs .venv/bin/nats-server and bwrap"
)


def pod_env(container: Mapping[str, Any], pod_name: str) -> dict[str, str]:
    """The container's env as the kubelet sets it: fieldRef metadata.name, ``$(VAR)`` of earlier vars only."""
    env: dict[str, str] = {}
    for entry in container.get("env", []):
        if "value" in entry:
            text = str(entry["value"])
            env[entry["name"]] = re.sub(
                r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), text
            )
        elif entry.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[entry["name"]] = pod_name
        else:
            raise AssertionError(f"env entry the test cannot emulate: {entry}")
    return env


def test_pod_env_expands_only_earlier_variables() -> None:
    container = {
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "A", "value": "$(POD_NAME).x:$(LATER)"},
            {"name": "LATER", "value": "1"},
        ]
    }
    assert pod_env(container, "nats-2") == {"POD_NAME": "nats-2", "A": "nats-2.x:$(LATER)", "LATER": "1"}


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def write_throwaway_certs(root: Path) -> dict[str, Path]:
    """A CA and one leaf per protocol, in directories named like the chart's mounts."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "natsnet-test-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    dirs = {name: root / name for name in CHART_CERT_DIRS}
    for directory in dirs.values():
        directory.mkdir(parents=True)
    (dirs["ca"] / "ca.crt").write_bytes(_pem_cert(ca))
    for proto in ("nats", "cluster"):
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, proto)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("*.nats-headless")]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        (dirs[proto] / "tls.crt").write_bytes(_pem_cert(leaf))
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        (dirs[proto] / "tls.key").write_bytes(key_pem)
    return dirs


def bwrap_argv(
    conf: str,
    env: Mapping[str, str],
    work: Path,
    certs: Mapping[str, Path] | None,
    claims: Mapping[str, Path] | None = None,
    claim_bind: str = "--bind",
) -> list[str]:
    """A minimal bwrap root for ``/nats-server -c /conf/nats.conf`` (arguments follow); ``claims`` maps a
    mountPath to the host directory standing in for its PVC (writable unless ``claim_bind="--ro-bind"``)."""
    conf_dir = work / "conf"
    conf_dir.mkdir()
    (conf_dir / "nats.conf").write_text(conf)
    argv = [
        "bwrap", "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
        "--symlink", "usr/lib64", "/lib64", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
        "--dir", "/etc", "--dir", "/etc/nats-certs", "--dir", "/var/run/nats",
        "--ro-bind", str(conf_dir), "/conf", "--ro-bind", str(NATS_SERVER), "/nats-server",
        "--die-with-parent", "--clearenv",
    ]  # fmt: skip
    for name, directory in (certs or {}).items():
        argv += ["--ro-bind", str(directory), CHART_CERT_DIRS[name]]
    for mount_path, directory in (claims or {}).items():
        argv += [claim_bind, str(directory), mount_path]
    for name, value in env.items():
        argv += ["--setenv", name, value]
    return argv


def nats_server_test(
    conf: str,
    env: Mapping[str, str],
    work: Path,
    certs: Mapping[str, Path] | None,
    claims: Mapping[str, Path] | None = None,
) -> str:
    """Runs ``nats-server -t`` on ``conf`` in a minimal bwrap root; returns its output, asserting exit 0."""
    argv = [*bwrap_argv(conf, env, work, certs, claims), "/nats-server", "-t", "-c", "/conf/nats.conf"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def nats_server_start(
    conf: str,
    env: Mapping[str, str],
    work: Path,
    certs: Mapping[str, Path] | None,
    claims: Mapping[str, Path] | None = None,
    claim_bind: str = "--bind",
) -> str:
    """Starts nats-server on ``conf`` in its own network namespace (loopback only: route and DNS attempts
    stay inside), waits for it to be ready and stops it; returns its log, asserting it got ready."""
    argv = [*bwrap_argv(conf, env, work, certs, claims, claim_bind), "--unshare-net", "/nats-server", "-c",
            "/conf/nats.conf"]
    log = work / "nats-server.log"
    with log.open("w") as sink:
        server = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT)
        try:
            ready, _, waited = eventually(
                lambda: (READY_LINE in log.read_text() or server.poll() is not None, None), START_TIMEOUT
            )
        finally:
            server.kill()
            server.wait(timeout=10)
    output = log.read_text()
    assert ready and READY_LINE in output, f"no {READY_LINE!r} after {waited:.1f}s:\n{output}"
    return output


def claimed_mounts(objects: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The nats container's mounts backed by the StatefulSet's volumeClaimTemplates: mountPath -> claim."""
    sts = next(o for o in objects if o["kind"] == "StatefulSet")
    claims = {c["metadata"]["name"] for c in sts["spec"].get("volumeClaimTemplates") or []}
    nats = sts["spec"]["template"]["spec"]["containers"][0]
    return {m["mountPath"]: m["name"] for m in nats.get("volumeMounts", []) if m["name"] in claims}


def claim_dirs(objects: Sequence[Mapping[str, Any]], work: Path) -> dict[str, Path]:
    """A fresh host directory per claimed mount (what a new PVC gives the pod: an empty writable volume)."""
    dirs = {}
    for mount_path, claim in claimed_mounts(objects).items():
        dirs[mount_path] = work / "claims" / claim
        dirs[mount_path].mkdir(parents=True)
    return dirs


def pod_conf(objects: Sequence[Mapping[str, Any]]) -> tuple[str, dict[str, str]]:
    """The rendered nats.conf and the env of the nats container of pod ``nats-0``."""
    by_kind = {o["kind"]: o for o in objects}
    nats = by_kind["StatefulSet"]["spec"]["template"]["spec"]["containers"][0]
    env = pod_env(nats, POD)
    assert env["SERVER_NAME"] == POD
    return by_kind["ConfigMap"]["data"]["nats.conf"], env


def check_objects_load(objects: Sequence[Mapping[str, Any]], work: Path) -> str:
    conf, env = pod_conf(objects)
    certs = write_throwaway_certs(work / "certs") if "tls" in conf else None
    return nats_server_test(conf, env, work, certs, claim_dirs(objects, work))


def check_jetstream_store(objects: Sequence[Mapping[str, Any]], work: Path) -> Path | None:
    """Starts the pod's server; with a claim, asserts the JetStream store was written into the claim's
    directory (so it outlives the pod). Returns that store, None for a cell without a claim."""
    conf, env = pod_conf(objects)
    jetstream = parse(conf, env).get("jetstream")
    assert jetstream is not None, "the config has no jetstream block"
    certs = write_throwaway_certs(work / "certs") if "tls" in conf else None
    claims = claim_dirs(objects, work)
    output = nats_server_start(conf, env, work, certs, claims)
    assert "Starting JetStream" in output, output
    if not claims:
        return None
    store_dir = str(jetstream.get("store_dir", ""))
    mount_path = next((m for m in claims if store_dir == m or store_dir.startswith(m.rstrip("/") + "/")), None)
    assert mount_path is not None, f"store_dir {store_dir!r} is not on a claimed mount ({', '.join(claims)})"
    store = claims[mount_path] / Path(store_dir).relative_to(mount_path) / "jetstream"
    assert store.is_dir() and any(store.iterdir()), f"nothing written to {store}:\n{output}"
    return store


def test_golden_conf_loads_in_nats_server(golden_scenario: str, tmp_path: Path) -> None:
    assert "is valid" in check_objects_load(golden_objects(golden_scenario), tmp_path)


def test_jetstream_golden_server_starts_with_its_store_on_the_claim(
    jetstream_golden_scenario: str, tmp_path: Path
) -> None:
    objects = golden_objects(jetstream_golden_scenario)
    store = check_jetstream_store(objects, tmp_path)
    assert (store is not None) == bool(claimed_mounts(objects))


def test_jetstream_matrix_cell_starts_with_its_store_on_the_claim(tmp_path: Path) -> None:
    objects = render(compose(cell_files({"jetstream": "on"})), "natsnet")
    store = check_jetstream_store(objects, tmp_path)
    assert store == tmp_path / "claims" / "nats-js" / "jetstream"


def test_jetstream_store_check_fails_when_the_store_is_off_the_claim(tmp_path: Path) -> None:
    """A store_dir merged away from fileStore.dir: the chart still mounts the PVC at fileStore.dir."""
    values = compose(cell_files({"jetstream": "on"}))
    values["config"]["jetstream"]["merge"] = {"store_dir": "/elsewhere"}
    with pytest.raises(AssertionError, match="'/elsewhere' is not on a claimed mount"):
        check_jetstream_store(render(values, "natsnet"), tmp_path)


def test_jetstream_start_fails_on_a_read_only_claim(tmp_path: Path) -> None:
    """The start check is not vacuous: a claim the server cannot write to keeps JetStream from starting."""
    objects = golden_objects("jetstream")
    conf, env = pod_conf(objects)
    with pytest.raises(AssertionError, match="no 'Server is ready'") as caught:
        nats_server_start(conf, env, tmp_path, None, claim_dirs(objects, tmp_path), claim_bind="--ro-bind")
    assert "read-only file system" in str(caught.value)


@pytest.mark.parametrize(
    "cell", [pytest.param(row[0], id="+".join(row[0].values()) or "default") for row in SMOKE_CORRESPONDENCE]
)
def test_smoke_cell_conf_loads_in_nats_server(cell: dict[str, str], tmp_path: Path) -> None:
    assert "is valid" in check_objects_load(render(compose(cell_files(cell)), "natsnet"), tmp_path)


def test_check_fails_without_the_certificates(tmp_path: Path) -> None:
    objects = golden_objects("tls")
    conf = {o["kind"]: o for o in objects}["ConfigMap"]["data"]["nats.conf"]
    with pytest.raises(AssertionError, match=r"tls\.crt"):
        nats_server_test(conf, {"SERVER_NAME": POD}, tmp_path, None)


def test_check_fails_when_the_pod_env_lacks_a_variable(tmp_path: Path) -> None:
    objects = golden_objects("advertise-dns")
    conf = {o["kind"]: o for o in objects}["ConfigMap"]["data"]["nats.conf"]
    with pytest.raises(AssertionError, match="CLIENT_ADVERTISE"):
        nats_server_test(conf, {"SERVER_NAME": POD}, tmp_path, None)
