"""Packaging, checked offline: Kubernetes manifests, the image, dashboards, alerts.

No cluster, registry or Docker engine is needed: manifests are validated against
the Kubernetes JSON schemas that kubernetes-validate ships, the kustomize base is
rendered with `kubectl kustomize` when kubectl is installed (and by a small
renderer of the features it uses otherwise), PromQL is parsed with promql-parser,
and the Dockerfile is read statically (it is never built here).
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import promql_parser
import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase
from yamllint import linter  # type: ignore[import-untyped]
from yamllint.config import YamlLintConfig  # type: ignore[import-untyped]

from agent import cli as agent_cli
from agent import config as agent_config
from agent.core.metrics import Metrics
from brownout.v1 import agent_pb2
from controller.cli import main as controller_cli
from controller.experiments import parse as experiment
from controller.experiments.metrics import ControllerMetrics

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
K8S = PACKAGING / "kubernetes"
CERT_MANAGER = K8S / "cert-manager"
DOCKERFILE = PACKAGING / "Dockerfile"
DASHBOARD = PACKAGING / "grafana" / "brownout.json"
ALERTS = PACKAGING / "prometheus" / "alerts.yaml"
OPERATIONS = ROOT / "docs" / "operations.md"
INSTALL_K8S = ROOT / "docs" / "install-kubernetes.md"

# The oldest Kubernetes the manifests claim (docs/install-kubernetes.md) and the
# newest whose schemas kubernetes-validate ships.
OLDEST_KUBERNETES = "1.27"
AGENT_SERVICE = agent_pb2.DESCRIPTOR.services_by_name["Agent"].full_name
# Labels Prometheus adds to every scraped series, and its own series.
TARGET_LABELS = frozenset({"instance", "job"})
PROMETHEUS_SERIES = {"up": TARGET_LABELS}
# Substitutes for Grafana's variables, so that dashboard queries parse as PromQL.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "6h"}
CLUSTER_SCOPED = frozenset({"Namespace", "PriorityClass", "ClusterRole", "ClusterRoleBinding"})

Doc = dict[str, Any]


# ------------------------------------------------------------------ loading


@cache
def load_docs(path: Path) -> list[Doc]:
    """The objects in a YAML file, parsed once: callers must not modify them."""
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def manifest_files() -> list[Path]:
    files = sorted(K8S.glob("*.yaml")) + sorted(CERT_MANAGER.glob("*.yaml"))
    return [f for f in files if f.name != "kustomization.yaml"]


def base_objects() -> list[Doc]:
    kustomization = load_docs(K8S / "kustomization.yaml")[0]
    return [d for r in kustomization["resources"] for d in load_docs(K8S / r)]


def find(objects: list[Doc], kind: str, name: str) -> Doc:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def agent_daemonset() -> Doc:
    return find(base_objects(), "DaemonSet", "brownout-agent")


def controller_deployment() -> Doc:
    return find(base_objects(), "Deployment", "brownout-controller")


def certificates() -> list[Doc]:
    return load_docs(CERT_MANAGER / "certificates.yaml")


def certificate_for(secret: str) -> Doc:
    found = [c for c in certificates() if c.get("spec", {}).get("secretName") == secret]
    assert len(found) == 1, f"no cert-manager Certificate writes Secret {secret}"
    return found[0]


def container(workload: Doc) -> Doc:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: Doc = containers[0]
    return result


def volume_for_mount(workload: Doc, mount_path: str) -> Doc:
    pod = workload["spec"]["template"]["spec"]
    mounts = [m for m in container(workload)["volumeMounts"] if m["mountPath"] == mount_path]
    assert mounts, f"nothing is mounted at {mount_path}"
    volume: Doc = next(v for v in pod["volumes"] if v["name"] == mounts[0]["name"])
    return volume


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in command and args."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env[m[1]], text)


def flag(args: list[str], name: str) -> str:
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"{name}=")]
    assert len(values) == 1, f"expected one {name}=VALUE in {args}"
    return values[0]


def env_value(ctr: Doc, name: str) -> str:
    value: str = next(e["value"] for e in ctr["env"] if e["name"] == name)
    return value


# ------------------------------------------------------------------ YAML lint


def yaml_files() -> list[Path]:
    return [*sorted(PACKAGING.rglob("*.yaml")), ROOT / ".yamllint"]


def test_yaml_lints_clean_with_the_repository_config() -> None:
    conf = YamlLintConfig(file=str(ROOT / ".yamllint"))
    problems = [
        f"{path.relative_to(ROOT)}:{p.line}:{p.column}: [{p.level}] {p.desc} ({p.rule})"
        for path in yaml_files()
        for p in linter.run(path.read_text(), conf, str(path))
    ]
    assert not problems, "yamllint:\n" + "\n".join(problems)


def test_the_linter_is_not_vacuous() -> None:
    conf = YamlLintConfig(file=str(ROOT / ".yamllint"))
    bad = "---\nkey: value\nkey: again\nmode: 0400\n"
    rules = {p.rule for p in linter.run(bad, conf)}
    assert {"key-duplicates", "octal-values"} <= rules


# ------------------------------------------------------------------ schemas


def schema_versions() -> list[str]:
    return [OLDEST_KUBERNETES, kubernetes_validate.utils.latest_version()]


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_every_manifest_validates_against_the_kubernetes_schemas(path: Path) -> None:
    docs = load_docs(path)
    assert docs, f"{path} holds no object"
    for doc in docs:
        if doc["apiVersion"].startswith("cert-manager.io/"):
            continue  # a CRD: no schema ships with Kubernetes (checked below)
        for version in schema_versions():
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = ".".join(str(p) for p in exc.path)
                pytest.fail(f"{path.name}: {doc['kind']} against {version}: {where}: {exc.message}")
            except kubernetes_validate.SchemaNotFoundError as exc:
                pytest.fail(f"{path.name}: {exc.message}")


def test_schema_validation_is_strict_enough_to_catch_a_typo() -> None:
    ds = copy.deepcopy(agent_daemonset())
    ds["spec"]["template"]["spec"]["hostPid"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ds, OLDEST_KUBERNETES, strict=True)


def test_cert_manager_objects_are_well_formed() -> None:
    kinds = {(d["apiVersion"], d["kind"]) for d in certificates()}
    assert kinds <= {("cert-manager.io/v1", "Issuer"), ("cert-manager.io/v1", "Certificate")}
    issuers = {d["metadata"]["name"] for d in certificates() if d["kind"] == "Issuer"}
    for cert in (d for d in certificates() if d["kind"] == "Certificate"):
        spec = cert["spec"]
        assert spec["issuerRef"]["name"] in issuers, cert["metadata"]["name"]
        assert spec["secretName"], cert["metadata"]["name"]
        if not spec.get("isCA"):
            assert spec["privateKey"]["rotationPolicy"] == "Always"
            assert set(spec["usages"]) <= {"server auth", "client auth", "digital signature"}
    ca_secrets = {d["spec"]["secretName"] for d in certificates() if d["kind"] == "Certificate"}
    for issuer in (d for d in certificates() if d["kind"] == "Issuer" and "ca" in d["spec"]):
        assert issuer["spec"]["ca"]["secretName"] in ca_secrets, issuer["metadata"]["name"]


# ------------------------------------------------------------------ kustomize


@pytest.mark.parametrize("directory", [K8S, CERT_MANAGER], ids=["base", "cert-manager"])
def test_kustomization_lists_exactly_the_manifests_beside_it(directory: Path) -> None:
    kustomization = load_docs(directory / "kustomization.yaml")[0]
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed))
    for resource in listed:
        assert (directory / resource).is_file(), f"{resource} is listed but missing"
    present = {p.name for p in directory.glob("*.yaml")} - {"kustomization.yaml"}
    assert present == set(listed), f"manifests not in the kustomization: {present - set(listed)}"


def render_without_kustomize(directory: Path) -> list[Doc]:
    """The kustomize features the base uses: namespace, labels, images."""
    k = load_docs(directory / "kustomization.yaml")[0]
    objects = [copy.deepcopy(d) for r in k["resources"] for d in load_docs(directory / r)]
    images = {i["name"]: i for i in k.get("images", [])}
    for obj in objects:
        meta = obj["metadata"]
        if obj["kind"] not in CLUSTER_SCOPED:
            meta["namespace"] = k["namespace"]
        for group in k.get("labels", []):
            meta.setdefault("labels", {}).update(group["pairs"])
            template = obj.get("spec", {}).get("template")
            if group.get("includeTemplates") and template is not None:
                template["metadata"].setdefault("labels", {}).update(group["pairs"])
        pod = obj.get("spec", {}).get("template", {}).get("spec", {})
        for ctr in pod.get("containers", []) + pod.get("initContainers", []):
            name, _, tag = ctr["image"].partition(":")
            if name in images:
                new = images[name]
                ctr["image"] = f"{new.get('newName', name)}:{new.get('newTag', tag)}"
    return objects


@cache
def rendered(directory: Path) -> tuple[str, list[Doc]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return "python", render_without_kustomize(directory)
    out = subprocess.run(
        [kubectl, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, f"kubectl kustomize {directory}:\n{out.stderr}"
    return "kubectl", [d for d in yaml.safe_load_all(out.stdout) if d]


def test_the_base_renders_into_valid_namespaced_objects() -> None:
    _how, objects = rendered(K8S)
    k = load_docs(K8S / "kustomization.yaml")[0]
    assert {(o["kind"], o["metadata"]["name"]) for o in objects} == {
        (o["kind"], o["metadata"]["name"]) for o in base_objects()
    }
    for obj in objects:
        kubernetes_validate.validate(obj, OLDEST_KUBERNETES, strict=True)
        if obj["kind"] not in CLUSTER_SCOPED:
            assert obj["metadata"]["namespace"] == k["namespace"], obj["metadata"]["name"]
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "brownout"
    namespace = find(objects, "Namespace", k["namespace"])
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"


def test_rendered_images_are_pinned_and_selectors_untouched() -> None:
    _how, objects = rendered(K8S)
    image = load_docs(K8S / "kustomization.yaml")[0]["images"][0]
    workloads = [o for o in objects if o["kind"] in ("DaemonSet", "Deployment")]
    assert len(workloads) == 2
    for w in workloads:
        ctr = container(w)
        assert ctr["image"] == f"{image['newName']}:{image['newTag']}"
        assert not ctr["image"].endswith(":latest")
        assert "app.kubernetes.io/part-of" not in w["spec"]["selector"]["matchLabels"]
        assert "app.kubernetes.io/part-of" in w["spec"]["template"]["metadata"]["labels"]


def test_the_cert_manager_component_renders() -> None:
    _how, objects = rendered(CERT_MANAGER)
    assert {o["metadata"]["namespace"] for o in objects} == {"brownout"}
    assert len(objects) == len(certificates())


def test_the_fallback_renderer_agrees_with_kustomize() -> None:
    how, objects = rendered(K8S)
    if how != "kubectl":
        pytest.skip("kubectl is not installed: the fallback renderer was used above")
    ours = {(o["kind"], o["metadata"]["name"]): o for o in render_without_kustomize(K8S)}
    for obj in objects:
        mine = ours[(obj["kind"], obj["metadata"]["name"])]
        assert mine["metadata"].get("namespace") == obj["metadata"].get("namespace")
        assert mine["metadata"]["labels"] == obj["metadata"]["labels"]
        if obj["kind"] in ("DaemonSet", "Deployment"):
            assert container(mine)["image"] == container(obj)["image"]


# ------------------------------------------------------------------ the agent DaemonSet


def agent_env() -> dict[str, str]:
    """The agent container's environment as the kubelet would build it."""
    cm = find(base_objects(), "ConfigMap", "brownout-agent")
    env = {str(k): str(v) for k, v in cm["data"].items()}
    env.update({"POD_IP": "10.1.2.3", "NODE_NAME": "node-a"})
    return env


