"""Containers by id: the process that stands for one (its init), found from the
OCI runtime's state, or else from the cgroup layouts container engines use.

In order:
1. runc state (`<root>/<id>/state.json`: init_process_pid and its start
   time) under runc's own root and the roots containerd and Docker give it;
2. crun state (`<root>/<id>/status`: pid and process-start-time);
3. a containerd shim's task directory (`init.pid`);
4. a cgroup named for the id in any hierarchy: `<id>` when it is a 64-hex
   engine id (cgroupfs driver: /docker/<id>, /kubepods/<qos>/pod<uid>/<id>),
   or `<engine>-<id>.scope`
   (systemd driver: docker-, cri-containerd-, crio-, libpod-); its oldest
   process stands for it.

An id may be given in full or as a unique prefix of at least 12 characters
(as `docker ps` shows them). What matched is reported, so a person can see
which layout was read.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from agent.kernel import cgroups
from agent.kernel.procs.ids import start_time

ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")
ENGINE_ID = re.compile(r"^[0-9a-f]{64}$")  # what Docker, containerd and CRI-O generate
MIN_PREFIX = 12
RUNC_ROOTS = ("/run/runc", "/run/containerd/runc/*", "/run/docker/runtime-runc/*")
CRUN_ROOTS = ("/run/crun", "/run/containerd/crun/*")
TASK_ROOTS = ("/run/containerd/io.containerd.runtime.v2.task/*",)
SCOPES = {
    "docker-": "Docker",
    "cri-containerd-": "containerd",
    "crio-": "CRI-O",
    "libpod-": "Podman",
}
MAX_DEPTH = 7  # /kubepods.slice/kubepods-burstable.slice/kubepods-...-pod.slice/X.scope


@dataclass(frozen=True)
class Container:
    id: str
    pid: int
    start_time: int
    source: str  # what matched, for people: "runc state /run/runc/x/state.json"

    @property
    def label(self) -> str:
        return f"container {self.id} (pid {self.pid}, from {self.source})"


def _roots(patterns: tuple[str, ...]) -> Iterator[Path]:
    """The state roots that exist; a trailing /* stands for each namespace dir."""
    for pattern in patterns:
        if pattern.endswith("/*"):
            try:
                yield from sorted(p for p in Path(pattern[:-2]).iterdir() if p.is_dir())
            except OSError:
                continue
        elif Path(pattern).is_dir():
            yield Path(pattern)


def _entry(root: Path, wanted: str) -> Path | None:
    """root/<wanted>, or the one entry that wanted prefixes (MIN_PREFIX or longer)."""
    exact = root / wanted
    if exact.is_dir():
        return exact
    if len(wanted) < MIN_PREFIX:
        return None
    try:
        found = [p for p in root.iterdir() if p.name.startswith(wanted) and p.is_dir()]
    except OSError:
        return None
    if len(found) > 1:
        raise ValueError(f"{wanted!r} is the prefix of more than one container in {root}")
    return found[0] if found else None


def _alive(pid: int, started: int | None) -> int | None:
    """pid's start time if it runs and (when known) started when recorded."""
    now = start_time(pid) if pid > 0 else None
    if now is None or (started is not None and now != started):
        return None
    return now


def _runc(d: Path) -> tuple[int, int | None]:
    state = json.loads((d / "state.json").read_text())
    return int(state["init_process_pid"]), int(state["init_process_start"])


def _crun(d: Path) -> tuple[int, int | None]:
    status = json.loads((d / "status").read_text())
    started = status.get("process-start-time")
    return int(status["pid"]), None if started is None else int(started)


def _task(d: Path) -> tuple[int, int | None]:
    return int((d / "init.pid").read_text().strip()), None


# Where each runtime keeps a container's state: roots, the file read, its reader.
STATES = (
    (lambda: RUNC_ROOTS, "runc state", "state.json", _runc),
    (lambda: CRUN_ROOTS, "crun state", "status", _crun),
    (lambda: TASK_ROOTS, "containerd task", "init.pid", _task),
)


def _from_state(wanted: str) -> Container | None:
    for roots, what, name, read in STATES:
        for root in _roots(roots()):
            d = _entry(root, wanted)
            if d is None:
                continue
            try:
                pid, started = read(d)
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if (st := _alive(pid, started)) is not None:
                return Container(d.name, pid, st, f"{what} {d / name}")
    return None


def _scope_id(name: str) -> tuple[str, str] | None:
    """(container id, how) of a cgroup directory name an engine made, or None:
    `<engine>-<id>.scope` (systemd driver) or `<engine>-<64 hex>` (cgroupfs,
    as CRI-O names them)."""
    for prefix, engine in SCOPES.items():
        if not name.startswith(prefix):
            continue
        rest = name[len(prefix) :]
        if rest.endswith(".scope"):
            return rest[: -len(".scope")], f"{engine}, systemd driver"
        if ENGINE_ID.match(rest):
            return rest, f"{engine}, cgroupfs driver"
    return None


def _walk(top: Path, depth: int = 0) -> Iterator[Path]:
    try:
        entries = list(os.scandir(top))
    except OSError:
        return
    for e in entries:
        if e.is_dir(follow_symlinks=False):
            yield Path(e.path)
            if depth < MAX_DEPTH:
                yield from _walk(Path(e.path), depth + 1)


def _from_cgroups(wanted: str) -> Container | None:
    hier = cgroups.hierarchies()
    # One hierarchy is enough: a container's cgroup is named alike in each.
    pick = [h for h in hier if h.version == 1 and "pids" in h.controllers]
    pick += [h for h in hier if h.version == 2] + [h for h in hier if h.version == 1]
    for h in pick[:1]:
        matches = []
        for d in _walk(h.mount):
            scoped = _scope_id(d.name)
            if scoped is None and not ENGINE_ID.match(d.name):
                continue  # a plain cgroup (user.slice, an app's) is never taken for one
            cid, how = scoped if scoped else (d.name, "cgroupfs driver")
            if cid == wanted or (len(wanted) >= MIN_PREFIX and cid.startswith(wanted)):
                matches.append((d, cid, how))
        if len({cid for _, cid, _ in matches}) > 1:
            raise ValueError(f"{wanted!r} names more than one cgroup in {h.mount}")
        for d, cid, how in matches:
            oldest = _oldest(d)
            if oldest is not None:
                return Container(cid, *oldest, f"cgroup {d} ({how})")
    return None


def _oldest(d: Path) -> tuple[int, int] | None:
    """The earliest-started process of a cgroup (its init, for a container)."""
    try:
        pids = [int(p) for p in (d / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return None
    started = [(st, pid) for pid in pids if (st := start_time(pid)) is not None]
    if not started:
        return None
    st, pid = min(started)
    return pid, st


def by_id(wanted: str) -> Container:
    """The running container with this id (or unique prefix); ValueError saying
    why there is none."""
    if not ID.match(wanted):
        raise ValueError(f"{wanted!r} is not a container id ([A-Za-z0-9][A-Za-z0-9_.+-]*)")
    found = _from_state(wanted) or _from_cgroups(wanted)
    if found is None:
        raise ValueError(
            f"no running container {wanted!r} on this node (looked in runc and crun state,"
            " containerd tasks, and the Docker, containerd, CRI-O and Podman cgroup layouts)"
        )
    return found
