"""A pod's files as the kubelet lays them out: volumes and hosts (resolv.conf: ``poddns``); and the bwrap argv.

Every pod runs in a synthetic root (bubblewrap): the host's ``/usr`` read-only, a tmpfs ``/tmp``, and the
pod's volumes at their ``mountPath``. The host's ``/`` is never the pod's root, so nothing is created on
the host.
"""

from __future__ import annotations

import base64
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_natsnet.kube import Obj, find

BIN_DIR_IN_POD = "/opt/natsnet/bin"
POD_PATH = f"{BIN_DIR_IN_POD}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class VolumeNotReady(Exception):
    """A volume's source (Secret, ConfigMap, a bound claim) does not exist yet: the pod stays ContainerCreating."""


class VolumeNotEmulated(Exception):
    """A volume of a kind the sandbox does not emulate: the pod can never start here (one line says which)."""


EMULATED_VOLUMES = ("configMap", "secret", "emptyDir", "persistentVolumeClaim")


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool


def hosts_file(pod: Mapping[str, Any], zone: str) -> str:
    """The kubelet-managed /etc/hosts: localhost entries and the pod's own names."""
    meta, spec, status = pod["metadata"], pod.get("spec", {}), pod.get("status", {})
    lines = [
        "# Kubernetes-managed hosts file.",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet",
        "fe00::0\tip6-mcastprefix",
        "fe00::1\tip6-allnodes",
        "fe00::2\tip6-allrouters",
    ]
    hostname = spec.get("hostname") or meta["name"]
    if spec.get("subdomain"):
        fqdn = f"{hostname}.{spec['subdomain']}.{meta['namespace']}.svc.{zone}"
        lines.append(f"{status.get('podIP', '')}\t{fqdn}\t{hostname}")
    else:
        lines.append(f"{status.get('podIP', '')}\t{hostname}")
    return "\n".join(lines) + "\n"


def _write_items(directory: Path, items: Mapping[str, bytes]) -> None:
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    for key, content in items.items():
        (directory / key).write_bytes(content)


def _secret_items(secret: Obj) -> dict[str, bytes]:
    items = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
    items.update({k: str(v).encode() for k, v in (secret.get("stringData") or {}).items()})
    return items


def materialize_volumes(
    pod: Obj, namespace_objects: Sequence[Obj], pod_dir: Path, claim_path: Callable[[str], Path] | None = None
) -> dict[str, Path]:
    """Writes each volume of ``pod`` under ``pod_dir/volumes``; a ``persistentVolumeClaim`` is the directory
    ``claim_path(claim name)`` (which binds the claim, or raises VolumeNotReady). VolumeNotReady names a missing
    source; VolumeNotEmulated a kind of volume the sandbox does not have, and why the pod cannot run."""
    paths: dict[str, Path] = {}
    for volume in pod.get("spec", {}).get("volumes") or []:
        vol_name = str(volume["name"])
        target = pod_dir / "volumes" / vol_name
        if "persistentVolumeClaim" in volume:
            if claim_path is None:
                raise VolumeNotEmulated(f'volume "{vol_name}": persistentVolumeClaim volumes need the cluster\'s '
                                        "provisioner")
            paths[vol_name] = claim_path(str(volume["persistentVolumeClaim"]["claimName"]))
            continue
        if "configMap" in volume:
            cm_name = volume["configMap"]["name"]
            cm = find(namespace_objects, "ConfigMap", cm_name)
            if cm is None:
                raise VolumeNotReady(f'configmap "{cm_name}" not found')
            _write_items(target, {k: str(v).encode() for k, v in (cm.get("data") or {}).items()})
        elif "secret" in volume:
            secret_name = volume["secret"]["secretName"]
            secret = find(namespace_objects, "Secret", secret_name)
            if secret is None:
                raise VolumeNotReady(f'secret "{secret_name}" not found')
            _write_items(target, _secret_items(secret))
        elif "emptyDir" in volume:
            target.mkdir(parents=True, exist_ok=True)
        else:
            kinds = ", ".join(sorted(set(volume) - {"name"})) or "(none)"
            raise VolumeNotEmulated(f'volume "{vol_name}" of type {kinds} is not emulated by the sandbox (it has '
                                    f"{', '.join(EMULATED_VOLUMES)}): run this cell on kind")
        paths[vol_name] = target
    return paths


