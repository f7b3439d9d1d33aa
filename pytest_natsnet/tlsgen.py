"""TLS material for a cell: one ECDSA P-256 CA per run, leaf certificates, the Secrets the chart mounts."""

from __future__ import annotations

import base64
import datetime
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pytest_natsnet.kube import Obj

CA_SECRET = "nats-ca"
CLIENT_SECRET = "nats-client-tls"
ROUTE_SECRET = "nats-route-tls"
CERTS_KINDS = ("good", "fqdn-only")
_VALIDITY = datetime.timedelta(days=2)
_CLOCK_SKEW = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class CertificateAuthority:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class LeafCertificate:
    cert_pem: bytes
    key_pem: bytes


@dataclass(frozen=True)
class TlsMaterial:
    """The three Secrets (``nats-ca``, ``nats-client-tls``, ``nats-route-tls``) and the CA PEM for clients."""

    ca_pem: bytes
    client: LeafCertificate
    route: LeafCertificate
    secrets: tuple[Obj, ...]


_EKU = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]


def _key_usage(ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
        key_agreement=not ca, key_cert_sign=ca, crl_sign=ca, encipher_only=False, decipher_only=False,
    )


def _name(common_name: str) -> x509.Name:
    """A subject with ``common_name`` cut to X.509's 64-character limit (verification uses the SANs only)."""
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])


def new_ca(common_name: str = "pytest-natsnet test CA") -> CertificateAuthority:
    """A fresh self-signed CA (ECDSA P-256), valid for two days."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(key=key, cert=cert)


def issue(ca: CertificateAuthority, common_name: str, sans: list[str]) -> LeafCertificate:
    """A leaf certificate for ``sans`` (DNS names) with EKU serverAuth and clientAuth."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(_EKU), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                       critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return LeafCertificate(cert_pem=cert.public_bytes(serialization.Encoding.PEM), key_pem=key_pem)


DEFAULT_DOMAIN = "cluster.local"


def client_sans(namespace: str, release: str = "nats", domain: str = DEFAULT_DOMAIN) -> list[str]:
    """The client Service's names at every search-path depth, and every pod through the headless Service."""
    headless = f"{release}-headless"
    return [
        release,
        f"{release}.{namespace}",
        f"{release}.{namespace}.svc",
        f"{release}.{namespace}.svc.{domain}",
        f"*.{headless}",
        f"*.{headless}.{namespace}.svc.{domain}",
    ]


def route_sans(namespace: str, certs: str, release: str = "nats", domain: str = DEFAULT_DOMAIN) -> list[str]:
    """``good``: short and FQDN pod names; ``fqdn-only``: only the FQDN (short route URLs then fail)."""
    headless = f"{release}-headless"
    fqdn = f"*.{headless}.{namespace}.svc.{domain}"
    if certs == "good":
        return [f"*.{headless}", fqdn]
    if certs == "fqdn-only":
        return [fqdn]
    raise ValueError(f"unknown certs kind {certs!r}; expected one of {', '.join(CERTS_KINDS)}")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _secret(name: str, namespace: str, secret_type: str, data: dict[str, bytes]) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": secret_type,
        "data": {k: _b64(v) for k, v in data.items()},
    }


def tls_material(ca: CertificateAuthority, certs: str, namespace: str, release: str = "nats",
                 domain: str = DEFAULT_DOMAIN) -> TlsMaterial:
    """The cell's certificates for its ``certs`` setting, as the chart's three Secrets (names in ``domain``, the
    cluster's DNS domain)."""
    client = issue(ca, f"{release}.{namespace}.svc.{domain}", client_sans(namespace, release, domain))
    route_name = f"{release}-headless.{namespace}.svc.{domain}"
    route = issue(ca, route_name, route_sans(namespace, certs, release, domain))
    secrets = (
        _secret(CA_SECRET, namespace, "Opaque", {"ca.crt": ca.cert_pem}),
        _secret(CLIENT_SECRET, namespace, "kubernetes.io/tls",
                {"tls.crt": client.cert_pem, "tls.key": client.key_pem, "ca.crt": ca.cert_pem}),
        _secret(ROUTE_SECRET, namespace, "kubernetes.io/tls",
                {"tls.crt": route.cert_pem, "tls.key": route.key_pem, "ca.crt": ca.cert_pem}),
    )
    return TlsMaterial(ca_pem=ca.cert_pem, client=client, route=route, secrets=secrets)
