"""Watches worker processes and says when one exits that the agent did not kill.

One thread waits in epoll on a pidfd per worker (the kernel makes it readable
when the process exits), so a death is seen at once, without polling. The
exit status comes from whoever can wait for the process: the agent itself for
workers it exec'd, or the fork server, which reports "PID STATUS" for each
child it reaps on a pipe this thread also reads. A SIGKILL is called the OOM
killer's when the worker's memory cgroup (or, without one, the kernel's)
oom_kill counter rose while it ran.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from agent.kernel import cgroups

log = structlog.get_logger(__name__)

# How long an exit waits for its status from the fork server before it is
# reported without one (the server reaps within a millisecond or so).
STATUS_WAIT_S = 0.3


@dataclass(frozen=True)
class Exit:
    """A watched worker's exit that nobody asked for."""

    tag: str  # what the watcher was told the worker belongs to (a fault id)
    pid: int
    status: int | None  # the wait status, or None if it could not be learned
    oom_killed: bool
    why_unknown: str = ""
    oom_detail: str = ""

    @property
    def signal(self) -> int | None:
        if self.status is not None and os.WIFSIGNALED(self.status):
            return os.WTERMSIG(self.status)
        return None

    def describe(self) -> str:
        if self.status is None:
            how = f"exited with an unknown status ({self.why_unknown})"
        elif (sig := self.signal) is not None:
            how = f"was killed by signal {sig} ({signal.Signals(sig).name})"
        else:
            how = f"exited with status {os.waitstatus_to_exitcode(self.status)}"
        if self.oom_killed:
            how += f", by the OOM killer ({self.oom_detail})"
        return f"worker pid {self.pid} {how}"


@dataclass
class _Watched:
    pid: int
    start_time: int
    tag: str
    pidfd: int
    child: subprocess.Popen[bytes] | None  # ours to wait for; else the fork server's
    source: _Source | None  # the fork server that reports its exit, for its children
    oom_before: cgroups.OomCount | None
    exited_at: float | None = None


@dataclass
class _Source:
    """A fork server's report pipe."""

    fd: int
    buf: bytes = b""
    closed: bool = False
    statuses: dict[int, int] = field(default_factory=dict)


def wait_status(returncode: int) -> int:
    """Popen's returncode (-N for a signal) as a wait status."""
    return -returncode if returncode < 0 else returncode << 8


