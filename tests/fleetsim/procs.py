"""Starting and ending the fleet simulator's processes (tests/fleetsim/server.py)
the way that leaves nothing behind."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator

from tests.paths import ROOT


def agent_ips(n: int) -> list[str]:
    """127.1.B.C for C in 1..250: up to 64,000 simulated agents."""
    return [f"127.1.{i // 250}.{i % 250 + 1}" for i in range(n)]


def give_addresses(ns: str, n: int) -> None:
    """Each of the first n simulated agents gets its address on the netns's
    loopback. Then the kernel picks that address as the source of a connection
    to it (a local route's preferred source), and the simulator tells agents
    apart by the peer's address, whichever connection they come over. With
    127.0.0.1 the source of all, ephemeral ports repeat across destinations:
    of 8,000 connections, 1,830 shared their source with another."""
    if n == 0:
        return
    batch = "".join(f"address add {ip}/32 dev lo\n" for ip in agent_ips(n))
    subprocess.run(["ip", "-n", ns, "-batch", "-"], input=batch, text=True, check=True)


def in_netns(ns: str, module: str, *args: str) -> list[str]:
    """The command line of `python -m module args` inside network namespace ns."""
    return ["ip", "netns", "exec", ns, sys.executable, "-m", module, *args]


@contextlib.contextmanager
def simulator(ns: str, path: str = "stream") -> Iterator[tuple[subprocess.Popen[str], int]]:
    """The simulated fleet in the netns, and its port (on 0.0.0.0 there); ended after."""
    sim = subprocess.Popen(
        in_netns(ns, "tests.fleetsim.server", *(["--datagrams"] if path == "datagram" else [])),
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sim.stdout is not None
        yield sim, int(json.loads(sim.stdout.readline())["listening"])
    finally:
        quit_sim(sim)


def quit_sim(sim: subprocess.Popen[str], wait: float = 30.0) -> None:
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
