"""The process table, read from /proc: who runs, as whom, under which parent
and with which kernel flags, and signals that reach only the process that was
read (a pidfd, checked against the start time, never a bare pid)."""

from __future__ import annotations

import os
import pwd
import signal
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from agent.kernel.procs.ids import ProcRef, start_time

SIGKILL = int(signal.SIGKILL)
SIGSTOP = int(signal.SIGSTOP)
SIGCONT = int(signal.SIGCONT)

# include/linux/sched.h: the task is a kernel thread.
PF_KTHREAD = 0x00200000
KTHREADD = 2


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    start_time: int  # clock ticks since boot, as in /proc/PID/stat
    state: str  # R, S, D, T (stopped), t, Z, ...
    flags: int
    comm: str
    cmdline: tuple[str, ...]
    uid: int

    @property
    def ref(self) -> ProcRef:
        return ProcRef(self.pid, self.start_time)

    @property
    def kernel_thread(self) -> bool:
        return bool(self.flags & PF_KTHREAD) or KTHREADD in (self.pid, self.ppid)

    @property
    def stopped(self) -> bool:
        return self.state in ("T", "t")

    @property
    def command(self) -> str:
        """The command line as ps shows it; a kernel thread's as [comm]."""
        return " ".join(self.cmdline) if self.cmdline else f"[{self.comm}]"


def read(pid: int) -> ProcInfo | None:
    """The process pid, or None if it is gone or a zombie."""
    base = Path(f"/proc/{pid}")
    try:
        stat = (base / "stat").read_text()
        raw = (base / "cmdline").read_bytes()
        uid = base.stat().st_uid
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm may hold spaces and parentheses: it ends at the last ')'.
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    cmdline = tuple(a.decode(errors="replace") for a in raw.split(b"\0") if a)
    return ProcInfo(
        pid=pid,
        ppid=int(fields[1]),
        start_time=int(fields[19]),
        state=fields[0],
        flags=int(fields[6]),
        comm=comm,
        cmdline=cmdline,
        uid=uid,
    )


def scan(pids: Iterable[int] | None = None) -> Iterator[ProcInfo]:
    """Every live process (not thread) on the host, or of `pids`; those that
    end while being read are left out."""
    if pids is None:
        pids = (int(e) for e in os.listdir("/proc") if e.isdigit())
    for pid in pids:
        info = read(pid)
        if info is not None:
            yield info


def ancestors(pid: int) -> list[int]:
    """pid's parent, its parent, ... up to init (pid 1), nearest first."""
    out: list[int] = []
    info = read(pid)
    while info is not None and info.ppid > 0 and info.ppid not in out:
        out.append(info.ppid)
        info = read(info.ppid)
    return out


def descendants(pids: Iterable[int], table: Iterable[ProcInfo]) -> list[ProcInfo]:
    """Every process below `pids` in `table`, parents before their children."""
    children: dict[int, list[ProcInfo]] = {}
    for p in table:
        children.setdefault(p.ppid, []).append(p)
    out: list[ProcInfo] = []
    todo = list(pids)
    seen = set(todo)
    while todo:
        for child in children.get(todo.pop(0), []):
            if child.pid not in seen:
                seen.add(child.pid)
                out.append(child)
                todo.append(child.pid)
    return out


def cgroup_pids(directory: Path) -> list[int]:
    """The processes of a cgroup and of every cgroup below it (cgroup.procs
    lists direct members only); [] when it is gone."""
    pids: list[int] = []
    for root, _dirs, _files in os.walk(directory):
        try:
            text = Path(root, "cgroup.procs").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        pids += [int(line) for line in text.split()]
    return pids


def send(ref: ProcRef, signum: int) -> bool:
    """Send signum to the process ref names, and only to it: through a pidfd,
    after checking that the pid still has ref's start time. False when that
    process is gone (the pid may since belong to another)."""
    try:
        fd = os.pidfd_open(ref.pid)
    except ProcessLookupError:
        return False
    try:
        # The pidfd pins the process: if the start time matches now, the
        # signal below cannot reach a successor that reused the pid.
        if start_time(ref.pid) != ref.start_time:
            return False
        signal.pidfd_send_signal(fd, signum)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)


def uid_of(user: str) -> int | None:
    """The uid of a user name (through NSS, as ps resolves it), None if unknown."""
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None


def signal_problem(signum: int) -> str:
    """Why signum is not a signal on this node ("" when it is)."""
    return "" if signum in signal.valid_signals() else f"{signum} is not a signal on this node"


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def pidfd_supported() -> str:
    """Why signals by pidfd cannot be sent here ("" when they can)."""
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError as exc:
        return f"pidfd_open unavailable: {exc.strerror}"
    return ""
