"""cgroup layer: the only code that reads or writes cgroupfs.

Works on cgroup v1, v2 and the hybrid layout (v1 controllers plus a v2
hierarchy at /sys/fs/cgroup/unified). A *placement* is the set of cgroups a
process is in, one per mounted hierarchy: a pid's own placement comes from
/proc/PID/cgroup; a cgroup path is looked up in every hierarchy. Workers join
every cgroup of the placement, so they are accounted like the target's
processes (CPU quota, memory charge, blkio, cpuset).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from agent.kernel import mountinfo

V1_CONTROLLERS = frozenset(
    {
        "blkio",
        "cpu",
        "cpuacct",
        "cpuset",
        "devices",
        "freezer",
        "hugetlb",
        "memory",
        "misc",
        "net_cls",
        "net_prio",
        "perf_event",
        "pids",
        "rdma",
    }
)
# v1 reports "unlimited" memory as PAGE_COUNTER_MAX pages: anything this big is no limit.
_UNLIMITED = 1 << 60


@dataclass(frozen=True)
class Hierarchy:
    mount: Path
    root: str  # the cgroup path mounted at `mount` ("/" outside a cgroup namespace)
    version: int
    controllers: frozenset[str]  # v1 only (including "name=..."); v2 ones are per cgroup

    def dir_of(self, cgpath: str) -> Path | None:
        """The directory of cgroup `cgpath`, or None if this mount does not show it."""
        path, root = PurePosixPath(cgpath), PurePosixPath(self.root)
        if path != root and root not in path.parents:
            return None
        return self.mount.joinpath(*path.relative_to(root).parts)


@dataclass(frozen=True)
class Cgroup:
    hierarchy: Hierarchy
    dir: Path

    def __str__(self) -> str:
        return str(self.dir)

    @property
    def is_root(self) -> bool:
        return self.dir == self.hierarchy.mount

    def has(self, controller: str) -> bool:
        if self.hierarchy.version == 1:
            return controller in self.hierarchy.controllers
        try:
            return controller in _read(self.dir / "cgroup.controllers").split()
        except OSError:
            return False

    def ancestors(self) -> list[Path]:
        """This cgroup's directory and its parents, up to the hierarchy's mount."""
        dirs = [self.dir]
        while dirs[-1] != self.hierarchy.mount and self.hierarchy.mount in dirs[-1].parents:
            dirs.append(dirs[-1].parent)
        return dirs


Placement = tuple[Cgroup, ...]


def _read(path: Path) -> str:
    return path.read_text().strip()


def hierarchies(entries: list[mountinfo.MountEntry] | None = None) -> list[Hierarchy]:
    """Every mounted cgroup hierarchy, each once (bind mounts of one are skipped)."""
    found: list[Hierarchy] = []
    seen: set[tuple[int, frozenset[str]]] = set()
    for e in mountinfo.read() if entries is None else entries:
        key: tuple[int, frozenset[str]]
        if e.fstype == "cgroup2":
            key, h = (2, frozenset()), Hierarchy(e.mount_point, e.root, 2, frozenset())
        elif e.fstype == "cgroup":
            ctrls = frozenset(
                o for o in e.super_options if o in V1_CONTROLLERS or o.startswith("name=")
            )
            key, h = (1, ctrls), Hierarchy(e.mount_point, e.root, 1, ctrls)
        else:
            continue
        if key not in seen:
            seen.add(key)
            found.append(h)
    return found


def parse_proc_cgroup(text: str, hier: list[Hierarchy]) -> Placement:
    """The placement described by /proc/PID/cgroup (`id:controllers:path` lines)."""
    cgroups: list[Cgroup] = []
    for line in text.splitlines():
        hid, _, rest = line.partition(":")
        ctrl_field, _, cgpath = rest.partition(":")
        if not hid:
            continue
        ctrls = frozenset(filter(None, ctrl_field.split(",")))
        for h in hier:
            match = (h.version == 2 and hid == "0" and not ctrls) or (
                h.version == 1 and ctrls and h.controllers == ctrls
            )
            d = h.dir_of(cgpath) if match else None
            if d is not None:
                cgroups.append(Cgroup(h, d))
    return tuple(cgroups)


def of_pid(pid: int, hier: list[Hierarchy] | None = None) -> Placement:
    """The cgroups of a process. Raises ProcessLookupError if there is no such process."""
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except (FileNotFoundError, ProcessLookupError):
        raise ProcessLookupError(pid) from None
    return parse_proc_cgroup(text, hierarchies() if hier is None else hier)


def find(path: str, hier: list[Hierarchy] | None = None) -> Placement:
    """The cgroups named by `path`: either a directory under a cgroup mount
    (e.g. /sys/fs/cgroup/memory/app) or a cgroup path (/app or app), looked up in
    every hierarchy. Raises ValueError saying why nothing matched."""
    hier = hierarchies() if hier is None else hier
    if not hier:
        raise ValueError("no cgroup filesystem is mounted on this node")
    if "\0" in path or ".." in PurePosixPath(path).parts:
        raise ValueError(f"{path!r} must not contain '..' or NUL")
    cgpath = "/" + path.strip("/")
    for h in hier:
        if path.startswith(str(h.mount) + "/") or path.rstrip("/") == str(h.mount):
            # A directory under this mount: the same cgroup path in every hierarchy.
            rel = PurePosixPath(path).relative_to(h.mount)
            cgpath = str(PurePosixPath(h.root) / rel)
            break
    # os.path.isdir: any OSError (e.g. a name too long) just means "not there".
    found = tuple(
        Cgroup(h, d) for h in hier if (d := h.dir_of(cgpath)) is not None and os.path.isdir(d)
    )
    if not found:
        mounts = ", ".join(str(h.mount) for h in hier)
        raise ValueError(f"no cgroup {cgpath} in any cgroup hierarchy ({mounts})")
    return found


def with_controller(placement: Placement, controller: str) -> list[Cgroup]:
    return [cg for cg in placement if cg.has(controller)]


def attach_problem(placement: Placement) -> str | None:
    """Why a process could not join this placement, or None."""
    for cg in placement:
        if cg.hierarchy.version != 2 or cg.is_root:
            continue
        try:
            subtree = _read(cg.dir / "cgroup.subtree_control")
        except OSError:
            continue
        if subtree:
            # cgroup v2's no-internal-process rule: processes live in leaves.
            return (
                f"{cg.dir} enables controllers for its children ({subtree});"
                " cgroup v2 allows processes only in leaf cgroups: target a leaf"
            )
    return None


def attach(pid: int, placement: Placement) -> None:
    """Move pid (and its threads) into every cgroup of the placement."""
    for cg in placement:
        fd = os.open(cg.dir / "cgroup.procs", os.O_WRONLY)
        try:
            os.write(fd, f"{pid}\n".encode())
        except OSError as exc:
            raise OSError(
                exc.errno, f"cannot move pid {pid} into {cg.dir}: {exc.strerror}"
            ) from exc
        finally:
            os.close(fd)


def _cpu_limit(d: Path, version: int) -> float | None:
    """CPUs granted by one cgroup's own quota, or None without one."""
    try:
        if version == 1:
            quota = int(_read(d / "cpu.cfs_quota_us"))
            period = int(_read(d / "cpu.cfs_period_us"))
        else:
            q, _, p = _read(d / "cpu.max").partition(" ")
            if q == "max":
                return None
            quota, period = int(q), int(p or "100000")
    except (OSError, ValueError):
        return None
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def cpu_quota(placement: Placement) -> float | None:
    """The CPUs this placement may use under its quota (the tightest of the
    cgroup and its ancestors), or None when nothing limits it."""
    limits = [
        limit
        for cg in with_controller(placement, "cpu")
        for d in cg.ancestors()
        if (limit := _cpu_limit(d, cg.hierarchy.version)) is not None
    ]
    return min(limits, default=None)


