"""CPU burn worker: a measured duty cycle on one core.

Each period it burns until its own CPU time reaches load x elapsed time, then
sleeps to the period's end. Tracking cumulative CPU time (not wall time)
corrects for preemption and interpreter overhead.
"""

from __future__ import annotations

import os
import time

from agent.workers.common import bind_to_parent, parser, ready, running


def burn(load: float, period: float) -> None:
    share = load / 100.0
    if share >= 1.0:
        while True:
            pass
    cpu0 = time.process_time()
    wall0 = time.monotonic()
    n = 0
    while True:
        n += 1
        period_end = wall0 + n * period
        target = share * n * period
        while time.process_time() - cpu0 < target and time.monotonic() < period_end:
            pass
        pause = period_end - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        if time.monotonic() - period_end > period or target - (time.process_time() - cpu0) > period:
            # Stopped or starved for more than a period: restart the schedule
            # rather than burning flat out to pay the debt back.
            cpu0, wall0, n = time.process_time(), time.monotonic(), 0


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
