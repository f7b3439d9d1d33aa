"""Reference rendering: fidelity with the official chart renders, smoke cells, values errors."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from golden_data import GOLDEN as GOLDEN_DIR
from golden_data import jetstream_scenario_ids, objects, scenarios

from pytest_natsnet.errors import ConfigError
from pytest_natsnet.matrix import expand, load_matrix
from pytest_natsnet.natsconf import parse
from pytest_natsnet.reference.tplyaml import evaluate, expression_values
from pytest_natsnet.sources.reference import render

GOLDEN = GOLDEN_DIR
CHARTS_VALUES = Path(__file__).resolve().parent.parent / "charts-values"
MISSING = "<absent>"
READINESS_GATE = {
    "StatefulSet/nats.spec.template.spec.readinessGates": [{"conditionType": "natsnet.io/ready"}]
}


def compose(files: list[Path]) -> dict[str, Any]:
    """Helm-style layering of values files: maps merge, lists and scalars are replaced."""

    def merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(base)
        for key, value in over.items():
            both_maps = isinstance(value, Mapping) and isinstance(out.get(key), Mapping)
            out[key] = merge(out[key], value) if both_maps else value
        return out

    values: dict[str, Any] = {}
    for path in files:
        values = merge(values, yaml.safe_load(path.read_text()) or {})
    return values


golden_scenarios = scenarios


def golden_objects(scenario: str) -> list[dict[str, Any]]:
    """The official render without the helm test hook (a Pod the reference leaves out by design)."""
    return objects(scenario, hooks=False)


def comparable(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """Objects keyed ``Kind/name``, with nats.conf replaced by its parsed form."""
    keyed = {}
    for obj in copy.deepcopy(objects):
        if obj["kind"] == "ConfigMap" and "nats.conf" in obj.get("data", {}):
            obj["data"]["nats.conf"] = parse(obj["data"]["nats.conf"])
        keyed[f"{obj['kind']}/{obj['metadata']['name']}"] = obj
    return keyed


def differences(ours: Any, theirs: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """``(dotted path, reference value, official value)`` for every field that differs."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        for key in sorted(set(ours) | set(theirs), key=str):
            sub = f"{path}.{key}" if path else str(key)
            yield from differences(ours.get(key, MISSING), theirs.get(key, MISSING), sub)
    elif isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
        for index, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            yield from differences(a, b, f"{path}[{index}]")
    elif ours != theirs or type(ours) is not type(theirs):
        yield path, ours, theirs


def test_differences_reports_fields() -> None:
    ours = {"a": {"b": [1, 2]}, "c": 1, "d": True}
    theirs = {"a": {"b": [1, 3]}, "e": 2, "d": 1}
    assert list(differences(ours, theirs)) == [
        ("a.b[1]", 2, 3),
        ("c", 1, MISSING),
        ("d", True, 1),
        ("e", MISSING, 2),
    ]


# -- fidelity with every golden cell


def test_reference_equals_official_render(golden_scenario: str) -> None:
    scenario = golden_scenario
    values = compose([GOLDEN / "values" / name for name in golden_scenarios()[scenario]])
    ours = render(values, "natsnet")
    theirs = golden_objects(scenario)
    assert [(o["kind"], o["metadata"]["name"]) for o in ours] == [
        (o["kind"], o["metadata"]["name"]) for o in theirs
    ], "objects or their order differ from helm's"
    assert list(differences(comparable(ours), comparable(theirs))) == []
    assert all("namespace" not in o["metadata"] for o in ours)


def test_nats_conf_text_matches_the_chart_layout(golden_scenario: str) -> None:
    scenario = golden_scenario
    values = compose([GOLDEN / "values" / name for name in golden_scenarios()[scenario]])
    ours = {o["kind"]: o for o in render(values, "natsnet")}["ConfigMap"]
    theirs = {o["kind"]: o for o in golden_objects(scenario)}["ConfigMap"]
    assert ours["data"]["nats.conf"] == theirs["data"]["nats.conf"]


