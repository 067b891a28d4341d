"""Finding a container by id in fake runtime state and cgroup trees (the pid
is this test's own, so it is alive and its start time is real)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from agent.kernel import cgroups, containers
from agent.kernel.procs.ids import start_time

pytestmark = pytest.mark.unit

ME = os.getpid()
HEX = "0123456789abcdef" * 4  # a 64-hex engine id


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(containers, "RUNC_ROOTS", (str(tmp_path / "runc"), str(tmp_path / "k8s/*")))
    monkeypatch.setattr(containers, "CRUN_ROOTS", (str(tmp_path / "crun"),))
    monkeypatch.setattr(containers, "TASK_ROOTS", (str(tmp_path / "tasks/*"),))
    monkeypatch.setattr(cgroups, "hierarchies", lambda: [])
    return tmp_path


def runc_state(root: Path, cid: str, pid: int = ME, started: int | None = None) -> None:
    d = root / cid
    d.mkdir(parents=True)
    state = {"init_process_pid": pid, "init_process_start": started or start_time(pid)}
    (d / "state.json").write_text(json.dumps(state))


def test_runc_state_under_a_containerd_namespace(roots: Path) -> None:
    runc_state(roots / "k8s" / "k8s.io", HEX)
    c = containers.by_id(HEX)
    assert (c.id, c.pid, c.start_time) == (HEX, ME, start_time(ME))
    assert c.source == f"runc state {roots / 'k8s/k8s.io' / HEX / 'state.json'}"


def test_crun_status_names_the_pid_and_its_start(roots: Path) -> None:
    d = roots / "crun" / "web-1"
    d.mkdir(parents=True)
    (d / "status").write_text(json.dumps({"pid": ME, "process-start-time": start_time(ME)}))
    assert containers.by_id("web-1").source.startswith("crun state ")


def test_a_containerd_task_names_its_init(roots: Path) -> None:
    d = roots / "tasks" / "moby" / HEX
    d.mkdir(parents=True)
    (d / "init.pid").write_text(f"{ME}\n")
    assert containers.by_id(HEX[:12]).source.startswith("containerd task ")


def test_a_recycled_pid_is_not_the_container(roots: Path) -> None:
    runc_state(roots / "runc", "web-1", started=start_time(ME) - 1)  # type: ignore[operator]
    with pytest.raises(ValueError, match="no running container 'web-1'"):
        containers.by_id("web-1")


def test_prefixes_must_be_long_and_unique(roots: Path) -> None:
    runc_state(roots / "runc", HEX)
    runc_state(roots / "runc", HEX[:20] + "f" * 44)
    assert containers.by_id(HEX).id == HEX
    with pytest.raises(ValueError, match="more than one"):
        containers.by_id(HEX[:12])
    with pytest.raises(ValueError, match="no running container"):
        containers.by_id(HEX[:11])


@pytest.mark.parametrize("bad", ["", "-x", "a b", "x/y", "../etc", "a" * 129])
def test_ids_are_checked(bad: str) -> None:
    with pytest.raises(ValueError, match="not a container id"):
        containers.by_id(bad)


@pytest.mark.parametrize(
    ("path", "wanted", "how"),
    [
        (f"system.slice/docker-{HEX}.scope", HEX, "Docker, systemd driver"),
        (f"kubepods.slice/kubepods-pod1.slice/cri-containerd-{HEX}.scope", HEX[:12],
         "containerd, systemd driver"),
        (f"kubepods.slice/crio-{HEX}.scope", HEX, "CRI-O, systemd driver"),
        (f"kubepods/burstable/pod42/{HEX}", HEX, "cgroupfs driver"),
        (f"docker/{HEX}", HEX[:16], "cgroupfs driver"),
        (f"kubepods/pod42/crio-{HEX}", HEX, "CRI-O, cgroupfs driver"),
    ],
)  # fmt: skip
def test_cgroup_layouts_of_the_engines(
    roots: Path, monkeypatch: pytest.MonkeyPatch, path: str, wanted: str, how: str
) -> None:
    mount = roots / "cgroup" / "pids"
    (mount / path).mkdir(parents=True)
    (mount / path / "cgroup.procs").write_text(f"{ME}\n")
    hierarchy = cgroups.Hierarchy(mount, "/", 1, frozenset({"pids"}))
    monkeypatch.setattr(cgroups, "hierarchies", lambda: [hierarchy])
    c = containers.by_id(wanted)
    assert (c.id, c.pid) == (HEX, ME)
    assert c.source == f"cgroup {mount / path} ({how})"


def test_a_plain_cgroup_is_never_taken_for_a_container(
    roots: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mount = roots / "cgroup" / "pids"
    (mount / "user.slice").mkdir(parents=True)
    (mount / "user.slice" / "cgroup.procs").write_text(f"{ME}\n")
    hierarchy = cgroups.Hierarchy(mount, "/", 1, frozenset({"pids"}))
    monkeypatch.setattr(cgroups, "hierarchies", lambda: [hierarchy])
    with pytest.raises(ValueError, match="no running container"):
        containers.by_id("user.slice")