def test_daemonset_runs_a_privileged_agent_on_every_node() -> None:
    ds = agent_daemonset()
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["hostPID"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert pod["priorityClassName"] == "system-node-critical"
    assert {"operator": "Exists"} in pod["tolerations"], "must tolerate every taint"
    assert pod["automountServiceAccountToken"] is False
    assert pod["terminationGracePeriodSeconds"] >= 60, "time to revert every fault"
    sc = container(ds)["securityContext"]
    assert sc["privileged"] is True
    assert sc["runAsUser"] == 0
    rolling = ds["spec"]["updateStrategy"]["rollingUpdate"]
    assert rolling["maxSurge"] == 0, "two agents cannot share a node's state dir and port"
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container(ds)["env"]}
    assert env == {"POD_IP": "status.podIP", "NODE_NAME": "spec.nodeName"}


def test_daemonset_mounts_the_host_views_and_a_persistent_state_dir() -> None:
    ds = agent_daemonset()
    args = [expand(a, agent_env()) for a in container(ds)["args"]]
    state_dir = flag(args, "--state-dir")
    state = volume_for_mount(ds, state_dir)
    assert state["hostPath"] == {"path": state_dir, "type": "DirectoryOrCreate"}
    assert volume_for_mount(ds, "/sys/fs/cgroup")["hostPath"]["path"] == "/sys/fs/cgroup"
    netns = volume_for_mount(ds, "/var/run/netns")
    assert netns["hostPath"]["path"] == "/var/run/netns"
    mounts = {m["mountPath"]: m for m in container(ds)["volumeMounts"]}
    assert mounts["/var/run/netns"]["mountPropagation"] == "HostToContainer"
    assert mounts["/sys/fs/cgroup"].get("readOnly") is not True, "workers join target cgroups"
    # hostPID gives the container a procfs of the host's PID namespace: nothing
    # may be mounted over /proc.
    assert not [p for p in mounts if p == "/proc" or p.startswith("/proc/")]