def test_golden_cells_exercise_the_fields_the_issue_lists() -> None:
    """Guards the comparison above against comparing nothing: the goldens vary each listed field."""
    seen: dict[str, set[str]] = {}
    for scenario in golden_scenarios():
        objs = comparable(golden_objects(scenario))
        conf = objs["ConfigMap/nats-config"]["data"]["nats.conf"]
        pod = objs["StatefulSet/nats"]["spec"]["template"]["spec"]
        facts = {
            "routes": str(conf["cluster"]["routes"]),
            "no_advertise": str(conf["cluster"]["no_advertise"]),
            "advertise": str(conf["cluster"].get("advertise")),
            "client_advertise": str(conf.get("client_advertise")),
            "tls": str(conf.get("tls")),
            "pnra": str(objs["Service/nats-headless"]["spec"]["publishNotReadyAddresses"]),
            "env": str(pod["containers"][0]["env"]),
            "volumes": str(pod["volumes"]),
            "extra": str(sorted(k for k in objs if k.startswith("NetworkPolicy/"))),
            "jetstream": str(conf.get("jetstream")),
            "claims": str(objs["StatefulSet/nats"]["spec"]["volumeClaimTemplates"]),
            "mounts": str(pod["containers"][0]["volumeMounts"]),
            "reloader_mounts": str(pod["containers"][1]["volumeMounts"]),
        }
        for key, fact in facts.items():
            seen.setdefault(key, set()).add(fact)
    assert {key for key, facts in seen.items() if len(facts) < 2} == set()


def test_jetstream_scenarios_are_the_renders_with_jetstream() -> None:
    """The ``jetstream*`` file naming that selects the JetStream goldens matches what helm rendered."""
    with_jetstream = [
        scenario
        for scenario in golden_scenarios()
        if "jetstream" in comparable(golden_objects(scenario))["ConfigMap/nats-config"]["data"]["nats.conf"]
    ]
    assert with_jetstream == jetstream_scenario_ids()
    assert len(with_jetstream) >= 7


# -- charts-values smoke cells


def matrix() -> dict[str, Any]:
    return dict(yaml.safe_load((CHARTS_VALUES / "matrix.yaml").read_text()))


def cell_files(cell: Mapping[str, str]) -> list[Path]:
    spec = matrix()
    files = list(spec["base"])
    for axis, axis_spec in spec["axes"].items():
        setting = cell.get(axis, axis_spec["default"])
        files += axis_spec["settings"][setting].get("files", [])
    return [CHARTS_VALUES / name for name in files]


CONF = "ConfigMap/nats-config.data.nats.conf"
# Each smoke cell, the golden cell it corresponds to, and the fields expected to differ from that render
# (charts-values files equal the golden values files of the same name; readiness-gate.yaml, routes-seed.yaml
# and advertise-cluster-wrong.yaml have no golden counterpart, so their effect is spelled out here).
SMOKE_CORRESPONDENCE: list[tuple[dict[str, str], str, dict[str, Any]]] = [
    ({}, "default", {}),
    ({"pnra": "false"}, "pnra-false", {}),
    # tls + advertise-pod-ip.yaml (no golden render has both)
    ({"advertise": "pod-ip", "tls": "on"}, "tls", {f"{CONF}.cluster.no_advertise": False}),
    # combined = this cell + pnra-false + netpol-egress-dns
    (
        {"advertise": "dns", "tls": "on", "routes": "fqdn"},
        "combined",
        {
            "Service/nats-headless.spec.publishNotReadyAddresses": True,
            "NetworkPolicy/natsnet-allow-dns": MISSING,
            "NetworkPolicy/natsnet-allow-nats-ports": MISSING,
            "NetworkPolicy/natsnet-default-deny-egress": MISSING,
        },
    ),
    ({"advertise": "unreachable"}, "advertise-unreachable", {}),
    # advertise-pod-ip plus advertise-cluster-wrong.yaml and routes-seed.yaml
    (
        {"advertise": "cluster-wrong", "routes": "seed"},
        "advertise-pod-ip",
        {
            f"{CONF}.cluster.advertise": "nats-unreachable.invalid:6222",
            f"{CONF}.cluster.routes": ["nats://nats-0.nats-headless:6222"],
        },
    ),
    ({"tls": "bad-sans"}, "tls", {}),  # the certificates differ, not the manifests
    ({"netpol": "egress-no-dns"}, "netpol-egress-no-dns", {}),
    ({"netpol": "egress-dns"}, "netpol-egress-dns", {}),
    ({"jetstream": "on"}, "jetstream", {}),
    ({"pnra": "false", "jetstream": "on"}, "jetstream",
     {"Service/nats-headless.spec.publishNotReadyAddresses": False}),
]


