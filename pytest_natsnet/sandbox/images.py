"""The images the sandbox runs, and what stands in for each.

- ``nats:<tag>``: the real nats-server (the release the tag names), on the host's ``/usr``;
- the sandbox's own images: its DNS server and the plugin's probe (host Python with the plugin's packages);
- ``python:<tag>``: a stock-Python-like image: an alpine-like root of its own (busybox applets, ``/root``,
  ``/tmp``), the host's Python with ONLY its standard library (no site-packages), nothing else of the host. The
  applet directories (``/bin``, ``/sbin``, ``/usr/bin``, ``/usr/sbin``: ~270 links) are laid out once per
  sandbox and bound read-only into every such container (a container cannot write into them, as it could in a
  real image; the rest of its root is its own and writable);
- ``natsio/nats-box:<tag>``: the same root plus a ``nats`` command (``sandbox/natsbox.py``, standard library
  only) and nats-box's ``/entrypoint.sh`` and environment.

Any other image is not run: its container is reported ``ImageNotEmulated``.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path

import pytest_natsnet
from pytest_natsnet.sandbox.kubelet import Image
from pytest_natsnet.sandbox.podfs import Mount, python_mounts

DNS_IMAGE = "natsnet/sandbox-dns"
PROBE_IMAGE = "natsnet/probe"
NATS_REPOS = frozenset({"nats", "docker.io/library/nats", "library/nats"})
PYTHON_REPOS = frozenset({"python", "docker.io/library/python", "library/python"})
NATS_BOX_REPOS = frozenset({"natsio/nats-box", "docker.io/natsio/nats-box"})
ALPINE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NATS_BOX_SCRIPT = Path(pytest_natsnet.__file__).resolve().parent / "sandbox" / "natsbox.py"
ENTRYPOINT_SH = '#!/bin/sh\nif [ "$#" -ne 0 ]; then\n  exec "$@"\nfi\nexec /bin/sh -l\n'


def package_root() -> Path:
    return Path(pytest_natsnet.__file__).resolve().parent.parent


def image_repo(image: str) -> str:
    """``docker.io/natsio/nats-box:0.19.7@sha256:…`` → ``docker.io/natsio/nats-box``."""
    without_digest = image.split("@", 1)[0]
    head, _, tail = without_digest.rpartition("/")
    return f"{head}/{tail.split(':', 1)[0]}" if head else tail.split(":", 1)[0]


@functools.cache
def busybox() -> Path | None:
    found = shutil.which("busybox")
    return Path(found).resolve() if found else None


@functools.cache
def busybox_applets() -> tuple[str, ...]:
    """Where an alpine-like image has each applet (``bin/sh``, ``usr/bin/env`` ...); asked once per process."""
    binary = busybox()
    if binary is None:
        return ()
    listing = subprocess.run([str(binary), "--list-full"], capture_output=True, text=True, timeout=10, check=False)
    return tuple(line.strip() for line in listing.stdout.splitlines() if line.strip())


def host_python() -> Path:
    """The base interpreter (not a venv's), resolved."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidate = Path(sys.base_prefix) / "bin" / version
    return candidate.resolve() if candidate.exists() else Path(sys.executable).resolve()


def site_packages() -> list[str]:
    """The base interpreter's site-packages directories: what a stock image does not have."""
    found = []
    base = {"base": sys.base_prefix, "platbase": sys.base_exec_prefix}
    for key in ("purelib", "platlib"):
        found.append(sysconfig.get_paths(vars=base)[key])
    if sys.base_prefix == "/usr":
        found += ["/usr/lib/python3/dist-packages", "/usr/local/lib/python3/dist-packages"]
    return sorted({p for p in found if Path(p).is_dir()})


LIBRARY_DIRS = ("lib", "lib32", "lib64", "libx32")


def _host_library_mounts() -> list[Mount]:
    """Shared libraries and the interpreter's prefix, read-only, at their host paths."""
    mounts = [Mount(Path("/usr") / d, f"/usr/{d}", True) for d in LIBRARY_DIRS if Path("/usr", d).is_dir()]
    mounts += [Mount(Path("/") / d, f"/{d}", True) for d in LIBRARY_DIRS
               if Path("/", d).is_dir() and not Path("/", d).is_symlink()]
    prefix = Path(sys.base_prefix).resolve()
    if not str(prefix).startswith("/usr/lib") and prefix != Path("/usr"):
        mounts.append(Mount(prefix, str(prefix), True))
    python = host_python()
    if not any(str(python).startswith(m.target + "/") for m in mounts):
        mounts.append(Mount(python, str(python), True))
    binary = busybox()
    if binary is not None:
        mounts.append(Mount(binary, "/bin/busybox", True))
    return mounts


APPLET_DIRS = ("bin", "sbin", "usr/bin", "usr/sbin")


def applet_farm(farm: Path) -> list[Mount]:
    """Busybox's applet links laid out once in ``farm`` (``bin/sh`` → ``/bin/busybox`` ...), as read-only mounts
    of its directories; ``bin/busybox`` is an empty file there, the mount point for the host's busybox."""
    if not farm.is_dir():
        building = farm.with_name(f"{farm.name}.{os.getpid()}.tmp")
        for directory in APPLET_DIRS:
            os.makedirs(building / directory, exist_ok=True)
        (building / "bin" / "busybox").touch()
        _link_applets(building, lambda applet: os.path.dirname(applet) in APPLET_DIRS)
        try:
            building.rename(farm)
        except OSError:  # built meanwhile by another thread: keep theirs
            shutil.rmtree(building, ignore_errors=True)
    return [Mount(farm / directory, f"/{directory}", True) for directory in APPLET_DIRS]


def _link_applets(target: Path, wanted: Callable[[str], bool]) -> None:
    """Busybox's ``wanted`` applet links under ``target`` (``bin/sh`` → ``/bin/busybox`` ...), existing ones
    kept; ~270 links: plain os calls, not pathlib's."""
    for applet in busybox_applets():
        if applet == "bin/busybox" or not wanted(applet):
            continue
        applet_link = os.path.join(target, applet)
        try:
            os.symlink("/bin/busybox", applet_link)
        except FileExistsError:
            pass
        except FileNotFoundError:
            os.makedirs(os.path.dirname(applet_link), exist_ok=True)
            os.symlink("/bin/busybox", applet_link)


def _alpine_mounts(farm: Path | None) -> list[Mount]:
    """An alpine-like image's mounts: the applet farm's directories (when there is one), then the host's
    libraries, the interpreter and busybox."""
    return [*(applet_farm(farm) if farm else ()), *_host_library_mounts()]


def alpine_root(target: Path, files: dict[str, tuple[str, int]] | None = None, applets: bool = True) -> None:
    """Lays out an alpine-like root in ``target``: directories, busybox applet links (with ``applets`` false
    only those outside ``APPLET_DIRS``: those directories are mounted from ``applet_farm``), ``python3``,
    ``files`` (path → (text, mode))."""
    for directory in ("bin", "sbin", "usr/bin", "usr/sbin", "usr/local/bin", "usr/local/lib", "etc", "root",
                      "home", "var/tmp", "run", "proc", "dev", "mnt", "opt", "srv"):
        (target / directory).mkdir(parents=True, exist_ok=True)
    (target / "tmp").mkdir(exist_ok=True)
    (target / "tmp").chmod(0o1777)
    for directory in LIBRARY_DIRS:  # the host's layout (merged /usr or not): the loader and libc are found
        host = Path("/", directory)
        if host.is_symlink() and not (target / directory).is_symlink():
            (target / directory).symlink_to(os.readlink(host))
    _link_applets(target, lambda applet: applets or os.path.dirname(applet) not in APPLET_DIRS)
    for name in ("python3", "python", f"python{sys.version_info.major}.{sys.version_info.minor}"):
        link = target / "usr/local/bin" / name
        if not link.is_symlink():
            link.symlink_to(host_python())
    texts = {
        "etc/passwd": ("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n", 0o644),
        "etc/group": ("root:x:0:root\nnogroup:x:65534:\n", 0o644),
        "etc/os-release": ('NAME="natsnet sandbox image (alpine-like)"\nID=alpine\n', 0o644),
        **(files or {}),
    }
    for path, (text, mode) in texts.items():
        file = target / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text)
        file.chmod(mode)


