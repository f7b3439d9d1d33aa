"""Keeping private keys and Secret data out of evidence: a scrubber for every text written, and a scanner
that checks a whole bundle (gzip members included) after it is written."""

from __future__ import annotations

import contextlib
import gzip
import re
from pathlib import Path

_PEM_KEY = re.compile(r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?(-----END \1PRIVATE KEY-----|\Z)", re.S)
SCRUBBED = "[private key removed by pytest-natsnet]"

# A private key in the forms it can take in text: PEM (also with escaped newlines in JSON), and base64 of a PEM
# (a Secret's ``data``): "PRIVATE KEY" encodes to one of three strings, depending on its offset modulo 3.
_MARKERS = (
    re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----"),
    re.compile(r"UFJJVkFURSBLRV|BSSVZBVEUgS0VZ|QUklWQVRFIEtFW"),
)


_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{40,}={0,2}")


def scrub(text: str) -> str:
    """``text`` with every private key replaced by a marker: PEM blocks, and base64 runs that encode one."""
    text = _PEM_KEY.sub(SCRUBBED, text)
    return _BASE64_RUN.sub(lambda m: SCRUBBED if _MARKERS[1].search(m.group(0)) else m.group(0), text)


_MARKER_NAMES = ("a PEM private key", "a base64-encoded private key")


def key_material(text: str) -> list[str]:
    """What key material ``text`` holds, by kind (empty: none); never the material itself."""
    return [name for name, pattern in zip(_MARKER_NAMES, _MARKERS, strict=True) if pattern.search(text)]


def _read(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".gz":
        with contextlib.suppress(OSError, EOFError):
            data = gzip.decompress(data)
    return data.decode("utf-8", "replace")


def scan(directory: Path) -> list[str]:
    """Every file under ``directory`` holding key material, as ``path: marker`` (empty: the bundle is clean)."""
    hits = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        for marker in key_material(_read(path)):
            hits.append(f"{path}: {marker}")
    return hits
