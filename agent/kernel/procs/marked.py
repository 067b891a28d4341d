"""Finding and killing this agent's processes by their markers: a fault's
workers, every worker of a module, and fork servers a dead agent left."""

from __future__ import annotations

import contextlib
import os
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


def kill(ref: ProcRef, spawner: Reaper | None = None, timeout: float = 5.0) -> bool:
    """SIGKILL ref if it is still the same process and wait until it is gone.

    Returns True once it is gone (or was already). Idempotent.
    """
    if spawner is not None:
        spawner.expect_exit(ref)
    if not alive(ref):
        if spawner is not None:
            spawner.reap(ref.pid)
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(ref.pid, signal.SIGKILL)
    if spawner is not None:
        spawner.reap(ref.pid)
    deadline = time.monotonic() + timeout
    while alive(ref):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
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
    not yet checkpointed when the agent died (found by marker). Idempotent."""
    refs = [ProcRef(int(w["pid"]), int(w["start_time"])) for w in recorded]
    refs += [ProcRef(m.pid, m.start_time) for m in find_marked(instance, fault_id, module)]
    stuck = [ref.pid for ref in refs if not kill(ref, spawner)]
    if stuck:
        raise OSError(f"{what} still running after SIGKILL: {stuck}")


def sweep_workers(instance: str, module: str, spawner: Reaper | None, what: str) -> list[str]:
    """Kill every worker of this module bearing this agent instance's markers."""
    swept = []
    for m in find_marked(instance, module=module):
        if m.fault_id and kill(ProcRef(m.pid, m.start_time), spawner):
            swept.append(f"{what} pid {m.pid} of fault {m.fault_id}")
    return swept
