"""The Kubernetes packaging, checked offline: YAML lint, the Kubernetes JSON
schemas (kubernetes-validate), the kustomize base (rendered with `kubectl
kustomize` when kubectl is installed, else by a small renderer of the
features it uses), the agent DaemonSet and the controller Deployment read
back by the programs themselves."""

from __future__ import annotations

import copy
import shutil
import subprocess
from functools import cache
from pathlib import Path

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from yamllint import linter  # type: ignore[import-untyped]
from yamllint.config import YamlLintConfig  # type: ignore[import-untyped]

from tests.paths import ROOT
from tests.unit.manifests import (
    CERT_MANAGER,
    CLUSTER_SCOPED,
    K8S,
    OLDEST_KUBERNETES,
    PACKAGING,
    Doc,
    agent_daemonset,
    base_objects,
    certificates,
    container,
    find,
    load_docs,
    manifest_files,
)

pytestmark = pytest.mark.unit


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
