"""The controller side of the scale benchmark, in its own process so that its
CPU and memory are its own: the real Fleet against N simulated agents.

One fault on every agent, as a run does it: GetInfo (pre-flight), a lease on
each (kept by datagram where the simulator offers it, else on KeepLeases
streams), a watch on each (riding on the datagram answers, else a WatchFaults
stream), inject, hold, revert, release. Prints one JSON line of figures.

Each fan-out is timed with the CPU it cost on both sides (with --sim-pid): a
unary gRPC call costs hundreds of microseconds of CPU at each end, so on a
small machine shared with the simulator, the fan-out's floor is their sum over
the machine's cores, whatever the controller does.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import psutil

from brownout.v1 import agent_pb2 as pb
from controller.agents import inventory
from controller.agents.aioclient import AsyncAgentClient
from controller.agents.fleet import Fleet
from controller.agents.lease_hold import LeaseHold
from tests.fleetsim.limits import raise_fd_limit
from tests.fleetsim.procs import agent_ips

SPEC = pb.FaultSpec(cpu=pb.CpuSpec(cores=1, load_percent=1))
T = TypeVar("T")


def addresses(n: int, port: int) -> list[str]:
    """The first n simulated agents' addresses (tests/fleetsim/procs.py)."""
    return [f"{ip}:{port}" for ip in agent_ips(n)]


QUANTILES = (("min", 0.0), ("p50", 0.5), ("max", 1.0))


def lease_ends(holds: Iterable[LeaseHold]) -> dict[str, float]:
    """When the leases run out from now if nothing renews them, as the fleet
    sees it (the kill switch's Halts go first where that is latest)."""
    now = time.monotonic()
    ends = sorted(h.runs_until() - now for h in holds)
    return {q: round(ends[int(f * (len(ends) - 1))], 3) for q, f in QUANTILES} if ends else {}


