"""The container image, read statically (never built here), one version
everywhere, pinned constraints, and the docs that describe the packaging."""

from __future__ import annotations

import json
import re
import tomllib

import pytest

from agent import config as agent_config
from brownout.version import __version__
from tests.paths import ROOT
from tests.unit.manifests import (
    ALERTS,
    CERT_MANAGER,
    DASHBOARD,
    DOCKERFILE,
    INSTALL_K8S,
    K8S,
    OPERATIONS,
    PACKAGING,
    agent_daemonset,
    container,
    controller_deployment,
    load_docs,
)

pytestmark = pytest.mark.unit


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
    version = __version__  # brownout.version: the one source (pyproject reads it)
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dynamic"] == ["version"]
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
    names = agent_config.ENV_VARS
    assert {"BROWNOUT_LISTEN", "BROWNOUT_CONFIG"} <= names, "the option table lost variables"
    doc = INSTALL_K8S.read_text()
    missing = sorted(n for n in names if n not in doc)
    assert not missing, f"docs/install-kubernetes.md does not mention: {missing}"


def test_docs_name_the_files_they_describe() -> None:
    doc = INSTALL_K8S.read_text() + OPERATIONS.read_text()
    for path in (DOCKERFILE, DASHBOARD, ALERTS, K8S, CERT_MANAGER, PACKAGING / "constraints.txt"):
        assert str(path.relative_to(ROOT)) in doc, path
