"""The sandbox's alpine-like images: busybox's applet links are laid out once and mounted into each container."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_natsnet.sandbox import images

pytestmark = pytest.mark.skipif(images.busybox() is None, reason="busybox is not installed")


def test_the_applet_farm_is_built_once_and_mounted_read_only(tmp_path: Path) -> None:
    farm = tmp_path / "images" / "applets"
    mounts = images.applet_farm(farm)
    assert [(m.target, m.read_only) for m in mounts] == [("/bin", True), ("/sbin", True), ("/usr/bin", True),
                                                         ("/usr/sbin", True)]
    assert os.readlink(farm / "bin" / "sh") == "/bin/busybox"
    assert (farm / "bin" / "busybox").is_file()  # the mount point of the host's busybox
    links = sum(len(os.listdir(farm / d)) for d in images.APPLET_DIRS)
    assert links == len([a for a in images.busybox_applets() if os.path.dirname(a) in images.APPLET_DIRS])
    (farm / "bin" / "marker").touch()
    images.applet_farm(farm)  # again: the farm is reused, not rebuilt
    assert (farm / "bin" / "marker").exists()
    assert sorted(p.name for p in farm.parent.iterdir()) == ["applets"]


def test_a_root_without_applets_has_their_directories_as_mount_points_and_nothing_in_them(tmp_path: Path) -> None:
    images.alpine_root(tmp_path / "with", applets=True)
    images.alpine_root(tmp_path / "without", applets=False)
    assert os.readlink(tmp_path / "with" / "bin" / "sh") == "/bin/busybox"
    for directory in images.APPLET_DIRS:
        assert (tmp_path / "without" / directory).is_dir()
        assert not os.listdir(tmp_path / "without" / directory)
    elsewhere = [a for a in images.busybox_applets() if os.path.dirname(a) not in images.APPLET_DIRS]
    assert all((tmp_path / "without" / a).is_symlink() for a in elsewhere)  # e.g. busybox's /linuxrc
    assert (tmp_path / "without" / "usr/local/bin/python3").is_symlink()


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_the_images_mount_the_farm_before_the_hosts_busybox(tmp_path: Path) -> None:
    farm = tmp_path / "applets"
    for image in (images.python_image(farm), images.nats_box_image(farm)):
        targets = [m.target for m in image.extra_mounts]
        assert targets.index("/bin") < targets.index("/bin/busybox")
    assert "/bin" not in [m.target for m in images.python_image().extra_mounts]


def test_the_dns_image_imports_the_package_the_sandbox_runs(tmp_path: Path) -> None:
    """The DNS server's container sees the sandbox's package root (mounted at the same path) and its environment
    names it: a checkout run through ``PYTHONPATH`` while another copy is installed must not start the other
    copy's DNS server (or none: the installed copy's directory is not mounted)."""
    image = images.ImageCatalog(Path(sys.executable), lambda: ["true"], tmp_path)(images.DNS_IMAGE)
    assert image is not None
    root = str(images.package_root())
    assert image.env["PYTHONPATH"] == root
    assert root in [m.target for m in image.extra_mounts]
    found = subprocess.run([sys.executable, "-c", "import pytest_natsnet; print(pytest_natsnet.__file__)"],
                           env={"PATH": os.environ.get("PATH", ""), **image.env}, cwd=tmp_path,
                           capture_output=True, text=True, check=True).stdout
    assert found.startswith(root + "/")
