"""The agent DaemonSet and the controller Deployment, read back by the
programs themselves: privileges, mounts, resources, args and ConfigMaps that
the agent's and the controller's own parsers accept, probes and TLS."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from agent import cli as agent_cli
from agent import config as agent_config
from controller.cli import main as controller_cli
from controller.experiments import parse as experiment
from tests.unit.manifests import (
    AGENT_SERVICE,
    agent_daemonset,
    base_objects,
    certificate_for,
    container,
    controller_deployment,
    env_value,
    expand,
    find,
    flag,
    volume_for_mount,
)

pytestmark = pytest.mark.unit


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