def test_correspondence_covers_the_smoke_matrix() -> None:
    assert [cell for cell, _, _ in SMOKE_CORRESPONDENCE] == matrix()["matrices"]["smoke"]


# Golden values files that only pin the reference's fidelity on keys no matrix setting uses.
GOLDEN_ONLY = {
    "jetstream-memory.yaml", "jetstream-no-pvc.yaml", "jetstream-options.yaml", "jetstream-storage-class.yaml",
}  # fmt: skip


def test_charts_values_equal_golden_values_of_the_same_name() -> None:
    golden = {p.name for p in (GOLDEN / "values").glob("*.yaml")}
    assert golden >= GOLDEN_ONLY
    assert not {p.name for p in CHARTS_VALUES.glob("*.yaml")} & GOLDEN_ONLY
    shared = sorted(golden - GOLDEN_ONLY)
    assert shared
    for name in shared:
        assert yaml.safe_load((CHARTS_VALUES / name).read_text()) == yaml.safe_load(
            (GOLDEN / "values" / name).read_text()
        ), name


@pytest.mark.parametrize(
    ("cell", "scenario", "expected"),
    [
        pytest.param(*row, id=row[1] + "<-" + ("+".join(row[0].values()) or "default"))
        for row in SMOKE_CORRESPONDENCE
    ],
)
def test_smoke_cell_matches_its_golden_cell(
    cell: dict[str, str], scenario: str, expected: dict[str, Any]
) -> None:
    ours = comparable(render(compose(cell_files(cell)), "natsnet"))
    theirs = comparable(golden_objects(scenario))
    found = {path: value for path, value, _ in differences(ours, theirs)}
    assert found == {**READINESS_GATE, **expected}


def test_every_full_matrix_cell_renders_with_the_reference() -> None:
    """No cell of the shipped matrix is refused by the built-in rendering (JetStream cells included)."""
    js_cells = 0
    for scenario in expand(load_matrix(), "full"):
        objs = comparable(render(compose(list(scenario.values_files)), "natsnet"))
        conf = objs["ConfigMap/nats-config"]["data"]["nats.conf"]
        claims = objs["StatefulSet/nats"]["spec"]["volumeClaimTemplates"]
        jetstream = scenario.settings["jetstream"].name == "on"
        assert ("jetstream" in conf) == jetstream == (claims is not None), scenario.id
        js_cells += jetstream
    assert js_cells > 0


# -- other renders


def test_release_name_namespace_and_fqdn_routes_follow_the_inputs() -> None:
    values = {"config": {"cluster": {"enabled": True, "replicas": 2, "routeURLs": {"useFQDN": True}}}}
    objs = comparable(render(values, "other", release="demo"))
    conf = objs["ConfigMap/demo-nats-config"]["data"]["nats.conf"]
    assert conf["cluster"]["name"] == "demo-nats"
    assert conf["cluster"]["routes"] == [
        "nats://demo-nats-0.demo-nats-headless.other.svc.cluster.local:6222",
        "nats://demo-nats-1.demo-nats-headless.other.svc.cluster.local:6222",
    ]
    sts = objs["StatefulSet/demo-nats"]
    assert sts["spec"]["serviceName"] == "demo-nats-headless"
    assert sts["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] == "demo"
    assert "Service/demo-nats-headless" in objs and "Deployment/demo-nats-box" in objs


def test_cluster_disabled_renders_a_single_server_without_routes() -> None:
    objs = comparable(render({}, "ns"))
    assert "cluster" not in objs["ConfigMap/nats-config"]["data"]["nats.conf"]
    assert objs["StatefulSet/nats"]["spec"]["replicas"] == 1
    assert [p["name"] for p in objs["Service/nats-headless"]["spec"]["ports"]] == ["nats", "monitor"]
    ports = objs["StatefulSet/nats"]["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert [p["name"] for p in ports] == ["nats", "monitor"]


def test_extra_resources_follow_values_in_order_and_inputs_are_not_modified() -> None:
    values = {"extraResources": [{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "from-values"}}]}
    extra = ({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "from-caller"}},)
    before = copy.deepcopy(values)
    objs = render(values, "ns", extra_resources=extra)
    secrets = [o["metadata"]["name"] for o in objs if o["kind"] == "Secret"]
    assert secrets == ["from-values", "from-caller", "nats-box-contexts"]
    assert values == before
    objs[0]["metadata"]["name"] = "changed"
    assert values == before and extra[0]["metadata"]["name"] == "from-caller"


