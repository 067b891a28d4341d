"""Clock skew, side by side in one guest boot (Debian's kernel under QEMU:
this machine's clock is never touched): the offset the clock injector
achieves against the one asked, and the same for date(1) setting the target
time as a process. Goal: within 10 ms. Needs the kernel-VM tier
(`make kernelvm-prepare`; `make bench` prepares it as root).

Figures are printed and written to bench-results/clock.json.
"""

from __future__ import annotations

import os

import pytest

from tests.bench.common import percentile, report
from tests.kernelvm.vm import kernel, run_guest, vng_command

pytestmark = [pytest.mark.bench, pytest.mark.timeout(900)]


def errors(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 50), 3),
        "p99_ms": round(percentile(values, 99), 3),
        "max_ms": round(max(values), 3),
    }


def test_clock_offset_achieved_against_date() -> None:
    vmlinuz, vng = kernel(), vng_command()
    if vmlinuz is None or vng is None or os.geteuid() != 0:
        pytest.fail("the clock benchmark needs the kernel-VM tier, as root: make kernelvm-prepare")
    run = run_guest(vmlinuz, vng, "clock-bench")
    assert run.exit_code == 0 and "clock_bench" in run.result, run.console[-3000:]
    bench = run.result["clock_bench"]
    ours, peer = errors(bench["injector_error_ms"]), errors(bench["date_error_ms"])
    report(
        "clock",
        {
            "injector_offset_error": ours,
            "date_offset_error": peer,
            "error_ratio_p50": round(ours["p50_ms"] / peer["p50_ms"], 5),
            "goal_ms": 10,
        },
    )
    assert ours["max_ms"] < 10, ours
