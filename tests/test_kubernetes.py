"""The Kubernetes manifests, validated for the API server they are applied to, and the sharded
overlay rendered and checked (issue 25).

Every object of every file under deploy/kubernetes/ and of `kubectl kustomize` for each
kustomization there is validated strictly (an unknown field is an error, as with `kubectl apply`'s
default --validate=strict) for Kubernetes 1.32: built-in kinds with the offline schemas of
`kubernetes-validate`, ServiceMonitor and PrometheusRule with the openAPIV3Schema of the
Prometheus Operator's CRDs in tests/schemas/prometheus-operator/ (see its README). An object of
any other kind fails: no kind is skipped. No cluster runs here: `kubectl kustomize` only renders.

Without kubectl the rendering tests skip with a one-line reason, except under CI=true, where they
fail.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import referencing
import yaml
from kubernetes_validate.utils import SchemaNotFoundError, all_versions

from exporter.cli import UsageError, build_parser, parse_shard
from exporter.config import parse_config

from .test_deploy import assert_hardened_and_bounded

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "kubernetes"
SHARDED = K8S / "sharded"
CRDS = Path(__file__).resolve().parent / "schemas" / "prometheus-operator"
KUBERNETES_VERSION = "1.32.0"
SCHEMAS = f"v{KUBERNETES_VERSION}-local-strict"  # kubernetes-validate's folder of strict schemas
DEFINITIONS_URI = "https://kubernetes.io/api/_definitions.json"
OBJECT_META = f"{DEFINITIONS_URI}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
POD_INDEX = "metadata.labels['apps.kubernetes.io/pod-index']"
KUSTOMIZATIONS = sorted(p.parent for p in K8S.rglob("kustomization.yaml"))
MANIFESTS = sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def skip_or_fail(message: str) -> None:
    """Skip with a one-line reason; under CI=true the tests must run, so fail instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}, and CI=true requires it")
    pytest.skip(message)


def kustomize(directory: Path) -> list[dict]:
    """The objects `kubectl kustomize` renders for a kustomization directory."""
    if shutil.which("kubectl") is None:
        skip_or_fail("kubectl is not installed (it renders the kustomizations)")
    proc = subprocess.run(
        ["kubectl", "kustomize", str(directory)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"kubectl kustomize {directory}:\n{proc.stderr}"
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def load_objects(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


# ------------------------------------------------------------------------------ validation


@functools.cache
def definitions() -> referencing.Resource:
    """Kubernetes 1.32's definitions as kubernetes-validate ships them (ObjectMeta among them)."""
    folder = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema" / SCHEMAS
    contents = json.loads((folder / "_definitions.json").read_text())
    assert contents["$id"] == DEFINITIONS_URI
    return referencing.Resource.from_contents(contents)


def strict(schema: dict) -> dict:
    """A CRD's structural schema as JSON Schema, strict the way the API server is: an object
    schema accepts only the properties it lists, unless it has additionalProperties or
    x-kubernetes-preserve-unknown-fields (unknown fields are pruned, or with
    --validate=strict refused)."""
    out = {}
    for key, value in schema.items():
        if key in ("properties", "$defs"):
            out[key] = {name: strict(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = strict(value)
        elif key in ("anyOf", "allOf", "oneOf"):
            out[key] = [strict(sub) for sub in value]
        elif key == "pattern":
            # Go's RE2 accepts a global flag after "^"; Python wants it first: ^(?i)x -> (?i)^x
            out[key] = re.sub(r"^\^\((\?[a-z]+)\)", r"(\1)^", value)
        else:
            out[key] = value
    is_object = schema.get("type") == "object"
    open_ended = "additionalProperties" in schema or schema.get(
        "x-kubernetes-preserve-unknown-fields"
    )
    if is_object and not open_ended:
        out["additionalProperties"] = False
    return out


def crd_schema(crd: dict, version: str) -> dict:
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema = strict(served["schema"]["openAPIV3Schema"])
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    schema["properties"]["metadata"] = {"$ref": OBJECT_META}
    schema["properties"]["apiVersion"] = {"const": f"{group}/{version}"}
    schema["properties"]["kind"] = {"const": kind}
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
    return schema


@functools.cache
def crd_validators() -> dict[tuple[str, str], jsonschema.protocols.Validator]:
    """(apiVersion, kind) -> a validator, for each CRD of tests/schemas/prometheus-operator/."""
    registry = referencing.Registry().with_resource(DEFINITIONS_URI, definitions())
    validators = {}
    for path in sorted(CRDS.glob("*.yaml")):
        (crd,) = load_objects(path)
        assert "x-kubernetes-validations" not in path.read_text(), f"{path.name}: CEL rules"
        for version in crd["spec"]["versions"]:
            schema = crd_schema(crd, version["name"])
            jsonschema.Draft202012Validator.check_schema(schema)
            key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
            validators[key] = jsonschema.Draft202012Validator(schema, registry=registry)
    return validators


def validation_errors(obj: dict) -> tuple[str, list[str]]:
    """(what it was validated against, the errors: none when valid)."""
    try:
        version = kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(map(str, exc.path))
        return f"Kubernetes {exc.version}", [f"{path}: {exc.message}"]
    except SchemaNotFoundError:
        validator = crd_validators().get((obj["apiVersion"], obj["kind"]))
        if validator is None:
            return "no schema", [f"no schema for {obj['apiVersion']} {obj['kind']}"]
        errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
        where = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]
        return f"CRD {obj['apiVersion']} {obj['kind']}", where
    return f"Kubernetes {version}", []


def assert_valid(objects: list[dict], where: str) -> list[str]:
    """Every object validates; the schemas used, one per object."""
    used = []
    for obj in objects:
        schema, errors = validation_errors(obj)
        name = f"{where}: {obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        assert not errors, f"{name} against {schema}:\n" + "\n".join(errors[:10])
        used.append(schema)
    return used


def test_kubernetes_validate_ships_the_1_32_schemas():
    """The validation is for 1.32 itself, not the nearest older version it falls back to."""
    assert KUBERNETES_VERSION in all_versions()
    folder = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema" / SCHEMAS
    assert folder.is_dir()
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}}
    assert kubernetes_validate.validate(service, KUBERNETES_VERSION, strict=True) == "1.32"


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(K8S)))
def test_every_manifest_file_validates(path: Path):
    used = assert_valid(load_objects(path), str(path.relative_to(ROOT)))
    assert used, f"{path.name} holds no object"
    print(f"{path.relative_to(K8S)}: {len(used)} objects against {sorted(set(used))}")


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_kustomization_renders_and_validates(directory: Path):
    objects = kustomize(directory)
    used = assert_valid(objects, f"kubectl kustomize {directory.relative_to(ROOT)}")
    kinds = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objects)
    assert len(set(kinds)) == len(kinds), "an object twice"
    print(f"{directory.relative_to(ROOT)}: {len(used)} objects valid: {kinds}")


