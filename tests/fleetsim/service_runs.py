"""The service side of the concurrent-runs benchmark, in its own process so its
memory is its own: RUNS runs at once against N simulated agents, either
through one `brownout serve` Service (every run borrows the one fleet) or as
`brownout serve` did before (a Fleet, with its loop and channels, per run).
Prints one JSON line: channels held, loop threads, RSS at the peak, and
whether every run completed."""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from controller.agents import inventory
from controller.agents.connection import AgentConnection
from controller.agents.fleet import Fleet
from controller.experiments import parse as exp
from controller.experiments.metrics import ControllerMetrics
from controller.experiments.runner import Runner, RunOptions
from controller.service.auth import Tokens
from controller.service.state import Service
from tests.fleetsim.driver import addresses
from tests.fleetsim.limits import raise_fd_limit


def experiment(hold: float, ttl: float = 5.0) -> Any:
    return exp.parse(
        {
            "title": "concurrent runs",
            "method": [
                {
                    "type": "action",
                    "name": "cpu",
                    "provider": {
                        "type": "brownout",
                        "fault": "cpu",
                        "arguments": {"cores": 1, "load": 1},
                        "duration": "10m",
                    },
                }
            ],
            "extensions": [
                {
                    "name": "brownout",
                    "lease-ttl": f"{ttl:g}s",
                    "ramp": {"steps": [100], "hold": hold},
                }
            ],
        }
    )


@contextlib.contextmanager
def service(agents: int, port: int) -> Iterator[Service]:
    """`brownout serve`'s Service over N simulated agents, its state in a
    temporary directory; closed after."""
    refs = inventory.build(agents=addresses(agents, port))
    with tempfile.TemporaryDirectory() as tmp:
        svc = Service.build(
            AgentConnection.of(refs, 30.0), Path(tmp), Tokens([]), ControllerMetrics()
        )
        try:
            yield svc
        finally:
            svc.close()


def loops() -> int:
    return sum(t.name == "fleet-loop" for t in threading.enumerate())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--agents", type=int, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--hold", type=float, default=5.0)
    ap.add_argument("--mode", choices=["shared", "per-run"], required=True)
    args = ap.parse_args()
    raise_fd_limit()
    me = psutil.Process()
    refs = inventory.build(agents=addresses(args.agents, args.port))
    e = experiment(args.hold)
    rss0 = me.memory_info().rss
    with tempfile.TemporaryDirectory() as tmp:
        runners: list[Runner] = []
        fleets: list[Fleet] = []
        threads: list[threading.Thread] = []
        svc: Service | None = None
        t0 = time.monotonic()
        if args.mode == "shared":
            svc = Service.build(
                AgentConnection.of(refs, 30.0), Path(tmp), Tokens([]), ControllerMetrics()
            )
            runners = [svc.runs.start(e, "bench").runner for _ in range(args.runs)]
            channels = svc.fleet.channels
        else:
            for _ in range(args.runs):
                fleet = Fleet(refs, timeout=30.0)
                runner = Runner(e, fleet, RunOptions())
                fleets.append(fleet)
                runners.append(runner)
                threads.append(threading.Thread(target=runner.run))
                threads[-1].start()
            channels = sum(f.channels for f in fleets)
        # The peak: every run holds its leases and its faults (or has ended).
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not all(
            r.journal.steps or r.journal.ended for r in runners
        ):
            time.sleep(0.2)
        setup_s = time.monotonic() - t0
        rss_peak, loop_threads = me.memory_info().rss, loops()
        if svc is not None:
            svc.runs.wait_all(600)
            svc.close()
        for t in threads:
            t.join(600)
        for f in fleets:
            f.close()
        statuses = sorted({r.journal.status for r in runners})
        reasons = sorted({r.journal.reason[:200] for r in runners if r.journal.reason})
    print(
        json.dumps(
            {
                "mode": args.mode,
                "agents": args.agents,
                "runs": args.runs,
                "channels": channels,
                "loop_threads": loop_threads,
                "rss_mib_before": round(rss0 / 2**20, 1),
                "rss_mib_peak": round(rss_peak / 2**20, 1),
                "setup_s": round(setup_s, 2),
                "statuses": [str(s) for s in statuses],
                "reasons": reasons[:3],
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