def _memory_limit(d: Path, version: int) -> int | None:
    try:
        text = _read(d / ("memory.limit_in_bytes" if version == 1 else "memory.max"))
        value = int(text)
    except (OSError, ValueError):
        return None  # includes v2's "max"
    return value if value < _UNLIMITED else None


def memory_limit(placement: Placement) -> int | None:
    limits = [
        limit
        for cg in with_controller(placement, "memory")
        for d in cg.ancestors()
        if (limit := _memory_limit(d, cg.hierarchy.version)) is not None
    ]
    return min(limits, default=None)


def memory_usage(placement: Placement) -> int | None:
    for cg in with_controller(placement, "memory"):
        name = "memory.usage_in_bytes" if cg.hierarchy.version == 1 else "memory.current"
        try:
            return int(_read(cg.dir / name))
        except (OSError, ValueError):
            continue
    return None


def parse_cpu_list(text: str) -> frozenset[int]:
    """'0-3,5' -> {0, 1, 2, 3, 5}"""
    cpus: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        first, sep, last = part.partition("-")
        cpus.update(range(int(first), int(last) + 1) if sep else (int(first),))
    return frozenset(cpus)


def effective_cpus(placement: Placement) -> frozenset[int] | None:
    """The CPUs the placement's cpuset allows, or None without a cpuset."""
    for cg in with_controller(placement, "cpuset"):
        name = "cpuset.effective_cpus" if cg.hierarchy.version == 1 else "cpuset.cpus.effective"
        try:
            return parse_cpu_list(_read(cg.dir / name))
        except (OSError, ValueError):
            continue
    return None


def describe(placement: Placement) -> str:
    return ",".join(str(cg) for cg in placement)


@dataclass(frozen=True)
class OomCount:
    """An oom_kill counter: a memory cgroup's, or the kernel's (/proc/vmstat)."""

    where: str
    file: Path
    count: int


def _oom_kills(file: Path) -> int | None:
    """The `oom_kill N` line of memory.events (v2), memory.oom_control (v1) or vmstat."""
    try:
        text = file.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill" and value.strip().isdigit():
            return int(value)
    return None


def oom_count(pid: int) -> OomCount | None:
    """The OOM kill counter that rises when pid's memory cgroup kills a process,
    or the kernel-wide one; None if neither can be read (or pid is gone)."""
    try:
        placement = of_pid(pid)
    except ProcessLookupError:
        return None
    for cg in with_controller(placement, "memory"):
        if cg.is_root:
            continue
        file = cg.dir / ("memory.oom_control" if cg.hierarchy.version == 1 else "memory.events")
        count = _oom_kills(file)
        if count is not None:
            return OomCount(f"memory cgroup {cg.dir}", file, count)
    vmstat = Path("/proc/vmstat")
    count = _oom_kills(vmstat)
    return None if count is None else OomCount("the kernel (/proc/vmstat)", vmstat, count)


def oom_count_again(before: OomCount) -> int | None:
    return _oom_kills(before.file)
