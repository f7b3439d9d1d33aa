"""Pure tests of a pod's files: hosts as the kubelet writes it, volumes, the bwrap argv."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from pytest_natsnet.kube import Obj
from pytest_natsnet.sandbox.podfs import (
    BIN_DIR_IN_POD,
    Mount,
    VolumeNotEmulated,
    VolumeNotReady,
    bwrap_argv,
    container_mounts,
    hosts_file,
    materialize_volumes,
)

KUBELET_HOSTS_HEADER = (
    "# Kubernetes-managed hosts file.\n"
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "fe00::0\tip6-mcastprefix\n"
    "fe00::1\tip6-allnodes\n"
    "fe00::2\tip6-allrouters\n"
)


@pytest.mark.parametrize(
    ("pod_spec", "own_line"),
    [
        ({"hostname": "nats-0", "subdomain": "nats-headless"},
         "198.18.0.10\tnats-0.nats-headless.natsnet.svc.cluster.local\tnats-0\n"),
        ({}, "198.18.0.10\tbox-7f9c\n"),
        ({"hostname": "custom"}, "198.18.0.10\tcustom\n"),
        ({"subdomain": "sub"}, "198.18.0.10\tbox-7f9c.sub.natsnet.svc.cluster.local\tbox-7f9c\n"),
    ],
)
def test_hosts_file_as_the_kubelet_writes_it(pod_spec: dict[str, str], own_line: str) -> None:
    pod = {"metadata": {"name": "box-7f9c", "namespace": "natsnet"}, "spec": pod_spec,
           "status": {"podIP": "198.18.0.10"}}
    assert hosts_file(pod, "cluster.local") == KUBELET_HOSTS_HEADER + own_line


# --- volumes -----------------------------------------------------------------------------------------


def pod_with(*volumes: dict[str, Any]) -> Obj:
    return {"metadata": {"name": "nats-0", "namespace": "natsnet"}, "spec": {"volumes": list(volumes)}}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


CONFIG_MAP: Obj = {
    "kind": "ConfigMap", "metadata": {"name": "nats-config"}, "data": {"nats.conf": "port: 4222"}
}
SECRET: Obj = {
    "kind": "Secret",
    "metadata": {"name": "nats-tls"},
    "data": {"tls.crt": b64("CERT"), "tls.key": b64("KEY")},
    "stringData": {"ca.crt": "CA", "tls.key": "PLAIN-KEY"},
}


def files_of(directory: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(directory.iterdir())}


def test_volumes_from_config_map_secret_and_empty_dir(tmp_path: Path) -> None:
    pod = pod_with(
        {"name": "config", "configMap": {"name": "nats-config"}},
        {"name": "tls", "secret": {"secretName": "nats-tls"}},
        {"name": "pid", "emptyDir": {}},
    )
    paths = materialize_volumes(pod, [CONFIG_MAP, SECRET], tmp_path)
    assert paths == {name: tmp_path / "volumes" / name for name in ("config", "tls", "pid")}
    assert files_of(paths["config"]) == {"nats.conf": "port: 4222"}
    # stringData is merged over data, as the API server does on write
    assert files_of(paths["tls"]) == {"ca.crt": "CA", "tls.crt": "CERT", "tls.key": "PLAIN-KEY"}
    assert paths["pid"].is_dir() and files_of(paths["pid"]) == {}


def test_rematerializing_replaces_stale_keys_but_keeps_empty_dir_content(tmp_path: Path) -> None:
    pod = pod_with({"name": "config", "configMap": {"name": "nats-config"}}, {"name": "pid", "emptyDir": {}})
    paths = materialize_volumes(pod, [CONFIG_MAP], tmp_path)
    (paths["pid"] / "nats.pid").write_text("42")
    changed = {**CONFIG_MAP, "data": {"other.conf": "x"}}
    paths = materialize_volumes(pod, [changed], tmp_path)
    assert files_of(paths["config"]) == {"other.conf": "x"}
    assert files_of(paths["pid"]) == {"nats.pid": "42"}


@pytest.mark.parametrize(
    ("volume", "objects", "message"),
    [
        ({"name": "config", "configMap": {"name": "nats-config"}}, [SECRET],
         'configmap "nats-config" not found'),
        ({"name": "tls", "secret": {"secretName": "nats-tls"}}, [CONFIG_MAP], 'secret "nats-tls" not found'),
        # a ConfigMap does not satisfy a secret volume of the same name
        ({"name": "tls", "secret": {"secretName": "nats-config"}}, [CONFIG_MAP], 'secret "nats-config"'),
    ],
)
def test_missing_source_is_volume_not_ready(
    tmp_path: Path, volume: dict[str, Any], objects: list[Obj], message: str
) -> None:
    with pytest.raises(VolumeNotReady, match=message):
        materialize_volumes(pod_with(volume), objects, tmp_path)


@pytest.mark.parametrize(
    ("volume", "message"),
    [
        ({"name": "data", "hostPath": {"path": "/var"}}, 'volume "data" of type hostPath is not emulated'),
        ({"name": "odd"}, 'volume "odd" of type \\(none\\) is not emulated'),
    ],
)
def test_a_volume_kind_the_sandbox_lacks_is_not_emulated_for_good(
    tmp_path: Path, volume: dict[str, Any], message: str
) -> None:
    """Not a wait (VolumeNotReady): nothing that appears later makes it work, the cell stops with this line."""
    with pytest.raises(VolumeNotEmulated, match=message) as caught:
        materialize_volumes(pod_with(volume), [], tmp_path)
    assert not isinstance(caught.value, VolumeNotReady)
    assert "run this cell on kind" in str(caught.value) and "\n" not in str(caught.value)


def test_a_claim_volume_is_the_directory_its_binding_gives(tmp_path: Path) -> None:
    bound = tmp_path / "storage" / "pvc-1_ns_data-nats-0"
    asked: list[str] = []

    def claim_path(claim: str) -> Path:
        asked.append(claim)
        return bound

    volume = {"name": "data", "persistentVolumeClaim": {"claimName": "data-nats-0"}}
    assert materialize_volumes(pod_with(volume), [], tmp_path / "pod", claim_path) == {"data": bound}
    assert asked == ["data-nats-0"]
    assert not (tmp_path / "pod" / "volumes" / "data").exists(), "a claim is never a directory of the pod"


def test_an_unbound_claim_keeps_the_pod_waiting(tmp_path: Path) -> None:
    def claim_path(claim: str) -> Path:
        raise VolumeNotReady(f'persistentvolumeclaim "{claim}" not found')

    volume = {"name": "data", "persistentVolumeClaim": {"claimName": "data-nats-0"}}
    with pytest.raises(VolumeNotReady, match='persistentvolumeclaim "data-nats-0" not found'):
        materialize_volumes(pod_with(volume), [], tmp_path, claim_path)


def test_a_mount_of_a_volume_the_pod_lacks_is_a_config_error(tmp_path: Path) -> None:
    """What took the whole sandbox down (KeyError('nats-js')) is the container's config error."""
    with pytest.raises(ValueError, match="the pod has no volume named 'nats-js'"):
        container_mounts({"volumeMounts": [{"name": "nats-js", "mountPath": "/data"}]}, {})