def python_image(farm: Path | None = None) -> Image:
    """``python:<tag>``; with ``farm`` its applet directories are mounted from there (``applet_farm``)."""
    version = ".".join(str(p) for p in sys.version_info[:3])
    return Image(
        entrypoint=[],
        default_args=["python3"],
        binaries={},
        extra_mounts=_alpine_mounts(farm),
        env={"PATH": ALPINE_PATH, "LANG": "C.UTF-8", "PYTHON_VERSION": version},
        root=functools.partial(alpine_root, applets=farm is None),
        masked=site_packages(),
        note=f"the host's Python {version}, standard library only",
    )


def nats_box_image(farm: Path | None = None) -> Image:
    """``natsio/nats-box:<tag>``; with ``farm`` its applet directories are mounted from there."""
    script = NATS_BOX_SCRIPT.read_text().replace("#!/usr/bin/env python3", "#!/usr/local/bin/python3", 1)
    files = {"usr/local/bin/nats": (script, 0o755), "entrypoint.sh": (ENTRYPOINT_SH, 0o755)}
    for directory in ("nsc/.config", "nsc/nkeys"):
        files[f"{directory}/.keep"] = ("", 0o644)
    return Image(
        entrypoint=["/entrypoint.sh"],
        default_args=["sh", "-l"],
        binaries={},
        extra_mounts=_alpine_mounts(farm),
        env={"PATH": ALPINE_PATH, "NKEYS_PATH": "/nsc/nkeys", "XDG_DATA_HOME": "/nsc",
             "XDG_CONFIG_HOME": "/nsc/.config"},
        workdir="/root",
        root=functools.partial(alpine_root, files=files, applets=farm is None),
        masked=site_packages(),
        note="nats-box stand-in: a `nats` command for rtt, pub, sub, request, reply (standard library)",
    )