def test_every_kustomization_is_found():
    assert {p.relative_to(K8S).as_posix() for p in KUSTOMIZATIONS} == {".", "base", "sharded"}


def sharded_statefulset_file() -> dict:
    (statefulset,) = load_objects(SHARDED / "statefulset.yaml")
    return statefulset


def invalid(obj: dict) -> list[str]:
    return validation_errors(obj)[1]


def test_validation_refuses_unknown_fields_wrong_types_and_missing_fields():
    """The checks above can fail: a misspelt field, a wrong type, a missing required field,
    in built-in kinds and in the CRDs alike, metadata included."""
    statefulset = sharded_statefulset_file()
    assert not invalid(statefulset)
    typo = json.loads(json.dumps(statefulset))
    typo["spec"]["template"]["spec"]["containers"][0]["argz"] = ["--demo"]
    assert invalid(typo)
    wrong_type = json.loads(json.dumps(statefulset))
    wrong_type["spec"]["replicas"] = "3"
    assert invalid(wrong_type)

    (monitor,) = load_objects(K8S / "base" / "servicemonitor.yaml")
    assert not invalid(monitor)
    for mutate in (
        lambda m: m["spec"]["endpoints"][0].update(intervall="30s"),
        lambda m: m["spec"]["endpoints"][0].update(interval="30 seconds"),
        lambda m: m["metadata"].update(lables={"a": "b"}),
        lambda m: m.update(apiVersion="monitoring.coreos.com/v2"),
    ):
        broken = json.loads(json.dumps(monitor))
        mutate(broken)
        assert invalid(broken), broken

    (rule,) = load_objects(K8S / "base" / "prometheusrule.yaml")
    assert not invalid(rule)
    no_expr = json.loads(json.dumps(rule))
    del no_expr["spec"]["groups"][0]["rules"][0]["expr"]
    assert invalid(no_expr)
    unknown_kind = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert invalid(unknown_kind) == ["no schema for example.com/v1 Widget"]


# ------------------------------------------------------------------------- sharded overlay


@pytest.fixture(scope="module")
def sharded() -> list[dict]:
    return kustomize(SHARDED)


def one(objects: list[dict], kind: str) -> dict:
    (obj,) = [o for o in objects if o["kind"] == kind]
    return obj


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container["env"]}


def kubelet_args(container: dict, pod_index: str) -> list[str]:
    """The container's args as the kubelet expands $(VAR): from its env, the pod-index label
    resolved to `pod_index` as the downward API would."""
    values = {}
    for name, entry in env_of(container).items():
        if "value" in entry:
            values[name] = entry["value"]
        elif entry["valueFrom"].get("fieldRef", {}).get("fieldPath") == POD_INDEX:
            values[name] = pod_index
    return [
        re.sub(r"\$\((\w+)\)", lambda m: values.get(m[1], m[0]), arg) for arg in container["args"]
    ]


def exporter_of(statefulset: dict) -> dict:
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    return container


