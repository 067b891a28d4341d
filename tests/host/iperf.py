"""TCP throughput between namespace test hosts with iperf3, and the kernel's own
HTB set up with the tc binary as the reference a bandwidth fault is judged by.

Throughput is iperf3's goodput at the receiver, after an omitted warm-up (the
token bucket's burst and TCP's slow start). Writes of 16 KiB: iperf3's
default 128 KiB blocks are a second of data at 1 Mbit/s, which quantises the
figure by several percent.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import subprocess
import time
from collections.abc import Iterator

from tests.host.nethosts import NetBed, nsrun

WRITE = "16K"


def available() -> bool:
    return shutil.which("iperf3") is not None


# HTB does not split GSO packets, so the receiver gets its bytes in lumps of up
# to 64 KB: a 6 s window at 1 Mbit/s holds 11 of them, and one lump more or
# less moved the figure by 4.5 %. A window of at least this many lumps keeps
# one lump's weight under 2.5 %.
WINDOW_LUMPS = 40
LUMP_BITS = 64 * 1024 * 8


def seconds_for(rate_bits: int) -> tuple[int, int]:
    """(test seconds, omitted seconds): slow links need longer to average out."""
    omit = 2 if rate_bits <= 2_000_000 else 1
    return max(4, math.ceil(WINDOW_LUMPS * LUMP_BITS / rate_bits)) + omit, omit


def _listening(ns: str, port: int) -> bool:
    return f":{port} " in nsrun(ns, "ss", "-Hltn", f"sport = :{port}")


def goodput(bed: NetBed, port: int, dest: str, seconds: int, omit: int) -> float:
    """Bits per second of one TCP stream from A to B's address dest, at the receiver."""
    server = subprocess.Popen(
        ["ip", "netns", "exec", bed.b.ns, "iperf3", "-s", "-1", "-B", dest, "-p", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not _listening(bed.b.ns, port):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"iperf3 server on {port} did not start: {server.stderr}")
            time.sleep(0.02)
        done = subprocess.run(
            ["ip", "netns", "exec", bed.a, "iperf3", "-c", dest, "-p", str(port),
             "-t", str(seconds), "-O", str(omit), "-l", WRITE, "-J"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=seconds + omit + 60,
        )  # fmt: skip
        report = json.loads(done.stdout)
        if "error" in report:
            raise RuntimeError(f"iperf3 to {dest}:{port} failed: {report['error']}")
        return float(report["end"]["sum_received"]["bits_per_second"])
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(10)
        if server.poll() is None:
            server.kill()
            server.wait()


@contextlib.contextmanager
def tc_htb(
    ns: str, dev: str, rate_bits: int, burst: int | None = None, limit: int | None = None
) -> Iterator[None]:
    """The kernel's HTB at rate_bits on dev, set up with tc: as a person would
    (tc's default burst and leaf), or with the given class burst and bfifo limit."""
    nsrun(ns, "tc", "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "1")
    try:
        sized = [] if burst is None else ["burst", f"{burst}b", "cburst", f"{burst}b"]
        nsrun(ns, "tc", "class", "add", "dev", dev, "parent", "1:", "classid", "1:1", "htb",
              "rate", f"{rate_bits}bit", *sized)  # fmt: skip
        if limit is not None:
            nsrun(ns, "tc", "qdisc", "add", "dev", dev, "parent", "1:1", "bfifo",
                  "limit", f"{limit}b")  # fmt: skip
        yield
    finally:
        nsrun(ns, "tc", "qdisc", "del", "dev", dev, "root")


def tc_reference(
    bed: NetBed, port: int, rate_bits: int, burst: int | None = None, limit: int | None = None
) -> float:
    seconds, omit = seconds_for(rate_bits)
    with tc_htb(bed.a, bed.a_to_b, rate_bits, burst, limit):
        return goodput(bed, port, bed.b.v4, seconds, omit)
