"""Worker fork server: forks pre-imported workers instead of starting interpreters.

The agent's spawner execs this once (with -S: no site import) with a control
socket on stdin. Each request is a worker argv, NUL-separated, with the worker's
stdin/stdout/stderr passed by SCM_RIGHTS; the reply is the child's pid and
start time, or "!reason" when the agent should exec that worker instead; each
child it reaps is reported as "PID WAIT_STATUS" on its stdout, a pipe. The
child takes the passed pipes, binds its death to ours (we bind ours to the
agent), rewrites its command line to the argv it was asked for (the sweep
finds workers by their markers there) and runs the module's main(), so the
agent's ready/go/running handshake is unchanged. Imports: the standard
library and agent.workers only.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import os
import select
import signal
import socket
import sys
import traceback
from types import ModuleType
from typing import NoReturn

from agent.workers.common import bind_to_parent

# The worker modules this server runs, and the comm name (at most 15 bytes) of each.
WORKERS = {
    "agent.workers.cpu_burn": "brownout-cpu",
    "agent.workers.memory_leak": "brownout-memory",
    "agent.workers.io_stress": "brownout-io",
}
ZYGOTE_FLAG = "--brownout-zygote"
# Room for a child's argv: the last argument of our own, all spaces (invisible in ps).
PADDING = 4096
MAX_REQUEST = 2 * PADDING
PR_SET_NAME = 15
_libc = ctypes.CDLL(None)


def command(python: str, parent_pid: int, instance: str) -> list[str]:
    """How the agent starts this server, from package_root(): children rewrite its
    argv area, so the padding bounds how long their argv may be."""
    return [
        python,
        "-E",  # no PYTHON* environment
        "-s",  # no user site
        "-S",  # no site import: the venv's .pth processing costs more than the rest
        "-m",  # with the working directory (package_root()) as sys.path[0]
        "agent.workers.zygote",
        "--parent-pid",
        str(parent_pid),
        f"--brownout-instance={instance}",
        ZYGOTE_FLAG,
        " " * PADDING,
    ]


def package_root() -> str:
    """The directory holding the agent package."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def argv_area() -> tuple[int, int]:
    """Start and end address of this process's argv strings (stat fields 48, 49)."""
    with open("/proc/self/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[45]), int(fields[46])


def encode(argv: list[str]) -> bytes:
    return b"".join(os.fsencode(a) + b"\0" for a in argv)


def rewrite_cmdline(area: tuple[int, int], argv: list[str]) -> None:
    """Overwrite the argv area (what /proc/PID/cmdline shows) with argv, NUL-padded.
    The last byte stays NUL: otherwise the kernel reads the area as one
    setproctitle-style string."""
    start, end = area
    data = encode(argv)
    if len(data) > end - start:
        raise ValueError("worker argv does not fit the fork server's argv area")
    ctypes.memmove(start, data.ljust(end - start, b"\0"), end - start)


def set_comm(name: str) -> None:
    _libc.prctl(PR_SET_NAME, name.encode(), 0, 0, 0)


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)  # as the interpreter does for sys.exit("why")
    return 1


def _start_time(pid: int) -> int:
    fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    try:
        stat = os.read(fd, 4096)
    finally:
        os.close(fd)
    return int(stat[stat.rindex(b")") + 2 :].split()[19])


def _child(
    ctl: socket.socket,
    fds: list[int],
    argv: list[str],
    module: ModuleType,
    area: tuple[int, int],
    zygote: int,
) -> NoReturn:
    code = 1
    try:
        ctl.detach()  # its fd is closed below: the object must never close a reused one
        for target, fd in enumerate(fds):
            os.dup2(fd, target)  # first, so that any error below reaches the agent
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        bind_to_parent(zygote)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        rewrite_cmdline(area, argv)
        set_comm(WORKERS[argv[2]])
        sys.argv = [module.__file__ or argv[2], *argv[3:]]
        module.main()  # checks --parent-pid (ours) against getppid() again
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc)
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
    os._exit(code)


def _handle(
    ctl: socket.socket,
    msg: bytes,
    fds: list[int],
    modules: dict[str, ModuleType],
    area: tuple[int, int],
) -> str:
    """Fork the worker a request asks for; reply "PID START_TIME" or "!reason"."""
    argv = [os.fsdecode(a) for a in msg.split(b"\0")]
    if len(fds) != 3:
        return f"!expected 3 fds, got {len(fds)}"
    if len(argv) < 3 or argv[2] not in modules:
        return "!not a worker this server runs"
    if len(encode(argv)) > area[1] - area[0]:
        return "!argv too long for the fork server"
    sys.stderr.flush()
    zygote = os.getpid()
    try:
        pid = os.fork()
    except OSError as exc:
        return f"!fork failed: {exc}"
    if pid == 0:
        _child(ctl, fds, argv, modules[argv[2]], area, zygote)
    # Children are reaped only in serve()'s loop, so this pid is still the child
    # (at worst a zombie) and its start time identifies it to the agent.
    return f"{pid} {_start_time(pid)}"


def _reap(report: int) -> None:
    """Reap exited children and report each one's wait status to the agent as
    "PID STATUS" on fd `report` (the agent watches its workers with pidfds but
    cannot wait for our children). Never blocks: a report the agent has no room
    for is dropped, and it then calls that worker's exit status unknown."""
    with contextlib.suppress(ChildProcessError):
        while True:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                return
            with contextlib.suppress(BlockingIOError, BrokenPipeError):
                os.write(report, f"{pid} {status}\n".encode())


def serve(
    ctl: socket.socket, modules: dict[str, ModuleType], area: tuple[int, int], report: int
) -> None:
    # SIGCHLD only wakes the loop up: killed workers are reaped at once, yet
    # never between a fork and its reply.
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    while True:
        _reap(report)
        readable, _, _ = select.select([ctl.fileno(), wake_r], [], [])
        if wake_r in readable:
            with contextlib.suppress(BlockingIOError):
                while os.read(wake_r, 512):
                    pass
        if ctl.fileno() not in readable:
            continue
        msg, fds, flags, _ = socket.recv_fds(ctl, MAX_REQUEST, 3)
        try:
            if not msg:
                return  # the agent closed its end
            if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
                reply = "!request truncated"
            else:
                reply = _handle(ctl, msg, fds, modules, area)
        finally:
            for fd in fds:
                os.close(fd)
        ctl.send(reply.encode())


def main() -> None:
    bind_to_parent(int(sys.argv[sys.argv.index("--parent-pid") + 1]))
    set_comm("brownout-zygote")
    ctl = socket.socket(fileno=os.dup(0))
    # Exit reports go to the pipe the agent gave us as stdout.
    report = os.dup(1)
    os.set_blocking(report, False)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    modules = {name: importlib.import_module(name) for name in WORKERS}
    gc.freeze()  # children's collections then leave the shared pages alone
    os.chdir("/")  # sys.path[0] is absolute; children inherit "/"
    serve(ctl, modules, argv_area(), report)


if __name__ == "__main__":
    main()