def test_daemonset_resources_bound_memory_but_never_throttle_cpu() -> None:
    resources = container(agent_daemonset())["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert "memory" in resources["limits"]
    assert "cpu" not in resources["limits"], "CFS throttling would delay lease expiry"


def test_agent_args_and_configmap_parse_with_the_agent_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ctr = container(agent_daemonset())
    assert ctr["command"] == ["brownout-agent"]
    env = agent_env()
    defined = set(env) | {e["name"] for e in ctr["env"]}
    for arg in ctr["args"]:
        for var in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", arg):
            assert var in defined, f"{arg}: $({var}) is not in the container's environment"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = [expand(a, env) for a in ctr["args"]]
    assert args[0] == "serve"
    cfg = agent_config.from_args(agent_cli.parse_args(args))
    assert cfg.listen == "10.1.2.3:7070"
    assert cfg.metrics_listen == "10.1.2.3:9464"
    assert cfg.labels == {"node": "node-a"}
    tls = volume_for_mount(agent_daemonset(), "/etc/brownout/tls")
    for path in (cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca):
        assert path is not None and path.parent == Path("/etc/brownout/tls"), path
    assert tls["secret"]["secretName"] == "brownout-agent-tls"
    controller_id = certificate_for("brownout-controller-tls")["spec"]["uris"][0]
    assert controller_id in cfg.operators


def test_agent_configmap_sets_only_variables_the_agent_reads() -> None:
    known = agent_config.ENV_VARS
    assert {"BROWNOUT_OPERATORS", "BROWNOUT_LISTEN"} <= known, "the option table lost variables"
    data = find(base_objects(), "ConfigMap", "brownout-agent")["data"]
    unknown = {k for k in data if k.startswith("BROWNOUT_")} - known
    assert not unknown, f"the agent reads no such variable: {unknown}"
    used = json.dumps(container(agent_daemonset()))
    for key in (k for k in data if not k.startswith("BROWNOUT_")):
        assert f"$({key})" in used or f"${{{key}}}" in used, f"{key} is never used"


def test_probes_check_the_standard_health_service_over_mutual_tls() -> None:
    ds = agent_daemonset()
    ctr = container(ds)
    tls_mount = "/etc/brownout/tls"
    for name in ("startupProbe", "readinessProbe", "livenessProbe"):
        command = ctr[name]["exec"]["command"]
        assert command[:2] == ["/bin/sh", "-c"], f"{name}: expand $POD_IP"
        words = command[2].split()
        assert words[:2] == ["exec", "grpc_health_probe"], name
        opts = dict(w.split("=", 1) if "=" in w else (w, "") for w in words[2:])
        assert opts["-addr"] == '"${POD_IP}:7070"', name
        assert "-tls" in opts, name
        for key in ("-tls-ca-cert", "-tls-client-cert", "-tls-client-key"):
            assert opts[key].startswith(tls_mount + "/"), (name, key)
        assert opts["-tls-server-name"] == '"${AGENT_TLS_SERVER_NAME}"', name
        assert ctr[name]["timeoutSeconds"] >= 5, name
    assert "-service=" + AGENT_SERVICE in ctr["readinessProbe"]["exec"]["command"][2]
    assert "-service" not in ctr["livenessProbe"]["exec"]["command"][2], "overall health"
    # The probe presents the agent's certificate as a client certificate, and
    # checks the server name that certificate carries.
    agent_cert = certificate_for("brownout-agent-tls")["spec"]
    assert {"server auth", "client auth"} <= set(agent_cert["usages"])
    assert agent_env()["AGENT_TLS_SERVER_NAME"] in agent_cert["dnsNames"]


def test_headless_service_discovers_the_agents() -> None:
    objects = base_objects()
    svc = find(objects, "Service", "brownout-agent")
    assert svc["spec"]["clusterIP"] == "None"
    pod_labels = agent_daemonset()["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    ports = {p["name"]: p["containerPort"] for p in container(agent_daemonset())["ports"]}
    for port in svc["spec"]["ports"]:
        assert port["targetPort"] in ports
        assert port["port"] == ports[port["targetPort"]]
    args = container(controller_deployment())["args"]
    assert flag(args, "--dns") == f"{svc['metadata']['name']}:{ports['grpc']}"


# ------------------------------------------------------------------ the controller


def test_controller_runs_unprivileged_on_a_read_only_root() -> None:
    dep = controller_deployment()
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"]["type"] == "Recreate", "never two controllers at once"
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] not in (None, 0)
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    sc = container(dep)["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert "privileged" not in sc
    mounts = {m["mountPath"] for m in container(dep)["volumeMounts"]}
    assert {"/tmp", env_value(container(dep), "BROWNOUT_DATA_DIR")} <= mounts


def test_controller_tls_matches_the_agents() -> None:
    ctr = container(controller_deployment())
    tls = volume_for_mount(controller_deployment(), "/etc/brownout/tls")
    assert tls["secret"]["secretName"] == "brownout-controller-tls"
    for name in ("BROWNOUT_TLS_CA", "BROWNOUT_TLS_CERT", "BROWNOUT_TLS_KEY"):
        assert env_value(ctr, name).startswith("/etc/brownout/tls/"), name
    server_name = env_value(ctr, "BROWNOUT_TLS_SERVER_NAME")
    assert server_name == agent_env()["AGENT_TLS_SERVER_NAME"]
    cert = certificate_for("brownout-controller-tls")["spec"]
    assert cert["usages"].count("client auth") == 1


def test_controller_args_and_experiments_load_with_the_controller(tmp_path: Path) -> None:
    dep = controller_deployment()
    ctr = container(dep)
    assert ctr["command"] == ["brownout"]
    ns = controller_cli.build_parser().parse_args(ctr["args"])
    assert ns.command == "serve"
    cm_name = volume_for_mount(dep, "/etc/brownout/experiments")["configMap"]["name"]
    files = find(base_objects(), "ConfigMap", cm_name)["data"]
    assert ns.experiments, "serve needs at least one experiment"
    for path in ns.experiments:
        assert path.parent == Path("/etc/brownout/experiments")
        assert path.name in files, f"{path.name} is not in ConfigMap {cm_name}"
        local = tmp_path / path.name
        local.write_text(files[path.name])
        loaded = experiment.load(local)
        assert loaded.settings.selector.text, "the shipped experiment must be opt-in"


# ------------------------------------------------------------------ metrics


@cache
def exported_series() -> dict[str, frozenset[str]]:
    """Every series name the agent and controller export, with its label names."""
    agent = Metrics()
    agent.register_live_state(
        lambda: {"cpu": 1}, lambda: {"cpu": 1}, lambda: 1, lambda: {"cpu": 0.0}
    )
    controller = ControllerMetrics()
    holders: list[tuple[object, CollectorRegistry]] = [
        (agent, agent.registry),
        (controller, controller.registry),
    ]
    series: dict[str, set[str]] = {}
    for holder, registry in holders:
        # Labelled metrics export nothing until a child exists: make one of each.
        for wrapper in vars(holder).values():
            if isinstance(wrapper, MetricWrapperBase) and wrapper._labelnames:
                wrapper.labels(*["x"] * len(wrapper._labelnames))
        for family in registry.collect():
            for sample in family.samples:
                series.setdefault(sample.name, set()).update(sample.labels)
    result = {name: frozenset(labels | TARGET_LABELS) for name, labels in series.items()}
    result.update({k: frozenset(v) for k, v in PROMETHEUS_SERIES.items()})
    return result


def test_the_metric_inventory_sees_both_programs() -> None:
    names = set(exported_series())
    assert {
        "brownout_faults_active",
        "brownout_rpc_duration_seconds_bucket",
        "brownout_fault_revert_failures_total",
        "chaos_experiments_total",
        "chaos_experiment_duration_seconds_bucket",
    } <= names
    assert "le" in exported_series()["brownout_rpc_duration_seconds_bucket"]


def query_problems(expr: str) -> tuple[set[str], list[str]]:
    """Metric names in a PromQL expression, and its references to unknown
    metrics or labels. Raises ValueError if it does not parse."""
    for var, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(var, value)
    tree = promql_parser.parse(expr)
    names: set[str] = set()
    labels: set[str] = set()

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            labels.update(m.name for m in node.matchers.matchers)
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            labels.update(node.modifier.labels)
        elif (
            isinstance(node, promql_parser.BinaryExpr)
            and node.modifier is not None
            and node.modifier.matching is not None
        ):
            labels.update(node.modifier.matching.labels)

    promql_parser.walk(tree, visit)
    series = exported_series()
    problems = [f"no such metric: {n}" for n in sorted(names - set(series))]
    known = set().union(*(series[n] for n in names if n in series))
    problems += [f"no such label: {label}" for label in sorted(labels - known - {"__name__"})]
    return names, problems


def test_the_query_checker_catches_unknown_metrics_and_labels() -> None:
    assert query_problems("sum by (kind) (brownout_faults_active)")[1] == []
    assert query_problems("brownout_fault_active")[1] == ["no such metric: brownout_fault_active"]
    assert query_problems("sum by (node) (brownout_faults_active)")[1] == ["no such label: node"]
    with pytest.raises(ValueError):
        query_problems("sum(rate(brownout_faults_total[5m])")


def dashboard_targets() -> Iterator[tuple[str, Doc]]:
    dash = json.loads(DASHBOARD.read_text())
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target


def test_dashboard_is_valid_grafana_json() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 36
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"], f"{panel['title']} has no query"
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    metric = re.fullmatch(r"label_values\((\w+), instance\)", variables["instance"]["definition"])
    assert metric and metric[1] in exported_series()


def test_every_dashboard_query_uses_exported_metrics_and_labels() -> None:
    problems = []
    for title, target in dashboard_targets():
        try:
            _names, found = query_problems(target["expr"])
        except ValueError as exc:
            found = [f"does not parse: {exc}"]
        problems += [f"{title} [{target['refId']}]: {p}" for p in found]
    assert not problems, "\n".join(problems)


def test_dashboard_covers_what_operators_watch() -> None:
    exprs = [t["expr"] for _title, t in dashboard_targets()]
    used = set().union(*(query_problems(e)[0] for e in exprs))
    assert {
        "brownout_faults_active",
        "brownout_faults_total",
        "brownout_fault_reverts_total",
        "brownout_lease_expirations_total",
        "brownout_fault_revert_failures_total",
        "brownout_faults_revert_failed",
        "chaos_experiments_total",
        "chaos_safety_aborts_total",
        "chaos_blast_radius_percentage",
    } <= used
    assert any(
        "histogram_quantile" in e and "brownout_rpc_duration_seconds_bucket" in e for e in exprs
    )


# ------------------------------------------------------------------ alerts


def alert_rules() -> list[Doc]:
    groups = load_docs(ALERTS)[0]["groups"]
    assert groups and all(g["name"] and g["rules"] for g in groups)
    return [rule for g in groups for rule in g["rules"]]


def github_anchor(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_alert_rules_parse_and_use_exported_metrics() -> None:
    problems = []
    names = [r["alert"] for r in alert_rules()]
    assert len(names) == len(set(names))
    for rule in alert_rules():
        try:
            _used, found = query_problems(rule["expr"])
        except ValueError as exc:
            found = [f"does not parse: {exc}"]
        problems += [f"{rule['alert']}: {p}" for p in found]
        if "for" in rule:
            promql_parser.parse_duration(rule["for"])
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    assert not problems, "\n".join(problems)


def test_alerts_cover_revert_failures_and_faults_outliving_leases() -> None:
    by_name = {r["alert"]: r["expr"] for r in alert_rules()}
    assert any("brownout_faults_revert_failed" in e and "> 0" in e for e in by_name.values())
    assert any(
        re.search(r"increase\(brownout_fault_revert_failures_total\[", e) for e in by_name.values()
    )
    outlived = by_name["BrownoutFaultOutlivedLease"]
    assert query_problems(outlived)[0] == {"brownout_fault_overdue_seconds"}


def test_every_alert_has_a_runbook_section() -> None:
    anchors = {github_anchor(m[1]) for m in re.finditer(r"^#+ (.+)$", OPERATIONS.read_text(), re.M)}
    for rule in alert_rules():
        runbook = rule["annotations"]["runbook"]
        path, _, anchor = runbook.partition("#")
        assert path == "docs/operations.md", rule["alert"]
        assert anchor in anchors, f"{rule['alert']}: docs/operations.md has no #{anchor}"


# ------------------------------------------------------------------ the image


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuations joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    assert not pending, "a continuation runs off the end"
    out = []
    for text in logical:
        word, _, rest = text.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def dockerfile_stages() -> list[tuple[str, list[tuple[str, str]]]]:
    """(base image with ARG defaults substituted, instructions) per stage."""
    args: dict[str, str] = {}
    stages: list[tuple[str, list[tuple[str, str]]]] = []
    for word, rest in dockerfile_instructions():
        if word == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif word == "FROM":
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], rest.split()[0])
            stages.append((image, []))
        else:
            assert stages, f"{word} before the first FROM"
            stages[-1][1].append((word, rest))
    return stages


def exec_form(rest: str) -> list[str]:
    value = json.loads(rest)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), rest
    return value