def test_jetstream_claim_and_mount_follow_the_release_and_the_store_dir() -> None:
    """Checked by hand against helm: the PVC is ``<fullname>-js``; a store dir under /etc/ is also mounted
    into the reloader (the chart's natsVolumeMountPrefixes); the release's namespace does not appear."""
    values = {"config": {"jetstream": {"enabled": True, "fileStore": {"dir": "/etc/js"}}}}
    sts = comparable(render(values, "other", release="demo"))["StatefulSet/demo-nats"]
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim == {
        "metadata": {"name": "demo-nats-js"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}},
    }
    nats, reloader = sts["spec"]["template"]["spec"]["containers"]
    assert {"mountPath": "/etc/js", "name": "demo-nats-js"} in nats["volumeMounts"]
    assert reloader["volumeMounts"][-1] == {"mountPath": "/etc/js", "name": "demo-nats-js"}
    assert sts["spec"]["template"]["spec"]["volumes"] == [
        {"configMap": {"name": "demo-nats-config"}, "name": "config"}, {"emptyDir": {}, "name": "pid"}]


def test_jetstream_off_ignores_its_settings() -> None:
    values = {"config": {"jetstream": {"enabled": False, "memoryStore": {"enabled": True}}}}
    assert render(values, "ns") == render({}, "ns")


def test_plain_env_values_sort_with_templated_ones() -> None:
    values = {"container": {"env": {"ZED": "z", "ALPHA": "a"}}}
    sts = comparable(render(values, "ns"))["StatefulSet/nats"]
    env = sts["spec"]["template"]["spec"]["containers"][0]["env"]
    assert [e["name"] for e in env] == ["POD_NAME", "SERVER_NAME", "ALPHA", "ZED"]
    assert env[2] == {"name": "ALPHA", "value": "a"}


# -- $tplYaml


