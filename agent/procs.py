"""Process layer: the only code that starts, finds or kills processes.

Workers are started from argv lists (never a shell) by one long-lived
spawner thread: PR_SET_PDEATHSIG fires when the *thread* that forked the
child exits, so forking from short-lived RPC threads would kill workers
early. Processes are identified by pid plus kernel start time, so a recycled
pid is never killed by mistake.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PR_SET_PDEATHSIG = 1
INSTANCE_FLAG = "--brownout-instance="
FAULT_FLAG = "--brownout-fault="


class SpawnError(OSError):
    pass


@dataclass(frozen=True)
class ProcRef:
    pid: int
    start_time: int


@dataclass(frozen=True)
class MarkedProc:
    pid: int
    start_time: int
    fault_id: str


def set_pdeathsig(sig: int = signal.SIGKILL) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def start_time(pid: int) -> int | None:
    """Kernel start time of pid in clock ticks, or None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def alive(ref: ProcRef) -> bool:
    return start_time(ref.pid) == ref.start_time


def marker_args(instance: str, fault_id: str) -> list[str]:
    return [f"{INSTANCE_FLAG}{instance}", f"{FAULT_FLAG}{fault_id}"]


def worker_argv(module: str, args: list[str], instance: str, fault_id: str) -> list[str]:
    """argv for a worker module run by this interpreter, tagged with markers."""
    parent = ["--parent-pid", str(os.getpid())]
    return [sys.executable, "-m", module, *args, *parent, *marker_args(instance, fault_id)]


class Spawner:
    """Starts worker processes from a single thread that lives as long as the agent."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spawner")
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def spawn(
        self,
        argv: list[str],
        ready_timeout: float = 10.0,
        before_go: Callable[[int], None] | None = None,
    ) -> ProcRef:
        """Start a worker and wait for its "ready"; run before_go(pid) (e.g. move
        it into a cgroup), tell it "go" and wait for "running". Workers do their
        work only after "go", so none of it happens outside the placement."""
        return self._pool.submit(self._spawn, argv, ready_timeout, before_go).result()

    def _spawn(
        self, argv: list[str], ready_timeout: float, before_go: Callable[[int], None] | None
    ) -> ProcRef:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            close_fds=True,
            start_new_session=True,
            cwd="/",
        )
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        try:
            line = _read_line(proc.stdout.fileno(), ready_timeout)
            if line != b"ready":
                proc.kill()
                proc.wait()
                err = proc.stderr.read().decode(errors="replace").strip()
                raise SpawnError(
                    errno.ECHILD, f"worker {argv[2]} did not start: {err or line.decode()}"
                )
            try:
                if before_go is not None:
                    before_go(proc.pid)
                proc.stdin.write(b"go\n")
                proc.stdin.flush()
                # Setup that must happen inside the placement (affinity, files)
                # is done after "go"; "running" says it worked.
                line = _read_line(proc.stdout.fileno(), ready_timeout)
                if line != b"running":
                    proc.kill()
                    proc.wait()
                    # The last line of a traceback is the error itself.
                    lines = proc.stderr.read().decode(errors="replace").strip().splitlines()
                    why = lines[-1] if lines else line.decode()
                    raise SpawnError(errno.ECHILD, f"worker {argv[2]} failed to start: {why}")
            except BaseException:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                raise
        finally:
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                with contextlib.suppress(OSError):
                    pipe.close()
        st = start_time(proc.pid)
        if st is None:
            proc.wait()
            raise SpawnError(errno.ESRCH, f"worker {argv[2]} exited right after starting")
        self._children[proc.pid] = proc
        return ProcRef(proc.pid, st)

    def reap(self, pid: int) -> None:
        """Collect the exit status of our own child, if it is one."""
        proc = self._children.pop(pid, None)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)


def _read_line(fd: int, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    buf = b""
    while b"\n" not in buf:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return b"timeout"
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 256)
        if not chunk:
            break
        buf += chunk
    return buf.split(b"\n", 1)[0].strip()


def kill(ref: ProcRef, spawner: Spawner | None = None, timeout: float = 5.0) -> bool:
    """SIGKILL ref if it is still the same process and wait until it is gone.

    Returns True once it is gone (or was already). Idempotent.
    """
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


def find_marked(
    instance: str, fault_id: str | None = None, module: str | None = None
) -> list[MarkedProc]:
    """Processes carrying this agent instance's markers (optionally one fault's
    or one worker module's)."""
    found: list[MarkedProc] = []
    want = f"{INSTANCE_FLAG}{instance}".encode()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if want not in args or (module is not None and module.encode() not in args):
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


def set_oom_score_adj(pid: int, value: int) -> None:
    Path(f"/proc/{pid}/oom_score_adj").write_text(f"{value}\n")


def get_oom_score_adj(pid: int) -> int:
    return int(Path(f"/proc/{pid}/oom_score_adj").read_text())


def kill_fault_workers(
    instance: str,
    fault_id: str,
    module: str,
    recorded: list[dict[str, Any]],
    spawner: Spawner | None,
    what: str,
) -> None:
    """Kill a fault's workers: those its undo record names, plus any started but
    not yet checkpointed when the agent died (found by marker). Idempotent."""
    refs = [ProcRef(int(w["pid"]), int(w["start_time"])) for w in recorded]
    refs += [ProcRef(m.pid, m.start_time) for m in find_marked(instance, fault_id, module)]
    stuck = [ref.pid for ref in refs if not kill(ref, spawner)]
    if stuck:
        raise OSError(f"{what} still running after SIGKILL: {stuck}")


def sweep_workers(instance: str, module: str, spawner: Spawner | None, what: str) -> list[str]:
    """Kill every worker of this module bearing this agent instance's markers."""
    swept = []
    for m in find_marked(instance, module=module):
        if m.fault_id and kill(ProcRef(m.pid, m.start_time), spawner):
            swept.append(f"{what} pid {m.pid} of fault {m.fault_id}")
    return swept
