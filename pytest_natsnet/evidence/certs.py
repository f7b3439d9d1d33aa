"""Certificates as their public description (subject, SANs, issuer, validity), and Secrets without their data.

Nothing here returns certificate bytes or key material: a Secret becomes its keys, each with the size of its
value, and certificates become :class:`~pytest_natsnet.evidence.model.CertInfo`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

from pytest_natsnet.evidence.model import CertInfo
from pytest_natsnet.kube import Obj

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def describe_pem(data: bytes) -> list[CertInfo]:
    """Every certificate in a PEM bundle, described; other blocks (keys) are ignored, never parsed."""
    from cryptography import x509

    infos = []
    for block in _PEM_CERT.findall(data):
        try:
            cert = x509.load_pem_x509_certificate(block)
        except ValueError:
            continue
        try:
            names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            sans = (*names.get_values_for_type(x509.DNSName),
                    *(str(ip) for ip in names.get_values_for_type(x509.IPAddress)))
        except x509.ExtensionNotFound:
            sans = ()
        try:
            is_ca = bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
        except x509.ExtensionNotFound:
            is_ca = False
        infos.append(CertInfo(cert.subject.rfc4514_string(), cert.issuer.rfc4514_string(), tuple(sans),
                              cert.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
                              cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"), is_ca))
    return infos


def secret_value(secret: Mapping[str, Any], key: str) -> bytes | None:
    """A Secret's value (``data`` is base64, ``stringData`` plain); None when absent or undecodable."""
    data = secret.get("data") or {}
    if key in data:
        try:
            return base64.b64decode(str(data[key]), validate=False)
        except (binascii.Error, ValueError):
            return None
    string_data = secret.get("stringData") or {}
    return str(string_data[key]).encode() if key in string_data else None


def describe_secret(secret: Mapping[str, Any]) -> dict[str, list[CertInfo]]:
    """Key -> certificates, for the keys of a Secret that hold certificates."""
    described = {}
    keys = {*((secret.get("data") or {}).keys()), *((secret.get("stringData") or {}).keys())}
    for key in sorted(keys):
        value = secret_value(secret, key)
        if value and b"-----BEGIN CERTIFICATE-----" in value:
            described[str(key)] = describe_pem(value)
    return described


def redacted_secret(secret: Mapping[str, Any]) -> Obj:
    """The Secret with every value replaced by what it is (a certificate's description, else its size)."""
    out: Obj = {k: v for k, v in secret.items() if k not in ("data", "stringData")}
    metadata = dict(out.get("metadata") or {})
    annotations = {k: v for k, v in (metadata.get("annotations") or {}).items()
                   if k != "kubectl.kubernetes.io/last-applied-configuration"}
    if annotations or "annotations" in metadata:
        metadata["annotations"] = annotations
    metadata.pop("managedFields", None)
    out["metadata"] = metadata
    certs = describe_secret(secret)
    values: dict[str, Any] = {}
    keys = {*((secret.get("data") or {}).keys()), *((secret.get("stringData") or {}).keys())}
    for key in sorted(keys):
        raw = secret_value(secret, key)
        if key in certs:
            values[key] = {"certificates": [c.__dict__ for c in certs[key]]}
        else:
            values[key] = f"(redacted: {len(raw) if raw is not None else '?'} bytes)"
    out["redactedData"] = values
    return out