def test_dockerfile_bases_are_pinned_by_tag() -> None:
    stages = dockerfile_stages()
    for image, _ in stages:
        _name, _, tag = image.partition(":")
        assert tag and tag != "latest" and "latest" not in tag, f"unpinned base {image}"
        assert re.match(r"\d+\.\d+\.\d+-", tag), f"{image}: pin the full version"
    python_bases = {image for image, _ in stages if image.startswith("python:")}
    assert len(python_bases) == 1, "build and runtime stages must share one base"
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", python_bases.pop())
    assert "latest" not in DOCKERFILE.read_text().lower()


def test_dockerfile_installs_the_project_from_pyproject_with_constraints() -> None:
    stages = dockerfile_stages()
    build = next(ins for image, ins in stages if any(w == "COPY" for w, _ in ins))
    copied = [r.split() for w, r in build if w == "COPY"]
    assert ["pyproject.toml", "README.md", "./"] in copied
    assert any(c[0] == "packaging/constraints.txt" for c in copied)
    env = " ".join(r for w, r in build if w == "ENV")
    assert "PIP_CONSTRAINT=/src/packaging/constraints.txt" in env
    runs = [exec_form(r) for w, r in build if w == "RUN"]
    assert ["/opt/brownout/venv/bin/pip", "install", "/src"] in runs