class ExitWatch:
    def __init__(
        self, on_exit: Callable[[Exit], None], start_time: Callable[[int], int | None]
    ) -> None:
        self._on_exit = on_exit
        self._start_time = start_time
        self._lock = threading.Lock()
        self._epoll = select.epoll()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._epoll.register(self._wake_r, select.EPOLLIN)
        self._by_fd: dict[int, _Watched] = {}
        self._exited: list[_Watched] = []
        self._sources: dict[int, _Source] = {}
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="exit-watch", daemon=True)
        self._thread.start()

    def add_source(self, fd: int) -> None:
        """Read exit reports of a fork server's children from fd (non-blocking)."""
        os.set_blocking(fd, False)
        with self._lock:
            self._sources[fd] = _Source(fd)
            self._epoll.register(fd, select.EPOLLIN)

    def watch(
        self,
        pid: int,
        start_time: int,
        tag: str,
        child: subprocess.Popen[bytes] | None = None,
        source: int | None = None,
    ) -> None:
        """Report pid's exit unless expect() is called first. A process that is
        already gone (or another one by now) is reported as exited at once."""
        oom = cgroups.oom_count(pid)
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            pidfd = -1
        with self._lock:
            # The source object, not its fd: a restarted fork server may get the same number.
            src = self._sources.get(source) if source is not None else None
            w = _Watched(pid, start_time, tag, pidfd, child, src, oom)
            if pidfd < 0 or self._start_time(pid) != start_time:
                # Gone between "running" and here: nothing to wait on.
                if pidfd >= 0:
                    os.close(pidfd)
                w.pidfd, w.exited_at = -1, time.monotonic()
                self._exited.append(w)
            else:
                self._by_fd[pidfd] = w
                self._epoll.register(pidfd, select.EPOLLIN)
        self._wake()

    def expect(self, pid: int, start_time: int) -> None:
        """The agent is about to kill this process: its exit is no news."""
        with self._lock:
            for fd, w in list(self._by_fd.items()):
                if (w.pid, w.start_time) == (pid, start_time):
                    self._drop(fd)
            self._exited = [w for w in self._exited if (w.pid, w.start_time) != (pid, start_time)]

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._wake()
        self._thread.join(5)
        with self._lock:
            for fd in list(self._by_fd):
                self._drop(fd)
            self._epoll.close()
            os.close(self._wake_r)
            os.close(self._wake_w)

    # ------------------------------------------------------------ the thread

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"x")

    def _drop(self, fd: int) -> None:
        """Stop watching one pidfd. Holds self._lock."""
        self._by_fd.pop(fd, None)
        with contextlib.suppress(OSError):
            self._epoll.unregister(fd)
        os.close(fd)

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
                timeout = self._timeout()
            events = self._epoll.poll(timeout)
            reports: list[Exit] = []
            with self._lock:
                for fd, _mask in events:
                    if fd == self._wake_r:
                        with contextlib.suppress(BlockingIOError):
                            while os.read(self._wake_r, 512):
                                pass
                    elif fd in self._sources:
                        self._read_source(self._sources[fd])
                    elif (w := self._by_fd.get(fd)) is not None:
                        self._drop(fd)
                        w.pidfd, w.exited_at = -1, time.monotonic()
                        self._exited.append(w)
                reports = self._resolve()
            for report in reports:
                try:
                    self._on_exit(report)
                except Exception:
                    log.exception("worker exit handler failed", pid=report.pid, tag=report.tag)

    def _timeout(self) -> float:
        if not self._exited:
            return -1
        oldest = min(w.exited_at or 0.0 for w in self._exited)
        return max(0.0, oldest + STATUS_WAIT_S - time.monotonic())

    def _read_source(self, src: _Source) -> None:
        try:
            chunk = os.read(src.fd, 65536)
        except BlockingIOError:
            return
        if not chunk:
            # The fork server is gone; its children die with it (PR_SET_PDEATHSIG).
            src.closed = True
            self._epoll.unregister(src.fd)
            os.close(src.fd)
            return
        src.buf += chunk
        *lines, src.buf = src.buf.split(b"\n")
        for line in lines:
            pid, _, status = line.decode().partition(" ")
            with contextlib.suppress(ValueError):
                src.statuses[int(pid)] = int(status)

    def _resolve(self) -> list[Exit]:
        """Exits whose status is known or has waited long enough. Holds self._lock."""
        done, waiting = [], []
        now = time.monotonic()
        for w in self._exited:
            status, why = self._status(w)
            if status is None and not why and now < (w.exited_at or now) + STATUS_WAIT_S:
                waiting.append(w)
                continue
            why = why or (
                "it could not be waited for" if w.child else "its fork server did not report it"
            )
            done.append(self._exit(w, status, why))
        self._exited = waiting
        # Reports of children nobody watches (killed on purpose) are not kept.
        pending = {w.pid for w in self._by_fd.values()} | {w.pid for w in waiting}
        for src in self._sources.values():
            src.statuses = {p: st for p, st in src.statuses.items() if p in pending}
        for fd in [fd for fd, src in self._sources.items() if src.closed]:
            del self._sources[fd]
        return done

    def _status(self, w: _Watched) -> tuple[int | None, str]:
        """(wait status, why it cannot be known) for an exited worker."""
        if w.child is not None:
            code = w.child.poll()
            return (None, "") if code is None else (wait_status(code), "")
        src = w.source
        if src is None:
            return None, "its fork server died with it"
        status = src.statuses.pop(w.pid, None)
        if status is None and src.closed:
            return None, "its fork server died with it"
        return status, ""

    def _exit(self, w: _Watched, status: int | None, why: str) -> Exit:
        killed = status is not None and os.WIFSIGNALED(status)
        killed = killed and os.WTERMSIG(status or 0) == signal.SIGKILL
        oom, detail = False, ""
        if (killed or status is None) and w.oom_before is not None:
            after = cgroups.oom_count_again(w.oom_before)
            if after is not None and after > w.oom_before.count:
                oom = True
                detail = f"oom_kill in {w.oom_before.where} rose {w.oom_before.count} -> {after}"
        return Exit(w.tag, w.pid, status, oom, "" if status is not None else why, detail)
