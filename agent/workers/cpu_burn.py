"""CPU burn worker: a measured duty cycle on one core.

Each period it burns until its own CPU time reaches load x elapsed time, then
sleeps to the period's end. Tracking cumulative CPU time (not wall time)
corrects for preemption and interpreter overhead.

Period lengths are drawn at random around the mean (0.5 to 1.5 of it). Most
kernels account CPU per core by sampling at each timer tick (here 250 Hz);
bursts of a fixed length starting at a fixed phase to that tick are counted
with a fixed bias (10 % measured 8.5 % in /proc/stat, which node_exporter
reads). Random lengths make the burst starts fall uniformly between ticks,
so the sampled figure is right on average.
"""

from __future__ import annotations

import os
import random
import time

from agent.workers.common import bind_to_parent, parser, ready, running

JITTER = 0.5  # each period is (1 +- JITTER) x the mean


def burn(load: float, period: float, rng: random.Random | None = None) -> None:
    share = load / 100.0
    if share >= 1.0:
        while True:
            pass
    rng = rng or random.Random()
    cpu0 = time.process_time()
    wall0 = time.monotonic()
    planned = 0.0  # wall time the periods so far were planned to take
    while True:
        planned += period * rng.uniform(1 - JITTER, 1 + JITTER)
        period_end = wall0 + planned
        target = share * planned
        while time.process_time() - cpu0 < target and time.monotonic() < period_end:
            pass
        pause = period_end - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        if time.monotonic() - period_end > period or target - (time.process_time() - cpu0) > period:
            # Stopped or starved for more than a period: restart the schedule
            # rather than burning flat out to pay the debt back.
            cpu0, wall0, planned = time.process_time(), time.monotonic(), 0.0


# Built on import, so that workers forked by the fork server do not build it again.
PARSER = parser("burn one core at a duty cycle", __file__)
PARSER.add_argument("--core", type=int, required=True)
PARSER.add_argument("--load", type=float, required=True)
PARSER.add_argument("--period-ms", type=float, default=100.0)


def main() -> None:
    args = PARSER.parse_args()
    bind_to_parent(args.parent_pid)
    ready()
    # After "go": joining a cpuset cgroup resets the affinity.
    os.sched_setaffinity(0, {args.core})
    running()
    burn(args.load, args.period_ms / 1000.0)


if __name__ == "__main__":
    main()
