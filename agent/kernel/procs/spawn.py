"""Starting worker processes (they are forked by the fork server this starts,
agent/workers/zygote.py) and watching them.

Workers are started from argv lists (never a shell). PR_SET_PDEATHSIG fires
when the *thread* that forked the child exits, so the fork server, and any
worker it cannot fork, are started by one long-lived spawner thread, never
from short-lived RPC threads. Processes are identified by pid plus kernel
start time (ids.py), so a recycled pid is never killed by mistake.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import structlog

from agent.kernel.procs.exits import Exit, ExitWatch
from agent.kernel.procs.ids import PARENT_FLAG, ProcRef, fault_of, marker_args, start_time
from agent.kernel.procs.marked import kill, sweep_zygotes
from agent.workers import zygote

log = structlog.get_logger(__name__)


class SpawnError(OSError):
    pass


def worker_argv(module: str, args: list[str], instance: str, fault_id: str) -> list[str]:
    """argv for a worker module run by this interpreter, tagged with markers."""
    parent = [PARENT_FLAG, str(os.getpid())]
    return [sys.executable, "-m", module, *args, *parent, *marker_args(instance, fault_id)]


@dataclass
class _Started:
    """A worker between its start and "running"."""

    pid: int
    start_time: int | None  # None: already gone
    popen: subprocess.Popen[bytes] | None = None  # exec'd by us, not forked by the zygote
    reports: int | None = None  # the fork server's exit-report pipe, if it forked this one

    def kill(self) -> None:
        if self.popen is not None:
            self.popen.kill()
            self.popen.wait()
        elif self.start_time is not None:
            kill(ProcRef(self.pid, self.start_time))


@dataclass
class _Zygote:
    proc: subprocess.Popen[bytes]
    sock: socket.socket
    reports: int  # read end of the pipe it reports its children's exits on


class Spawner:
    """Starts worker processes; PR_SET_PDEATHSIG binds them to a thread that lives
    as long as the agent.

    Workers are forked by a fork server (agent/workers/zygote.py) with the
    worker modules already imported, which saves starting an interpreter per
    worker. The server is started from the spawner thread, so its death is
    bound to that thread and every worker's to the server; requests to it are
    made from the caller's thread. A worker it cannot start is exec'd from the
    spawner thread, as before.

    Every worker that starts is watched: when one exits without being killed
    through kill(), on_exit is told (with the fault id from its markers).

    It also remembers which workers it started for each fault and module, from
    the moment it learns their pid, so a revert in this agent's lifetime need
    not search every process on the host for them (see started_for).
    """

    def __init__(self, instance: str, on_exit: Callable[[Exit], None] | None = None) -> None:
        self._instance = instance
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spawner")
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()  # one request at a time on the server's socket
        self._zygote: _Zygote | None = None
        self._started: dict[tuple[str, str], set[ProcRef]] = {}
        self._started_lock = threading.Lock()
        self.on_exit = on_exit
        self._watch = ExitWatch(self._exited, start_time)

    def _exited(self, exit: Exit) -> None:
        if self.on_exit is not None:
            self.on_exit(exit)

    def start(self) -> None:
        """Start the fork server now rather than at the first spawn."""
        with self._lock:
            self._ensure_zygote()

    @property
    def zygote_pid(self) -> int | None:
        z = self._zygote
        return z.proc.pid if z is not None and z.proc.poll() is None else None

    def spawn(
        self,
        argv: list[str],
        ready_timeout: float = 10.0,
        before_go: Callable[[int], None] | None = None,
        fork: bool = True,
        on_running: Callable[[str], None] | None = None,
    ) -> ProcRef:
        """Start a worker and wait for its "ready"; run before_go(pid) (e.g. move
        it into a cgroup), tell it "go" and wait for "running". Workers do their
        work only after "go", so none of it happens outside the placement.
        fork=False execs it even when the fork server could fork it. on_running
        gets what the worker said after "running" (e.g. the ports it bound)."""
        # The worker's ends: its stdin, stdout and stderr; the agent keeps the others.
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        stderr_r, stderr_w = os.pipe()
        ours = (stdin_w, stdout_r, stderr_r)
        theirs = [stdin_r, stdout_w, stderr_w]
        try:
            try:
                child = self._fork(argv, theirs, ready_timeout) if fork else None
                if child is None:
                    child = self._pool.submit(self._exec, argv, theirs).result()
            finally:
                for fd in theirs:
                    os.close(fd)
            self._remember(argv, child)
            ref = _handshake(child, argv, *ours, ready_timeout, before_go, on_running)
        finally:
            for fd in ours:
                os.close(fd)
        if child.popen is not None:
            self._children[ref.pid] = child.popen
        self._watch.watch(ref.pid, ref.start_time, fault_of(argv), child.popen, child.reports)
        return ref

    def _remember(self, argv: list[str], child: _Started) -> None:
        """Before the handshake: a worker that fails it is still this fault's to kill."""
        fault_id = fault_of(argv)
        if fault_id and child.start_time is not None:
            with self._started_lock:
                workers = self._started.setdefault((fault_id, argv[2]), set())
                workers.add(ProcRef(child.pid, child.start_time))

    def started_for(self, fault_id: str, module: str) -> list[ProcRef] | None:
        """The workers of this module this spawner started for the fault, dead or
        alive, until forget(); None if it started none (the fault may be a dead
        agent's, whose workers only a search by marker finds)."""
        with self._started_lock:
            workers = self._started.get((fault_id, module))
            return None if workers is None else list(workers)

    def forget(self, fault_id: str, module: str) -> None:
        """The fault's workers of this module are all gone."""
        with self._started_lock:
            self._started.pop((fault_id, module), None)

    def expect_exit(self, ref: ProcRef) -> None:
        """ref is about to be killed on purpose: do not report its exit."""
        self._watch.expect(ref.pid, ref.start_time)

    def _exec(self, argv: list[str], fds: list[int]) -> _Started:
        proc = subprocess.Popen(
            argv,
            stdin=fds[0],
            stdout=fds[1],
            stderr=fds[2],
            close_fds=True,
            start_new_session=True,
            cwd="/",
        )
        return _Started(proc.pid, start_time(proc.pid), proc)

    def _fork(self, argv: list[str], fds: list[int], timeout: float) -> _Started | None:
        """Have the fork server start the worker; None if it cannot."""
        if argv[:2] != [sys.executable, "-m"] or len(argv) < 3 or argv[2] not in zygote.WORKERS:
            return None
        if PARENT_FLAG not in argv:
            return None
        with self._lock:
            z = self._ensure_zygote()
            if z is None:
                return None
            # The worker binds its death to its parent: the fork server.
            argv = list(argv)
            argv[argv.index(PARENT_FLAG) + 1] = str(z.proc.pid)
            try:
                z.sock.settimeout(timeout)
                socket.send_fds(z.sock, [b"\0".join(os.fsencode(a) for a in argv)], fds)
                reply = z.sock.recv(256).decode()
                why = "it exited"
            except OSError as exc:
                reply, why = "", str(exc) or type(exc).__name__
            if not reply:
                # Died or hung mid-request: a worker it may have forked dies with it.
                log.warning("fork server failed: exec'ing the worker, restarting it", error=why)
                self._stop_zygote()
                return None
        if reply.startswith("!"):
            log.info("fork server declined a worker: exec'ing it", reason=reply[1:])
            return None
        pid, st = reply.split()
        return _Started(int(pid), int(st), reports=z.reports)

    def _ensure_zygote(self) -> _Zygote | None:
        """The running fork server, (re)started if need be. Holds self._lock."""
        z = self._zygote
        if z is not None and z.proc.poll() is None:
            return z
        if z is not None:
            log.warning("fork server died: restarting it", returncode=z.proc.returncode)
            self._stop_zygote()
        self._zygote = self._pool.submit(self._start_zygote).result()
        return self._zygote

    def _start_zygote(self) -> _Zygote | None:
        """Runs on the spawner thread, which the server's PR_SET_PDEATHSIG watches."""
        # One left by a dead agent of this state dir (its death should have killed it).
        for item in sweep_zygotes(self._instance):
            log.warning("swept leftover", item=item)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        reports, their_reports = os.pipe2(os.O_CLOEXEC)
        try:
            proc = subprocess.Popen(
                zygote.command(sys.executable, os.getpid(), self._instance),
                stdin=theirs.fileno(),
                stdout=their_reports,
                close_fds=True,
                start_new_session=True,
                cwd=zygote.package_root(),
            )
        except OSError as exc:
            ours.close()
            os.close(reports)
            log.warning("cannot start the fork server: exec'ing workers", error=str(exc))
            return None
        finally:
            theirs.close()
            os.close(their_reports)
        self._watch.add_source(reports)
        return _Zygote(proc, ours, reports)

    def _stop_zygote(self) -> None:
        """Kill the fork server, and with it (PR_SET_PDEATHSIG) its workers. Holds self._lock."""
        z, self._zygote = self._zygote, None
        if z is not None:
            z.sock.close()
            z.proc.kill()
            z.proc.wait()

    def reap(self, pid: int) -> None:
        """Collect the exit status of our own child, if it is one (the fork
        server reaps the workers it forked)."""
        proc = self._children.pop(pid, None)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)

    def shutdown(self) -> None:
        self.on_exit = None
        with self._lock:
            self._stop_zygote()
        self._pool.shutdown(wait=True)
        self._watch.close()