def test_sharded_replica_i_runs_shard_i_of_n(sharded):
    """replicas == --shard.count, and pod i (its pod-index label, through the downward API)
    gets --shard.index=i: the exporter's own parser accepts each pod's command line."""
    statefulset = one(sharded, "StatefulSet")
    replicas = statefulset["spec"]["replicas"]
    assert replicas == 3, "the documented default"
    container = exporter_of(statefulset)
    env = env_of(container)
    assert env["SHARD_INDEX"]["valueFrom"] == {"fieldRef": {"fieldPath": POD_INDEX}}
    assert env["SHARD_COUNT"] == {"name": "SHARD_COUNT", "value": str(replicas)}
    assert "--shard.index=$(SHARD_INDEX)" in container["args"]
    assert "--shard.count=$(SHARD_COUNT)" in container["args"]
    shards = []
    for index in range(replicas):
        args = build_parser().parse_args(kubelet_args(container, str(index)))
        assert args.config_file == "/etc/vastai-exporter/config.yaml"
        shards.append(parse_shard(args.shard_index, args.shard_count))
    assert [(s.index, s.count) for s in shards] == [(i, replicas) for i in range(replicas)]
    # together they own every target exactly once
    for kind in ("endpoint", "worker_group"):
        for target in range(1000):
            assert sum(s.owns(kind, target) for s in shards) == 1


def test_sharded_pod_without_the_index_label_refuses_to_start(sharded):
    """Before Kubernetes 1.28 (no pod-index label) the variable is empty: a usage error (exit 2),
    never a pod running as shard 0."""
    args = kubelet_args(exporter_of(one(sharded, "StatefulSet")), "")
    assert "--shard.index=" in args
    with pytest.raises(UsageError):
        build_parser().parse_args(args)


def test_sharded_each_pod_is_a_target_of_its_own(sharded):
    """A headless Service governs the StatefulSet and is what the ServiceMonitor selects (one
    target per pod, job="vastai"); the pods carry the prometheus.io scrape annotations too."""
    statefulset = one(sharded, "StatefulSet")
    template = statefulset["spec"]["template"]
    pod_labels = template["metadata"]["labels"]
    assert statefulset["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    services = [s for s in sharded if s["kind"] == "Service"]
    (service,) = services
    assert service["spec"]["clusterIP"] == "None", "headless: no load-balancing over the shards"
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    container = exporter_of(statefulset)
    (container_port,) = container["ports"]
    assert port["targetPort"] == container_port["name"] and container_port["containerPort"] == 9840
    monitor = one(sharded, "ServiceMonitor")
    labels = service["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [port["name"]]
    assert labels[monitor["spec"]["jobLabel"]] == "vastai", "VastaiExporterAbsent's job"
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(container_port["containerPort"])
    assert annotations["prometheus.io/path"] == "/metrics"
    # the sidecar variant's Deployment and Service are not part of it
    assert not [o for o in sharded if o["kind"] == "Deployment"]


def test_sharded_pods_are_hardened_and_probed(sharded):
    statefulset = one(sharded, "StatefulSet")
    pod = statefulset["spec"]["template"]["spec"]
    assert_hardened_and_bounded(pod)
    assert pod["automountServiceAccountToken"] is False
    container = exporter_of(statefulset)
    assert container["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "metrics"}
    secret = one(sharded, "Secret")
    key = env_of(container)["VAST_API_KEY"]["valueFrom"]["secretKeyRef"]
    assert key["name"] == secret["metadata"]["name"] and key["key"] in secret["stringData"]


def test_sharded_config_discovers_and_lists_no_endpoint(sharded):
    """The shards' configuration: accepted by the exporter's parser, discovery on, and no
    explicit endpoint (whose discovered groups could land on another shard)."""
    statefulset = one(sharded, "StatefulSet")
    (volume,) = [v for v in statefulset["spec"]["template"]["spec"]["volumes"] if "configMap" in v]
    (configmap,) = [
        o
        for o in sharded
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == volume["configMap"]["name"]
    ]
    config = yaml.safe_load(configmap["data"]["config.yaml"])
    parse_config(config, "sharded ConfigMap")
    assert config["discovery"]["enabled"] is True
    assert not config.get("endpoints") and not config.get("worker_groups")


@pytest.fixture
def sharded_copy(tmp_path: Path) -> Iterator[Path]:
    """deploy/kubernetes/ copied, to edit the sharded kustomization."""
    copy = tmp_path / "kubernetes"
    shutil.copytree(K8S, copy)
    yield copy / "sharded"


@pytest.mark.parametrize("count", [1, 5])
def test_sharded_count_is_changed_in_one_place(sharded_copy: Path, count: int):
    """Editing the kustomization's replicas count (the README's one place) changes both the
    StatefulSet's replicas and --shard.count."""
    kustomization = sharded_copy / "kustomization.yaml"
    text = kustomization.read_text()
    assert text.count("count: 3\n") == 1
    kustomization.write_text(text.replace("count: 3\n", f"count: {count}\n"))
    objects = kustomize(sharded_copy)
    assert_valid(objects, f"sharded with count {count}")
    statefulset = one(objects, "StatefulSet")
    assert statefulset["spec"]["replicas"] == count
    container = exporter_of(statefulset)
    args = build_parser().parse_args(kubelet_args(container, str(count - 1)))
    assert (args.shard_index, args.shard_count) == (count - 1, count)
