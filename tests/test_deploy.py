"""Checks of the container and deployment files, read as text: Dockerfile, .dockerignore,
deploy/docker-compose.yml, deploy/demo-config.yaml, deploy/kubernetes/ and grafana/provisioning/.
The image itself is built and run in a real Docker engine by tests/test_docker.py; no Kubernetes
cluster runs here.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
import yaml

from exporter.config import parse_config

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
K8S_BASE = K8S / "base"  # shared by the sidecar variant (K8S) and the sharded one (K8S / "sharded")
CONFIG_PATH = "/etc/vastai-exporter/config.yaml"
GENERATOR = DEPLOY / "generate_kubernetes.py"


# ------------------------------------------------------------------------------ Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    out = []
    for line in lines:
        instruction, _, args = line.partition(" ")
        out.append((instruction.upper(), args.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    """The instructions of each build stage (ARGs before the first FROM are left out)."""
    result: list[list[tuple[str, str]]] = []
    for instruction, args in dockerfile_instructions():
        if instruction == "FROM":
            result.append([])
        if result:
            result[-1].append((instruction, args))
    return result


def global_args() -> dict[str, str]:
    """ARG NAME=DEFAULT before the first FROM."""
    out = {}
    for instruction, args in dockerfile_instructions():
        if instruction == "FROM":
            break
        if instruction == "ARG":
            name, _, default = args.partition("=")
            out[name] = default
    return out


def test_dockerfile_is_multi_stage_on_a_base_image_argument():
    """Both stages use ARG BASE_IMAGE, by default the pinned slim Python image."""
    default = global_args()["BASE_IMAGE"]
    assert re.fullmatch(r"python:3\.12-slim(@sha256:[0-9a-f]{64})?", default), default
    all_stages = stages()
    assert len(all_stages) >= 2
    for stage in all_stages:
        image = stage[0][1].split()[0]
        assert image in ("${BASE_IMAGE}", "$BASE_IMAGE"), image
    # the stand-in base (Debian's python3) has no `python`: only python3 and the venv's python
    for instruction, args in dockerfile_instructions():
        if instruction in ("RUN", "HEALTHCHECK"):
            assert not re.search(r"(?<![/\w])python(?![\w.])", args), f"{instruction} {args}"
    final = all_stages[-1]
    copies = [args for instruction, args in final if instruction == "COPY"]
    assert any(args.startswith("--from=") for args in copies), "the runtime copies the build"
    build = " ".join(args for instruction, args in all_stages[0] if instruction == "RUN")
    assert "pip install" in build and re.search(r"pip install[^&]* \.(\s|$)", build)
    final_runs = " ".join(args for instruction, args in final if instruction == "RUN")
    assert "pip install" not in final_runs, "no build tooling in the runtime stage"


def test_dockerfile_installs_the_lock_with_hashes_then_the_package_alone():
    """The build stage installs requirements.lock hash-checked, then the package with --no-deps,
    so the image holds nothing the lock does not pin; pip check proves the lock is complete."""
    build = stages()[0]
    installs = [
        (position, args)
        for position, (instruction, args) in enumerate(build)
        if instruction == "RUN" and "pip install" in args
    ]
    assert len(installs) == 2, installs
    (lock_at, lock_install), (_, package_install) = installs
    assert re.search(r"pip install (--[\w-]+ (:all: )?)*-r requirements\.lock$", lock_install)
    assert "--require-hashes" in lock_install.split()
    assert re.search(r"pip install --no-deps \.(\s|$)", package_install)
    assert "pip check" in package_install
    copied = [args for instruction, args in build[:lock_at] if instruction == "COPY"]
    assert "requirements.lock ./" in copied, "copied alone: its layer outlives code changes"


def test_dockerfile_runs_as_numeric_non_root_user():
    final = stages()[-1]
    users = [args for instruction, args in final if instruction == "USER"]
    assert users, "USER in the runtime stage"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) != 0, "numeric so that runAsNonRoot can check it"


def test_dockerfile_expose_healthcheck_entrypoint_cmd():
    final = dict(stages()[-1])
    assert "9840" in final["EXPOSE"].split()
    healthcheck = final["HEALTHCHECK"]
    assert "CMD" in healthcheck and "python" in healthcheck
    assert not re.search(r"\b(curl|wget)\b", healthcheck), "the slim image has neither"
    assert json.loads(final["ENTRYPOINT"]) == ["vastai-exporter"], "exec form"
    assert json.loads(final["CMD"]) == [f"--config.file={CONFIG_PATH}"]


def test_healthcheck_runs_the_packaged_probe():
    """The virtualenv's python runs exporter.healthcheck, which probes /-/healthy."""
    healthcheck = dict(stages()[-1])["HEALTHCHECK"]
    argv = json.loads(healthcheck[healthcheck.index("CMD") + 3 :].strip())
    assert argv == ["/opt/venv/bin/python", "-m", "exporter.healthcheck"]
    from exporter import healthcheck as probe

    assert probe.health_url(probe.DEFAULT_LISTEN) == "http://127.0.0.1:9840/-/healthy"


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves `path` out of the build context (last matching pattern wins)."""
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        for candidate in candidates:
            if fnmatch.fnmatch(candidate, pattern) or (
                pattern.startswith("**/") and fnmatch.fnmatch(candidate.split("/")[-1], pattern[3:])
            ):
                ignored = not negate
                break
    return ignored


def test_dockerignore_keeps_secrets_and_clutter_out():
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    for kept in ("pyproject.toml", "README.md", "requirements.lock", "exporter/__init__.py"):
        assert not dockerignored(kept, patterns), kept
    for left_out in (
        ".git/config",
        "config.yaml",
        "tests/test_deploy.py",
        ".venv/bin/python",
        "exporter/__pycache__/cli.cpython-312.pyc",
    ):
        assert dockerignored(left_out, patterns), left_out


# ---------------------------------------------------------------------------------- compose


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def bind_mounts(service: dict) -> dict[str, str]:
    """target -> source (resolved from deploy/) of a service's bind mounts."""
    out = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            out[target] = str((DEPLOY / source).resolve())
    return out


