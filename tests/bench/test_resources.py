"""Resource faults side by side with stress-ng and fallocate(1), in one run.

Prints a table and writes bench-results/resources.json. Run with `make bench`
(needs root and the Debian package stress-ng).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from agent.kernel import meminfo
from brownout.v1 import agent_pb2 as pb
from tests.agentproc import AgentProc, is_root, wait_for
from tests.bench.common import RESULTS
from tests.host.scratch import loopfs, used_percent
from tests.host.test_cpu_hog import _busy, _total
from tests.leasekeeper import LeaseKeeper
from tests.processes import cpu_seconds, tree, tree_sum

pytestmark = [
    pytest.mark.bench,
    pytest.mark.timeout(1800),  # each CPU point is repeated
    pytest.mark.skipif(not is_root(), reason="benchmarks need root"),
    pytest.mark.skipif(shutil.which("stress-ng") is None, reason="apt-get install stress-ng"),
]

MIB, GIB = 1024 * 1024, 1024 * 1024 * 1024
LOADS = [10, 25, 50, 75, 90]
WINDOW = 3.0
REPEATS = int(os.environ.get("BROWNOUT_CPU_REPEATS", "8"))
CORE = max(os.sched_getaffinity(0))


def timed(predicate: Callable[[], bool], timeout: float) -> float:
    t0 = time.monotonic()
    assert wait_for(predicate, timeout, interval=0.002), "effect never became visible"
    return time.monotonic() - t0


def tree_cpu(pids: list[int]) -> float:
    return sum(tree_sum(pid, cpu_seconds) for pid in pids)


def window(pids: list[int]) -> tuple[float, float]:
    """(core utilisation, the processes' own CPU share), in percent of one core."""
    c0, p0, t0 = psutil.cpu_times(percpu=True)[CORE], tree_cpu(pids), time.monotonic()
    time.sleep(WINDOW)
    c1, p1, t1 = psutil.cpu_times(percpu=True)[CORE], tree_cpu(pids), time.monotonic()
    util = 100 * (_busy(c1) - _busy(c0)) / max(1e-9, _total(c1) - _total(c0))
    return util, 100 * (p1 - p0) / (t1 - t0)


def cpu_bench(c: Any, lease: str) -> dict[str, Any]:
    """Each load REPEATS times, Brownout and stress-ng interleaved, so both see
    the same machine; the mean of the repeats is what each point reports."""
    samples: dict[int, dict[str, list[float]]] = {
        load: {k: [] for k in ("brownout_util", "brownout_own", "stress_ng_util", "stress_ng_own")}
        for load in LOADS
    }
    for _ in range(REPEATS):
        for load in LOADS:
            spec = pb.FaultSpec(cpu=pb.CpuSpec(core_list=[CORE], load_percent=load))
            fault = c.inject(lease, spec, 60)
            time.sleep(0.5)
            util, own = window([int(fault.applied["worker_pids"])])
            samples[load]["brownout_util"].append(util)
            samples[load]["brownout_own"].append(own)
            c.revert(fault.id)
            argv = ["stress-ng", "--cpu", "1", "--cpu-load", str(load), "--taskset", str(CORE)]
            stress = subprocess.Popen([*argv, "--timeout", "60s", "--quiet"])
            time.sleep(0.5)
            util, own = window([stress.pid])
            samples[load]["stress_ng_util"].append(util)
            samples[load]["stress_ng_own"].append(own)
            stress.send_signal(signal.SIGINT)
            stress.wait(10)
    rows = [
        {"load": load, **{k: statistics.fmean(v) for k, v in samples[load].items()}}
        | {f"{k}_stdev": statistics.pstdev(v) for k, v in samples[load].items()}
        for load in LOADS
    ]

    def mae(key: str, repeat: int | None = None) -> float:
        values = [
            statistics.fmean(samples[load][key]) if repeat is None else samples[load][key][repeat]
            for load in LOADS
        ]
        return sum(abs(v - load) for v, load in zip(values, LOADS, strict=True)) / len(LOADS)

    keys = ("brownout_util", "stress_ng_util", "brownout_own", "stress_ng_own")
    summary: dict[str, Any] = {k: mae(k) for k in keys}
    summary["ratio_util"] = summary["brownout_util"] / max(1e-9, summary["stress_ng_util"])
    summary["ratio_own"] = summary["brownout_own"] / max(1e-9, summary["stress_ng_own"])
    # The ratio repeat by repeat: how stable the comparison is from run to run.
    per_repeat = sorted(
        mae("brownout_util", i) / max(1e-9, mae("stress_ng_util", i)) for i in range(REPEATS)
    )
    summary["ratio_util_per_repeat"] = per_repeat
    return {"core": CORE, "window_s": WINDOW, "repeats": REPEATS, "rows": rows, "mae_pp": summary}


def vm_of(pid: int) -> tuple[int, int]:
    """(resident, virtual) bytes of a process tree."""
    rss = vms = 0
    for p in tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            info = p.memory_info()
            rss, vms = rss + info.rss, vms + info.vms
    return rss, vms


def memory_bench(c: Any, lease: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for rate in (256.0, 0.0):
        spec = pb.FaultSpec(memory=pb.MemorySpec(bytes=GIB, rate_mib_per_second=rate))
        t0 = time.monotonic()
        fault = c.inject(lease, spec, 60)
        pid = int(fault.applied["worker_pid"])
        samples = []
        while (rss := meminfo.rss_anon(pid) or 0) < GIB and time.monotonic() - t0 < 30:
            samples.append((time.monotonic(), rss))
            time.sleep(0.005)
        reached = time.monotonic() - t0
        rss, vms = vm_of(pid)
        start = next((t for t, r in samples if r >= 64 * MIB), t0)
        achieved = (GIB - 64 * MIB) / MIB / max(1e-9, time.monotonic() - start)
        t1 = time.monotonic()
        c.revert(fault.id)
        out[f"brownout_rate_{rate:g}"] = {
            "seconds_to_1GiB": reached,
            "rate_mib_s": achieved if rate else None,
            "rss": rss,
            "vms": vms,
            "revert_s": time.monotonic() - t1,
        }
    t0 = time.monotonic()
    stress = subprocess.Popen(
        ["stress-ng", "--vm", "1", "--vm-bytes", "1G", "--vm-keep", "--timeout", "60s", "--quiet"]
    )
    wait_for(lambda: vm_of(stress.pid)[0] >= GIB, 30, interval=0.005)
    reached = time.monotonic() - t0
    rss, vms = vm_of(stress.pid)
    stress.send_signal(signal.SIGINT)
    stress.wait(10)
    out["stress_ng_vm_keep"] = {"seconds_to_1GiB": reached, "rss": rss, "vms": vms}
    return out


def disk_bench(c: Any, lease: str, base: Path) -> dict[str, Any]:
    with loopfs(base, 2048, "ext4") as m:
        t0 = time.monotonic()
        fault = c.inject(lease, pb.FaultSpec(disk=pb.DiskSpec(path=str(m), fill_percent=95)), 60)
        to_fill = time.monotonic() - t0
        reached = used_percent(m)
        t1 = time.monotonic()
        c.revert(fault.id)
        revert = timed(lambda: used_percent(m) < 5, 10) + (time.monotonic() - t1)
        st = os.statvfs(m)
        used = st.f_blocks - st.f_bfree
        want = int(0.95 * (used + st.f_bavail) - used) * st.f_frsize
        t2 = time.monotonic()
        subprocess.run(["fallocate", "-l", str(want), str(m / "f")], check=True)
        fallocate_s = time.monotonic() - t2
        fallocate_reached = used_percent(m)
        (m / "f").unlink()
    return {
        "brownout_s": to_fill,
        "brownout_used_percent": reached,
        "brownout_revert_s": revert,
        "fallocate_s": fallocate_s,
        "fallocate_used_percent": fallocate_reached,
    }


def kinds_bench(c: Any, lease: str, base: Path) -> dict[str, Any]:
    """Per kind: gRPC call until the effect is visible, revert until it is gone."""
    out: dict[str, Any] = {}

    def gone(pid: int) -> Callable[[], bool]:
        return lambda: meminfo.rss_anon(pid) is None

    t0 = time.monotonic()
    f = c.inject(lease, pb.FaultSpec(cpu=pb.CpuSpec(core_list=[CORE], load_percent=50)), 60)
    pid = int(f.applied["worker_pids"])
    cpu0 = psutil.Process(pid).cpu_times().user
    wait_for(lambda: psutil.Process(pid).cpu_times().user > cpu0, 5, 0.001)
    inject = time.monotonic() - t0
    t0 = time.monotonic()
    c.revert(f.id)
    wait_for(gone(pid), 5, 0.001)
    out["cpu"] = {"inject_s": inject, "revert_s": time.monotonic() - t0}

    t0 = time.monotonic()
    f = c.inject(lease, pb.FaultSpec(memory=pb.MemorySpec(bytes=256 * MIB)), 60)
    pid = int(f.applied["worker_pid"])
    wait_for(lambda: (meminfo.rss_anon(pid) or 0) >= 256 * MIB, 10, 0.001)
    inject = time.monotonic() - t0
    t0 = time.monotonic()
    c.revert(f.id)
    wait_for(gone(pid), 5, 0.001)
    out["memory_256MiB"] = {"inject_s": inject, "revert_s": time.monotonic() - t0}

    with loopfs(base, 256, "ext4") as m:
        before = used_percent(m)
        t0 = time.monotonic()
        f = c.inject(lease, pb.FaultSpec(disk=pb.DiskSpec(path=str(m), fill_percent=50)), 60)
        wait_for(lambda: used_percent(m) >= 49.5, 10, 0.001)
        inject = time.monotonic() - t0
        t0 = time.monotonic()
        c.revert(f.id)
        wait_for(lambda: used_percent(m) <= before + 0.5, 10, 0.001)
        out["disk_50pct_256MiB"] = {"inject_s": inject, "revert_s": time.monotonic() - t0}

        t0 = time.monotonic()
        spec = pb.IoSpec(path=str(m), workers=1, mode=pb.IO_MODE_WRITE, bytes_per_worker=8 * MIB)
        f = c.inject(lease, pb.FaultSpec(io=spec), 60)
        pid = int(f.applied["worker_pids"])
        wait_for(lambda: psutil.Process(pid).io_counters().write_chars > 0, 5, 0.001)
        inject = time.monotonic() - t0
        files = [Path(p) for p in f.applied["files"].split(",")]
        t0 = time.monotonic()
        c.revert(f.id)
        wait_for(lambda: not any(p.exists() for p in files), 5, 0.001)
        out["io"] = {"inject_s": inject, "revert_s": time.monotonic() - t0}
    return out


def test_resource_faults_against_stress_ng(tmp_path: Path, agent_factory: list[AgentProc]) -> None:
    a = AgentProc(tmp_path / "state", extra_args=["--disk-reserve", "16MiB"]).start()
    agent_factory.append(a)
    with a.client(timeout=60) as c:
        lease = c.acquire_lease("bench", 30).lease_id
        keeper = LeaseKeeper(c, lease, 30).start()  # the benchmark outlasts any one TTL
        try:
            results = {
                "cpu": cpu_bench(c, lease),
                "memory": memory_bench(c, lease),
                "disk_fill_2GiB_to_95pct": disk_bench(c, lease, tmp_path),
                "inject_revert": kinds_bench(c, lease, tmp_path),
            }
        finally:
            keeper.stop()
        c.release_lease(lease)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "resources.json").write_text(json.dumps(results, indent=2))
    print_report(results)


def print_report(r: dict[str, Any]) -> None:
    print("\nCPU: per-core utilisation (core util | processes' own share), percent")
    print(f"{'load':>5} {'brownout':>17} {'stress-ng':>17}")
    for row in r["cpu"]["rows"]:
        print(
            f"{row['load']:>5} {row['brownout_util']:>8.1f} {row['brownout_own']:>8.1f}"
            f" {row['stress_ng_util']:>8.1f} {row['stress_ng_own']:>8.1f}"
        )
    m = r["cpu"]["mae_pp"]
    per_repeat = ", ".join(f"{x:.2f}" for x in m["ratio_util_per_repeat"])
    print(
        f"MAE (pp) over {r['cpu']['repeats']} repeats: core util brownout"
        f" {m['brownout_util']:.2f} vs stress-ng {m['stress_ng_util']:.2f} (ratio"
        f" {m['ratio_util']:.2f}; per repeat {per_repeat}); own share"
        f" {m['brownout_own']:.2f} vs {m['stress_ng_own']:.2f} (ratio {m['ratio_own']:.2f})"
    )
    print("\nMemory, 1 GiB:")
    for name, v in r["memory"].items():
        rate = f", {v['rate_mib_s']:.1f} MiB/s" if v.get("rate_mib_s") else ""
        print(
            f"  {name:<22} {v['seconds_to_1GiB']:.2f}s to resident{rate};"
            f" RSS {v['rss'] / MIB:.0f} MiB, VMS {v['vms'] / MIB:.0f} MiB"
        )
    d = r["disk_fill_2GiB_to_95pct"]
    print(
        f"\nDisk fill 2 GiB ext4 to 95%: brownout {d['brownout_s'] * 1000:.1f} ms"
        f" ({d['brownout_used_percent']:.2f}%), revert {d['brownout_revert_s'] * 1000:.1f} ms;"
        f" fallocate(1) {d['fallocate_s'] * 1000:.1f} ms ({d['fallocate_used_percent']:.2f}%)"
    )
    print("\nInject (call until visible) / revert (until gone):")
    for kind, v in r["inject_revert"].items():
        print(f"  {kind:<18} {v['inject_s'] * 1000:8.1f} ms / {v['revert_s'] * 1000:8.1f} ms")