def test_pod_without_volumes(tmp_path: Path) -> None:
    assert materialize_volumes({"metadata": {"name": "p"}, "spec": {}}, [], tmp_path) == {}
    assert not (tmp_path / "volumes").exists()


def test_container_mounts_keep_read_only_and_sub_path(tmp_path: Path) -> None:
    container = {
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/nats-config", "readOnly": True},
            {"name": "pid", "mountPath": "/var/run/nats"},
            {"name": "config", "mountPath": "/etc/one.conf", "subPath": "nats.conf"},
        ]
    }
    volumes = {"config": tmp_path / "config", "pid": tmp_path / "pid"}
    assert container_mounts(container, volumes) == [
        Mount(tmp_path / "config", "/etc/nats-config", True),
        Mount(tmp_path / "pid", "/var/run/nats", False),
        Mount(tmp_path / "config" / "nats.conf", "/etc/one.conf", False),
    ]
    assert container_mounts({}, volumes) == []


# --- bwrap argv --------------------------------------------------------------------------------------


def binds(argv: list[str]) -> list[tuple[str, str, str]]:
    """(flag, source, target) of every bind in a bwrap argv, up to ``--``."""
    head = argv[: argv.index("--")]
    return [
        (head[i], head[i + 1], head[i + 2])
        for i in range(len(head) - 2)
        if head[i] in ("--bind", "--ro-bind")
    ]


