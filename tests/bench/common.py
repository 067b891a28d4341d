"""Benchmark helpers: percentiles, and printing + saving figures as JSON."""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

from tests.fleetsim.procs import give_addresses
from tests.paths import ROOT

RESULTS = ROOT / "bench-results"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary_ms(samples_s: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in samples_s]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "max_ms": round(max(ms), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


def ask(proc: subprocess.Popen[str], command: str) -> dict[str, Any]:
    """One command line to a helper process's stdin, its one JSON line back."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(command + "\n")
    proc.stdin.flush()
    answer: dict[str, Any] = json.loads(proc.stdout.readline())
    return answer


def report(name: str, figures: dict[str, Any]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    print(f"\n[bench] {name}: {json.dumps(figures, sort_keys=True)}")


@contextlib.contextmanager
def scratch_netns(prefix: str, agents: int = 0) -> Iterator[str]:
    """A named network namespace with loopback up, deleted after; with agents,
    the addresses of that many simulated agents on its loopback."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        give_addresses(name, agents)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)
