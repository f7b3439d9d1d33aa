"""A real check: rendered nats.conf files load with ``nats-server -t`` under the env a pod would have.

Each check runs inside bwrap with throwaway certificates bound at the chart's mount paths (the host's ``/``
is never bound), so TLS configs load their files exactly where the chart puts them.
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

from pytest_natsnet.sources.reference import render

NATS_SERVER = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "nats-server"
CHART_CERT_DIRS = {
    "nats": "/etc/nats-certs/nats",
    "cluster": "/etc/nats-certs/cluster",
    "ca": "/etc/nats-ca-cert",
}
POD = "nats-0"

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


def nats_server_test(conf: str, env: Mapping[str, str], work: Path, certs: Mapping[str, Path] | None) -> str:
    """Runs ``nats-server -t`` on ``conf`` in a minimal bwrap root; returns its output, asserting exit 0."""
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
    for name, value in env.items():
        argv += ["--setenv", name, value]
    argv += ["/nats-server", "-t", "-c", "/conf/nats.conf"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def check_objects_load(objects: Sequence[Mapping[str, Any]], work: Path) -> str:
    by_kind = {o["kind"]: o for o in objects}
    conf = by_kind["ConfigMap"]["data"]["nats.conf"]
    nats = by_kind["StatefulSet"]["spec"]["template"]["spec"]["containers"][0]
    env = pod_env(nats, POD)
    assert env["SERVER_NAME"] == POD
    certs = write_throwaway_certs(work / "certs") if "tls" in conf else None
    return nats_server_test(conf, env, work, certs)


def test_golden_conf_loads_in_nats_server(golden_scenario: str, tmp_path: Path) -> None:
    assert "is valid" in check_objects_load(golden_objects(golden_scenario), tmp_path)


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