def container_mounts(container: Mapping[str, Any], volume_paths: Mapping[str, Path]) -> list[Mount]:
    """The container's volumeMounts as binds; a mount of a volume the pod does not have is a ValueError (the
    API server refuses such a pod; the kubelet reports it as the container's config error)."""
    mounts = []
    for mount in container.get("volumeMounts") or []:
        if mount.get("name") not in volume_paths:
            raise ValueError(f'volumeMounts[{mount.get("name")!r}]: the pod has no volume named {mount.get("name")!r}')
        source = volume_paths[mount["name"]]
        if mount.get("subPath"):
            source = source / mount["subPath"]
        mounts.append(Mount(source, str(mount["mountPath"]), bool(mount.get("readOnly", False))))
    return mounts


def python_mounts() -> list[Mount]:
    """The host's Python (interpreter and the venv with dnspython and nats-py), for probe containers."""
    roots = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()}
    return [Mount(root, str(root), True) for root in sorted(roots) if not str(root).startswith("/usr")]


def _refuse_host_root(
    files: Mapping[str, Path], mounts: Sequence[Mount], binaries: Mapping[str, Path]
) -> None:
    binds = [*((str(src), dst) for dst, src in files.items()), *((str(m.source), m.target) for m in mounts)]
    binds += [(str(src), f"{BIN_DIR_IN_POD}/{name}") for name, src in binaries.items()]
    for source, target in binds:
        if Path(source).resolve() == Path("/") or target.rstrip("/") == "":
            raise ValueError(f"refusing to bind {source} at {target}: the host's / is never part of a pod")


def bwrap_argv(
    *,
    hostname: str,
    files: Mapping[str, Path],
    mounts: Sequence[Mount],
    binaries: Mapping[str, Path],
    env: Mapping[str, str],
    command: Sequence[str],
    info_fd: int | None = None,
    root: Path | None = None,
    masked: Sequence[str] = (),
    workdir: str = "/",
) -> list[str]:
    """The bubblewrap command that gives a container its filesystem view and hostname.

    ``files`` are read-only single files (``/etc/resolv.conf`` ...), ``binaries`` are executables placed in
    :data:`BIN_DIR_IN_POD` by name. Refuses to bind the host's ``/`` or anything over the pod's ``/``.
    With ``root`` (a directory holding an image's root filesystem) the container's ``/`` is that directory,
    writable, instead of a synthetic root around the host's ``/usr``; ``masked`` paths get an empty tmpfs.
    """
    _refuse_host_root(files, mounts, binaries)
    if root is not None:
        if Path(root).resolve() == Path("/"):
            raise ValueError("refusing to use the host's / as a container root")
        argv = ["bwrap", "--bind", str(root), "/", "--proc", "/proc", "--dev", "/dev"]
    else:
        argv = _synthetic_root()
    for target, source in files.items():
        argv += ["--ro-bind", str(source), target]
    for name, source in binaries.items():
        argv += ["--ro-bind", str(source), f"{BIN_DIR_IN_POD}/{name}"]
    for mount in mounts:
        argv += ["--ro-bind" if mount.read_only else "--bind", str(mount.source), mount.target]
    for path in masked:
        argv += ["--tmpfs", path]
    argv += ["--unshare-uts", "--hostname", hostname, "--die-with-parent", "--chdir", workdir, "--clearenv"]
    if info_fd is not None:
        argv += ["--info-fd", str(info_fd)]
    for key, value in env.items():
        argv += ["--setenv", key, value]
    return [*argv, "--", *command]


def _synthetic_root() -> list[str]:
    return [
        "bwrap",
        "--ro-bind",
        "/usr",
        "/usr",
        "--symlink",
        "usr/bin",
        "/bin",
        "--symlink",
        "usr/sbin",
        "/sbin",
        "--symlink",
        "usr/lib",
        "/lib",
        "--symlink",
        "usr/lib64",
        "/lib64",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
        "--dir",
        "/etc",
        "--dir",
        "/var/run",
    ]