def sample_argv(tmp_path: Path) -> list[str]:
    return bwrap_argv(
        hostname="nats-0",
        files={"/etc/resolv.conf": tmp_path / "resolv.conf", "/etc/hosts": tmp_path / "hosts"},
        mounts=[
            Mount(tmp_path / "config", "/etc/nats-config", True),
            Mount(tmp_path / "pid", "/var/run/nats", False),
        ],
        binaries={"nats-server": Path("/opt/bin/nats-server")},
        env={"POD_NAME": "nats-0", "SERVER_NAME": "nats-0"},
        command=["nats-server", "--config", "/etc/nats-config/nats.conf"],
        info_fd=7,
    )


def test_bwrap_argv_builds_a_synthetic_root(tmp_path: Path) -> None:
    argv = sample_argv(tmp_path)
    assert argv[0] == "bwrap"
    assert all(source != "/" and target != "/" for _, source, target in binds(argv))
    assert binds(argv) == [
        ("--ro-bind", "/usr", "/usr"),
        ("--ro-bind", str(tmp_path / "resolv.conf"), "/etc/resolv.conf"),
        ("--ro-bind", str(tmp_path / "hosts"), "/etc/hosts"),
        ("--ro-bind", "/opt/bin/nats-server", f"{BIN_DIR_IN_POD}/nats-server"),
        ("--ro-bind", str(tmp_path / "config"), "/etc/nats-config"),
        ("--bind", str(tmp_path / "pid"), "/var/run/nats"),
    ]
    head = argv[: argv.index("--")]
    assert head[head.index("--hostname") + 1] == "nats-0"
    assert head[head.index("--info-fd") + 1] == "7"
    for flag in ("--unshare-uts", "--die-with-parent", "--clearenv"):
        assert flag in head
    # the environment is set after it is cleared, and the command follows the separator untouched
    assert head.index("--clearenv") < head.index("--setenv")
    assert [head[i + 1 : i + 3] for i, a in enumerate(head) if a == "--setenv"] == [
        ["POD_NAME", "nats-0"],
        ["SERVER_NAME", "nats-0"],
    ]
    assert argv[argv.index("--") + 1 :] == ["nats-server", "--config", "/etc/nats-config/nats.conf"]


def test_bwrap_argv_without_info_fd(tmp_path: Path) -> None:
    argv = bwrap_argv(hostname="h", files={}, mounts=[], binaries={}, env={}, command=["true"])
    assert "--info-fd" not in argv
    assert argv[-2:] == ["--", "true"]


@pytest.mark.parametrize(
    ("files", "mounts", "binaries"),
    [
        ({}, [Mount(Path("/"), "/", False)], {}),
        ({}, [Mount(Path("/"), "/host", True)], {}),
        ({}, [Mount(Path("/usr/.."), "/mnt", True)], {}),
        ({}, [Mount(Path("/tmp"), "/", True)], {}),
        ({"/etc/hosts": Path("/")}, [], {}),
        ({}, [], {"sh": Path("/")}),
    ],
)
def test_bwrap_argv_never_binds_the_host_root(
    files: dict[str, Path], mounts: list[Mount], binaries: dict[str, Path]
) -> None:
    with pytest.raises(ValueError, match="host's / is never part of a pod"):
        bwrap_argv(hostname="h", files=files, mounts=mounts, binaries=binaries, env={}, command=["true"])
