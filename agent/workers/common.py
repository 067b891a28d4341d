"""Start-up shared by every worker: die with the agent, say ready, wait for go,
set up, say running. Errors before "running" reach the agent's reply."""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
# Loaded once: workers forked by the fork server inherit it.
_libc = ctypes.CDLL(None, use_errno=True)


def parser(description: str, path: str) -> argparse.ArgumentParser:
    """A worker's argument parser, named after its file (also when forked)."""
    p = argparse.ArgumentParser(prog=os.path.basename(path), description=description)
    p.add_argument("--parent-pid", type=int, required=True)
    # Markers: only read by the sweep, through /proc/PID/cmdline.
    p.add_argument("--brownout-instance", required=True)
    p.add_argument("--brownout-fault", required=True)
    return p


def bind_to_parent(parent_pid: int) -> None:
    """SIGKILL this worker when the agent dies, closing the fork/prctl race."""
    if _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        sys.exit(f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(ctypes.get_errno())}")
    if os.getppid() != parent_pid:
        sys.exit("agent exited before the worker started")


def ready() -> None:
    """Say ready, then wait for the agent's "go" (sent once it has placed us,
    e.g. in the target's cgroups). No work may happen before this returns."""
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    if sys.stdin.readline().strip() != "go":
        sys.exit("the agent did not say go")


def running(detail: str = "") -> None:
    """Setup inside the placement succeeded; the agent stops listening after
    this. detail (one line) reaches the spawner's on_running."""
    sys.stdout.write(f"running {detail}".rstrip() + "\n")
    sys.stdout.flush()