KNOWN = expression_values(fullname="nats", headless="nats-headless", namespace="ns", ports={"nats": 4222})


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ('{{ printf "%s.%s:%d" .Values.headlessService.name (include "nats.namespace" $) '
         "(int .Values.config.nats.port) | quote }}", "nats-headless.ns:4222"),
        ('{{- printf "%s-x" (include "nats.fullname" .) -}}', "nats-x"),
        ('{{ printf "100%%" }}', "100%"),
    ],
)  # fmt: skip
def test_tplyaml_printf_is_evaluated(template: str, expected: str) -> None:
    assert evaluate(template, KNOWN, "k") == expected


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("{{ .Release.Name }}", "cannot evaluate"),
        ('{{ printf "%s" .Values.other.key | quote }}', "'.Values.other.key'"),
        ('{{ printf "%s %s" .Values.headlessService.name | quote }}', "more printf verbs"),
        (
            '{{ printf "%s" .Values.headlessService.name (include "nats.namespace" $) }}',
            "more printf arguments",
        ),
        ('{{ printf "%d" .Values.headlessService.name }}', "with %d"),
    ],
)
def test_tplyaml_other_templates_are_errors(template: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        evaluate(template, KNOWN, "container.env.X.$tplYaml")
    assert "container.env.X.$tplYaml" in str(caught.value) and fragment in str(caught.value)


# -- values errors


@pytest.mark.parametrize(
    ("values", "dotted"),
    [
        ({"natsBox": {"enabled": False}}, "natsBox"),
        ({"config": {"jetstream": {"patch": []}}}, "config.jetstream.patch"),
        ({"config": {"jetstream": {"fileStore": {"pvc": {"name": "x"}}}}}, "config.jetstream.fileStore.pvc.name"),
        ({"config": {"jetstream": {"fileStore": {"pvc": {"merge": {}}}}}}, "config.jetstream.fileStore.pvc.merge"),
        ({"config": {"jetstream": {"merge": {"domain": {"$tplYaml": "x"}}}}}, "config.jetstream.merge.domain.$tplYaml"),
        ({"config": {"resolver": {"enabled": True}}}, "config.resolver"),
        ({"config": {"nats": {"port": 4333}}}, "config.nats.port"),
        ({"config": {"cluster": {"routeURLs": {"user": "u"}}}}, "config.cluster.routeURLs.user"),
        ({"config": {"nats": {"tls": {"merge": {"verify": True}}}}}, "config.nats.tls.merge"),
        ({"headlessService": {"patch": []}}, "headlessService.patch"),
        ({"container": {"env": {"X": {"valueFrom": {}}}}}, "container.env.X.valueFrom"),
        ({"container": {"env": {"X": {"$tplYaml": "{{ .Release.Name }}"}}}}, "container.env.X.$tplYaml"),
        ({"config": {"merge": {"a": {"$tplYaml": "x"}}}}, "config.merge.a.$tplYaml"),
        (
            {
                "extraResources": [
                    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": {"$tplYaml": "x"}}}
                ]
            },
            "extraResources[0].metadata.name.$tplYaml",
        ),
    ],
)
def test_unsupported_keys_name_the_key_and_point_to_helm(values: dict[str, Any], dotted: str) -> None:
    with pytest.raises(ConfigError) as caught:
        render(values, "ns")
    message = str(caught.value)
    assert f"'{dotted}'" in message and "--natsnet-chart" in message and "helm" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("values", "dotted", "fragment"),
    [
        ({"config": {"cluster": {"replicas": "three"}}}, "config.cluster.replicas", "whole number"),
        ({"config": {"cluster": {"replicas": 0}}}, "config.cluster.replicas", "whole number"),
        ({"config": {"cluster": {"enabled": "yes"}}}, "config.cluster.enabled", "true or false"),
        ({"config": "x"}, "config", "a map"),
        ({"extraResources": {"kind": "Secret"}}, "extraResources", "a list"),
        ({"extraResources": [{"kind": "Secret"}]}, "extraResources[0]", "apiVersion and kind"),
        ({"container": {"env": {"X": 1}}}, "container.env.X", "a string"),
        ({"tlsCA": {"enabled": True}}, "tlsCA.secretName", "required"),
        ({"config": {"jetstream": {"enabled": 1}}}, "config.jetstream.enabled", "true or false"),
        ({"config": {"jetstream": {"memoryStore": {"maxSize": 1024}}}}, "config.jetstream.memoryStore.maxSize",
         "a size string"),
        ({"config": {"jetstream": {"fileStore": {"maxSize": "1.5G"}}}}, "config.jetstream.fileStore.maxSize",
         "a size string"),
        ({"config": {"jetstream": {"fileStore": {"pvc": {"size": "1GB"}}}}}, "config.jetstream.fileStore.pvc.size",
         "Ki Mi Gi Ti k M G T"),
        ({"config": {"jetstream": {"fileStore": {"pvc": {"size": "10m"}}}}}, "config.jetstream.fileStore.pvc.size",
         "storage size"),
        ({"config": {"jetstream": {"fileStore": {"dir": "data"}}}}, "config.jetstream.fileStore.dir",
         "absolute path"),
        ({"config": {"jetstream": {"fileStore": {"dir": "/data #x"}}}}, "config.jetstream.fileStore.dir",
         "absolute path"),
    ],
)
def test_bad_values_are_one_line_errors(values: dict[str, Any], dotted: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        render(values, "ns")
    assert f"'{dotted}'" in str(caught.value) and fragment in str(caught.value)
    assert "\n" not in str(caught.value)


def test_null_values_keep_the_chart_defaults() -> None:
    assert render({"config": {"cluster": None}, "tlsCA": None}, "ns") == render({}, "ns")