def test_dockerfile_runtime_defaults_to_a_non_root_user() -> None:
    _image, runtime = dockerfile_stages()[-1]
    users = [r for w, r in runtime if w == "USER"]
    assert users, "the runtime stage must set USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, "a numeric non-root uid (runAsNonRoot checks it)"
    pod = controller_deployment()["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == int(uid)
    assert (
        agent_daemonset()["spec"]["template"]["spec"]["containers"][0]["securityContext"][
            "runAsUser"
        ]
        == 0
    ), "the agent overrides the image's user explicitly"
    copies = [r.split() for w, r in runtime if w == "COPY"]
    assert [
        "--from=healthprobe",
        "/go/bin/grpc-health-probe",
        "/usr/local/bin/grpc_health_probe",
    ] in (copies)


def test_dockerfile_health_probe_is_pinned() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"grpc-health-probe@v\d+\.\d+\.\d+\"", text)
    for _image, instructions in dockerfile_stages():
        for word, rest in instructions:
            if word == "RUN":
                exec_form(rest)  # no shell form: every RUN is an argv list


def test_dockerignore_sends_only_what_the_build_copies() -> None:
    lines = [
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert lines[0] == "*", "allow-list: ignore everything, then re-include"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    for _image, instructions in dockerfile_stages():
        for word, rest in instructions:
            if word != "COPY" or rest.startswith("--from="):
                continue
            for source in rest.split()[:-1]:
                path = source.rstrip("/")
                assert (ROOT / path).exists(), f"COPY {source}: no such path"
                assert path in allowed, f"COPY {source} is excluded by .dockerignore"


def test_one_version_everywhere() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert f'org.opencontainers.image.version="{version}"' in DOCKERFILE.read_text()
    k = load_docs(K8S / "kustomization.yaml")[0]
    assert k["images"][0]["newTag"] == version
    assert k["labels"][0]["pairs"]["app.kubernetes.io/version"] == version
    for workload in (agent_daemonset(), controller_deployment()):
        assert container(workload)["image"] == f"{k['images'][0]['name']}:{version}"


def test_constraints_pin_the_same_versions_as_pyproject() -> None:
    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    pins: dict[str, str] = {}
    for line in (PACKAGING / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and version, f"not an exact pin: {line}"
            pins[norm(name)] = version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for dep in project["dependencies"]:
        name, sep, version = dep.partition("==")
        assert sep, f"pyproject.toml must pin {dep}"
        assert pins.get(norm(name)) == version, f"constraints.txt disagrees on {dep}"


# ------------------------------------------------------------------ docs


def test_install_doc_lists_every_agent_variable() -> None:
    source = (ROOT / "agent" / "config.py").read_text()
    names = set(re.findall(r'_(?:env|optional_path)\("([A-Z_]+)"', source))
    doc = INSTALL_K8S.read_text()
    missing = sorted(n for n in names if f"BROWNOUT_{n}" not in doc)
    assert not missing, f"docs/install-kubernetes.md does not mention: {missing}"


def test_docs_name_the_files_they_describe() -> None:
    doc = INSTALL_K8S.read_text() + OPERATIONS.read_text()
    for path in (DOCKERFILE, DASHBOARD, ALERTS, K8S, CERT_MANAGER, PACKAGING / "constraints.txt"):
        assert str(path.relative_to(ROOT)) in doc, path
