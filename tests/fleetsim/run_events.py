"""One run of `brownout serve`'s Service over N simulated agents, to its end:
prints one JSON line with the run's event messages (what the console and
`brownout run` show), its status, and how many agents the journal records a
fault and a revert for. Run inside a network namespace (tests/host)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tests.fleetsim.limits import raise_fd_limit
from tests.fleetsim.service_runs import experiment, service


def _reverted(fault: dict[str, Any]) -> bool:
    return bool(fault.get("revert", {}).get("state") == "reverted")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--agents", type=int, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--hold", type=float, default=1.0)
    args = ap.parse_args()
    raise_fd_limit()
    with service(args.agents, args.port) as svc:
        run = svc.runs.start(experiment(hold=args.hold, ttl=3.0), "test")
        assert svc.runs.wait_all(300), "the run did not end"
        journal = run.journal()
    faults = [a["faults"] for a in journal["extensions"][0]["agents"].values()]
    out = {
        "events": [e.message for e in run.events.since(0)],
        "status": journal["status"],
        "faulted": sum(1 for fs in faults if any(f.get("fault_id") for f in fs)),
        "reverted": sum(1 for fs in faults if fs and all(_reverted(f) for f in fs)),
    }
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