def _handshake(
    child: _Started,
    argv: list[str],
    stdin: int,
    stdout: int,
    stderr: int,
    timeout: float,
    before_go: Callable[[int], None] | None,
    on_running: Callable[[str], None] | None = None,
) -> ProcRef:
    try:
        line = _read_line(stdout, timeout)
        if line != b"ready":
            child.kill()
            err = _read_all(stderr, timeout).decode(errors="replace").strip()
            raise SpawnError(
                errno.ECHILD, f"worker {argv[2]} did not start: {err or line.decode()}"
            )
        if before_go is not None:
            before_go(child.pid)
        os.write(stdin, b"go\n")
        # Setup that must happen inside the placement (affinity, files) is
        # done after "go"; "running" says it worked.
        line = _read_line(stdout, timeout)
        word, _, detail = line.partition(b" ")
        if word != b"running":
            child.kill()
            # The last line of a traceback is the error itself.
            lines = _read_all(stderr, timeout).decode(errors="replace").strip().splitlines()
            why = lines[-1] if lines else line.decode()
            raise SpawnError(errno.ECHILD, f"worker {argv[2]} failed to start: {why}")
        if on_running is not None:
            on_running(detail.decode(errors="replace"))
    except BaseException:
        child.kill()
        raise
    st = start_time(child.pid)
    if st is None or child.start_time not in (None, st):
        child.kill()
        raise SpawnError(errno.ESRCH, f"worker {argv[2]} exited right after starting")
    return ProcRef(child.pid, st)


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


def _read_all(fd: int, timeout: float) -> bytes:
    """What a (killed) worker wrote, up to EOF or the timeout."""
    deadline = time.monotonic() + timeout
    buf = b""
    while (remaining := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], remaining)
        chunk = os.read(fd, 65536) if ready else b""
        if not chunk:
            break
        buf += chunk
    return buf
