"""The packaging's files and how tests read them: the Kubernetes manifests
(each parsed once), the objects of the kustomize base, and the containers and
volumes inside them. Shared by the test_packaging_* modules."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from brownout.v1 import agent_pb2
from tests.paths import ROOT

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
