"""Ending a simulator process the way that leaves nothing behind."""

from __future__ import annotations

import contextlib
import subprocess


def quit_sim(sim: subprocess.Popen[str], wait: float = 10.0) -> None:
    """Ask the simulator on its stdin to quit, so that it unlinks its shared
    memory (leaseclock.py); kill it only if it does not."""
    if sim.poll() is None and sim.stdin is not None:
        with contextlib.suppress(OSError):
            sim.stdin.write("quit\n")
            sim.stdin.flush()
        with contextlib.suppress(subprocess.TimeoutExpired):
            sim.wait(wait)
    if sim.poll() is None:
        sim.kill()
    sim.wait(10)
