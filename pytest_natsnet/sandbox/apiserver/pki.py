"""The sandbox API server's certificates and its kubeconfig.

A CA made for one sandbox signs the server certificate (SAN 127.0.0.1 and localhost) and one client
certificate (``O=system:masters``: cluster-admin). Keys and the kubeconfig are written with mode 0600 inside
the sandbox's directory and are removed with it; nothing else is trusted.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=7)
CLUSTER_NAME = "natsnet-sandbox"
USER_NAME = "natsnet-admin"


@dataclass(frozen=True)
class Pki:
    """Paths of the PEM files one sandbox's API server and clients use."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


def _write_private(path: Path, data: bytes) -> None:
    """Creates ``path`` with mode 0600 from the start (never world-readable, not even briefly)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def issue(directory: Path, sandbox_id: str) -> Pki:
    """A fresh CA, server and client certificate for ``sandbox_id``, written under ``directory`` (0700)."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    ca_key = _key()
    ca_name = _name(f"natsnet-sandbox-{sandbox_id}-ca")
    ca = (
        _builder(ca_name, ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = _key()
    server = (
        _builder(_name("natsnet-sandbox-apiserver"), ca_name, server_key.public_key())
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    client_key = _key()
    client = (
        _builder(_name(USER_NAME, "system:masters"), ca_name, client_key.public_key())
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(directory / "ca.crt", directory / "apiserver.crt", directory / "apiserver.key",
              directory / "admin.crt", directory / "admin.key")
    _write_private(pki.ca_cert, _pem_cert(ca))
    _write_private(pki.server_cert, _pem_cert(server))
    _write_private(pki.server_key, _pem_key(server_key))
    _write_private(pki.client_cert, _pem_cert(client))
    _write_private(pki.client_key, _pem_key(client_key))
    return pki


def kubeconfig_text(server: str, pki: Pki, context: str = CLUSTER_NAME) -> str:
    """A kubeconfig with the CA and client credentials embedded (no paths: it works from anywhere)."""

    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CLUSTER_NAME, "cluster": {"server": server,
                                                        "certificate-authority-data": b64(pki.ca_cert)}}],
        "users": [{"name": USER_NAME, "user": {"client-certificate-data": b64(pki.client_cert),
                                               "client-key-data": b64(pki.client_key)}}],
        "contexts": [{"name": context, "context": {"cluster": CLUSTER_NAME, "user": USER_NAME,
                                                   "namespace": "default"}}],
        "current-context": context,
        "preferences": {},
    }
    return yaml.safe_dump(config, sort_keys=False)


def write_kubeconfig(path: Path, server: str, pki: Pki) -> Path:
    """Writes the kubeconfig with mode 0600."""
    _write_private(path, kubeconfig_text(server, pki).encode())
    return path