class ImageCatalog:
    """Image reference → how it runs (None: not run)."""

    def __init__(self, nats_server: Path, dns_command: Callable[[], list[str]], dns_dir: Path,
                 applets_dir: Path | None = None) -> None:
        self._nats_server = nats_server
        self._dns_command = dns_command
        self._dns_dir = dns_dir
        self._applets_dir = applets_dir

    def __call__(self, image: str) -> Image | None:
        repo = image_repo(image)
        if repo in NATS_REPOS:
            return Image(
                entrypoint=["nats-server"],
                default_args=["--config", "/etc/nats/nats-server.conf"],
                binaries={"nats-server": self._nats_server},
            )
        python = [*python_mounts(), Mount(package_root(), str(package_root()), True)]
        if image == DNS_IMAGE:  # the package the sandbox runs, not what the interpreter's .pth files point at
            return Image(
                entrypoint=self._dns_command(),
                default_args=[],
                binaries={},
                extra_mounts=[*python, Mount(self._dns_dir, str(self._dns_dir), False)],
                env={"PYTHONPATH": str(package_root())},
            )
        if image == PROBE_IMAGE:
            return Image(entrypoint=["sleep", "infinity"], default_args=[], binaries={}, extra_mounts=python)
        if busybox() is None:
            return None
        if repo in PYTHON_REPOS:
            return python_image(self._applets_dir)
        if repo in NATS_BOX_REPOS:
            return nats_box_image(self._applets_dir)
        return None
