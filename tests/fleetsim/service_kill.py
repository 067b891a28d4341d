"""The service side of the kill-switch benchmark, in its own process: one run of
`brownout serve`'s Service holds a lease and a fault on each of N simulated
agents, and the kill switch is engaged in the middle of its hold, as an
operator would. The run then reverts its faults while the switch gives up its
leases and halts every agent: both fan-outs on the one fleet.

Prints one JSON line: when the switch was engaged (wall clock, for the
simulator's time of its last fault's end), what the lever answered, and how
the run ended."""

from __future__ import annotations

import argparse
import json
import time

from controller.service.state import Service
from tests.fleetsim.driver import lease_ends
from tests.fleetsim.limits import raise_fd_limit
from tests.fleetsim.service_runs import experiment, service


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--agents", type=int, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ttl", type=float, default=3.0)
    ap.add_argument("--settle", type=float, default=5.0, help="seconds held before the switch")
    args = ap.parse_args()
    raise_fd_limit()
    n = args.agents
    out: dict[str, object] = {"agents": n, "ttl_s": args.ttl}
    with service(n, args.port) as svc:
        # As in a service up for a while: the fleet view has asked every
        # agent once before the run.
        svc.fleet.loop.run(svc.view.first_pass())
        e = experiment(hold=3600.0, ttl=args.ttl)
        t0 = time.monotonic()
        run = svc.runs.start(e, "bench")
        agents = run.runner.journal.agents
        deadline, injected = t0 + 600, 0
        while time.monotonic() < deadline and not run.runner.journal.ended:
            injected = sum(1 for r in list(agents.values()) for f in r.faults if f.fault_id)
            if injected == n:
                break
            time.sleep(0.1)
        out["setup_and_inject_s"] = round(time.monotonic() - t0, 2)
        out["injected"] = injected
        time.sleep(args.settle)
        out["lease_ends_after_engage_s"] = svc.fleet.loop.run(_lease_ends(svc))
        out["engaged_at"] = time.time()
        engaged = svc.lever.engage("bench", "bench")
        out["lever_s"] = engaged["seconds"]
        out["leases_abandoned"] = engaged["leases_abandoned"]
        out["faults_reverted_by_halt"] = engaged["faults_reverted"]
        out["agents_failed"] = len(engaged["agents_failed"])
        t1 = time.monotonic()
        svc.runs.wait_all(600)
        out["run_ended_after_engage_s"] = round(time.monotonic() - t1 + engaged["seconds"], 2)
        journal = run.journal()
        out["status"] = journal["status"]
        problems = journal["extensions"][0]["fault_problems"]
        out["problems"] = sorted({p["problem"] for p in problems})
        svc.lever.disengage("bench")
    print(json.dumps(out), flush=True)


async def _lease_ends(svc: Service) -> dict[str, float]:
    return lease_ends(svc.fleet._holds)  # on the loop, which changes them


if __name__ == "__main__":
    main()
