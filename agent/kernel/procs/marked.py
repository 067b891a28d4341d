"""Finding and killing this agent's processes by their markers: a fault's
workers, every worker of a module, and fork servers a dead agent left."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from collections.abc import Iterator
from typing import Any, Protocol

from agent.kernel.procs.ids import (
    FAULT_FLAG,
    INSTANCE_FLAG,
    ZYGOTE_FLAG,
    MarkedProc,
    ProcRef,
    alive,
    start_time,
)


class Reaper(Protocol):
    """The spawner, which watches and reaps the workers it started."""

    def expect_exit(self, ref: ProcRef) -> None: ...

    def reap(self, pid: int) -> None: ...

    def started_for(self, fault_id: str, module: str) -> list[ProcRef] | None: ...

    def forget(self, fault_id: str, module: str) -> None: ...


def kill(ref: ProcRef, spawner: Reaper | None = None, timeout: float = 5.0) -> bool:
    """SIGKILL ref if it is still the same process and wait until it is gone.

    Returns True once it is gone (or was already). Idempotent. The signal goes
    through a pidfd opened before the identity check, so a pid recycled in
    between is never signalled, and the exit is waited for in poll(2).
    """
    deadline = time.monotonic() + timeout
    if spawner is not None:
        spawner.expect_exit(ref)
    try:
        pidfd = os.pidfd_open(ref.pid)
    except ProcessLookupError:
        pidfd = -1
    try:
        if pidfd >= 0 and alive(ref):
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            poller.poll(max(0.0, deadline - time.monotonic()) * 1e3)
    finally:
        if pidfd >= 0:
            os.close(pidfd)
    if spawner is not None:
        spawner.reap(ref.pid)
    # The pidfd is readable a moment before /proc calls the process a zombie.
    while alive(ref):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.0005)
    return True


def _marked(instance: str) -> Iterator[tuple[int, list[bytes]]]:
    """(pid, argv) of every process carrying this agent instance's marker."""
    want = f"{INSTANCE_FLAG}{instance}".encode()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fd = os.open(f"/proc/{entry.name}/cmdline", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            data = os.read(fd, 1 << 20)
        except OSError:
            continue
        finally:
            os.close(fd)
        # Checked as bytes first: this runs over every process on the host.
        if want in data:
            # Forked workers pad their argv with NULs.
            args = data.rstrip(b"\0").split(b"\0")
            if want in args:
                yield int(entry.name), args


def find_marked(
    instance: str, fault_id: str | None = None, module: str | None = None
) -> list[MarkedProc]:
    """Workers carrying this agent instance's markers (optionally one fault's
    or one worker module's). The fork server is not one (see find_zygotes)."""
    found: list[MarkedProc] = []
    for pid, args in _marked(instance):
        if ZYGOTE_FLAG in args or (module is not None and module.encode() not in args):
            continue
        fid = next(
            (a[len(FAULT_FLAG) :].decode() for a in args if a.startswith(FAULT_FLAG.encode())), ""
        )
        if fault_id is not None and fid != fault_id:
            continue
        st = start_time(pid)
        if st is not None:
            found.append(MarkedProc(pid, st, fid))
    return found


def find_zygotes(instance: str) -> list[ProcRef]:
    """This instance's fork servers, and children forked but not yet renamed."""
    found = []
    for pid, args in _marked(instance):
        st = start_time(pid)
        if ZYGOTE_FLAG in args and st is not None:
            found.append(ProcRef(pid, st))
    return found


def sweep_zygotes(instance: str) -> list[str]:
    """Kill fork servers of this instance: none may outlive their agent, whose
    state-dir lock says it is gone (or is the caller, before starting its own)."""
    return [f"fork server pid {ref.pid}" for ref in find_zygotes(instance) if kill(ref)]


def kill_fault_workers(
    instance: str,
    fault_id: str,
    module: str,
    recorded: list[dict[str, Any]],
    spawner: Reaper | None,
    what: str,
) -> None:
    """Kill a fault's workers: those its undo record names, plus any started but
    not yet checkpointed. The spawner knows those it started; those of a dead
    agent are found by marker, a search of every process on the host. Idempotent."""
    refs = {ProcRef(int(w["pid"]), int(w["start_time"])) for w in recorded}
    known = spawner.started_for(fault_id, module) if spawner is not None else None
    if known is None:
        refs.update(ProcRef(m.pid, m.start_time) for m in find_marked(instance, fault_id, module))
    else:
        refs.update(known)
    stuck = [ref.pid for ref in sorted(refs, key=lambda r: r.pid) if not kill(ref, spawner)]
    if stuck:
        raise OSError(f"{what} still running after SIGKILL: {stuck}")
    if spawner is not None:
        spawner.forget(fault_id, module)


def sweep_workers(instance: str, module: str, spawner: Reaper | None, what: str) -> list[str]:
    """Kill every worker of this module bearing this agent instance's markers."""
    swept = []
    for m in find_marked(instance, module=module):
        if m.fault_id and kill(ProcRef(m.pid, m.start_time), spawner):
            swept.append(f"{what} pid {m.pid} of fault {m.fault_id}")
    return swept