def test_compose_services():
    services = compose()["services"]
    assert {"simulator", "vastai-exporter", "prometheus", "alertmanager", "grafana"} <= set(
        services
    )
    simulator = services["simulator"]
    assert simulator["command"] == ["simulate", "--listen", "0.0.0.0:8080"]
    assert simulator.get("healthcheck", {}).get("disable") is True, "it does not serve :9840"
    for name in ("simulator", "vastai-exporter"):
        build = services[name]["build"]
        assert build["context"] == ".." and build["dockerfile"] == "Dockerfile"
        assert (DEPLOY / build["context"] / "Dockerfile").is_file()
        # the same Dockerfile, its base overridable as in CI (a stand-in without Docker Hub)
        default = global_args()["BASE_IMAGE"]
        assert build["args"]["BASE_IMAGE"] == f"${{BASE_IMAGE:-{default}}}"
        assert services[name]["image"] == "vastai-exporter:local", "the built image is named"
    for name in ("prometheus", "alertmanager", "grafana"):
        image = services[name]["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: pinned image"


def test_compose_exporter_polls_the_simulator():
    exporter = compose()["services"]["vastai-exporter"]
    mounts = bind_mounts(exporter)
    assert mounts[CONFIG_PATH] == str(DEPLOY / "demo-config.yaml")
    assert exporter["environment"]["VAST_API_KEY"], "any non-empty key"
    assert "9840:9840" in exporter["ports"]
    config = yaml.safe_load((DEPLOY / "demo-config.yaml").read_text())
    assert config["vast"]["api_url"] == "http://simulator:8080"
    assert config["endpoints"] and config["worker_groups"]


def test_compose_has_a_commented_real_key_variant():
    text = (DEPLOY / "docker-compose.yml").read_text()
    commented = "\n".join(ln for ln in text.splitlines() if ln.lstrip().startswith("#"))
    assert "VAST_API_KEY" in commented
    assert "secrets:" in commented
    assert "api_key_file" in commented


def test_compose_prometheus_loads_config_and_rules():
    prometheus = compose()["services"]["prometheus"]
    mounts = bind_mounts(prometheus)
    config_target = next(
        arg.split("=", 1)[1] for arg in prometheus["command"] if arg.startswith("--config.file=")
    )
    assert mounts[config_target] == str(DEPLOY / "prometheus" / "prometheus.yml")
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    for rule_file in config["rule_files"]:
        target = str(PurePosixPath(config_target).parent / rule_file)
        assert mounts[target] == str(DEPLOY / "prometheus" / rule_file)
    # the scrape target is the compose service
    targets = [
        t for sc in config["scrape_configs"] for s in sc["static_configs"] for t in s["targets"]
    ]
    assert "vastai-exporter:9840" in targets


def test_compose_prometheus_alerts_the_compose_alertmanager():
    """Prometheus sends to the compose Alertmanager, which runs the example config."""
    services = compose()["services"]
    alertmanager = services["alertmanager"]
    config_target = next(
        arg.split("=", 1)[1] for arg in alertmanager["command"] if arg.startswith("--config.file=")
    )
    assert bind_mounts(alertmanager)[config_target] == str(
        DEPLOY / "alertmanager" / "alertmanager.yml"
    )
    assert "9093:9093" in alertmanager["ports"]
    assert "alertmanager" in services["prometheus"]["depends_on"]
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (manager,) = config["alerting"]["alertmanagers"]
    assert [t for s in manager["static_configs"] for t in s["targets"]] == ["alertmanager:9093"]


def test_compose_grafana_is_provisioned():
    grafana = compose()["services"]["grafana"]
    mounts = bind_mounts(grafana)
    assert mounts["/etc/grafana/provisioning"] == str(ROOT / "grafana" / "provisioning")
    dashboards_target = next(
        t for t, s in mounts.items() if s == str(ROOT / "grafana" / "dashboards")
    )
    provider = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/vastai.yaml").read_text())
    assert [p["options"]["path"] for p in provider["providers"]] == [dashboards_target]
    assert provider["providers"][0]["type"] == "file"
    home = grafana["environment"].get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        assert (ROOT / "grafana" / "dashboards" / PurePosixPath(home).name).is_file()
        assert str(PurePosixPath(home).parent) == dashboards_target


def test_grafana_datasource_is_the_compose_prometheus():
    doc = yaml.safe_load((ROOT / "grafana/provisioning/datasources/prometheus.yaml").read_text())
    (datasource,) = doc["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    assert datasource.get("isDefault") is True
    assert "9090:9090" in compose()["services"]["prometheus"]["ports"]


# ------------------------------------------------------------------------ exporter configs


def check_config_keys(config: dict, where: str) -> None:
    """The exporter's own parser accepts it (unknown keys are errors there) with no inline key."""
    parse_config(config, where)
    assert "api_key" not in config.get("vast", {}), f"{where}: never an inline key"


def k8s_docs() -> list[dict]:
    """The sidecar variant's objects: deploy/kubernetes/*.yaml and base/*.yaml, kustomizations
    left out (tests/test_kubernetes.py renders them with kubectl)."""
    docs = []
    for path in sorted([*K8S.glob("*.yaml"), *K8S_BASE.glob("*.yaml")]):
        if path.name != "kustomization.yaml":
            docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def k8s(kind: str) -> list[dict]:
    return [d for d in k8s_docs() if d["kind"] == kind]


def exporter_configmap() -> dict:
    """The exporter's config ConfigMap (the others hold the Grafana dashboards)."""
    (configmap,) = [c for c in k8s("ConfigMap") if "config.yaml" in c.get("data", {})]
    return configmap


def test_example_configs_use_only_known_keys():
    check_config_keys(yaml.safe_load((DEPLOY / "demo-config.yaml").read_text()), "demo-config")
    configmap = exporter_configmap()
    check_config_keys(yaml.safe_load(configmap["data"]["config.yaml"]), "k8s ConfigMap")


def test_demo_config_passes_the_exporter_check():
    """The exporter's own validation, once the package provides it."""
    pytest.importorskip("exporter.cli")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "exporter",
            "--check-config",
            f"--config.file={DEPLOY / 'demo-config.yaml'}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "VAST_API_KEY": "demo-key-for-the-simulator"},
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_demo_config_polls_what_the_simulator_serves():
    simulator = pytest.importorskip("exporter.sim")
    config = yaml.safe_load((DEPLOY / "demo-config.yaml").read_text())
    configured = {("endpoint", e["id"], e.get("name", "")) for e in config["endpoints"]}
    configured |= {("worker_group", g["id"], g.get("endpoint_id")) for g in config["worker_groups"]}
    served = {
        (t.kind, t.id, t.name if t.kind == "endpoint" else t.endpoint_id)
        for t in simulator.demo_targets()
    }
    assert configured == served


# ------------------------------------------------------------------------------ kubernetes


def exporter_container() -> tuple[dict, dict]:
    (deployment,) = k8s("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if "vastai-exporter" in c["image"]]
    return pod, container


def kustomization(directory: Path) -> dict:
    return yaml.safe_load((directory / "kustomization.yaml").read_text())


def test_kustomizations_list_every_manifest():
    """Every file of a kustomization's directory is used by it: a resource, or a patch."""
    for directory, bases in ((K8S, {"base"}), (K8S_BASE, set()), (K8S / "sharded", {"../base"})):
        listed = set(kustomization(directory)["resources"])
        patches = {p["path"] for p in kustomization(directory).get("patches", []) if "path" in p}
        present = {p.name for p in directory.glob("*.yaml")} - {"kustomization.yaml"}
        assert listed - bases == present - patches, directory
        assert listed >= bases, directory


def test_deployment_has_an_app_and_the_exporter_sidecar():
    pod, exporter = exporter_container()
    assert len(pod["containers"]) >= 2
    assert f"--config.file={CONFIG_PATH}" in exporter["args"]
    (port,) = exporter["ports"]
    assert port["containerPort"] == 9840


def test_exporter_key_comes_from_a_secret():
    pod, exporter = exporter_container()
    (secret,) = k8s("Secret")
    env = {e["name"]: e for e in exporter.get("env", [])}
    if "VAST_API_KEY" in env:
        ref = env["VAST_API_KEY"]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in secret.get("stringData", {}) | secret.get("data", {})
        assert "value" not in env["VAST_API_KEY"], "never the key in the manifest"
    else:
        secret_volumes = {v["name"] for v in pod["volumes"] if "secret" in v}
        assert secret_volumes & {m["name"] for m in exporter["volumeMounts"]}


def test_exporter_config_is_mounted_from_the_configmap():
    pod, exporter = exporter_container()
    configmap = exporter_configmap()
    volumes = {v["name"]: v for v in pod["volumes"]}
    mount = next(
        m for m in exporter["volumeMounts"] if m["mountPath"] == str(Path(CONFIG_PATH).parent)
    )
    assert volumes[mount["name"]]["configMap"]["name"] == configmap["metadata"]["name"]
    assert "config.yaml" in configmap["data"]


def probe_port(container: dict, probe: dict) -> int:
    port = probe["httpGet"]["port"]
    if isinstance(port, str):
        port = next(p["containerPort"] for p in container["ports"] if p["name"] == port)
    return port


def test_exporter_probes():
    _, exporter = exporter_container()
    assert exporter["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    assert exporter["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    for probe in ("livenessProbe", "readinessProbe"):
        assert probe_port(exporter, exporter[probe]) == 9840


def assert_hardened_and_bounded(pod: dict) -> None:
    """Every container of a pod spec: read-only root, non-root, no privilege, requests/limits."""
    pod_context = pod.get("securityContext", {})
    for container in pod["containers"]:
        name = container["name"]
        context = container.get("securityContext", {})
        assert context.get("readOnlyRootFilesystem") is True, name
        assert context.get("allowPrivilegeEscalation") is False, name
        assert (context.get("runAsNonRoot") or pod_context.get("runAsNonRoot")) is True, name
        assert context.get("runAsUser", pod_context.get("runAsUser", 1)) != 0, name
        assert "ALL" in context.get("capabilities", {}).get("drop", []), name
        resources = container["resources"]
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources[kind]), f"{name}: {kind}"


def test_every_container_is_hardened_and_bounded():
    pod, _ = exporter_container()
    assert_hardened_and_bounded(pod)


def test_service_and_servicemonitor_reach_the_exporter():
    (deployment,) = k8s("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    _, exporter = exporter_container()
    (service,) = k8s("Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert port["port"] == 9840
    assert port["targetPort"] in {p["name"] for p in exporter["ports"]} | {9840}
    (monitor,) = k8s("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    labels = service["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == port["name"]
    assert endpoint.get("path", "/metrics") == "/metrics"
    # the rules' VastaiExporterAbsent expects job="vastai"
    assert labels.get(monitor["spec"].get("jobLabel")) == "vastai"


# ------------------------------------------------- generated Prometheus Operator and Grafana


def load_generator():
    spec = importlib.util.spec_from_file_location("generate_kubernetes", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_manifests_are_current():
    """prometheusrule.yaml and grafana-dashboards.yaml are what the generator writes now."""
    for path, text in load_generator().rendered().items():
        assert path.read_text() == text, f"{path.name} is stale: python3 {GENERATOR.name}"
    proc = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr


def test_prometheusrule_groups_are_the_rules_file():
    (rule,) = k8s("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    rules = yaml.safe_load((DEPLOY / "prometheus" / "vastai-rules.yaml").read_text())
    assert rule["spec"]["groups"] == rules["groups"]
    assert rule["spec"].keys() == {"groups"}


def test_dashboards_as_configmaps_for_the_grafana_sidecar():
    dashboards = {p.name: p.read_text() for p in (ROOT / "grafana" / "dashboards").glob("*.json")}
    configmaps = [c for c in k8s("ConfigMap") if c["metadata"]["name"].startswith("vastai-dash")]
    shipped = {}
    for configmap in configmaps:
        assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
        (name,) = configmap["data"]
        shipped[name] = configmap["data"][name]
        # one dashboard per ConfigMap: kubectl apply keeps a copy in an annotation (256 KiB max)
        assert len(shipped[name].encode()) < 256 * 1024 - 4096, name
    assert shipped == dashboards


def test_kustomization_includes_rules_and_dashboards():
    resources = set(kustomization(K8S_BASE)["resources"])
    assert {"prometheusrule.yaml", "grafana-dashboards.yaml"} <= resources


# --------------------------------------------------------------------------------- CI script


def test_ci_installs_starts_and_stops_the_docker_engine():
    """.ci/run prepares a fresh Debian machine: packages, dockerd, the stand-in base image."""
    text = (ROOT / ".ci" / "run").read_text()
    for package in ("prometheus", "prometheus-alertmanager", "jsonnet", "docker.io", "debootstrap"):
        assert f"missing+=({package})" in text, package
    assert "apt-get update" in text and "apt-get install -y" in text
    assert "dockerd --bridge=none --iptables=false" in text
    assert "trap stop_dockerd EXIT" in text, "the engine it starts is stopped at the end"
    assert "deploy/build-base-image.sh" in text
    assert "<!-- test-command" in text and "<!-- test-command" in (ROOT / "README.md").read_text()
    script = (DEPLOY / "build-base-image.sh").read_text()
    assert "debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates" in script
    assert "/etc/apt/sources.list" in script and "docker import" in script