def cpu_s() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its children (the simulator's responder)."""
    top = psutil.Process(pid)
    total = 0.0
    for p in [top, *top.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


class Fanouts:
    """Wall time and CPU on each side of each fan-out, and the floor that CPU
    sets on this machine: both sides' seconds spread over every core."""

    def __init__(self, sim_pid: int | None) -> None:
        self.sim_pid = sim_pid
        self.cores = os.cpu_count() or 1
        self.rows: dict[str, dict[str, float]] = {}

    def time(self, phase: str, calls: int, fn: Callable[[], T]) -> T:
        sim0 = tree_cpu_s(self.sim_pid) if self.sim_pid else 0.0
        c0, t0 = cpu_s(), time.monotonic()
        value = fn()
        wall, ctl = time.monotonic() - t0, cpu_s() - c0
        row = {"calls": calls, "wall_s": round(wall, 3), "controller_cpu_s": round(ctl, 3),
               "controller_us_per_call": round(1e6 * ctl / max(1, calls), 1)}  # fmt: skip
        if self.sim_pid:
            sim = tree_cpu_s(self.sim_pid) - sim0
            row["simulator_cpu_s"] = round(sim, 3)
            row["simulator_us_per_call"] = round(1e6 * sim / max(1, calls), 1)
            row["floor_s"] = round((ctl + sim) / self.cores, 3)
        self.rows[phase] = row
        return value


class GcClock:
    """Collections of the cyclic GC by generation, and the time they took."""

    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self._t0 = 0.0
        gc.callbacks.append(self._tick)

    def _tick(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.count[info["generation"]] += 1
            self.seconds[info["generation"]] += time.perf_counter() - self._t0

    def lap(self) -> dict[str, object]:
        """Collections and seconds by generation since the last lap."""
        out = {"collections": self.count, "seconds": [round(s, 3) for s in self.seconds]}
        self.count, self.seconds = [0, 0, 0], [0.0, 0.0, 0.0]
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--agents", type=int, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ttl", type=float, default=3.0)
    ap.add_argument("--hold", type=float, default=300.0)
    ap.add_argument("--sim-pid", type=int, default=0, help="the simulator, for its CPU")
    ap.add_argument(
        "--halt",
        action="store_true",
        help="end as the kill switch does (every lease given up, Halt on every agent)"
        " instead of with reverts",
    )
    args = ap.parse_args()
    raise_fd_limit()
    n, me = args.agents, psutil.Process()
    out: dict[str, object] = {"agents": n, "ttl_s": args.ttl, "hold_s": args.hold}
    refs = inventory.build(agents=addresses(n, args.port))
    collections, gcs, fanouts = GcClock(), {}, Fanouts(args.sim_pid or None)
    with Fleet(refs, timeout=30) as fleet:
        rss: dict[str, float] = {"start": me.memory_info().rss / 2**20}
        # Descriptors open: one per connected agent, unless the fleet has more
        # agents than descriptors and closes idle connections (descriptors.py).
        fds: dict[str, int] = {"start": me.num_fds()}
        out["idle_close"] = fleet.idle is not None
        t0 = time.monotonic()
        statuses = fanouts.time("preflight", n, fleet.statuses)
        rss["connected"] = me.memory_info().rss / 2**20
        fds["connected"] = me.num_fds()
        out["preflight_s"] = round(time.monotonic() - t0, 3)
        out["reachable"] = sum(s.reachable for s in statuses.values())
        out["unreachable_examples"] = sorted({s.error for s in statuses.values() if s.error})[:3]
        t0 = time.monotonic()
        leases = fanouts.time(
            "leases", n, lambda: fleet.acquire_leases(fleet.refs, "bench", args.ttl)
        )
        out["leases_s"] = round(time.monotonic() - t0, 3)
        out["leases_held"] = sum(o.ok for o in leases.values())
        rss["leases"] = me.memory_info().rss / 2**20
        fds["leases"] = me.num_fds()
        out["lease_errors"] = sorted({o.error for o in leases.values() if o.error})[:3]
        events = {"n": 0}

        def seen(agent: str, event: pb.FaultEvent) -> None:
            events["n"] += 1

        fleet.watch_faults(seen)
        rss["watches"] = me.memory_info().rss / 2**20
        fds["watches"] = me.num_fds()

        async def inject(c: AsyncAgentClient) -> pb.Fault:
            return await c.inject(fleet.keepers[c.address].lease_id, SPEC, 3600, None, "bench/0")

        gcs["setup"] = collections.lap()
        t0 = time.monotonic()
        held = list(fleet.keepers)  # where a lease was granted
        injected = fanouts.time("inject", len(held), lambda: fleet.map(inject, held))
        out["all_applied_s"] = round(time.monotonic() - t0, 3)
        gcs["inject"] = collections.lap()
        faults = {a: o.value for a, o in injected.items() if o.value is not None}
        out["applied"] = sum(f.state == pb.FAULT_STATE_ACTIVE for f in faults.values())
        rss["applied"] = me.memory_info().rss / 2**20
        fds["applied"] = me.num_fds()
        out["rss_mib_by_phase"] = {k: round(v, 1) for k, v in rss.items()}
        out["fds_by_phase"] = fds
        out["channels_closed_idle"] = fleet.idle.closed if fleet.idle is not None else 0

        # The hold: only lease keeping (and idle watches) run.
        time.sleep(min(5.0, args.hold))
        c0, w0, rss_max = cpu_s(), time.monotonic(), 0
        deadline = w0 + args.hold
        out["hold_ended_early"] = ""
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(1.0, left))
            rss_max = max(rss_max, me.memory_info().rss)
            if fleet.keepers and len(fleet.lost()) == len(fleet.keepers):
                # Nothing left to keep: the rest of the hold would measure nothing.
                into = time.monotonic() - w0
                out["hold_ended_early"] = f"every lease lost {into:.1f}s into a {args.hold:g}s hold"
                break
        cpu, wall = cpu_s() - c0, time.monotonic() - w0
        out["controller_cpu_ms_per_lease_per_s"] = round(cpu / wall / n * 1e3, 4)
        out["controller_cpu_cores"] = round(cpu / wall, 3)
        out["controller_rss_mib"] = round(rss_max / 2**20, 1)
        out["controller_threads"] = me.num_threads()
        gcs["hold"] = collections.lap()
        lost = fleet.lost()
        out["leases_lost"] = len(lost)
        out["lost_examples"] = list(lost.values())[:3]
        out["heartbeats"] = sum(k.heartbeats for k in fleet.keepers.values())
        out["reconnects"] = sum(k.reconnects for k in fleet.keepers.values())
        out["modes"] = sorted({k.mode for k in fleet.keepers.values()})
        out["returns_to_datagrams"] = sum(k.returns for k in fleet.keepers.values())
        out["datagram_rounds"] = fleet.keeper.rounds
        out["datagram_stats"] = {"sent": fleet.datagrams.stats.sent,
                                 "answered": fleet.datagrams.stats.answered,
                                 "dropped": fleet.datagrams.stats.dropped}  # fmt: skip
        out["watch_modes"] = sorted({w.mode for w in fleet.watches})
        out["watch_fetches"] = sum(w.fetches for w in fleet.watches)

        async def revert(c: AsyncAgentClient) -> pb.Fault:
            return await c.revert(faults[c.address].id)

        fleet.stop_watches()  # as a run does before it reverts (experiments/faults.py)
        t0 = time.monotonic()
        if args.halt:
            # What the kill switch does: give up every lease (each agent then
            # reverts by itself within the TTL), and Halt everywhere; each
            # answer lists the faults it reverted, before it is sent. The
            # simulator says when the last fault ended.
            out["engaged_at"] = time.time()
            out["lease_ends_after_engage_s"] = lease_ends(fleet.keepers.values())
            out["leases_abandoned"] = fleet.abandon_leases("bench: kill switch")
            halted = fanouts.time(
                "halt", n, lambda: fleet.halt(latch=False, reason="bench: kill switch")
            )
            out["all_halted_s"] = round(time.monotonic() - t0, 3)
            # Each answer lists its own agent's faults (the simulator tells
            # agents apart by address), so the bench can match this count
            # against the simulator's.
            out["reverted_by_halt"] = sum(
                f.state == pb.FAULT_STATE_REVERTED
                for o in halted.values()
                if o.value is not None
                for f in o.value.faults
            )
        else:
            reverted = fanouts.time("revert", len(faults), lambda: fleet.map(revert, list(faults)))
            out["all_reverted_s"] = round(time.monotonic() - t0, 3)
            out["reverted"] = sum(
                o.value is not None and o.value.state == pb.FAULT_STATE_REVERTED
                for o in reverted.values()
            )
        out["fault_events_seen"] = events["n"]
        gcs["halt" if args.halt else "revert"] = collections.lap()
        out["gc_by_phase"] = gcs
        out["fanouts"] = fanouts.rows
        # Leases lost during the fan-outs at the end count as much as during
        # the hold (not those the kill switch gave up).
        lost = {a: r for a, r in fleet.lost().items() if not fleet.keepers[a].abandoned}
        out["leases_lost_by_end"] = len(lost)
        out["lost_by_end_examples"] = list(lost.values())[:3]
        t0 = time.monotonic()
        released = fleet.map(lambda c: fleet.release(c.address), list(fleet.keepers))
        out["released_s"] = round(time.monotonic() - t0, 3)
        out["released"] = sum(o.ok for o in released.values())
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
